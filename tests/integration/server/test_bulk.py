"""Download modes, the bulk bandwidth cap and back-off, SIGKILL during a fill, a full disk."""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from pathlib import Path

import pytest

from steppatch import Repository
from tests.integration.server.conftest import (
    Pki,
    Servers,
    access_log,
    blob,
    client,
    make_component,
    object_path,
    sha,
    store_objects,
    wait_for,
)

FAST = {"bulk_download_mbit_per_s": 10_000, "bulk_backoff_factor": 0, "poll_interval_s": 60}


def store_of(server: object) -> Path:
    return server.config.parent / "store"  # type: ignore[attr-defined]


def repo_objects(repo: Repository) -> set[str]:
    return {p.name for p in (repo.root / "objects").glob("??/*")}


def test_modes_differ(tmp_path: Path, repo: Repository, servers: Servers, certs: Pki) -> None:
    origin = servers.origin(repo.root)
    root = repo.root / "root.json"
    on_demand = servers.mirror([origin], root, download="ON_DEMAND", **FAST)
    released = servers.mirror([origin], root, download="RELEASED", **FAST)
    historic = servers.mirror([origin], root, download="HISTORIC", **FAST)
    everything = repo_objects(repo)
    # HISTORIC: everything upstream has (objects, manifests, recipes).
    wait_for(lambda: everything <= set(store_objects(store_of(historic))), timeout=30)
    wait_for(lambda: historic.health()["bulk"]["historic"]["state"] == "idle")
    # RELEASED and ON_DEMAND: metadata only, nothing released since they started.
    wait_for(lambda: released.health()["index_version"] > 0)
    wait_for(lambda: released.health()["bulk"]["released"]["state"] == "idle")
    assert store_objects(store_of(released)) == {}
    assert store_objects(store_of(on_demand)) == {}
    # A new release: RELEASED fetches it (and only it) once it sees the new timestamp.
    data = blob(200_000, seed=5)
    repo.add(make_component(tmp_path / "src", "newaddon", "1.0", {"n.bin": data}))
    for m in (released, on_demand, historic):
        m.admin("/sync", method="POST")
    wait_for(lambda: sha(data) in store_objects(store_of(released)), timeout=30)
    new_cv = next(iter(repo.index.components["newaddon"].values()))
    held = set(store_objects(store_of(released)))
    assert new_cv.manifest.sha256 in held
    old = next(iter(repo.index.components["restapi"].values()))
    assert old.manifest.sha256 not in held
    wait_for(lambda: sha(data) in store_objects(store_of(historic)), timeout=30)
    time.sleep(0.5)
    assert store_objects(store_of(on_demand)) == {}
    # Bulk downloads are visible in takeout/ in the repository layout.
    assert (store_of(released) / "takeout" / object_path(sha(data))).is_file()


def _bulk_repo(tmp_path: Path, repo: Repository, n: int, size: int) -> list[bytes]:
    files = {f"f{i}.bin": blob(size, seed=100 + i) for i in range(n)}
    repo.add(make_component(tmp_path / "src", "bulky", "1.0", files))
    return list(files.values())


def test_bandwidth_cap_within_ten_percent(
    tmp_path: Path, repo: Repository, servers: Servers, certs: Pki
) -> None:
    _bulk_repo(tmp_path, repo, 6, 1_500_000)
    origin = servers.origin(repo.root)
    mbit = 16.0  # 2 MB/s
    historic = servers.mirror([origin], repo.root / "root.json", download="HISTORIC",
                              bulk_download_mbit_per_s=mbit, bulk_backoff_factor=0)
    wait_for(lambda: historic.metric("bulk_bytes_total") > 1_000_000, timeout=20)
    t0, b0 = time.monotonic(), historic.metric("bulk_bytes_total")
    time.sleep(2.5)
    t1, b1 = time.monotonic(), historic.metric("bulk_bytes_total")
    rate = (b1 - b0) / (t1 - t0)
    cap = mbit * 1_000_000 / 8
    assert abs(rate - cap) / cap < 0.10, (rate, cap)
    # Client fetches are not capped: an object the bulk process has not reached comes at once.
    assert historic.metric("bulk_bytes_total", process="historic") == historic.metric(
        "bulk_bytes_total")


def test_backoff_after_each_bulk_download(
    tmp_path: Path, repo: Repository, servers: Servers, certs: Pki
) -> None:
    size = 500_000
    data = _bulk_repo(tmp_path, repo, 4, size)
    origin = servers.origin(repo.root)
    mbit, factor = 8.0, 1.5  # 1 MB/s: each object takes about 0.4-0.5 s, then 1.5 x that
    historic = servers.mirror([origin], repo.root / "root.json", download="HISTORIC",
                              bulk_download_mbit_per_s=mbit, bulk_backoff_factor=factor)
    names = {f"/{object_path(sha(d))}" for d in data}
    wait_for(lambda: len([e for e in access_log(origin) if e["path"] in names]) == 4, timeout=30)
    starts = sorted(e["time"] - e["seconds"] for e in access_log(origin) if e["path"] in names)
    rate = mbit * 1_000_000 / 8
    burst = rate / 10
    took = (size - burst) / rate  # the token bucket starts each download with one burst
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    for gap in gaps:
        # download + factor x download, from one start to the next
        assert gap == pytest.approx((1 + factor) * took, rel=0.15), (gaps, took)
    assert historic.metric("bulk_backoff_seconds_total") == pytest.approx(
        factor * took * 3, rel=0.25)


