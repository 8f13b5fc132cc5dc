"""FleetSource: the stored snapshots (as SnapshotStore writes them) read into the fleet, kept
between calls while the files stay the same, and seen again when they change."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from packaging.version import Version

from steppatch.fleet import FleetState
from steppatch.model import ComponentVersion, FileRef, RecipeKind, RepositoryIndex
from steppatch.recipe import dump_recipe, pinned_recipe
from steppatch.server._fleet import FleetSource, upload_time
from steppatch.server._snapshots import SnapshotStore

NOW = dt.datetime.now(dt.UTC)


def cv(name: str, version: str) -> ComponentVersion:
    return ComponentVersion(name, Version(version), FileRef("m", "0" * 64, 1),
                            f"{name}/{version}.spr")


INDEX = RepositoryIndex({"app": {Version(v): cv("app", v) for v in ("1.0", "1.1")}}, {})


def snap(system: str, version: str) -> bytes:
    return dump_recipe(pinned_recipe(RecipeKind.SNAPSHOT, {"app": Version(version)},
                                     system=system))


def age(path: Path, seconds: float) -> None:
    """Date a file or folder back (as if written ``seconds`` ago)."""
    t = path.stat().st_mtime - seconds
    os.utime(path, (t, t))


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "snapshots", forward=False, rate=0)


def source(store: SnapshotStore) -> FleetSource:
    return FleetSource(store.root, lambda: (INDEX, 3), lambda ref: None, dt.timedelta(days=7))


def test_uploads_are_read_with_their_times_and_history(store: SnapshotStore) -> None:
    store.put("prod-eu.spr", "prod-eu", snap("prod-eu", "1.0"))
    kept = store.put("prod-eu.spr", "prod-eu", snap("prod-eu", "1.1"))
    store.put("relay/test-eu.spr", "relay", snap("test-eu", "1.0"))
    fleet, unreadable = source(store).fleet(NOW + dt.timedelta(seconds=1))
    assert unreadable == {} and fleet.index_version == 3
    assert [(s.name, s.state, s.uploads) for s in fleet.systems] == [
        ("prod-eu", FleetState.UP_TO_DATE, 2), ("relay/test-eu", FleetState.BEHIND, 1)]
    assert fleet.systems[0].last_upload == upload_time(kept.rpartition("/")[2])
    assert abs(fleet.systems[0].last_upload - NOW) < dt.timedelta(seconds=30)
    one, _ = source(store).fleet(only="prod-eu")
    (prod,) = one.systems
    assert [len(h.changes) if h.changes is not None else None for h in prod.history] == [1, None]


def test_a_new_upload_is_seen_and_unchanged_files_are_not_read_again(
    store: SnapshotStore,
) -> None:
    store.put("prod-eu.spr", "prod-eu", snap("prod-eu", "1.0"))
    folder = store.root / "prod-eu"
    for f in [*folder.iterdir(), folder]:
        age(f, 60)
    src = source(store)
    first, _ = src.fleet()
    again, _ = src.fleet()
    assert again.systems[0] is first.systems[0]  # nothing re-read, nothing recomputed
    store.put("prod-eu.spr", "prod-eu", snap("prod-eu", "1.1"))
    later, _ = src.fleet()
    assert later.systems[0].versions == {"app": Version("1.1")}
    assert later.systems[0].uploads == 2 and later.systems[0].behind == 0


def test_damaged_and_hand_written_snapshots(store: SnapshotStore, tmp_path: Path) -> None:
    store.put("prod-eu.spr", "prod-eu", snap("prod-eu", "1.0"))
    (store.root / "prod-eu/latest.spr").write_bytes(b"\x00garbage")
    hand = store.root / "by-hand"
    hand.mkdir()
    (hand / "latest.spr").write_bytes(snap("by-hand", "1.1"))
    age(hand / "latest.spr", 10 * 86400)
    (store.root / "not a name").mkdir()  # not a system name: ignored
    (store.root / "not a name/latest.spr").write_bytes(snap("x", "1.0"))
    before = {p: p.read_bytes() for p in store.root.rglob("*.spr")}
    fleet, unreadable = source(store).fleet()
    assert list(unreadable) == ["prod-eu"] and "UTF-8" in unreadable["prod-eu"]
    (by_hand,) = fleet.systems
    assert by_hand.name == "by-hand" and by_hand.state is FleetState.STALE  # its file's time
    assert {p: p.read_bytes() for p in store.root.rglob("*.spr")} == before  # read only


def test_no_snapshots_folder_is_an_empty_fleet(tmp_path: Path) -> None:
    src = FleetSource(tmp_path / "none", lambda: (None, None), lambda ref: None,
                      dt.timedelta(days=7))
    fleet, unreadable = src.fleet()
    assert fleet.systems == () and unreadable == {} and not fleet.indexed
    assert not (tmp_path / "none").exists()


def test_release_recipes_are_verified_against_the_index(store: SnapshotStore) -> None:
    import hashlib

    release = dump_recipe(pinned_recipe(RecipeKind.RELEASE, {"app": Version("1.1")}, name="r"))
    ref = FileRef("releases/r.spr", hashlib.sha256(release).hexdigest(), len(release))
    index = RepositoryIndex(INDEX.components, {"releases/r.spr": ref})
    store.put("prod-eu.spr", "prod-eu", snap("prod-eu", "1.0"))
    for held, statuses in ((release, ["trails"]), (release[:-1] + b" ", [])):
        src = FleetSource(store.root, lambda i=index: (i, 4), lambda r, h=held: h,
                          dt.timedelta(days=7))
        fleet, _ = src.fleet()
        assert [r.status for r in fleet.systems[0].releases] == statuses
