"""Clusters of several homes on one machine (local-path nodes): status, apply to every node,
failures before and during the switch, --local and mixed clusters, cluster snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pytest
from packaging.version import Version

from steppatch import Home, Repository, evolve
from steppatch.cluster import Cluster
from steppatch.config import MirrorEntry, NodeEntry, ServiceConfig
from steppatch.errors import (
    ClusterMixed,
    ClusterPartiallyApplied,
    InputError,
    NodeFailed,
    StagedApplyMissing,
)
from steppatch.home import HomeDir
from steppatch.model import RecipeKind
from steppatch.recipe import parse_recipe
from tests.builders import component, home_for, repository, tree

V1 = {"app": Version("1.0"), "lib": Version("1.0")}
V2 = {"app": Version("2.0"), "lib": Version("2.0")}


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    src = tmp_path / "src"
    return repository(
        tmp_path,
        component(src, "lib", "1.0", {"lib/l.txt": b"lib one"}),
        component(src, "lib", "2.0", {"lib/l.txt": b"lib two"}),
        component(src, "app", "1.0", {"app/a.txt": b"app one"}, deps={"lib": "==1.0"}),
        component(src, "app", "2.0", {"app/a.txt": b"app two"}, deps={"lib": "==2.0"}),
    )


@pytest.fixture
def homes(repo: Repository, tmp_path: Path) -> list[Path]:
    """Three homes at app 1.0; the first lists the other two as nodes b and c."""
    paths = [tmp_path / name for name in ("a", "b", "c")]
    for path in paths:
        home_for(repo, path).apply(["to:app/1.0/app-1.0.spr"])
    first = Home.open(paths[0])
    first.name_node("a")
    first.add_node(NodeEntry("b", str(paths[1])))
    first.add_node(NodeEntry("c", str(paths[2])))
    return paths


def versions(path: Path) -> dict[str, Version]:
    return Home.open(path).status().versions()


def configure(path: Path, **changes: object) -> None:
    files = HomeDir.open(path)
    files.write_config(evolve(files.config, **changes))


def staged_dirs(paths: list[Path]) -> list[Path]:
    return [d for p in paths for d in (p / ".steppatch" / "staged").glob("*")]


def test_status_lists_every_node_and_says_whether_they_agree(homes: list[Path]) -> None:
    status = Cluster(Home.open(homes[0])).status()
    assert [n.name for n in status.nodes] == ["a", "b", "c"]
    assert status.nodes[0].is_self and not status.nodes[1].is_self
    assert all(n.versions == V1 for n in status.nodes)
    assert status.consistent

    Home.open(homes[2]).apply(["to:app/2.0/app-2.0.spr"])
    status = Cluster(Home.open(homes[0])).status()
    assert not status.consistent
    assert status.groups() == (
        ("app 1.0, lib 1.0", ("a", "b")),
        ("app 2.0, lib 2.0", ("c",)),
    )


def test_apply_brings_every_node_to_the_same_versions(homes: list[Path]) -> None:
    report = Cluster(Home.open(homes[0])).apply(["to:app/latest.spr"])
    assert [(o.name, o.switched) for o in report.nodes] == [("a", True), ("b", True), ("c", True)]
    assert [versions(p) for p in homes] == [V2, V2, V2]
    # No system name (and a file:// repository): no cluster snapshot is sent (see
    # tests/integration/server/test_fleet.py for one that is).
    assert report.upload == "skipped: the home has no system name"
    trees = [tree(p / "current") for p in homes]
    assert trees[0] == trees[1] == trees[2]
    assert (homes[2] / "current" / "app" / "a.txt").read_bytes() == b"app two"
    assert staged_dirs(homes) == []
    # Each node recorded what it replaced: a rollback there goes back.
    Home.open(homes[1]).rollback()
    assert versions(homes[1]) == V1


def test_a_node_failing_during_prepare_switches_no_node(homes: list[Path]) -> None:
    gone = homes[0].parent / "no-such-repository"
    configure(homes[2], updates=gone.as_uri(), mirrors=(MirrorEntry("primary", gone.as_uri()),))
    before = [tree(p / "current") for p in homes]
    with pytest.raises(NodeFailed) as caught:
        Cluster(Home.open(homes[0])).apply(["to:app/latest.spr"])
    assert caught.value.node == "c"
    assert caught.value.phase == "prepare"
    assert "node c failed during prepare" in str(caught.value)
    assert "no node was switched" in str(caught.value)
    assert [versions(p) for p in homes] == [V1, V1, V1]
    assert [tree(p / "current") for p in homes] == before
    assert staged_dirs(homes) == []  # what a and b staged was discarded


def test_an_unreachable_node_stops_the_apply_before_anything(homes: list[Path]) -> None:
    configure(homes[0], nodes=(*HomeDir.open(homes[0]).config.nodes, NodeEntry("d", "/nowhere")))
    status = Cluster(Home.open(homes[0])).status()
    assert not status.consistent
    assert status.nodes[-1].versions is None and "not a steppatch home" in status.nodes[-1].error
    with pytest.raises(NodeFailed) as caught:
        Cluster(Home.open(homes[0])).apply(["to:app/latest.spr"])
    assert caught.value.node == "d" and caught.value.phase == "status"
    assert [versions(p) for p in homes] == [V1, V1, V1]


def test_a_node_failing_during_its_switch_is_reported_with_every_node(
    homes: list[Path],
) -> None:
    configure(homes[2], service=ServiceConfig(stop="echo cannot stop >&2; exit 3"))
    with pytest.raises(ClusterPartiallyApplied) as caught:
        Cluster(Home.open(homes[0])).apply(["to:app/latest.spr"])
    error = caught.value
    assert error.failed == "c"
    assert error.switched == ("a", "b")
    assert error.nodes == (
        ("a", "app 2.0, lib 2.0"),
        ("b", "app 2.0, lib 2.0"),
        ("c", "app 1.0, lib 1.0"),
    )
    assert "'steppatch rollback' on a, b" in error.hint
    assert "'steppatch apply --local to:app/latest.spr' on c" in error.hint
    assert "cannot stop" in str(error)
    assert [versions(p) for p in homes] == [V2, V2, V1]
    assert staged_dirs(homes) == []
    # The way back the message gives works.
    for p in homes[:2]:
        Home.open(p).rollback()
    assert Cluster(Home.open(homes[0])).status().consistent


def test_a_node_whose_start_fails_counts_as_switched(homes: list[Path]) -> None:
    configure(homes[1], service=ServiceConfig(start="exit 4"))
    with pytest.raises(ClusterPartiallyApplied) as caught:
        Cluster(Home.open(homes[0])).apply(["to:app/latest.spr"])
    assert caught.value.failed == "b"
    assert caught.value.switched == ("a", "b")
    assert "did not start" in str(caught.value)
    assert [versions(p) for p in homes] == [V2, V2, V1]
    assert "on c" in caught.value.hint


def test_local_apply_makes_the_cluster_mixed_and_a_plain_apply_refuses(
    homes: list[Path], tmp_path: Path
) -> None:
    cluster = Cluster(Home.open(homes[0]))
    snapshot = tmp_path / "cluster.spr"
    cluster.snapshot(snapshot)
    Home.open(homes[0]).apply(["to:app/latest.spr"])  # what apply --local does
    assert not cluster.status().consistent
    with pytest.raises(ClusterMixed) as caught:
        Cluster(Home.open(homes[0])).apply(["to:app/latest.spr"])
    assert caught.value.groups == (
        ("app 2.0, lib 2.0", ("a",)),
        ("app 1.0, lib 1.0", ("b", "c")),
    )
    assert "apply --local" in str(caught.value)
    assert [versions(p) for p in homes] == [V2, V1, V1]
    # An explicit snapshot to bring every node to is allowed from a mixed cluster.
    Cluster(Home.open(homes[0])).apply([str(snapshot)])
    assert [versions(p) for p in homes] == [V1, V1, V1]


def test_cluster_snapshot_records_every_node(homes: list[Path], tmp_path: Path) -> None:
    Home.open(homes[1]).apply(["to:app/latest.spr"])
    path = tmp_path / "cluster.spr"
    recipe = Cluster(Home.open(homes[0])).snapshot(path)
    parsed = parse_recipe(path.read_bytes(), str(path))
    assert parsed == recipe
    assert parsed.kind is RecipeKind.SNAPSHOT
    assert [(n.name, dict(n.versions)) for n in parsed.nodes] == [
        ("a", V1), ("b", V2), ("c", V1)
    ]
    assert len({n.environment for n in parsed.nodes}) == 3
    assert all(len(n.fingerprint) == 64 for n in parsed.nodes)


def test_a_stale_staged_apply_is_refused_and_discarded(homes: list[Path]) -> None:
    node = Home.open(homes[1])
    staged = node.stage(["to:app/latest.spr"])
    assert staged.token and staged_dirs(homes[1:2])
    node.apply(["to:app/latest.spr"])  # the home moves on without the staged apply
    before = tree(homes[1] / "current")
    with pytest.raises(StagedApplyMissing, match="changed since it was staged"):
        node.switch_staged(staged.token)
    assert tree(homes[1] / "current") == before
    assert staged_dirs(homes[1:2]) == []
    with pytest.raises(StagedApplyMissing, match="not found"):
        node.switch_staged(staged.token)
    with pytest.raises(InputError):
        node.switch_staged("../../etc")


def test_staging_again_replaces_the_earlier_staged_apply(homes: list[Path]) -> None:
    node = Home.open(homes[1])
    first = node.stage(["to:app/latest.spr"])
    second = node.stage(["to:app/latest.spr"])
    assert first.token != second.token
    assert [d.name for d in staged_dirs(homes[1:2])] == [second.token]
    assert not (homes[1] / ".steppatch" / "trees" / first.token).exists()
    node.switch_staged(second.token)
    assert versions(homes[1]) == V2


def test_node_configuration_errors_change_nothing(homes: list[Path], tmp_path: Path) -> None:
    home = Home.open(homes[0])
    config = (homes[0] / "steppatch.toml").read_bytes()
    for entry, message in (
        (NodeEntry("b", str(tmp_path / "x")), "exists already"),
        (NodeEntry("a", str(homes[1])), "exists already"),
        (NodeEntry("bad name!", str(homes[1])), "node name"),
        (NodeEntry("d", "relative/path"), "absolute"),
        (NodeEntry("d", "ftp://host/x"), "expected a path or ssh://"),
        (NodeEntry("d", "ssh://root@host:99999/x"), "out of range"),
        (NodeEntry("d", str(homes[2])), "listed already"),
        (NodeEntry("d", str(homes[0])), "this home"),
    ):
        with pytest.raises(InputError, match=message):
            home.add_node(entry)
    with pytest.raises(Exception, match="not a steppatch home"):
        home.add_node(NodeEntry("d", str(tmp_path / "empty")))
    with pytest.raises(InputError, match="no node named"):
        home.remove_node("zz")
    assert (homes[0] / "steppatch.toml").read_bytes() == config


def test_config_edits_from_two_open_homes_both_land(homes: list[Path], tmp_path: Path) -> None:
    # Each Home read the config when it was opened; an edit through either must not drop the
    # other's (the config is read again under the lock).
    first, second = Home.open(homes[0]), Home.open(homes[0])
    first.add_mirror(MirrorEntry("extra", (tmp_path / "repo").as_uri(), 5))
    second.remove_node("c")
    config = HomeDir.open(homes[0]).config
    assert [m.id for m in config.mirrors] == ["primary", "extra"]
    assert [n.name for n in config.nodes] == ["b"]


def test_a_node_raising_an_os_error_while_staging_switches_nothing(homes: list[Path]) -> None:
    from steppatch.cluster import LocalNode

    class DiskFull(LocalNode):
        def stage(self, *args: object, **kwargs: object) -> NoReturn:
            raise OSError(28, "No space left on device")

    def connect(entry: NodeEntry) -> LocalNode:
        kind = DiskFull if entry.name == "c" else LocalNode
        return kind(entry.name, Home.open(entry.location))

    with pytest.raises(NodeFailed) as caught:
        Cluster(Home.open(homes[0]), connect).apply(["to:app/latest.spr"])
    assert caught.value.node == "c" and "No space left" in caught.value.reason
    assert caught.value.exit_code == 5
    assert [versions(p) for p in homes] == [V1, V1, V1]
    assert staged_dirs(homes) == []


def test_the_serving_side_answers_what_the_coordinator_parses(
    homes: list[Path], repo: Repository
) -> None:
    """NodeServer's answers, as JSON bytes, parse with the coordinator's own parser into what
    the same home reports as a local node: one code path for both views of a node."""
    import json

    from steppatch.cluster import LocalNode, NodeServer
    from steppatch.cluster._core import parse_node_answer, plan_from_json, versions_from_json
    from steppatch.recipe import dump_recipe

    home = Home.open(homes[1])
    server = NodeServer(home)
    answer = parse_node_answer(json.dumps(server.status()).encode(), "b")
    local = LocalNode("b", home).status()
    assert versions_from_json(answer, "versions") == local.versions == V1
    assert answer.get("environment", str) == local.environment
    assert answer.get("fingerprint", str) == local.fingerprint

    recipe = dump_recipe(home.load_recipes(["to:app/2.0/app-2.0.spr"])[0])
    staged = parse_node_answer(
        json.dumps(server.stage(recipe, hot=False, sync=None)).encode(), "b"
    )
    plan = plan_from_json(staged.obj.get("plan"), "b")
    assert {c.name for c in plan.changes} == {"app", "lib"}
    assert versions(homes[1]) == V1  # staged, not switched
    token = staged.get("token", str)
    switched = parse_node_answer(json.dumps(server.switch(token)).encode(), "b")
    assert switched.get("restarted", bool) is True  # not hot: stopped and started
    assert versions(homes[1]) == V2
    assert parse_node_answer(json.dumps(server.discard(token)).encode(), "b").obj == {
        "format": "steppatch-node/1"
    }


def test_the_serving_side_refuses_a_bad_recipe_and_stages_nothing(homes: list[Path]) -> None:
    from steppatch.cluster import NodeServer
    from steppatch.errors import SteppatchError

    with pytest.raises(SteppatchError):
        NodeServer(Home.open(homes[1])).stage(b"{not json", hot=False, sync=None)
    assert staged_dirs(homes) == []
    assert versions(homes[1]) == V1
