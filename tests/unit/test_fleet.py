"""The fleet computation (pure): snapshots + verified index + a clock value -> the fleet."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from packaging.version import Version

from steppatch import evolve
from steppatch.errors import RecipeError
from steppatch.fleet import (
    FLEET_FORMAT,
    Change,
    FleetMemo,
    FleetState,
    SystemUploads,
    Upload,
    compute_fleet,
    diff_versions,
    fleet_to_json,
    parse_stored_snapshot,
    release_notes,
)
from steppatch.model import (
    ComponentVersion,
    FileRef,
    NodeSnapshot,
    RecipeKind,
    RepositoryIndex,
)
from steppatch.recipe import dump_recipe, pinned_recipe

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def cv(name: str, version: str, hot: bool = False, notes: str = "") -> ComponentVersion:
    return ComponentVersion(
        name, Version(version), FileRef(f"manifests/{name}-{version}", "0" * 64, 1),
        f"{name}/{'.'.join(version.split('.')[:2])}/{name}-{version}.spr", notes=notes, hot=hot,
    )


def index(*cvs: ComponentVersion) -> RepositoryIndex:
    comps: dict[str, dict[Version, ComponentVersion]] = {}
    for c in cvs:
        comps.setdefault(c.name, {})[c.version] = c
    return RepositoryIndex(comps, {c.recipe: FileRef(c.recipe, "0" * 64, 1) for c in cvs})


INDEX = index(
    cv("restapi", "7.0.39"), cv("restapi", "7.0.40", hot=True, notes="- paging fixed"),
    cv("restapi", "7.1.2"),
    cv("step-core", "9.0.0"), cv("step-core", "9.0.5"),
)


def snap(versions: dict[str, str], **fields: object):  # type: ignore[no-untyped-def]
    r = pinned_recipe(RecipeKind.SNAPSHOT, {n: Version(v) for n, v in versions.items()},
                      system="x")
    return evolve(r, **fields) if fields else r


def system(name: str, *uploads: tuple[dt.datetime, dict[str, str]]) -> SystemUploads:
    return SystemUploads(name, tuple(Upload.of(t, snap(v)) for t, v in uploads))


def test_behind_up_to_date_and_stale() -> None:
    fleet = compute_fleet(
        [
            system("old", (NOW - dt.timedelta(days=8), {"restapi": "7.1.2"})),
            system("prod", (NOW - dt.timedelta(hours=1), {"restapi": "7.0.39",
                                                         "step-core": "9.0.5"})),
            system("test", (NOW, {"restapi": "7.1.2", "step-core": "9.0.5"})),
        ],
        INDEX, {}, NOW,
    )
    states = {s.name: s.state for s in fleet.systems}
    assert states == {"old": FleetState.STALE, "prod": FleetState.BEHIND,
                      "test": FleetState.UP_TO_DATE}
    assert fleet.counts() == {"up-to-date": 1, "behind": 1, "stale": 1}
    prod = fleet.get("prod")
    assert prod is not None and prod.behind == 1
    restapi = prod.components[0]
    assert restapi.patch is not None and restapi.patch.version == Version("7.0.40")
    assert restapi.patch.hot and restapi.patch.apply == (
        "steppatch apply --hot to:restapi/7.0/restapi-7.0.40.spr"
    )
    assert restapi.latest is not None and restapi.latest.version == Version("7.1.2")
    assert prod.commands == (
        "steppatch apply --hot to:restapi/7.0/restapi-7.0.40.spr",
        "steppatch apply to:restapi/7.1/restapi-7.1.2.spr",
    )
    assert [v for v, *_ in release_notes(INDEX, restapi)] == [Version("7.1.2"), Version("7.0.40")]


def test_stale_after_is_the_callers() -> None:
    s = system("a", (NOW - dt.timedelta(days=2), {"restapi": "7.1.2"}))
    assert compute_fleet([s], INDEX, {}, NOW).systems[0].state is FleetState.UP_TO_DATE
    short = compute_fleet([s], INDEX, {}, NOW, stale_after=dt.timedelta(days=1))
    assert short.systems[0].state is FleetState.STALE


def test_a_version_the_index_does_not_list_is_flagged_and_not_behind() -> None:
    fleet = compute_fleet([system("a", (NOW, {"custom": "1.0", "restapi": "9.0"}))],
                          INDEX, {}, NOW)
    a = fleet.systems[0]
    assert [(c.name, c.listed, c.behind) for c in a.components] == [
        ("custom", False, False), ("restapi", False, False)]
    assert a.unlisted == 2 and a.state is FleetState.UP_TO_DATE


def test_without_an_index_nothing_is_behind() -> None:
    fleet = compute_fleet([system("a", (NOW, {"restapi": "7.0.39"}))], None, {}, NOW)
    assert fleet.systems[0].state is FleetState.UP_TO_DATE
    assert fleet_to_json(fleet)["index_version"] is None
    assert fleet_to_json(fleet)["indexed"] is False


def test_releases_matched_and_trailed() -> None:
    r1 = pinned_recipe(RecipeKind.RELEASE, {"restapi": Version("7.0.39"),
                                            "step-core": Version("9.0.5")}, name="r1")
    r2 = pinned_recipe(RecipeKind.RELEASE, {"restapi": Version("7.0.40"),
                                            "step-core": Version("9.0.5")}, name="r2")
    old = pinned_recipe(RecipeKind.RELEASE, {"restapi": Version("7.0.39"),
                                             "step-core": Version("9.0.0")}, name="old")
    comp = pinned_recipe(RecipeKind.COMPONENT, {"restapi": Version("7.0.40")})
    fleet = compute_fleet(
        [system("a", (NOW, {"restapi": "7.0.39", "step-core": "9.0.5"}))], INDEX,
        {"rel/r1.spr": r1, "rel/r2.spr": r2, "rel/old.spr": old, "c.spr": comp}, NOW,
    )
    views = {(r.path, r.status, r.behind) for r in fleet.systems[0].releases}
    assert views == {("rel/r1.spr", "matches", ()), ("rel/r2.spr", "trails", ("restapi",))}


def test_cluster_nodes_and_where_they_differ() -> None:
    nodes = (NodeSnapshot("n1", {"restapi": Version("7.0.39")}),
             NodeSnapshot("n2", {"restapi": Version("7.0.40")}))
    s = SystemUploads("cl", (Upload.of(NOW, snap({"restapi": "7.0.39"}, nodes=nodes)),))
    view = compute_fleet([s], INDEX, {}, NOW).systems[0]
    assert [(n.name, n.differs) for n in view.nodes] == [("n1", ()), ("n2", ("restapi",))]
    doc = fleet_to_json(compute_fleet([s], INDEX, {}, NOW))
    assert doc["systems"][0]["nodes"][1] == {
        "name": "n2", "versions": {"restapi": "7.0.40"}, "differs": ["restapi"]}


def test_history_lists_what_changed_between_uploads_newest_first() -> None:
    t = [NOW - dt.timedelta(days=d) for d in (3, 2, 1)]
    s = system("a", (t[0], {"restapi": "7.0.39"}),
               (t[1], {"restapi": "7.0.40", "step-core": "9.0.5"}),
               (t[2], {"step-core": "9.0.5"}))
    view = compute_fleet([s], INDEX, {}, NOW, history=True).systems[0]
    assert [h.time for h in view.history] == [t[2], t[1], t[0]]
    assert view.history[0].changes == (Change("restapi", Version("7.0.40"), None),)
    assert view.history[1].changes == (
        Change("restapi", Version("7.0.39"), Version("7.0.40")),
        Change("step-core", None, Version("9.0.5")),
    )
    assert view.history[2].changes is None
    assert view.last_upload == t[2] and view.uploads == 3
    # Without history asked for (the overview), none is computed.
    assert compute_fleet([s], INDEX, {}, NOW).systems[0].history == ()


def test_the_json_is_versioned_and_complete() -> None:
    fleet = compute_fleet([system("prod", (NOW - dt.timedelta(seconds=90),
                                            {"restapi": "7.0.39"}))], INDEX, {}, NOW,
                          index_version=4)
    doc = fleet_to_json(fleet, {"broken": "snapshots/broken/latest.spr: not JSON"})
    assert json.loads(json.dumps(doc)) == doc
    assert doc["format"] == FLEET_FORMAT == "steppatch-fleet/1"
    assert doc["generated"] == "2026-12-06T12:00:00Z" and doc["stale_after_s"] == 604800
    assert doc["index_version"] == 4 and doc["indexed"] is True
    assert doc["counts"] == {"up-to-date": 0, "behind": 1, "stale": 0}
    prod = doc["systems"][0]
    assert prod["last_upload"] == "2026-12-06T11:58:30Z" and prod["silent_s"] == 90
    assert prod["components"] == {
        "restapi": {"installed": "7.0.39", "listed": True, "patch": "7.0.40", "latest": "7.1.2"}}
    assert doc["available"] == {"restapi": {
        "7.0.40": {"hot": True, "recipe": "restapi/7.0/restapi-7.0.40.spr",
                   "apply": "steppatch apply --hot to:restapi/7.0/restapi-7.0.40.spr"},
        "7.1.2": {"hot": False, "recipe": "restapi/7.1/restapi-7.1.2.spr",
                  "apply": "steppatch apply to:restapi/7.1/restapi-7.1.2.spr"},
    }}
    assert prod["commands"] == ["steppatch apply --hot to:restapi/7.0/restapi-7.0.40.spr",
                                "steppatch apply to:restapi/7.1/restapi-7.1.2.spr"]
    assert doc["unreadable"] == [{"name": "broken",
                                  "problem": "snapshots/broken/latest.spr: not JSON"}]


def test_a_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        compute_fleet([], INDEX, {}, dt.datetime(2026, 1, 1))


def test_diff_versions() -> None:
    assert diff_versions({"a": Version("1")}, {"a": Version("1")}) == ()
    assert diff_versions({}, {"a": Version("1")}) == (Change("a", None, Version("1")),)


def test_a_stored_snapshot_parses_to_its_versions_and_nodes() -> None:
    nodes = (NodeSnapshot("n1", {"restapi": Version("7.0.39")}),)
    data = dump_recipe(snap({"restapi": "7.0.39", "step-core": "9.0.5"}, nodes=nodes))
    upload = parse_stored_snapshot(data, "s.spr", NOW)
    assert upload == Upload(NOW, {"restapi": Version("7.0.39"), "step-core": Version("9.0.5")},
                            nodes)
    assert upload == Upload.of(NOW, snap({"restapi": "7.0.39", "step-core": "9.0.5"},
                                         nodes=nodes))


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"format": "steppatch-recipe/2"}, "format"),
        ({"kind": "release"}, "kind"),
        ({"components": {"restapi": ">=7"}}, "components.restapi"),
        ({"components": {"restapi": "==7.*"}}, "components.restapi"),
        ({"components": {"Bad Name": "==1"}}, "components.Bad Name"),
        ({"components": {"restapi": "==not a version"}}, "components.restapi"),
        ({"components": []}, "components"),
        ({"nodes": {}}, "nodes"),
        ({"nodes": [1]}, "nodes[0]"),
        ({"nodes": [{"name": "n", "components": {"a": "x y"}}]}, "nodes[0].components.a"),
        ({"nodes": [{"name": "n"} for _ in range(65)]}, "nodes"),
    ],
)
def test_a_stored_snapshot_that_is_not_one_is_refused(doc: dict[str, object],
                                                     problem: str) -> None:
    base: dict[str, object] = {"format": "steppatch-recipe/1", "kind": "snapshot",
                               "components": {"restapi": "==7.0.39"}}
    data = json.dumps({**base, **doc}).encode()
    with pytest.raises(RecipeError) as info:
        parse_stored_snapshot(data, "s.spr", NOW)
    assert problem in str(info.value)


def test_a_stored_snapshot_too_large_or_not_json_is_refused() -> None:
    with pytest.raises(RecipeError, match="larger than"):
        parse_stored_snapshot(b" " * (2 * 1024 * 1024), "s.spr", NOW)
    with pytest.raises(RecipeError, match="JSON"):
        parse_stored_snapshot(b"{not json", "s.spr", NOW)


def test_the_memo_reuses_a_system_s_view_only_while_nothing_changed() -> None:
    memo = FleetMemo()
    s = system("a", (NOW - dt.timedelta(days=6), {"restapi": "7.0.39"}))
    first = compute_fleet([s], INDEX, {}, NOW, memo=memo).systems[0]
    again = compute_fleet([s], INDEX, {}, NOW, memo=memo).systems[0]
    assert again is first and first.state is FleetState.BEHIND
    # Time passes: the same view, now stale.
    later = compute_fleet([s], INDEX, {}, NOW + dt.timedelta(days=2), memo=memo).systems[0]
    assert later.state is FleetState.STALE and later.components is first.components
    # A new upload, a new index, a new release: computed again, as without the memo.
    newer = system("a", (NOW, {"restapi": "7.1.2"}))
    assert compute_fleet([newer], INDEX, {}, NOW, memo=memo).systems[0].behind == 0
    other = index(cv("restapi", "7.0.39"))
    assert compute_fleet([s], other, {}, NOW, memo=memo).systems[0].behind == 0
    r = pinned_recipe(RecipeKind.RELEASE, {"restapi": Version("7.0.39")}, name="r")
    with_release = compute_fleet([s], other, {"r.spr": r}, NOW, memo=memo).systems[0]
    assert [x.status for x in with_release.releases] == ["matches"]
    assert compute_fleet([s], other, {"r.spr": r}, NOW, memo=memo).systems[0] is with_release
