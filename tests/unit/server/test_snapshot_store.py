"""Snapshot uploads cannot fill the server's disk (issue 14, item 3): thin documents only, the
last N kept per system, a byte quota per uploader, an upload rate per system, a bounded outbox.
Every refusal is a typed error and leaves the store as it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from steppatch import evolve
from steppatch.limits import DEFAULT_LIMITS
from steppatch.model import FileEntry, NodeSnapshot, RecipeKind
from steppatch.recipe import dump_recipe, pinned_recipe
from steppatch.server import SnapshotQuotaExceeded, SnapshotRateLimited, SnapshotRefused
from steppatch.server._ratelimit import UploadRate
from steppatch.server._snapshots import SnapshotStore, check_snapshot, disk_charge


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def snap(system: str = "prod-eu", version: str = "7.0.40", **fields: Any) -> bytes:
    recipe = pinned_recipe(RecipeKind.SNAPSHOT, {"restapi": Version(version)}, system=system)
    if not fields:
        return dump_recipe(recipe)
    doc = json.loads(dump_recipe(recipe))
    doc.update(fields)
    return json.dumps(doc).encode()


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, hidden ones too (a leaked temporary shows here)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def store(tmp_path: Path, **kw: Any) -> SnapshotStore:
    kw.setdefault("rate", 0)
    return SnapshotStore(tmp_path / "snapshots", forward=kw.pop("forward", False), **kw)


def uploads(s: SnapshotStore, system: str = "prod-eu") -> list[Path]:
    return sorted(p for p in (s.root / system).glob("*.spr") if p.name != "latest.spr")


# --- thin documents only -----------------------------------------------------------------------

LONG = "x" * (DEFAULT_LIMITS.max_snapshot_string_chars + 1)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (snap(name=LONG), 400, "name"),
        (snap(created=LONG), 400, "created"),
        (snap(environment=LONG), 400, "environment"),
        (snap(fingerprint=LONG), 400, "fingerprint"),
        (snap(components={"restapi": "==" + "1" * 300}), 400, "components"),
        (snap(components={"a" + "b" * 300: "==1"}), 400, "components"),
        (snap(components={f"c{i}": "==1" for i in range(1001)}), 413, "components"),
        (snap(files=[]), 400, "files"),
        (snap(nodes=[{"name": "n1", "components": {}, "files": []}]), 400, "nodes"),
        (snap(nodes=[{"name": "n" * 300, "components": {}}]), 400, "nodes"),
        (snap(nodes=[{"name": "n1", "components": {"a" * 300: "1"}}]), 400, "nodes"),
        (snap(nodes=[{"name": f"n{i}", "components": {}} for i in range(65)]), 413, "nodes"),
        (snap(nodes={"n1": {}}), 400, "nodes"),
        (snap(nodes=["n1"]), 400, "nodes"),
        (snap(config={"db.password": "hunter2"}), 400, "config"),
    ],
)
def test_only_thin_snapshots_are_taken(
    tmp_path: Path, body: bytes, status: int, field: str
) -> None:
    s = store(tmp_path)
    with pytest.raises(SnapshotRefused) as info:
        s.put("prod-eu.spr", "prod-eu", body)
    assert type(info.value) is SnapshotRefused
    assert (info.value.status, info.value.field) == (status, field)
    assert files_of(s.root) == {}


def test_the_4_mib_name_of_the_report_is_refused_unread(tmp_path: Path) -> None:
    s = store(tmp_path)
    body = snap(name="n" * (4 * 1024 * 1024 - 200))
    assert len(body) < DEFAULT_LIMITS.max_recipe_bytes  # a recipe could be this large
    with pytest.raises(SnapshotRefused) as info:
        s.put("prod-eu.spr", "prod-eu", body)
    assert info.value.status == 413
    assert files_of(s.root) == {}


def test_a_full_snapshot_is_not_thin_a_cluster_snapshot_is(tmp_path: Path) -> None:

    from steppatch.model import EntryKind

    thin = pinned_recipe(RecipeKind.SNAPSHOT, {"restapi": Version("7.0.40")}, system="prod-eu")
    entry = FileEntry("bin/x", EntryKind.FILE, 0o755, 1, "0" * 64)
    full = evolve(thin, files={"bin/x": entry})
    s = store(tmp_path)
    with pytest.raises(SnapshotRefused) as info:
        s.put("prod-eu.spr", "prod-eu", dump_recipe(full))
    assert (info.value.status, info.value.field) == (400, "files")
    assert files_of(s.root) == {}
    # A cluster snapshot's nodes are names and versions too: taken (the fleet shows them).
    cluster = evolve(thin, nodes=(NodeSnapshot("n1", {"restapi": Version("7.0.40")}),))
    s.put("prod-eu.spr", "prod-eu", dump_recipe(cluster))
    assert (s.root / "prod-eu/latest.spr").read_bytes() == dump_recipe(cluster)


def test_a_home_s_own_upload_is_thin() -> None:
    names, recipe = check_snapshot("prod-eu.spr", "prod-eu", snap(name="s", created="2026-11-22"))
    assert names == ["prod-eu"] and recipe.system == "prod-eu"


# --- retention ---------------------------------------------------------------------------------


def test_the_last_20_uploads_are_kept(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.keep == 20
    bodies = [snap(version=f"7.0.{i}") for i in range(21)]
    kept = [s.put("prod-eu.spr", "prod-eu", body) for body in bodies]
    files = uploads(s)
    assert len(files) == 20
    assert [f.read_bytes() for f in files] == bodies[1:]  # the first one went, order kept
    assert [f"prod-eu/{f.name}" for f in files] == kept[1:]
    assert (s.root / "prod-eu/latest.spr").read_bytes() == bodies[-1]
    assert sorted(files_of(s.root)) == sorted([*(f"prod-eu/{f.name}" for f in files),
                                               "prod-eu/latest.spr"])


def test_retention_is_per_system_and_keeps_relayed_ones_apart(tmp_path: Path) -> None:
    s = store(tmp_path, keep=2)
    for i in range(3):
        s.put("prod-eu.spr", "prod-eu", snap(version=f"1.{i}"))
        s.put("prod-eu/home-a.spr", "prod-eu", snap("home-a", version=f"2.{i}"))
    assert [f.read_bytes() for f in uploads(s)] == [snap(version="1.1"), snap(version="1.2")]
    assert [f.read_bytes() for f in uploads(s, "prod-eu/home-a")] == [
        snap("home-a", version="2.1"), snap("home-a", version="2.2")]


# --- quota -------------------------------------------------------------------------------------


def test_over_quota_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    small = snap(version="1.0")
    # Room for one system's upload + latest.spr, and one more such pair.
    s = store(tmp_path, quota_bytes=4 * disk_charge(len(small)))
    s.put("prod-eu.spr", "prod-eu", small)
    s.put("prod-eu/home-a.spr", "prod-eu", snap("home-a", version="1.0"))
    before = files_of(s.root)
    with pytest.raises(SnapshotQuotaExceeded) as info:
        s.put("prod-eu/home-b.spr", "prod-eu", snap("home-b", version="1.0"))
    e = info.value
    assert (e.status, e.owner, e.quota) == (413, "prod-eu", 4 * disk_charge(len(small)))
    assert (e.used, e.needed) == (4 * disk_charge(len(small)), 6 * disk_charge(len(small)))
    assert files_of(s.root) == before
    # Another uploader has a quota of its own.
    s.put("test-eu.spr", "test-eu", snap("test-eu"))


def test_at_the_quota_an_upload_replacing_the_oldest_is_taken(tmp_path: Path) -> None:
    body = snap(version="1.0")
    s = store(tmp_path, keep=2, quota_bytes=3 * disk_charge(len(body)))
    s.put("prod-eu.spr", "prod-eu", body)
    s.put("prod-eu.spr", "prod-eu", snap(version="1.1"))  # 2 uploads + latest: the quota
    s.put("prod-eu.spr", "prod-eu", snap(version="1.2"))  # the oldest goes: no growth
    assert [f.read_bytes() for f in uploads(s)] == [snap(version="1.1"), snap(version="1.2")]
    big = snap(version="1.3", name="n" * 200, created="c" * 200) + b" " * 8192
    with pytest.raises(SnapshotQuotaExceeded):
        s.put("prod-eu.spr", "prod-eu", big)


def test_the_quota_counts_what_was_stored_before_a_restart(tmp_path: Path) -> None:
    body = snap(version="1.0")
    first = store(tmp_path, quota_bytes=2 * disk_charge(len(body)))
    first.put("prod-eu.spr", "prod-eu", body)
    again = store(tmp_path, quota_bytes=2 * disk_charge(len(body)))
    before = files_of(again.root)
    with pytest.raises(SnapshotQuotaExceeded) as info:
        again.put("prod-eu/home-a.spr", "prod-eu", snap("home-a"))
    assert info.value.used == 2 * disk_charge(len(body))
    assert files_of(again.root) == before


# --- rate --------------------------------------------------------------------------------------


def test_over_the_rate_is_refused_with_when_to_retry(tmp_path: Path) -> None:
    clock = FakeClock()
    s = store(tmp_path, rate=2, clock=clock)
    s.put("prod-eu.spr", "prod-eu", snap(version="1.0"))
    s.put("prod-eu.spr", "prod-eu", snap(version="1.1"))
    before = files_of(s.root)
    with pytest.raises(SnapshotRateLimited) as info:
        s.put("prod-eu.spr", "prod-eu", snap(version="1.2"))
    assert (info.value.status, info.value.path, info.value.retry_after) == (429, "prod-eu", 30)
    assert files_of(s.root) == before
    # Other systems have rates of their own; after the wait, this one may upload again.
    s.put("test-eu.spr", "test-eu", snap("test-eu"))
    clock.now += 29
    with pytest.raises(SnapshotRateLimited) as info:
        s.put("prod-eu.spr", "prod-eu", snap(version="1.2"))
    assert info.value.retry_after == 1
    clock.now += 1
    s.put("prod-eu.spr", "prod-eu", snap(version="1.2"))
    assert (s.root / "prod-eu/latest.spr").read_bytes() == snap(version="1.2")


def test_a_refused_document_spends_no_upload(tmp_path: Path) -> None:
    s = store(tmp_path, rate=1, clock=FakeClock())
    with pytest.raises(SnapshotRefused):
        s.put("prod-eu.spr", "prod-eu", snap(files=[]))
    s.put("prod-eu.spr", "prod-eu", snap())


def test_upload_rate_forgets_idle_systems() -> None:
    clock = FakeClock()
    rate = UploadRate(6, clock)
    for i in range(5000):
        assert rate.take(f"s{i}") == 0
        clock.now += 0.1
    assert len(rate) < 1024  # the idle ones (refilled after 10 s) are forgotten
    assert UploadRate(0, clock).take("s") == 0  # 0: no limit
    with pytest.raises(ValueError):
        UploadRate(-1)


# --- outbox ------------------------------------------------------------------------------------


def outbox(s: SnapshotStore) -> list[dict[str, str]]:
    return [json.loads(p.read_bytes()) for p in sorted((s.root / ".outbox").glob("*.json"))]


def test_the_outbox_keeps_the_newest_of_each_system(tmp_path: Path) -> None:
    s = store(tmp_path, forward=True)
    s.put("prod-eu.spr", "prod-eu", snap(version="1.0"))
    s.put("test-eu.spr", "test-eu", snap("test-eu"))
    s.put("prod-eu.spr", "prod-eu", snap(version="1.1"))
    assert outbox(s) == [
        {"path": "test-eu.spr", "snapshot": snap("test-eu").decode()},
        {"path": "prod-eu.spr", "snapshot": snap(version="1.1").decode()},
    ]
    assert s.pending() == 2 and s.dropped == 0
    # Both uploads of prod-eu are kept locally: only the queue holds the newest alone.
    assert len(uploads(s)) == 2


def test_a_full_outbox_drops_its_oldest(tmp_path: Path) -> None:
    s = store(tmp_path, forward=True, outbox_max=3)
    systems = [f"home-{i}" for i in range(5)]
    for name in systems:
        s.put(f"{name}.spr", name, snap(name))
    assert [d["path"] for d in outbox(s)] == ["home-2.spr", "home-3.spr", "home-4.spr"]
    assert s.dropped == 2 and s.pending() == 3
    # What was stored is untouched: the bound is on forwarding only.
    for name in systems:
        assert (s.root / name / "latest.spr").read_bytes() == snap(name)
    sent: list[tuple[str, bytes]] = []
    assert s.flush(lambda path, body: sent.append((path, body)) or 201) == (3, 0)
    assert sent == [(f"{n}.spr", snap(n)) for n in systems[2:]]
    assert s.pending() == 0


def test_an_upstream_rate_limit_keeps_the_outbox(tmp_path: Path) -> None:
    s = store(tmp_path, forward=True)
    s.put("prod-eu.spr", "prod-eu", snap())
    s.put("test-eu.spr", "test-eu", snap("test-eu"))
    answers = iter([201, 429])
    assert s.flush(lambda path, body: next(answers)) == (1, 0)
    assert [d["path"] for d in outbox(s)] == ["test-eu.spr"]
    assert s.flush(lambda path, body: 403) == (0, 1)  # refused for good: dropped
    assert s.pending() == 0
