"""Mirror mode: upstreams relayed through a verified store; coalescing; faults of upstreams."""

from __future__ import annotations

import concurrent.futures
import socket
import ssl
import time
from pathlib import Path

import pytest

from steppatch import Repository
from tests.integration.server.conftest import (
    Pki,
    Servers,
    access_log,
    blob,
    changed,
    client,
    copy_repo,
    https_home,
    make_component,
    object_path,
    raw_get,
    sha,
    store_objects,
    tree,
    wait_for,
)

RESTAPI = "to:restapi/7.0/restapi-7.0.40.spr"
BIG = 8 * 1024 * 1024


@pytest.fixture
def big(tmp_path: Path, repo: Repository) -> bytes:
    data = blob(BIG, seed=2)
    repo.add(make_component(tmp_path / "src", "bigdata", "1.0", {"data.bin": data}))
    return data


def store_of(server: object) -> Path:
    return server.config.parent / "store"  # type: ignore[attr-defined]


def test_home_updates_through_mirror(
    tmp_path: Path, repo: Repository, servers: Servers, certs: Pki
) -> None:
    origin = servers.origin(repo.root)
    mirror = servers.mirror([origin], repo.root / "root.json")
    home = https_home(tmp_path / "home", mirror, repo, certs)
    assert changed(home.apply([RESTAPI])) == {"restapi", "step-core"}
    held = store_objects(store_of(mirror))
    # Everything held is what its name says (nothing unverified is stored).
    assert held and all(sha(data) == name for name, data in held.items())
    # ON_DEMAND: only what the home asked for; acme-addon was never fetched.
    index = repo.index
    acme = next(iter(index.components["acme-addon"].values()))
    assert acme.manifest.sha256 not in held
    # The takeout view shows what was downloaded, in the repository's layout.
    takeout = store_of(mirror) / "takeout"
    assert (takeout / "restapi/7.0/restapi-7.0.40.spr").is_file()
    assert (takeout / "timestamp.json").is_file()
    fetched = mirror.metric("upstream_fetches_total")
    # A second home: served from the store, no new upstream fetch of content.
    other = https_home(tmp_path / "home2", mirror, repo, certs, name="test-eu")
    other.apply([RESTAPI])
    assert tree(other.path) == tree(home.path)
    assert mirror.metric("upstream_fetches_total") == fetched
    assert mirror.metric("cache_hits_total") > 0
    assert mirror.health()["status"] == "ok"


def test_mirror_serves_what_origin_serves(
    repo: Repository, servers: Servers, certs: Pki
) -> None:
    origin = servers.origin(repo.root)
    mirror = servers.mirror([origin], repo.root / "root.json")
    s = client(certs)
    for path in ["root.json", "timestamp.json", "roots/1.root.json",
                 "restapi/latest.spr", "restapi/7.0/restapi-7.0.39.spr"]:
        a, b = s.get(f"{origin.url}/{path}"), s.get(f"{mirror.url}/{path}")
        assert (a.status_code, a.content) == (b.status_code, b.content), path
    for path in ["nope.spr", "objects/00/" + "0" * 64, "manifests/00/" + "0" * 64 + ".json",
                 "roots/9.root.json", "indexes/99.index.json"]:
        assert s.get(f"{mirror.url}/{path}").status_code == 404, path


def test_one_upstream_fetch_for_many_clients(
    repo: Repository, servers: Servers, certs: Pki, big: bytes
) -> None:
    origin = servers.origin(repo.root)
    mirror = servers.mirror([origin], repo.root / "root.json")
    s = client(certs)
    s.get(f"{mirror.url}/timestamp.json")
    manifest = next(iter(repo.index.components["bigdata"].values())).manifest
    assert s.get(f"{mirror.url}/{manifest.path}").status_code == 200
    path = object_path(sha(big))
    host, port = mirror.listen.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ctx.load_cert_chain(*certs.client("prod-eu"))
    n = 40
    # Handshake first, then send all requests at once: they reach the mirror together.
    conns = []
    for _ in range(n):
        sock = socket.create_connection((host, int(port)), timeout=30)
        conns.append(ctx.wrap_socket(sock, server_hostname=host))
    request = f"GET /{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    for c in conns:
        c.sendall(request)
    # One client disconnects at once: the fill must go on for the others.
    conns[0].close()

    def read(c: ssl.SSLSocket) -> bytes:
        data = bytearray()
        while chunk := c.recv(1 << 20):
            data += chunk
        c.close()
        return bytes(data.partition(b"\r\n\r\n")[2])

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        bodies = list(pool.map(read, conns[1:]))
    assert all(b == big for b in bodies)
    fetches = [e for e in access_log(origin) if e["path"] == f"/{path}"]
    assert len(fetches) == 1
    assert mirror.metric("upstream_fetches_total", kind="object") == 1
    assert mirror.metric("cache_misses_total", kind="object") >= 2  # joined, not refetched


