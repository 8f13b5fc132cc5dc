"""Snapshot uploads against a real server (HTTPS, client certificates): the bounds of issue 14,
item 3 as answers on the wire, and many uploads at once (item 7: all 201, one intact
``latest.spr``, retention kept, no temporary left)."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.version import Version

from steppatch import Repository, pki
from steppatch.model import RecipeKind
from steppatch.recipe import dump_recipe, parse_recipe, pinned_recipe
from tests.integration.server.conftest import Pki, Server, Servers, client, free_port

SYSTEMS = [f"load-{i:02d}" for i in range(50)]
CONCURRENT = 50


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA with a client certificate for each of ``SYSTEMS``, ``prod-eu`` and
    ``your-mirror``."""
    d = tmp_path_factory.mktemp("pki-many")
    ca = pki.make_ca()
    (d / "ca.crt").write_bytes(ca.cert_pem)
    server = pki.issue_server_cert(ca, ["127.0.0.1"])
    (d / "server.crt").write_bytes(server.cert_pem)
    (d / "server.key").write_bytes(server.key_pem)
    for name in [*SYSTEMS, "prod-eu", "your-mirror"]:
        kc = pki.issue_client_cert(ca, name)
        (d / f"{name}.crt").write_bytes(kc.cert_pem)
        (d / f"{name}.key").write_bytes(kc.key_pem)
    return Pki(d, d / "ca.crt", d / "server.crt", d / "server.key")


@pytest.fixture
def load_servers(tmp_path: Path, many: Pki) -> Iterator[Servers]:
    s = Servers(tmp_path, many)
    try:
        yield s
    finally:
        s.stop_all()


def snapshot(system: str, version: str = "7.0.40", **fields: object) -> bytes:
    body = dump_recipe(pinned_recipe(RecipeKind.SNAPSHOT, {"restapi": Version(version)},
                                     system=system))
    if not fields:
        return body
    doc = json.loads(body)
    doc.update(fields)
    return json.dumps(doc).encode()


def stored(server: Server) -> dict[str, bytes]:
    """Every file of the server's snapshot area, hidden ones too."""
    root = server.config.parent / "store/snapshots"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()} if root.exists() else {}


def kept(server: Server, system: str) -> list[Path]:
    folder = server.config.parent / "store/snapshots" / system
    return sorted(p for p in folder.glob("*.spr") if p.name != "latest.spr")


# --- each bound, answered on the wire ----------------------------------------------------------


def test_refusals_over_https_store_nothing(
    repo: Repository, load_servers: Servers, many: Pki
) -> None:
    origin = load_servers.origin(repo.root)
    s = client(many, "prod-eu")
    url = f"{origin.url}/snapshots/prod-eu.spr"
    for body, status, field in [
        (snapshot("prod-eu", name="n" * 4096), 400, "name"),
        (snapshot("prod-eu", files=[]), 400, "files"),
        (snapshot("prod-eu", nodes=[{"name": "n1", "components": {}, "files": []}]), 400,
         "nodes"),
        (snapshot("prod-eu", components={f"c{i}": "==1" for i in range(1001)}), 413,
         "components"),
    ]:
        r = s.put(url, data=body)
        assert (r.status_code, r.json().get("field")) == (status, field), r.text
    r = s.put(url, data=snapshot("prod-eu", name="n" * (4 * 1024 * 1024 - 200)))
    assert r.status_code == 413
    assert stored(origin) == {}


def test_upload_rate_answers_429_with_retry_after(
    repo: Repository, load_servers: Servers, many: Pki
) -> None:
    origin = load_servers.origin(repo.root, snapshot_rate=2)
    s = client(many, "prod-eu")
    url = f"{origin.url}/snapshots/prod-eu.spr"
    assert s.put(url, data=snapshot("prod-eu", "1.0")).status_code == 201
    assert s.put(url, data=snapshot("prod-eu", "1.1")).status_code == 201
    before = stored(origin)
    r = s.put(url, data=snapshot("prod-eu", "1.2"))
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["Retry-After"]) <= 30
    assert stored(origin) == before
    assert s.get(url).content == snapshot("prod-eu", "1.1")
    # Another system is not held back.
    other = client(many, SYSTEMS[0])
    assert other.put(f"{origin.url}/snapshots/{SYSTEMS[0]}.spr",
                     data=snapshot(SYSTEMS[0])).status_code == 201


def test_quota_and_retention_over_https(
    repo: Repository, load_servers: Servers, many: Pki
) -> None:
    origin = load_servers.origin(repo.root, snapshot_rate=0, snapshot_quota_bytes=22 * 4096)
    s = client(many, "prod-eu")
    url = f"{origin.url}/snapshots/prod-eu.spr"
    bodies = [snapshot("prod-eu", f"7.0.{i}") for i in range(21)]
    for body in bodies:
        assert s.put(url, data=body).status_code == 201
    files = kept(origin, "prod-eu")
    assert [f.read_bytes() for f in files] == bodies[1:]  # 21 uploads, the last 20 kept
    assert s.get(url).content == bodies[-1]
    # 20 uploads + latest.spr: 21 blocks of the 22; a relayed system's pair would make 23.
    before = stored(origin)
    r = s.put(f"{origin.url}/snapshots/prod-eu/home-a.spr", data=snapshot("home-a"))
    assert r.status_code == 413 and "quota" in r.json()["error"], r.text
    assert stored(origin) == before


