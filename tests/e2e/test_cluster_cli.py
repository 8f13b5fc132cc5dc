"""The cluster commands as an operator runs them: nodes, status --cluster, apply and --local,
cluster snapshots, and a coordinator killed half way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from steppatch import Home
from tests.builders import component, home_for, repository, tree
from tests.e2e.conftest import Run


@pytest.fixture
def cluster(tmp_path: Path, home: Path, run: Run) -> list[Path]:
    """``home`` (node a) and two more homes b and c, all at app 1.0, listed as nodes of a."""
    src = tmp_path / "src"
    repo = repository(
        tmp_path,
        component(src, "app", "1.0", {"a.txt": b"one"}),
        component(src, "app", "2.0", {"a.txt": b"two"}),
    )
    paths = [home, tmp_path / "b", tmp_path / "c"]
    for path in paths:
        home_for(repo, path).apply(["to:app/1.0/app-1.0.spr"])
    run("nodes", "name", "a")
    run("nodes", "add", "b", paths[1])
    run("nodes", "add", "c", paths[2])
    return paths


def versions(path: Path) -> list[str]:
    return [str(v) for v in Home.open(path).status().versions().values()]


def test_nodes_are_listed_added_and_removed(cluster: list[Path], run: Run) -> None:
    listed = json.loads(run("nodes", "--json").out)["nodes"]
    assert [(n["name"], n["location"], n["self"]) for n in listed] == [
        ("a", str(cluster[0]), True),
        ("b", str(cluster[1]), False),
        ("c", str(cluster[2]), False),
    ]
    assert "b" in run("nodes").out
    run("nodes", "remove", "c")
    assert [n["name"] for n in json.loads(run("nodes", "--json").out)["nodes"]] == ["a", "b"]


def test_bad_node_input_is_refused_and_changes_nothing(
    cluster: list[Path], run: Run, tmp_path: Path
) -> None:
    config = (cluster[0] / "steppatch.toml").read_bytes()
    for args, message in (
        (("nodes", "add", "d", "ssh://host"), "expected ssh://USER@HOST[:PORT]/PATH"),
        (("nodes", "add", "b", str(tmp_path)), "exists already"),
        (("nodes", "add", "d", str(tmp_path / "nothing")), "not a steppatch home"),
        (("nodes", "remove", "zz"), "no node named 'zz'"),
        (("nodes", "name", "b"), "another node is named 'b'"),
    ):
        result = run(*args, expect=None)
        assert result.code in (2, 5), result
        assert message in result.err
        assert result.err.count("\n") == 1  # one line, no traceback
    assert (cluster[0] / "steppatch.toml").read_bytes() == config


def test_status_cluster_apply_local_and_mixed(
    cluster: list[Path], run: Run, tmp_path: Path
) -> None:
    status = json.loads(run("status", "--cluster", "--json").out)
    assert status["consistent"] is True
    assert [n["components"] for n in status["nodes"]] == [{"app": "1.0"}] * 3
    run("snapshot", tmp_path / "all.spr", "--cluster")

    local = run("apply", "to:app/latest.spr", "--local")
    assert "the cluster is now mixed" in local.err
    assert versions(cluster[0]) == ["2.0"] and versions(cluster[1]) == ["1.0"]
    mixed = run("status", "--cluster", "--json", expect=1)
    assert json.loads(mixed.out)["consistent"] is False
    assert "MIXED" in run("status", "--cluster", expect=1).out

    refused = run("apply", "to:app/latest.spr", expect=5)
    assert "the cluster is mixed: a at app 2.0; b, c at app 1.0" in refused.err
    assert [versions(p) for p in cluster] == [["2.0"], ["1.0"], ["1.0"]]

    back = run("apply", tmp_path / "all.spr", "--json")
    assert [n["switched"] for n in json.loads(back.out)["nodes"]] == [True, False, False]
    assert [versions(p) for p in cluster] == [["1.0"]] * 3

    done = run("apply", "to:app/latest.spr")
    assert "Switched 3 node(s): a, b, c" in done.out
    assert [versions(p) for p in cluster] == [["2.0"]] * 3


def _apply_killed_at(step: str, home: Path) -> int:
    env = {**os.environ, "STEPPATCH_HOME": str(home), "STEPPATCH_TEST_KILL_AT": step}
    done = subprocess.run(
        [sys.executable, "-m", "steppatch_cli", "apply", "to:app/latest.spr"],
        env=env, capture_output=True, timeout=120, check=False,
    )
    return done.returncode


def test_coordinator_killed_after_staging_switches_no_node(cluster: list[Path], run: Run) -> None:
    before = [tree(p / "current") for p in cluster]
    assert _apply_killed_at("cluster-staged", cluster[0]) == -signal.SIGKILL
    assert [tree(p / "current") for p in cluster] == before
    assert json.loads(run("status", "--cluster", "--json").out)["consistent"] is True
    run("apply", "to:app/latest.spr")  # the leftover staged applies are replaced
    assert [versions(p) for p in cluster] == [["2.0"]] * 3
    assert not [d for p in cluster for d in (p / ".steppatch" / "staged").glob("*")]


def test_coordinator_killed_between_switches_leaves_a_visible_mixed_cluster(
    cluster: list[Path], run: Run
) -> None:
    assert _apply_killed_at("cluster-switched-1", cluster[0]) == -signal.SIGKILL
    assert [versions(p) for p in cluster] == [["2.0"], ["1.0"], ["1.0"]]
    status = json.loads(run("status", "--cluster", "--json", expect=1).out)
    assert status["consistent"] is False
    run("apply", "to:app/latest.spr", expect=5)
    # The way forward: patch the others one at a time.
    for path in cluster[1:]:
        run("--home", path, "apply", "to:app/latest.spr", "--local")
    assert json.loads(run("status", "--cluster", "--json").out)["consistent"] is True


def test_offline_patches_are_per_node(cluster: list[Path], run: Run, tmp_path: Path) -> None:
    # Steps 1-3 of the offline method for node b, driven from a, then for a itself.
    run("--home", cluster[1], "snapshot", tmp_path / "b.spr")
    run("prepare", "to:app/latest.spr", "--target", tmp_path / "b.spr",
        "--output", tmp_path / "b.patch")
    run("--home", cluster[1], "apply", tmp_path / "b.patch")
    assert [versions(p) for p in cluster] == [["1.0"], ["2.0"], ["1.0"]]
    # A patch applied on a node with a cluster patches that node only, and says the cluster is
    # mixed; the patch for b is refused on a (another environment).
    refused = run("apply", tmp_path / "b.patch", expect=2)
    assert "environment" in refused.err
    run("snapshot", tmp_path / "a.spr")
    run("prepare", "to:app/latest.spr", "--target", tmp_path / "a.spr",
        "--output", tmp_path / "a.patch")
    applied = run("apply", tmp_path / "a.patch")
    assert "the cluster is now mixed" in applied.err
    assert [versions(p) for p in cluster] == [["2.0"], ["2.0"], ["1.0"]]
