"""Issue 14, item 2, as a user meets it: the symlink chain refused by ``repo add`` and ``apply``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.builders import component, home_for, repository, tree
from tests.e2e.conftest import Run
from tests.e2e.test_walking_skeleton import one_line
from tests.integration.test_symlink_escape import V1, V2, evil_files, publish_around_the_check


def test_repo_add_refuses_the_chain_naming_the_file_and_publishes_nothing(
    tmp_path: Path, run: Run
) -> None:
    repo = tmp_path / "repo"
    run("repo", "init", repo)
    good = component(tmp_path / "src", "app", "1.0", {"bin/run": b"#!/bin/sh\n"})
    bad = component(tmp_path / "src", "app", "2.0", evil_files())
    run("repo", "add", repo, good)
    before = tree(repo)
    line = one_line(run("repo", "add", repo, bad, expect=2).err)
    assert str(bad / "files" / "passwd") in line
    assert "app 2.0" in line and "leads outside the managed tree" in line
    assert tree(repo) == before
    # Nor does a release of it exist to be made.
    run("repo", "release", repo, "r.spr", "--pin", "app==2.0", expect=2)


def test_apply_of_a_repository_holding_the_chain_is_refused_and_the_home_unchanged(
    tmp_path: Path, run: Run, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    repo = repository(tmp_path, component(src, "app", "1.0", {"bin/run": b"#!/bin/sh\n"}))
    publish_around_the_check(repo, component(src, "app", "2.0", evil_files()), monkeypatch)
    home_for(repo, home).apply([V1])
    trees = home / ".steppatch" / "trees"
    live = sorted(os.listdir(trees))
    current = (home / "current").resolve()
    before = {k: v for k, v in tree(home).items() if not k.startswith(".steppatch/metadata")}
    state = (trees / f"{current.name}.state.json").read_bytes()

    result = run("apply", V2, expect=3)
    line = one_line(result.err)
    assert "app 2.0" in line and "'passwd'" in line and "leads outside the managed tree" in line
    assert "Traceback" not in result.err

    after = {k: v for k, v in tree(home).items() if not k.startswith(".steppatch/metadata")}
    assert after == before
    assert sorted(os.listdir(trees)) == live
    assert (trees / f"{current.name}.state.json").read_bytes() == state
    assert (home / "current").resolve() == current
    assert not os.path.lexists(home / "current" / "passwd")
    assert "2.0" not in run("status", "--json").out
    run("prepare", V2, expect=3)
    assert sorted(os.listdir(trees)) == live
