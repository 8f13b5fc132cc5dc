"""``steppatch mirror status`` and ``steppatch mirror sync --once``, as an operator runs them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from steppatch import Repository
from tests.integration.server.conftest import (
    Pki,
    Servers,
    free_port,
    mirror_cli,
    store_objects,
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mirror_cli(*args), capture_output=True, text=True, timeout=60,
                          check=False)


def test_sync_once_then_status(repo: Repository, servers: Servers, certs: Pki) -> None:
    origin = servers.origin(repo.root)
    config = servers.write_config(
        "mirror", trusted_root=str(repo.root / "root.json"), download="HISTORIC",
        # status and sync find the server by the configured admin port: a fixed one here
        admin_listen=f"127.0.0.1:{free_port()}",
        bulk_download_mbit_per_s=10_000, bulk_backoff_factor=0,
        upstreams=[{"id": "up0", "url": origin.url}],
        upstream_tls={"cert": str(certs.client("your-mirror")[0]),
                      "key": str(certs.client("your-mirror")[1]), "ca": str(certs.ca)},
    )
    done = run("sync", "--once", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["downloaded"]["historic"] > 0 and result["index_version"] >= 1
    everything = {p.name for p in (repo.root / "objects").glob("??/*")}
    assert everything <= set(store_objects(config.parent / "store"))
    status = run("status", "--config", str(config), "--json")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["objects"] >= len(everything) and info["health"] is None
    assert info["state"]["bulk"]["historic"]["state"] == "idle"
    # With a server on the store, status shows its health and sync asks it.
    server = servers.start(config)
    info = json.loads(run("status", "--config", str(config), "--json").stdout)
    assert info["health"]["status"] == "ok"
    via = run("sync", "--once", "--config", str(config), "--json")
    assert via.returncode == 0 and json.loads(via.stdout)["via"] == "running server"
    text = run("status", "--config", str(config))
    assert "server: ok" in text.stdout
    server.stop()


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text('store = "s"\ndownload = "SOMETIMES"\n[tls]\ncert = "a"\nkey = "b"\n'
                      'client_ca = "c"\n[origin]\nrepository = "r"\n')
    done = run("serve", "--config", str(config))
    assert done.returncode == 2
    assert "'download'" in done.stderr and "SOMETIMES" in done.stderr
    assert run("sync", "--config", str(config)).returncode == 2  # --once is required
