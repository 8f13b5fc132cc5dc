"""The home's state file (steppatch-state/2), its stored manifests, and drift in the pure core."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest
from packaging.version import Version

from steppatch.errors import MalformedDocument, TooLarge
from steppatch.formats import (
    STATE_FORMAT,
    StateRecord,
    dump_home_state,
    dump_state,
    dump_stored_manifest,
    parse_home_state,
    parse_stored_manifest,
    state_from_records,
    stored_manifest_entries,
)
from steppatch.limits import Limits
from steppatch.model import (
    ConfigChecks,
    EntryKind,
    FileEntry,
    HomeState,
    InstalledComponent,
    Manifest,
)
from steppatch.plan import Drift, diff_tree, drift_from

SHA = "c" * 64


def manifest(name: str = "restapi", files: int = 3) -> Manifest:
    entries = [FileEntry("lib", EntryKind.DIR, 0o755)]
    entries += [
        FileEntry(f"lib/f{i}.bin", EntryKind.FILE, 0o644 if i % 2 else 0o755, i, f"{i:064x}")
        for i in range(files)
    ]
    entries.append(FileEntry("lib/latest", EntryKind.SYMLINK, 0o777, target="f0.bin"))
    return Manifest(name, Version("7.0.40"), tuple(sorted(entries, key=lambda e: e.path)))


def stored(m: Manifest) -> tuple[bytes, str]:
    data = dump_stored_manifest(m)
    return data, hashlib.sha256(data).hexdigest()


def test_stored_manifest_round_trip_and_is_deterministic() -> None:
    m = manifest()
    data, name = stored(m)
    assert dump_stored_manifest(m) == data
    assert parse_stored_manifest(data, name, "state") == m
    assert stored_manifest_entries(data, name, "state") == {e.path: e for e in m.entries}
    # what an operator sees with zcat: the manifest document itself
    assert json.loads(gzip.decompress(data))["format"] == "steppatch-manifest/1"


def test_a_damaged_stored_manifest_is_refused() -> None:
    data, name = stored(manifest())
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    for read in (parse_stored_manifest, stored_manifest_entries):
        with pytest.raises(MalformedDocument) as info:
            read(bytes(flipped), name, "state")  # type: ignore[operator]
        assert name in str(info.value) and "damaged" in str(info.value)


def test_a_stored_manifest_that_inflates_beyond_the_limit_is_refused() -> None:
    data, name = stored(manifest(files=2000))
    with pytest.raises(TooLarge):
        parse_stored_manifest(data, name, "state", Limits(max_manifest_bytes=10_000))


def test_the_light_reader_still_checks_types() -> None:
    text = json.dumps(
        {"format": "steppatch-manifest/1", "component": "x", "version": "1",
         "entries": [{"path": "a", "type": "file", "mode": 420, "size": 1, "sha256": SHA}]}
    ).encode()
    data = gzip.compress(text, mtime=0)
    with pytest.raises(MalformedDocument):
        stored_manifest_entries(data, hashlib.sha256(data).hexdigest(), "state")


def test_state_2_names_stored_manifests_and_round_trips() -> None:
    m = manifest()
    data, name = stored(m)
    config = ConfigChecks(("ui.legacy",), {"ui.port": "ui.http.port"})
    state = HomeState({"restapi": InstalledComponent(m, SHA, hot=True, config=config)})
    doc = dump_home_state(state, {"restapi": name})
    assert json.loads(doc)["format"] == STATE_FORMAT == "steppatch-state/2"
    assert len(doc) < 600  # small: the manifest lies beside it
    records = parse_home_state(doc, "state")
    assert records == {"restapi": StateRecord(SHA, name, True, config)}
    assert isinstance(records, dict)
    manifests = {"restapi": parse_stored_manifest(data, name, "state")}
    assert state_from_records(records, manifests) == state


def test_state_1_of_older_homes_is_still_read() -> None:
    state = HomeState({"restapi": InstalledComponent(manifest(), SHA)})
    assert parse_home_state(dump_state(state), "state") == state


def test_unknown_state_formats_and_bad_records_are_refused() -> None:
    with pytest.raises(MalformedDocument) as info:
        parse_home_state(b'{"format": "steppatch-state/9", "components": {}}', "state")
    assert "steppatch-state/2" in str(info.value)
    bad = {"format": STATE_FORMAT, "components": {"x": {"manifest_sha256": SHA,
                                                        "stored_manifest": "nope"}}}
    with pytest.raises(MalformedDocument) as info:
        parse_home_state(json.dumps(bad).encode(), "state")
    assert "components.x.stored_manifest" in str(info.value)


def test_a_stored_manifest_for_another_component_is_refused() -> None:
    m = manifest("other")
    _data, name = stored(m)
    with pytest.raises(MalformedDocument):
        state_from_records({"restapi": StateRecord(SHA, name)}, {"restapi": m})


def test_drift_from_reduces_to_topmost_paths() -> None:
    drift = drift_from(["b", "a"], ["gone", "gone/x", "gone/x/y"], ["new/x", "new", "z"])
    assert drift == Drift(("a", "b"), ("gone",), ("new", "z"))
    assert not drift_from([], [], [])


def test_diff_tree_compares_what_matters_per_kind() -> None:
    e = {
        "f": FileEntry("f", EntryKind.FILE, 0o644, 1, SHA),
        "d": FileEntry("d", EntryKind.DIR, 0o755),
        "l": FileEntry("l", EntryKind.SYMLINK, 0o777, target="f"),
    }
    same = dict(e)
    # a link's mode as found on disk does not matter, its target does
    same["l"] = FileEntry("l", EntryKind.SYMLINK, 0o755, target="f")
    assert not diff_tree(e, same)
    other = dict(e, f=FileEntry("f", EntryKind.FILE, 0o600, 1, SHA))
    assert diff_tree(e, other).changed == ("f",)
