"""A real origin over HTTPS serves the published layout and nothing else; ``mirror serve``
refuses a tree holding a private key, and a store that overlaps the repository (issue #14,
items 1 and 8)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from steppatch import Repository
from steppatch.trust import SigningKey
from tests.integration.server.conftest import (
    Pki,
    Servers,
    client,
    mirror_cli,
    raw_get,
)
from tests.integration.server.test_snapshots import snapshot


def published(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def test_origin_serves_the_published_layout_only(
    repo: Repository, servers: Servers, certs: Pki
) -> None:
    files = published(repo.root)
    origin = servers.origin(repo.root)
    # While it runs (the start-up scan cannot see this): keys moved in, stray files.
    shutil.move(repo.key_dir, repo.root / "keys")
    keys = sorted(str(p.relative_to(repo.root)) for p in (repo.root / "keys").glob("*.pem"))
    assert any(k.startswith("keys/root-") for k in keys)
    (repo.root / "notes.txt").write_text("internal")
    (repo.root / "objects" / "ab").mkdir(exist_ok=True)
    (repo.root / "objects" / "ab" / "README").write_text("stray")
    (repo.root / ".env").write_text("SECRET=1")
    s = client(certs)
    for path in (*keys, "keys/", "notes.txt", "objects/ab/README", ".env", "keys/../notes.txt"):
        status, body = raw_get(origin, certs, f"/{path}")
        assert status in (404, 400), (path, status)
        assert b"PRIVATE KEY" not in body and b"internal" not in body
        assert s.head(f"{origin.url}/{path}").status_code in (404, 400)
    # Every file of the published layout is still served, byte for byte.
    assert {"root.json", "timestamp.json", "roots/1.root.json"} <= files.keys()
    for path, data in files.items():
        r = s.get(f"{origin.url}/{path}")
        assert r.status_code == 200 and r.content == data, path


@pytest.mark.parametrize("slash", ["%2F", "%2f"])
def test_encoded_slash_never_reaches_the_snapshot_area(
    repo: Repository, servers: Servers, certs: Pki, slash: str
) -> None:
    origin = servers.origin(repo.root)
    assert client(certs, "prod-eu").put(
        f"{origin.url}/snapshots/prod-eu.spr", data=snapshot("prod-eu")
    ).status_code == 201
    for who in ("test-eu", "prod-eu"):
        for path in (f"/snapshots{slash}prod-eu{slash}latest.spr", f"/snapshots{slash}prod-eu"):
            status, body = raw_get(origin, certs, path, name=who)
            assert status == 404, (who, path, status)
            assert b"snapshot-prod-eu" not in body
    # The snapshot route itself still answers its owner.
    assert client(certs, "prod-eu").get(f"{origin.url}/snapshots/prod-eu.spr").content == (
        snapshot("prod-eu")
    )


def _refused(servers: Servers, config: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        mirror_cli("serve", "--config", str(config)),
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2, done  # a config error
    assert '"event": "ready"' not in done.stdout  # nothing listened
    return done


def test_serve_refuses_a_repository_holding_a_private_key(
    repo: Repository, servers: Servers
) -> None:
    shutil.move(repo.key_dir, repo.root / "keys")
    before = published(repo.root)
    config = servers.write_config("origin", origin={"repository": str(repo.root)})
    done = _refused(servers, config)
    assert "origin.repository" in done.stderr and "private key" in done.stderr
    assert str(repo.root / "keys") in done.stderr.replace("\n", "")
    assert not (config.parent / "store").exists()  # not even the store was made
    assert published(repo.root) == before


def test_serve_refuses_a_mirror_store_holding_a_private_key(
    repo: Repository, servers: Servers, certs: Pki
) -> None:
    config = servers.write_config(
        "mirror", trusted_root=str(repo.root / "root.json"),
        upstreams=[{"id": "up", "url": repo.root.as_uri()}],
    )
    store = config.parent / "store"
    store.mkdir()
    (store / "server.key").write_bytes(SigningKey.generate().to_pem())
    done = _refused(servers, config)
    assert "'store'" in done.stderr and "private key" in done.stderr
    assert sorted(p.name for p in store.iterdir()) == ["server.key"]


@pytest.mark.parametrize("where", ["inside", "equal", "around"])
def test_serve_refuses_a_store_overlapping_the_repository(
    tmp_path: Path, repo: Repository, servers: Servers, where: str
) -> None:
    store = {"inside": repo.root / "store", "equal": repo.root, "around": repo.root.parent}[where]
    before = published(repo.root)
    config = servers.write_config(
        "origin", origin={"repository": str(repo.root)}, store=str(store)
    )
    done = _refused(servers, config)
    assert "'store'" in done.stderr and "keep them apart" in done.stderr.replace("\n", " ")
    assert published(repo.root) == before
    assert not (repo.root / "store").exists()
