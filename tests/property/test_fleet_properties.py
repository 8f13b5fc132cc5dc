"""Laws of the fleet computation, for any index, snapshots and clock."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from steppatch.fleet import FleetState, SystemUploads, Upload, compute_fleet, diff_versions
from steppatch.model import ComponentVersion, FileRef, RecipeKind, RepositoryIndex
from steppatch.recipe import pinned_recipe

NOW = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
NAMES = ["a", "b", "c", "d"]
versions = st.builds(
    lambda x, y, z: Version(f"{x}.{y}.{z}"),
    st.integers(0, 2), st.integers(0, 2), st.integers(0, 3),
)
pins = st.dictionaries(st.sampled_from(NAMES), versions, max_size=4)


@st.composite
def indexes(draw: st.DrawFn) -> RepositoryIndex:
    comps: dict[str, dict[Version, ComponentVersion]] = {}
    for name in draw(st.lists(st.sampled_from(NAMES), unique=True)):
        for v in draw(st.lists(versions, min_size=1, max_size=6, unique=True)):
            comps.setdefault(name, {})[v] = ComponentVersion(
                name, v, FileRef("m", "0" * 64, 1), f"{name}/{v}.spr", hot=draw(st.booleans()))
    return RepositoryIndex(comps, {})


@st.composite
def systems(draw: st.DrawFn) -> list[SystemUploads]:
    out = []
    for i in range(draw(st.integers(0, 5))):
        ages = sorted(draw(st.lists(st.integers(0, 20 * 86400), min_size=1, max_size=4)),
                      reverse=True)
        uploads = tuple(
            Upload.of(NOW - dt.timedelta(seconds=age),
                   pinned_recipe(RecipeKind.SNAPSHOT, draw(pins), system=f"s{i}"))
            for age in ages
        )
        out.append(SystemUploads(f"s{i}", uploads))
    return out


@settings(max_examples=150, deadline=None)
@given(systems(), indexes(), st.integers(1, 15))
def test_states_and_availability_agree_with_the_index(
    fleet_systems: list[SystemUploads], index: RepositoryIndex, days: int
) -> None:
    stale_after = dt.timedelta(days=days)
    fleet = compute_fleet(fleet_systems, index, {}, NOW, stale_after=stale_after, history=True)
    assert sum(fleet.counts().values()) == len(fleet.systems) == len(fleet_systems)
    for view, given_system in zip(fleet.systems, fleet_systems, strict=True):
        latest = given_system.uploads[-1]
        assert view.last_upload == latest.time
        silent = NOW - latest.time > stale_after
        assert (view.state is FleetState.STALE) == silent
        if not silent:
            assert (view.state is FleetState.BEHIND) == (view.behind > 0)
        for c in view.components:
            listed = sorted(index.components.get(c.name, {}))
            newer = [v for v in listed if v > c.installed]
            # latest is the newest overall when newer exists; patch the newest of its minor
            assert (c.latest.version if c.latest else None) == (newer[-1] if newer else None)
            same = [v for v in newer if v.release[:2] == c.installed.release[:2]]
            assert (c.patch.version if c.patch else None) == (same[-1] if same else None)
            if c.patch is not None:
                assert c.patch.hot == index.components[c.name][c.patch.version].hot
                assert c.patch.version <= c.latest.version  # type: ignore[union-attr]
        # The history replays: applying each upload's changes to the one before gives it.
        entries = list(reversed(view.history))
        assert len(entries) == len(given_system.uploads)
        assert entries[0].changes is None
        for before, after, entry in zip(
            given_system.uploads, given_system.uploads[1:], entries[1:], strict=False
        ):
            state = {n: str(v) for n, v in before.versions.items()}
            for change in entry.changes or ():
                if change.new is None:
                    del state[change.name]
                else:
                    state[change.name] = str(change.new)
            assert state == {n: str(v) for n, v in after.versions.items()}


@given(pins, pins)
def test_diff_is_empty_only_for_equal_versions(
    a: dict[str, Version], b: dict[str, Version]
) -> None:
    changes = diff_versions(a, b)
    assert (changes == ()) == (a == b)
    assert [c.name for c in changes] == sorted({c.name for c in changes})