def test_sigkill_during_fill_leaves_no_partial_object(
    tmp_path: Path, repo: Repository, servers: Servers, certs: Pki
) -> None:
    data = blob(3_000_000, seed=9)
    repo.add(make_component(tmp_path / "src", "big", "1.0", {"b.bin": data}))
    origin = servers.origin(repo.root)
    historic = servers.mirror([origin], repo.root / "root.json", download="HISTORIC",
                              bulk_download_mbit_per_s=8, bulk_backoff_factor=0)
    store = store_of(historic)
    partial = store / "objects/.partial" / sha(data)
    wait_for(lambda: partial.exists() and partial.stat().st_size > 300_000, timeout=30)
    historic.stop(signal.SIGKILL)
    assert historic.proc.returncode == -signal.SIGKILL
    held = partial.stat().st_size
    assert 0 < held < len(data)
    assert sha(data) not in store_objects(store)
    # Restarted (same store, now ON_DEMAND): the client gets verified bytes; the fill resumed.
    text = historic.config.read_text().replace('"HISTORIC"', '"ON_DEMAND"')
    historic.config.write_text(text)
    again = servers.start(historic.config)
    s = client(certs)
    s.get(f"{again.url}/timestamp.json")
    manifest = next(iter(repo.index.components["big"].values())).manifest
    assert s.get(f"{again.url}/{manifest.path}").status_code == 200
    r = s.get(f"{again.url}/{object_path(sha(data))}")
    assert r.status_code == 200 and r.content == data
    assert store_objects(store)[sha(data)] == data
    assert not partial.exists()
    ranged = [e for e in access_log(origin)
              if e["path"] == f"/{object_path(sha(data))}" and e["range"]]
    assert ranged and ranged[-1]["range"].startswith("bytes=")
    assert all(sha(v) == k for k, v in store_objects(store).items())


def test_sigterm_stops_gracefully(repo: Repository, servers: Servers, certs: Pki) -> None:
    origin = servers.origin(repo.root)
    mirror = servers.mirror([origin], repo.root / "root.json", download="RELEASED")
    assert client(certs).get(f"{mirror.url}/timestamp.json").status_code == 200
    started = time.monotonic()
    assert mirror.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    assert origin.stop(signal.SIGTERM) == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    """A 6 MiB tmpfs (needs root and mount(2); skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_fill_fails_cleanly(
    tmp_path: Path, repo: Repository, servers: Servers, certs: Pki, small_disk: Path
) -> None:
    small = blob(100_000, seed=11)
    huge = blob(8_000_000, seed=12)
    repo.add(make_component(tmp_path / "src", "small", "1.0", {"s.bin": small}))
    repo.add(make_component(tmp_path / "src", "huge", "1.0", {"h.bin": huge}))
    origin = servers.origin(repo.root)
    config = servers.write_config(
        "mirror", trusted_root=str(repo.root / "root.json"), download="ON_DEMAND",
        metadata_max_age_s=0,
        upstreams=[{"id": "up0", "url": origin.url}],
        upstream_tls={"cert": str(certs.client("your-mirror")[0]),
                      "key": str(certs.client("your-mirror")[1]), "ca": str(certs.ca)},
    )
    text = config.read_text().replace(str(config.parent / "store"), str(small_disk / "store"))
    config.write_text(text)
    mirror = servers.start(config)
    s = client(certs)
    s.get(f"{mirror.url}/timestamp.json")
    for name in ("small", "huge"):
        m = next(iter(repo.index.components[name].values())).manifest
        assert s.get(f"{mirror.url}/{m.path}").status_code == 200
    assert s.get(f"{mirror.url}/{object_path(sha(small))}").content == small
    r = s.get(f"{mirror.url}/{object_path(sha(huge))}")
    assert r.status_code == 503 and "Retry-After" in r.headers
    health = mirror.health()
    assert health["status"] == "degraded"
    assert any("space" in reason for reason in health["reasons"]), health
    store = small_disk / "store"
    held = store_objects(store)
    assert sha(huge) not in held
    assert not list((store / "objects/.partial").glob("*"))  # the space came back
    assert all(sha(v) == k for k, v in held.items())
    # What was held is still served.
    assert s.get(f"{mirror.url}/{object_path(sha(small))}").content == small