def test_a_mirror_outbox_keeps_its_newest(
    repo: Repository, load_servers: Servers, many: Pki
) -> None:
    # An upstream that is not there: nothing is forwarded, the outbox only fills.
    mirror = load_servers.mirror([f"https://127.0.0.1:{free_port()}"], repo.root / "root.json",
                                 snapshot_outbox_max=2)
    for name in SYSTEMS[:3]:
        r = client(many, name).put(f"{mirror.url}/snapshots/{name}.spr", data=snapshot(name))
        assert r.status_code == 201, r.text
    again = client(many, SYSTEMS[2]).put(f"{mirror.url}/snapshots/{SYSTEMS[2]}.spr",
                                         data=snapshot(SYSTEMS[2], "7.0.41"))
    assert again.status_code == 201
    health = mirror.health()
    assert (health["snapshots_pending"], health["snapshots_dropped"]) == (2, 1)
    waiting = [json.loads(body) for name, body in stored(mirror).items()
               if name.startswith(".outbox/")]
    # The oldest system's entry was dropped, the newest of each other system kept.
    assert waiting == [
        {"path": f"{SYSTEMS[1]}.spr", "snapshot": snapshot(SYSTEMS[1]).decode()},
        {"path": f"{SYSTEMS[2]}.spr", "snapshot": snapshot(SYSTEMS[2], "7.0.41").decode()},
    ]
    # Everything uploaded is still kept on the mirror: the bound is on forwarding only.
    for name in SYSTEMS[:3]:
        assert kept(mirror, name)


# --- many at once ------------------------------------------------------------------------------


def _upload_all(server: Server, many: Pki, jobs: list[tuple[str, bytes]]) -> tuple[
        list[int], float]:
    sessions = [client(many, name) for name, _body in jobs]
    start = threading.Barrier(len(jobs))

    def put(i: int) -> int:
        name, body = jobs[i]
        # Connect first, so that the barrier releases uploads, not TLS handshakes.
        sessions[i].get(f"{server.url}/timestamp.json")
        start.wait()
        return sessions[i].put(f"{server.url}/snapshots/{name}.spr", data=body).status_code

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        statuses = list(pool.map(put, range(len(jobs))))
    took = time.monotonic() - began
    for session in sessions:
        session.close()
    return statuses, took


def _no_temporaries(server: Server) -> None:
    leftovers = [p for p in stored(server) if any(part.startswith(".") for part in
                                                   Path(p).parts)]
    assert leftovers == []


def test_50_concurrent_uploads_of_one_system(
    repo: Repository, load_servers: Servers, many: Pki
) -> None:
    origin = load_servers.origin(repo.root, snapshot_rate=10_000)
    system = SYSTEMS[0]
    bodies = [snapshot(system, f"7.0.{i}") for i in range(CONCURRENT)]
    statuses, took = _upload_all(origin, many, [(system, b) for b in bodies])
    print(f"\none system: {CONCURRENT} concurrent uploads, statuses "
          f"{dict(sorted((s, statuses.count(s)) for s in set(statuses)))}, {took:.2f} s")
    assert statuses == [201] * CONCURRENT
    latest = (origin.config.parent / f"store/snapshots/{system}/latest.spr").read_bytes()
    assert parse_recipe(latest, "latest.spr").system == system
    assert latest in bodies
    files = kept(origin, system)
    assert len(files) == 20  # retention held under concurrency
    assert files[-1].read_bytes() == latest  # latest.spr is the last one stored
    assert len({f.read_bytes() for f in files}) == 20
    _no_temporaries(origin)


def test_50_concurrent_uploads_of_50_systems(
    repo: Repository, load_servers: Servers, many: Pki
) -> None:
    origin = load_servers.origin(repo.root, snapshot_rate=10_000)
    jobs = [(name, snapshot(name, f"7.0.{i}")) for i, name in enumerate(SYSTEMS)]
    statuses, took = _upload_all(origin, many, jobs)
    print(f"\n50 systems: {len(jobs)} concurrent uploads, statuses "
          f"{dict(sorted((s, statuses.count(s)) for s in set(statuses)))}, {took:.2f} s")
    assert statuses == [201] * len(jobs)
    for name, body in jobs:
        assert (origin.config.parent / f"store/snapshots/{name}/latest.spr").read_bytes() == body
        assert [f.read_bytes() for f in kept(origin, name)] == [body]
    _no_temporaries(origin)
