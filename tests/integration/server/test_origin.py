"""Origin mode: a published repository served read-only over HTTPS with client certificates."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import requests

from steppatch import Repository
from steppatch.transport import HttpsFetcher, TlsConfig
from steppatch.transport.errors import TlsError
from tests.integration.server.conftest import (
    Pki,
    Servers,
    blob,
    changed,
    client,
    https_home,
    make_component,
    object_path,
    raw_get,
    sha,
    tree,
)

RESTAPI = "to:restapi/7.0/restapi-7.0.40.spr"


@pytest.fixture
def big(tmp_path: Path, repo: Repository) -> bytes:
    data = blob(3 * 1024 * 1024 + 7, seed=1)
    repo.add(make_component(tmp_path / "src", "bigdata", "1.0", {"data.bin": data}))
    return data


def test_home_updates_from_origin_over_https(
    tmp_path: Path, repo: Repository, servers: Servers, certs: Pki
) -> None:
    origin = servers.origin(repo.root)
    home = https_home(tmp_path / "home", origin, repo, certs)
    assert changed(home.apply([RESTAPI])) == {"restapi", "step-core"}
    # The same result as from the directory itself.
    from steppatch import Home

    direct = Home.init(tmp_path / "direct", updates=repo.root.as_uri(),
                       root=(repo.root / "root.json").read_bytes(), system="prod-eu")
    direct.apply([RESTAPI])
    assert tree(home.path) == tree(direct.path)
    assert tree(home.path)


def test_range_head_etag(repo: Repository, servers: Servers, certs: Pki, big: bytes) -> None:
    origin = servers.origin(repo.root)
    s = client(certs)
    url = f"{origin.url}/{object_path(sha(big))}"
    full = s.get(url)
    assert full.status_code == 200 and full.content == big
    etag = full.headers["ETag"]
    assert etag == f'"{sha(big)}"'
    assert full.headers["Accept-Ranges"] == "bytes"
    assert "immutable" in full.headers["Cache-Control"]
    head = s.head(url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) == len(big)
    part = s.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == big[100:1100]
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(big)}"
    tail = s.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == big[-10:]
    rest = s.get(url, headers={"Range": f"bytes={len(big) - 5}-"})
    assert rest.content == big[-5:]
    bad = s.get(url, headers={"Range": f"bytes={len(big)}-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{len(big)}"
    assert s.get(url, headers={"If-None-Match": etag}).status_code == 304
    # If-Range with another validator: the whole file, not the range.
    other = s.get(url, headers={"Range": "bytes=0-9", "If-Range": '"x"'})
    assert other.status_code == 200 and len(other.content) == len(big)
    # A resumed download through the library's fetcher (Range from an offset).
    cert, key = certs.client("prod-eu")
    fetcher = HttpsFetcher(origin.url, TlsConfig(certs.ca, cert, key))
    assert b"".join(fetcher.fetch(object_path(sha(big)), 12345)) == big[12345:]


def test_mutable_metadata_is_not_cached(repo: Repository, servers: Servers, certs: Pki) -> None:
    origin = servers.origin(repo.root)
    r = client(certs).get(f"{origin.url}/timestamp.json")
    assert r.status_code == 200
    assert r.content == (repo.root / "timestamp.json").read_bytes()
    assert r.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    ["nope.json", ".steppatch-repo.lock", "objects/.partial/x", "a/../root.json", "%2e%2e/etc",
     "objects/ab/" + "0" * 64],
)
def test_not_found(repo: Repository, servers: Servers, certs: Pki, path: str) -> None:
    (repo.root / ".steppatch-repo.lock").touch()
    origin = servers.origin(repo.root)
    status, _body = raw_get(origin, certs, f"/{path}")
    assert status in (404, 400), status


def test_symlink_out_of_the_repository_is_not_served(
    tmp_path: Path, repo: Repository, servers: Servers, certs: Pki
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (repo.root / "leak.json").symlink_to(secret)
    (repo.root / "linkdir").symlink_to(tmp_path)
    origin = servers.origin(repo.root)
    s = client(certs)
    assert s.get(f"{origin.url}/leak.json").status_code == 404
    assert s.get(f"{origin.url}/linkdir/secret.txt").status_code == 404


def test_keep_alive(repo: Repository, servers: Servers, certs: Pki) -> None:
    origin = servers.origin(repo.root)
    host, port = origin.listen.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ctx.load_cert_chain(*certs.client("prod-eu"))
    with socket.create_connection((host, int(port)), timeout=10) as sock, ctx.wrap_socket(
        sock, server_hostname=host
    ) as tls:
        # Two requests on one connection: the first leaves it open.
        tls.sendall(b"GET /root.json HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"GET /timestamp.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2


def _handshake(origin_listen: str, certs: Pki, name: str | None) -> None:
    host, port = origin_listen.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if name is not None:
        cert, key = certs.client(name)
        ctx.load_cert_chain(cert, key)
    with socket.create_connection((host, int(port)), timeout=5) as sock, ctx.wrap_socket(
        sock, server_hostname=host
    ) as tls:
        tls.sendall(b"GET /root.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = tls.recv(100)
        if not data:
            raise ConnectionResetError("closed")


@pytest.mark.parametrize("name", [None, "stranger", "expired"])
def test_certificate_refusals(
    repo: Repository, servers: Servers, certs: Pki, name: str | None
) -> None:
    origin = servers.origin(repo.root)
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        _handshake(origin.listen, certs, name)
    # requests, as a client without the right certificate would do it.
    s = requests.Session()
    s.verify = str(certs.ca)
    if name is not None:
        s.cert = tuple(str(p) for p in certs.client(name))  # type: ignore[assignment]
    with pytest.raises(requests.exceptions.ConnectionError):
        s.get(f"{origin.url}/root.json", timeout=5)
    # Nothing was served to it.
    assert origin.metric("requests_total") == 0
    _handshake(origin.listen, certs, "prod-eu")


def test_library_fetcher_names_a_missing_certificate(
    repo: Repository, servers: Servers, certs: Pki
) -> None:
    origin = servers.origin(repo.root)
    fetcher = HttpsFetcher(origin.url, TlsConfig(certs.ca))
    with pytest.raises(TlsError) as info:
        b"".join(fetcher.fetch("root.json"))
    assert info.value.kind.value in ("client-cert-missing", "client-cert-rejected")