def test_disconnecting_client_does_not_cancel_the_fill(
    repo: Repository, servers: Servers, certs: Pki, big: bytes
) -> None:
    origin = servers.origin(repo.root)
    mirror = servers.mirror([origin], repo.root / "root.json")
    s = client(certs)
    s.get(f"{mirror.url}/timestamp.json")
    path = object_path(sha(big))
    host, port = mirror.listen.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ctx.load_cert_chain(*certs.client("prod-eu"))
    with socket.create_connection((host, int(port)), timeout=10) as sock, ctx.wrap_socket(
        sock, server_hostname=host
    ) as tls:
        tls.sendall(f"GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    # Gone before any answer; the object still arrives in the store, verified.
    wait_for(lambda: store_objects(store_of(mirror)).get(sha(big)) == big, timeout=30)
    assert len([e for e in access_log(origin) if e["path"] == f"/{path}"]) == 1
    r = s.get(f"{mirror.url}/{path}")
    assert r.content == big


def test_upstream_down_cached_still_served(
    tmp_path: Path, repo: Repository, servers: Servers, certs: Pki
) -> None:
    origin = servers.origin(repo.root)
    mirror = servers.mirror([origin], repo.root / "root.json", upstream_retry_s=30)
    home = https_home(tmp_path / "home", mirror, repo, certs)
    home.apply(["to:restapi/7.0/restapi-7.0.39.spr"])
    origin.stop()
    s = client(certs)
    # The timestamp and everything fetched before are still served.
    assert s.get(f"{mirror.url}/timestamp.json").status_code == 200
    assert s.get(f"{mirror.url}/restapi/7.0/restapi-7.0.39.spr").status_code == 200
    health = mirror.health()
    assert health["status"] == "degraded"
    assert any("up0" in r or "upstream" in r for r in health["reasons"])
    # Uncached: fails fast with 503 and Retry-After, without waiting on the dead upstream.
    started = time.monotonic()
    r = s.get(f"{mirror.url}/restapi/7.0/restapi-7.0.40.spr")
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
    assert time.monotonic() - started < 1.0
    # The home sees the repository as it was: an apply of what is cached still works.
    again = https_home(tmp_path / "home2", mirror, repo, certs, name="test-eu")
    again.apply(["to:restapi/7.0/restapi-7.0.39.spr"])
    assert tree(again.path) == tree(home.path)


def _corrupt(repo_copy: Path, data: bytes, how: str) -> None:
    target = repo_copy / object_path(sha(data))
    target.chmod(0o644)
    raw = target.read_bytes()
    if how == "flip":
        target.write_bytes(bytes([raw[0] ^ 1]) + raw[1:])
    elif how == "truncate":
        target.write_bytes(raw[: len(raw) // 2])
    else:
        target.write_bytes(raw + b"extra")


@pytest.mark.parametrize("how", ["flip", "truncate", "longer"])
def test_wrong_bytes_never_stored_next_upstream_tried(
    tmp_path: Path, repo: Repository, servers: Servers, certs: Pki, how: str
) -> None:
    data = blob(300_000, seed=3)
    repo.add(make_component(tmp_path / "src", "small", "1.0", {"x.bin": data}))
    bad_repo = copy_repo(repo, tmp_path / "bad")
    _corrupt(bad_repo, data, how)
    bad = servers.origin(bad_repo)
    good = servers.origin(repo.root)
    path = object_path(sha(data))
    manifest = next(iter(repo.index.components["small"].values())).manifest
    # Only the bad upstream: refused, nothing stored, 503.
    lone = servers.mirror([bad], repo.root / "root.json")
    s = client(certs)
    assert s.get(f"{lone.url}/{manifest.path}").status_code == 200
    r = s.get(f"{lone.url}/{path}")
    assert r.status_code == 503
    assert sha(data) not in store_objects(store_of(lone))
    assert not list((store_of(lone) / "objects/.partial").glob("*"))
    assert lone.metric("upstream_errors_total", kind="content") >= 1
    # The bad upstream first, a good one second: served, verified, from the second.
    pair = servers.mirror([bad, good], repo.root / "root.json")
    assert s.get(f"{pair.url}/{manifest.path}").status_code == 200
    r = s.get(f"{pair.url}/{path}")
    assert r.status_code == 200 and r.content == data
    assert store_objects(store_of(pair))[sha(data)] == data
    assert [e["path"] for e in access_log(good)].count(f"/{path}") == 1


def test_tampered_metadata_refused(
    tmp_path: Path, repo: Repository, servers: Servers, certs: Pki
) -> None:
    bad_repo = copy_repo(repo, tmp_path / "bad")
    ts = bad_repo / "timestamp.json"
    ts.write_text(ts.read_text().replace('"version"', '"version" ', 1).replace("1", "2", 1))
    bad = servers.origin(bad_repo)
    mirror = servers.mirror([bad], repo.root / "root.json")
    s = client(certs)
    r = s.get(f"{mirror.url}/timestamp.json")
    assert r.status_code == 503
    assert not (store_of(mirror) / "metadata/timestamp.json").exists()
    assert mirror.health()["status"] == "degraded"


def test_object_unknown_to_mirror_is_found_through_manifests(
    repo: Repository, servers: Servers, certs: Pki
) -> None:
    origin = servers.origin(repo.root)
    mirror = servers.mirror([origin], repo.root / "root.json")
    s = client(certs)
    s.get(f"{mirror.url}/timestamp.json")
    cv = next(iter(repo.index.components["step-core"].values()))
    import json

    manifest = json.loads((repo.root / cv.manifest.path).read_bytes())
    entry = next(e for e in manifest["entries"] if e["type"] == "file")
    # Asked for an object before its manifest: the mirror looks it up in the index's manifests.
    r = s.get(f"{mirror.url}/{object_path(entry['sha256'])}")
    assert r.status_code == 200 and sha(r.content) == entry["sha256"]
    # An object no manifest names is not fetched at all.
    status, _ = raw_get(mirror, certs, "/" + object_path("ab" * 32))
    assert status == 404
    assert not [e for e in access_log(origin) if e["path"].endswith("ab" * 32)]
