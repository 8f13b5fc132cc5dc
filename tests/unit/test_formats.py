import json
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from steppatch.errors import MalformedDocument, TooLarge
from steppatch.formats import (
    dump_manifest,
    dump_state,
    index_from_json,
    index_to_json,
    parse_manifest,
    parse_state,
)
from steppatch.limits import Limits
from steppatch.model import (
    ComponentVersion,
    EntryKind,
    FileEntry,
    FileRef,
    HomeState,
    InstalledComponent,
    Manifest,
    RepositoryIndex,
)

SHA = "a" * 64


def manifest() -> Manifest:
    return Manifest(
        "restapi",
        Version("7.0.40"),
        (
            FileEntry("lib", EntryKind.DIR, 0o755),
            FileEntry("lib/a.jar", EntryKind.FILE, 0o644, 10, SHA),
            FileEntry("lib/cur", EntryKind.SYMLINK, 0o777, target="a.jar"),
        ),
    )


def test_manifest_round_trip() -> None:
    data = dump_manifest(manifest())
    assert parse_manifest(data, "m") == manifest()
    assert dump_manifest(parse_manifest(data, "m")) == data


def manifest_doc(entries: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {"format": "steppatch-manifest/1", "component": "x", "version": "1", "entries": entries}
    ).encode()


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        ([{"path": "../x", "type": "dir", "mode": "0755"}], "entries[0].path"),
        ([{"path": "/abs", "type": "dir", "mode": "0755"}], "absolute"),
        ([{"path": "a", "type": "symlink", "target": "../../etc"}], "points outside"),
        ([{"path": "a", "type": "symlink", "target": "/etc"}], "points outside"),
        ([{"path": "a", "type": "fifo"}], "entries[0].type"),
        ([{"path": "a", "type": "file", "mode": "0644", "size": 1, "sha256": "xyz"}], "sha256"),
        ([{"path": "a", "type": "file", "mode": "0644", "size": -1, "sha256": SHA}], "negative"),
        ([{"path": "a", "type": "file", "mode": "0644", "size": True, "sha256": SHA}], "size"),
        ([{"path": "a", "type": "dir", "mode": "99"}], "mode"),
        (
            [{"path": "a", "type": "dir", "mode": "0755"}, {"path": "a", "type": "dir",
                                                         "mode": "0755"}],
            "listed twice",
        ),
        (
            [
                {"path": "a", "type": "symlink", "target": "b"},
                {"path": "a/x", "type": "file", "mode": "0644", "size": 0, "sha256": SHA},
            ],
            "lies under 'a'",
        ),
    ],
)
def test_bad_manifests_are_refused(entries: list[dict[str, Any]], fragment: str) -> None:
    with pytest.raises(MalformedDocument) as info:
        parse_manifest(manifest_doc(entries), "m.json")
    assert fragment in str(info.value)


@pytest.mark.parametrize("mode", ["4755", "2755", "6755"])
def test_setuid_and_setgid_modes_are_refused(mode: str) -> None:
    data = manifest_doc([{"path": "a", "type": "file", "mode": mode, "size": 0, "sha256": SHA}])
    with pytest.raises(MalformedDocument) as info:
        parse_manifest(data, "m")
    assert "entries[0].mode" in str(info.value) and "set-uid" in str(info.value)


def test_the_sticky_bit_is_kept() -> None:
    data = manifest_doc([{"path": "a", "type": "dir", "mode": "1777"}])
    assert parse_manifest(data, "m").entries[0].mode == 0o1777


def test_manifest_size_limit() -> None:
    with pytest.raises(TooLarge):
        parse_manifest(dump_manifest(manifest()), "m", Limits(max_manifest_bytes=10))


def index() -> RepositoryIndex:
    cv = ComponentVersion(
        name="restapi",
        version=Version("7.0.40"),
        manifest=FileRef(f"manifests/aa/{SHA}.json", SHA, 100),
        recipe="restapi/7.0/restapi-7.0.40.spr",
        summary="REST",
        notes="notes",
        hot=True,
        dependencies={"step-core": SpecifierSet(">=9.0,<10")},
    )
    return RepositoryIndex(
        {"restapi": {cv.version: cv}},
        {"restapi/7.0/restapi-7.0.40.spr": FileRef("restapi/7.0/restapi-7.0.40.spr", SHA, 5)},
    )


def test_index_round_trip() -> None:
    value = index_to_json(index())
    parsed = index_from_json(json.loads(json.dumps(value)), "index")
    assert parsed == index()
    assert parsed.versions("restapi") == [Version("7.0.40")]
    assert parsed.versions("nope") == []
    assert index_to_json(parsed) == value


def test_index_refuses_escaping_recipe_paths() -> None:
    value = index_to_json(index())
    value["recipes"]["../evil.spr"] = {"sha256": SHA, "length": 1}
    with pytest.raises(MalformedDocument) as info:
        index_from_json(value, "index")
    assert "../evil.spr" in str(info.value)


def test_index_names_the_bad_field() -> None:
    value = index_to_json(index())
    value["components"]["restapi"]["7.0.40"]["manifest"]["length"] = "many"
    with pytest.raises(MalformedDocument) as info:
        index_from_json(value, "index")
    assert "components.restapi.7.0.40.manifest.length" in str(info.value)


def test_state_round_trip() -> None:
    state = HomeState({"restapi": InstalledComponent(manifest(), SHA, hot=True)})
    assert parse_state(dump_state(state), "state") == state
