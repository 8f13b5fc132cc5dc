"""Deltas through real servers: an origin and a mirror serve, verify and cache deltas and
transfers documents like objects; a home upgrades by deltas through the mirror; without deltas
upstream it takes whole objects and the mirror stays healthy; HISTORIC bulk fetches them."""

from __future__ import annotations

import shutil
from pathlib import Path

from packaging.version import Version

from steppatch import Repository
from steppatch.formats import parse_transfers
from tests.builders import jar_bytes
from tests.integration.server.conftest import (
    Pki,
    Servers,
    blob,
    https_home,
    make_component,
    sha,
    store_objects,
    wait_for,
)

V1 = "to:app/1.0/app-1.0.spr"
V2 = "to:app/1.1/app-1.1.spr"
SIZE = 500_000


def _repo(tmp_path: Path) -> tuple[Repository, bytes]:
    old = blob(SIZE, seed=11)
    new = old[:5000] + blob(700, seed=12) + old[5700:]
    repo = Repository.init(tmp_path / "repo")
    repo.add(make_component(tmp_path / "src", "app", "1.0", {"app.bin": old}))
    repo.add(make_component(tmp_path / "src", "app", "1.1", {"app.bin": new}))
    return repo, new


def _delta_shas(repo: Repository) -> tuple[str, set[str]]:
    ref = repo.index.components["app"][Version("1.1")].transfers
    assert ref is not None
    t = parse_transfers(repo.read(ref.path), "t")
    return ref.sha256, {d.sha256 for ot in t.objects.values() for d in ot.deltas}


def store_of(server: object) -> Path:
    return server.config.parent / "store"  # type: ignore[attr-defined]


def test_a_home_upgrades_by_delta_through_a_mirror(
    tmp_path: Path, servers: Servers, certs: Pki
) -> None:
    repo, new = _repo(tmp_path)
    origin = servers.origin(repo.root)
    mirror = servers.mirror([origin], repo.root / "root.json")
    home = https_home(tmp_path / "home", mirror, repo, certs)
    home.apply([V1])
    plan = home.prepare([V2])
    assert plan.routes["delta"][0] == 1 and plan.routes["delta"][1] < SIZE // 50
    assert plan.routes["whole"] == (0, 0) and plan.fallbacks == 0
    home.apply([V2])
    assert (tmp_path / "home/current/app.bin").read_bytes() == new
    held = store_objects(store_of(mirror))
    transfers, deltas = _delta_shas(repo)
    assert transfers in held and deltas <= set(held)
    assert sha(new) not in held  # the mirror relayed the delta, not the object
    assert all(sha(data) == name for name, data in held.items())


def test_without_deltas_upstream_the_home_takes_whole_objects(
    tmp_path: Path, servers: Servers, certs: Pki
) -> None:
    repo, new = _repo(tmp_path)
    shutil.rmtree(repo.root / "deltas")
    origin = servers.origin(repo.root)
    mirror = servers.mirror([origin], repo.root / "root.json")
    home = https_home(tmp_path / "home", mirror, repo, certs)
    home.apply([V1])
    plan = home.prepare([V2])
    assert plan.fallbacks == 1 and plan.routes["whole"] == (1, SIZE)
    home.apply([V2])
    assert (tmp_path / "home/current/app.bin").read_bytes() == new
    # The missing delta did not count against the upstream: the mirror is healthy.
    assert mirror.health()["status"] == "ok"


def test_historic_bulk_fetches_deltas_and_transfers(
    tmp_path: Path, servers: Servers, certs: Pki
) -> None:
    repo, _new = _repo(tmp_path)
    origin = servers.origin(repo.root)
    mirror = servers.mirror(
        [origin], repo.root / "root.json", download="HISTORIC",
        bulk_download_mbit_per_s=10_000, bulk_backoff_factor=0, poll_interval_s=60,
    )  # fmt: skip
    transfers, deltas = _delta_shas(repo)
    wait_for(lambda: {transfers, *deltas} <= set(store_objects(store_of(mirror))), timeout=30)
    wait_for(lambda: mirror.health()["bulk"]["historic"]["state"] == "idle", timeout=30)
    held = store_objects(store_of(mirror))
    assert all(sha(data) == name for name, data in held.items())
    assert sha(_new) in held
    # The new version's object was rebuilt from the delta, not downloaded whole.
    assert mirror.metric("objects_from_deltas_total") == 1
    assert mirror.metric("upstream_bytes_total") < 2 * SIZE


