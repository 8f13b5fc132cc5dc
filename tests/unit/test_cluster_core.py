"""The pure part of clusters: locations, consistency, the node protocol's JSON, config and
recipe fields."""

from __future__ import annotations

import json

import pytest
from packaging.version import Version

from steppatch import evolve
from steppatch.cluster import (
    ClusterStatus,
    Location,
    NodeStatus,
    parse_location,
    plan_from_json,
    plan_to_json,
    versions_text,
)
from steppatch.config import HomeConfig, NodeEntry, dump_home_config, parse_home_config
from steppatch.errors import ConfigError, InputError, NodeError
from steppatch.model import NodeSnapshot, RecipeKind
from steppatch.plan import ChangeReason, ComponentChange, Plan
from steppatch.recipe import dump_recipe, parse_recipe, pinned_recipe


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/srv/step", Location("/srv/step")),
        ("ssh://root@10.0.0.2/opt/step", Location("/opt/step", "10.0.0.2", "root")),
        (
            "ssh://ops@node-2.example:2222/srv/a b",
            Location("/srv/a b", "node-2.example", "ops", 2222),
        ),
        ("ssh://node3/srv", Location("/srv", "node3")),
    ],
)
def test_locations_parse_and_print_back(text: str, expected: Location) -> None:
    assert parse_location(text) == expected
    assert str(parse_location(text)) == text


@pytest.mark.parametrize(
    "text",
    ["relative/home", "", "http://h/x", "ssh://", "ssh://h", "ssh://u@h:0/x", "ssh://h/a/../b",
     "ssh://u@h:70000/x", "ssh://u;rm@h/x"],
)
def test_bad_locations_are_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_location(text)


def _node(name: str, versions: dict[str, str] | None, error: str = "") -> NodeStatus:
    parsed = None if versions is None else {n: Version(v) for n, v in versions.items()}
    return NodeStatus(name, f"/{name}", versions=parsed, error=error)


def test_consistency_and_groups() -> None:
    same = ClusterStatus((_node("a", {"x": "1"}), _node("b", {"x": "1.0"})))
    assert same.consistent  # 1 and 1.0 are the same version
    mixed = ClusterStatus((_node("a", {"x": "1"}), _node("b", {"x": "2"}), _node("c", {"x": "1"})))
    assert not mixed.consistent
    assert mixed.groups() == (("x 1", ("a", "c")), ("x 2", ("b",)))
    unknown = ClusterStatus((_node("a", {}), _node("b", None, "down")))
    assert not unknown.consistent and unknown.unreachable == (unknown.nodes[1],)
    assert unknown.groups() == (("nothing installed", ("a",)), ("unknown (down)", ("b",)))
    assert ClusterStatus((_node("a", {}),)).consistent
    assert versions_text({"b": Version("2"), "a": Version("1")}) == "a 1, b 2"


def test_plan_json_round_trip_and_bad_answers() -> None:
    plan = Plan(
        {"app": Version("2.0"), "lib": Version("1.1")},
        (
            ComponentChange("app", Version("1.0"), Version("2.0"), ChangeReason.REQUESTED),
            ComponentChange("old", Version("3"), None, ChangeReason.REMOVED),
        ),
        hot=True, download_objects=2, download_bytes=10, repairs=1,
    )
    sent = json.loads(json.dumps(plan_to_json(plan)))
    assert plan_from_json(sent, "b") == plan
    bad_new = {"name": "x", "from": None, "to": 3, "reason": "requested"}
    bad_reason = {"name": "x", "from": None, "to": None, "reason": "??"}
    for broken in (
        {**sent, "hot": "yes"},
        {**sent, "target": {"app": "not a version"}},
        {**sent, "changes": [bad_new]},
        {**sent, "changes": [bad_reason]},
        [],
        None,
    ):
        with pytest.raises(NodeError, match="node b: unexpected answer"):
            plan_from_json(broken, "b")


def test_config_nodes_round_trip_and_errors() -> None:
    config = HomeConfig(
        "file:///r", node="a",
        nodes=(NodeEntry("b", "/srv/b"), NodeEntry("c", "ssh://u@h:22/srv", "/opt/bin/steppatch")),
    )
    assert parse_home_config(dump_home_config(config), "t") == config
    for text, message in (
        ('updates = "x"\nnodes = 3\n', "expected an array"),
        ('updates = "x"\n[[nodes]]\nname = "b"\n', "'name' and 'location' are required"),
        ('updates = "x"\n[[nodes]]\nname = "b"\nlocation = "/x"\nport = 2\n', "unknown"),
        ('updates = "x"\n[[nodes]]\nname = "b"\nlocation = "/x"\n[[nodes]]\nname = "b"\n'
         'location = "/y"\n', "unique"),
        ('updates = "x"\nnode = 3\n', "field 'node'"),
        ('updates = "x"\n[[mirrors]]\nid = "a"\nurl = "u"\npriority = true\n', "expected int"),
        ('updates = "x"\n[[mirrors]]\nid = "a"\n', "'id' and 'url' are required"),
        ('updates = "x"\n[[mirrors]]\nid = "a"\nurl = "u"\n[[mirrors]]\nid = "a"\nurl = "v"\n',
         "ids must be unique"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_home_config(text.encode(), "t")


def test_a_cluster_snapshot_round_trips_and_only_snapshots_list_nodes() -> None:
    recipe = pinned_recipe(RecipeKind.SNAPSHOT, {"app": Version("2")}, name="s")
    nodes = (
        NodeSnapshot("a", {"app": Version("2")}, "e1", "f" * 64),
        NodeSnapshot("b", {"app": Version("1")}),
    )
    recipe = evolve(recipe, nodes=nodes)
    assert parse_recipe(dump_recipe(recipe), "t") == recipe
    doc = json.loads(dump_recipe(recipe))
    doc["kind"] = "release"
    with pytest.raises(InputError, match="only a snapshot lists nodes"):
        parse_recipe(json.dumps(doc).encode(), "t")
    doc["kind"] = "snapshot"
    doc["nodes"][1]["components"]["app"] = "one"
    with pytest.raises(InputError, match=r"nodes\[1\]\.components\.app"):
        parse_recipe(json.dumps(doc).encode(), "t")
