"""A published repository is static files: nginx (mutual TLS) serves it as an origin for homes
and for a mirror."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steppatch import Home, Repository
from steppatch.transport import HttpsFetcher, TlsConfig
from tests.integration.server.conftest import (
    Pki,
    Servers,
    changed,
    client,
    https_home,
    sha,
    store_objects,
    tree,
)

RESTAPI = "to:restapi/7.0/restapi-7.0.40.spr"


def test_home_directly_from_nginx(
    tmp_path: Path, repo: Repository, certs: Pki, nginx_factory: Any
) -> None:
    nginx = nginx_factory(repo.root)
    cert, key = certs.client("prod-eu")
    home = Home.init(tmp_path / "home", updates=nginx.url,
                     root=(repo.root / "root.json").read_bytes(),
                     fetcher=HttpsFetcher(nginx.url, TlsConfig(certs.ca, cert, key)))
    assert changed(home.apply([RESTAPI])) == {"restapi", "step-core"}


def test_mirror_of_nginx_origin(
    tmp_path: Path, repo: Repository, servers: Servers, certs: Pki, nginx_factory: Any
) -> None:
    nginx = nginx_factory(repo.root)
    mirror = servers.mirror([nginx.url], repo.root / "root.json")
    home = https_home(tmp_path / "home", mirror, repo, certs)
    assert changed(home.apply([RESTAPI])) == {"restapi", "step-core"}
    held = store_objects(mirror.config.parent / "store")
    assert held and all(sha(v) == k for k, v in held.items())
    direct = https_home(tmp_path / "direct", mirror, repo, certs, name="test-eu")
    direct.apply([RESTAPI])
    assert tree(direct.path) == tree(home.path)
    assert mirror.health()["status"] == "ok"
    # nginx refuses a mirror without a client certificate.
    s = client(certs)
    s.cert = None
    assert s.get(f"{nginx.url}/root.json").status_code == 400
