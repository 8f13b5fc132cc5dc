"""Issue 5 at the level an operator sees: `apply` through a faulty primary mirror completes from
the next one with the same result; `ping` and `mirrors` say what they see.

The repository is a real signed one, served by nginx with client certificates; the primary is a
fault-injecting TLS proxy in front of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from steppatch import Home, Repository
from tests.builders import component, tree
from tests.integration.tls.conftest import Pki
from tests.integration.tls.servers import (
    FaultProxy,
    Nginx,
    Site,
    free_ports,
    install_nginx,
    start_nginx,
)

REF = "to:app/1.0/app-1.0.spr"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    root = tmp_path_factory.mktemp("signed")
    files: dict[str, bytes | tuple[str, str]] = {
        f"lib/f{i}.bin": os.urandom(40_000 + i) for i in range(12)
    }
    files["current"] = ("link", "lib/f1.bin")
    repo = Repository.init(root / "repo")
    repo.add(component(root / "src", "app", "1.0", files))  # type: ignore[arg-type]
    return repo


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, test_pki: Pki, signed: Repository
) -> Iterator[Nginx]:
    binary = install_nginx()
    if binary is None:
        pytest.skip("nginx is not installed and cannot be installed here (needs root and apt-get)")
    p = test_pki.p
    site = Site("repo", p("server.crt"), p("server.key"), test_pki.ca, signed.root)
    started = start_nginx(binary, tmp_path_factory.mktemp("nginx-repo"), [site])
    if isinstance(started, str):
        pytest.skip(started)
    yield started
    started.stop()


@pytest.fixture
def primary(test_pki: Pki, served: Nginx) -> Iterator[FaultProxy]:
    p = test_pki.p
    proxy = FaultProxy(
        p("server.crt"), p("server.key"), test_pki.ca, served.url("repo"),
        (test_pki.ca, p("proxy.crt"), p("proxy.key")),
    )
    yield proxy
    proxy.close()


def make_home(path: Path, primary_url: str, backup_url: str, test_pki: Pki,
              signed: Repository) -> Home:
    tls = test_pki.client()
    assert tls.cert_file is not None and tls.key_file is not None
    home = Home.init(
        path, primary_url, root=(signed.root / "root.json").read_bytes(),
        ca=test_pki.ca.read_bytes(),
        client_cert=(tls.cert_file.read_bytes(), tls.key_file.read_bytes()),
        system="test-env",
    )
    home.add_mirror(_entry("backup", backup_url, 50))
    return home


def _entry(mirror_id: str, url: str, priority: int) -> object:
    from steppatch.config import MirrorEntry

    return MirrorEntry(mirror_id, url, priority)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, signed: Repository) -> object:
    home = Home.init(
        tmp_path_factory.mktemp("ref") / "home", signed.root.as_uri(),
        root=(signed.root / "root.json").read_bytes(),
    )
    home.apply([REF])
    return tree(home.path / "current")


@pytest.mark.parametrize("fault", ["down", "503", "corrupt", "cut", "404"])
def test_apply_completes_from_the_next_mirror(
    test_pki: Pki, served: Nginx, primary: FaultProxy, signed: Repository, reference: object,
    tmp_path: Path, fault: str,
) -> None:
    url = primary.url
    if fault == "down":
        url = f"https://127.0.0.1:{free_ports(1)[0]}"
    else:
        primary.mode = fault
    home = make_home(tmp_path / "home", url, served.url("repo"), test_pki, signed)
    fresh = Home.open(home.path)
    fresh.apply([REF])
    assert tree(home.path / "current") == reference
    assert list(fresh.repository.pool.failed) == ["primary"]


def test_all_mirrors_failing_lists_each_reason_and_changes_nothing(
    test_pki: Pki, served: Nginx, primary: FaultProxy, signed: Repository, tmp_path: Path
) -> None:
    primary.mode = "corrupt"
    down = f"https://127.0.0.1:{free_ports(1)[0]}"
    home = make_home(tmp_path / "home", primary.url, down, test_pki, signed)
    before = tree(home.path)
    done = subprocess.run(
        [sys.executable, "-m", "steppatch_cli", "--home", str(home.path), "apply", REF],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode in (3, 4), done
    assert "primary:" in done.stderr and "backup:" in done.stderr
    assert tree(home.path) == before


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steppatch_cli", "--home", str(home), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_ping_and_mirrors(
    test_pki: Pki, served: Nginx, primary: FaultProxy, signed: Repository, tmp_path: Path
) -> None:
    down = f"https://127.0.0.1:{free_ports(1)[0]}"
    home = make_home(tmp_path / "home", served.url("repo"), down, test_pki, signed).path
    listed = json.loads(cli(home, "mirrors", "--json").stdout)["mirrors"]
    assert [(m["id"], m["priority"], m["selected"]) for m in listed] == [
        ("primary", 100, True), ("backup", 50, False),
    ]
    ok = json.loads(cli(home, "ping", "--json").stdout)["checks"]
    assert [(c["name"], c["ok"]) for c in ok] == [
        ("reachable", True), ("tls", True), ("signed metadata", True),
    ]
    failed = cli(home, "ping", "--updates", down, "--json")
    assert failed.returncode == 4
    first = json.loads(failed.stdout)["checks"][0]
    assert (first["name"], first["ok"]) == ("reachable", False)
    primary.mode = "corrupt"
    bad = json.loads(cli(home, "ping", "--updates", primary.url, "--json").stdout)["checks"]
    assert [(c["name"], c["ok"]) for c in bad][-1] == ("signed metadata", False)
    cli(home, "mirrors", "--updates", down)
    listed = json.loads(cli(home, "mirrors", "--json").stdout)["mirrors"]
    assert [(m["id"], m["selected"]) for m in listed] == [("backup", True), ("primary", False)]
    assert cli(home, "mirrors", "remove", "backup").returncode == 0
    assert cli(home, "mirrors", "remove", "nope").returncode == 2
    assert cli(home, "mirrors", "remove", "primary").returncode == 2  # the last one
