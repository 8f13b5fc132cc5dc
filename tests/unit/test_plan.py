import pytest
from packaging.version import Version

from steppatch.errors import PathConflict
from steppatch.model import EntryKind, FileEntry, Manifest
from steppatch.plan import ChangeReason, component_changes, merge_manifests

SHA = "b" * 64


def m(name: str, *entries: FileEntry) -> Manifest:
    return Manifest(name, Version("1"), entries)


def f(path: str) -> FileEntry:
    return FileEntry(path, EntryKind.FILE, 0o644, 1, SHA)


def d(path: str) -> FileEntry:
    return FileEntry(path, EntryKind.DIR, 0o755)


def test_changes_say_why() -> None:
    v = Version
    changes = component_changes(
        {"a": v("1"), "b": v("1"), "gone": v("1"), "same": v("2")},
        {"a": v("2"), "b": v("2"), "new": v("1"), "same": v("2")},
        requested={"a", "new"},
    )
    assert [(c.name, c.reason) for c in changes] == [
        ("a", ChangeReason.REQUESTED),
        ("b", ChangeReason.DEPENDENCY),
        ("gone", ChangeReason.REMOVED),
        ("new", ChangeReason.REQUESTED),
    ]
    assert str(changes[2]) == "gone: 1 -> (removed)"


def test_shared_directories_merge() -> None:
    tree = merge_manifests({"a": m("a", d("lib"), f("lib/a")), "b": m("b", d("lib"), f("lib/b"))})
    assert list(tree) == ["lib", "lib/a", "lib/b"]
    assert tree["lib"].owner == "a"


def test_two_components_claiming_one_file_conflict() -> None:
    with pytest.raises(PathConflict) as info:
        merge_manifests({"a": m("a", f("x")), "b": m("b", f("x"))})
    assert info.value.path == "x"
    assert info.value.components == ("a", "b")


def test_file_where_another_component_has_a_directory_conflicts() -> None:
    with pytest.raises(PathConflict) as info:
        merge_manifests({"a": m("a", f("lib")), "b": m("b", d("lib"), f("lib/b"))})
    assert info.value.path == "lib"
