"""The pure part of garbage collection: what a home or a mirror keeps."""

from __future__ import annotations

import pytest
from packaging.version import Version

from steppatch.collect import (
    Collection,
    history_number,
    mirror_keeps,
    objects_to_remove,
    parse_age,
    split_history,
)
from steppatch.errors import InputError
from steppatch.model import ComponentVersion, FileRef, RepositoryIndex


def test_parse_age() -> None:
    assert parse_age("30d") == 30 * 86400
    assert parse_age("12h") == 12 * 3600
    assert parse_age("2w") == 14 * 86400
    assert parse_age("90s") == 90
    for bad in ("", "30", "d", "-1d", "1.5d", "3x", "1d2h"):
        with pytest.raises(InputError):
            parse_age(bad)


def test_split_history_keeps_the_newest_by_number() -> None:
    names = [
        "000010-20261206T000000Z.spr", "000002-20261206T000000Z.spr",
        "000009-20261206T000000Z.state.json", "pruned", "000009-20261206T000000Z.spr",
        "1000000-20261206T000000Z.spr",
    ]
    kept, pruned = split_history(names, 2)
    assert [h.number for h in kept] == [10, 1000000]
    assert [h.number for h in pruned] == [2, 9]
    assert split_history(names, 0)[0] == []
    assert len(split_history(names, 99)[0]) == 4
    assert history_number("pruned") is None
    with pytest.raises(InputError):
        split_history(names, -1)


def test_objects_to_remove() -> None:
    held = {"a": (1, 10.0), "b": (2, 20.0), "c": (3, 30.0), "d": (4, 5.0)}
    # needed stay; prepared (stored after the commit at 15) stay
    assert objects_to_remove(held, {"a"}, prepared_after=15.0, older_than=None) == ["d"]
    # unless stored before the older-than bound
    assert objects_to_remove(held, {"a"}, prepared_after=15.0, older_than=25.0) == ["d", "b"]
    assert objects_to_remove(held, set(), prepared_after=None, older_than=None) == [
        "d", "a", "b", "c"
    ]


def index(version: int, components: dict[str, str], recipes: dict[str, str]) -> RepositoryIndex:
    cvs: dict[str, dict[Version, ComponentVersion]] = {}
    for name, sha in components.items():
        v = Version(f"{version}.0")
        ref = FileRef(f"manifests/{sha[:2]}/{sha}.json", sha, 10)
        cvs.setdefault(name, {})[v] = ComponentVersion(name, v, ref, f"{name}/{v}/{name}-{v}.spr")
    return RepositoryIndex(
        components=cvs,
        recipes={p: FileRef(p, sha, 5) for p, sha in recipes.items()},
    )


def test_mirror_keeps_the_newest_indexes_unless_historic() -> None:
    indexes = {
        v: index(v, {"app": f"{v:064x}"}, {"app/latest.spr": f"{v + 100:064x}"})
        for v in range(1, 6)
    }
    keeps = mirror_keeps(indexes, 2, historic=False)
    assert keeps.indexes == (4, 5)
    assert keeps.manifests == {f"{4:064x}", f"{5:064x}"}
    assert keeps.recipes == {f"{104:064x}", f"{105:064x}"}
    assert mirror_keeps(indexes, 2, historic=True).indexes == (1, 2, 3, 4, 5)
    with pytest.raises(InputError):
        mirror_keeps(indexes, 0, historic=False)


def test_collection_summary_and_json() -> None:
    c = Collection(dry_run=True, history=1, objects=2, objects_bytes=10, bytes=12)
    assert c.summary().startswith("gc: would free 12 bytes: 2 object(s), 1 history entry")
    assert c.to_json()["freed_bytes"] == 12
    unknown = Collection(unknown_history=2, kept_history=2)
    assert "every cached object was kept" in unknown.summary()