def test_historic_bulk_without_deltas_upstream_fetches_objects_whole(
    tmp_path: Path, servers: Servers, certs: Pki
) -> None:
    repo, new = _repo(tmp_path)
    shutil.rmtree(repo.root / "deltas")
    origin = servers.origin(repo.root)
    mirror = servers.mirror(
        [origin], repo.root / "root.json", download="HISTORIC",
        bulk_download_mbit_per_s=10_000, bulk_backoff_factor=0, poll_interval_s=60,
    )  # fmt: skip
    transfers, deltas = _delta_shas(repo)
    wait_for(lambda: sha(new) in store_objects(store_of(mirror)), timeout=30)
    wait_for(lambda: mirror.health()["bulk"]["historic"]["state"] == "idle", timeout=30)
    held = set(store_objects(store_of(mirror)))
    assert transfers in held and not deltas & held
    assert mirror.metric("objects_from_deltas_total") == 0
    # The missing deltas are not an upstream's failure: the mirror stays healthy and serves.
    assert mirror.health()["status"] == "ok"
    home = https_home(tmp_path / "home", mirror, repo, certs)
    home.apply([V2])
    assert (tmp_path / "home/current/app.bin").read_bytes() == new


def _jar_repo(tmp_path: Path) -> tuple[Repository, bytes, list[str], list[str]]:
    """app 1.0 and 1.1, a jar whose one member changed: its zip and plain deltas' sha256."""
    old, new = jar_bytes(3), jar_bytes(3, changed=7)
    repo = Repository.init(tmp_path / "repo")
    repo.add(make_component(tmp_path / "src", "app", "1.0", {"lib/app.jar": old}))
    repo.add(make_component(tmp_path / "src", "app", "1.1", {"lib/app.jar": new}))
    ref = repo.index.components["app"][Version("1.1")].transfers
    assert ref is not None
    (item,) = parse_transfers(repo.read(ref.path), "t").objects.values()
    zipped = [d for d in item.deltas if d.expanded is not None]
    plain = [d for d in item.deltas if d.expanded is None]
    assert zipped and plain and zipped[0].length < plain[0].length
    return repo, new, [d.path for d in zipped], [d.path for d in plain]


def _historic(servers: Servers, repo: Repository) -> object:
    origin = servers.origin(repo.root)
    return servers.mirror(
        [origin], repo.root / "root.json", download="HISTORIC",
        bulk_download_mbit_per_s=10_000, bulk_backoff_factor=0, poll_interval_s=60,
    )  # fmt: skip


def test_historic_bulk_rebuilds_an_archive_from_its_zip_delta(
    tmp_path: Path, servers: Servers, certs: Pki
) -> None:
    repo, new, _zipped, _plain = _jar_repo(tmp_path)
    mirror = _historic(servers, repo)
    wait_for(lambda: sha(new) in store_objects(store_of(mirror)), timeout=30)
    wait_for(lambda: mirror.health()["bulk"]["historic"]["state"] == "idle", timeout=30)
    assert mirror.metric("objects_from_zip_deltas_total") == 1
    assert mirror.metric("objects_from_deltas_total") == 1
    held = store_objects(store_of(mirror))
    assert all(sha(data) == name for name, data in held.items())
    home = https_home(tmp_path / "home", mirror, repo, certs)
    home.apply([V2])
    assert (tmp_path / "home/current/lib/app.jar").read_bytes() == new


def test_historic_bulk_takes_the_plain_delta_when_the_zip_delta_does_not_rebuild(
    tmp_path: Path, servers: Servers, certs: Pki
) -> None:
    """A zip delta that does not make the archive (here: gone upstream) is no failure of the
    object: the next delta rebuilds it."""
    repo, new, zipped, _plain = _jar_repo(tmp_path)
    for path in zipped:
        (repo.root / path).unlink()
    mirror = _historic(servers, repo)
    wait_for(lambda: sha(new) in store_objects(store_of(mirror)), timeout=30)
    wait_for(lambda: mirror.health()["bulk"]["historic"]["state"] == "idle", timeout=30)
    assert mirror.metric("objects_from_zip_deltas_total") == 0
    assert mirror.metric("objects_from_deltas_total") == 1
    assert mirror.health()["status"] == "ok"
    assert store_objects(store_of(mirror))[sha(new)] == new
