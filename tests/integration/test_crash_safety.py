"""Invariant 2: an apply killed with SIGKILL at any moment leaves the old tree or the new one.

Real subprocesses, a real disk, a real SIGKILL at random moments across the apply.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steppatch import Home, Repository
from tests.e2e.test_walking_skeleton import tree_digest


def make_source(root: Path, version: str, seed: int, files: int, size: int) -> Path:
    src = root / f"big-{version}"
    (src / "files/data").mkdir(parents=True)
    (src / "component.toml").write_text(f'name = "big"\nversion = "{version}"\n')
    for i in range(files):
        # half the files change between versions: links and copies both happen
        content_seed = i if i % 2 == 0 else seed * 1000 + i
        data = random.Random(content_seed).randbytes(size)
        (src / f"files/data/f{i:03d}.bin").write_bytes(data)
    (src / "files/VERSION").write_text(version)
    os.symlink("data/f001.bin", src / "files/latest")  # a link to a file that changes
    return src


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("crash")
    repo = Repository.init(root / "repo")
    repo.add(make_source(root, "1.0", 1, files=80, size=512 * 1024))
    repo.add(make_source(root, "2.0", 2, files=80, size=512 * 1024))
    digests = {}
    for version in ("1.0", "2.0"):
        home = Home.init(root / f"ref-{version}", updates=repo.root.as_uri(), root=root_of(repo))
        home.apply([f"to:big/1.0/big-{version}.spr" if version == "1.0" else "to:big/latest.spr"])
        digests[version] = tree_digest(home.path / "current")
    assert digests["1.0"] != digests["2.0"]
    return {"root": root, "repo": repo, "digests": digests}


def test_sigkill_during_apply_leaves_old_or_new(world: dict[str, object], tmp_path: Path) -> None:
    repo = world["repo"]
    assert isinstance(repo, Repository)
    digests = world["digests"]
    assert isinstance(digests, dict)
    rng = random.Random(20261122)
    outcomes = {"1.0": 0, "2.0": 0}
    # Time one full apply to spread the kills over its whole duration.
    probe = Home.init(tmp_path / "probe", updates=repo.root.as_uri(), root=root_of(repo))
    probe.apply(["to:big/1.0/big-1.0.spr"])
    started = time.monotonic()
    run_apply(probe.path, wait=True)
    duration = time.monotonic() - started
    for attempt in range(12):
        home = Home.init(tmp_path / f"h{attempt}", updates=repo.root.as_uri(), root=root_of(repo))
        home.apply(["to:big/1.0/big-1.0.spr"])
        proc = run_apply(home.path, wait=False)
        time.sleep(rng.uniform(0.0, duration * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # The next run recovers before doing anything else.
        version = str(Home.open(home.path).status().versions()["big"])
        assert tree_digest(home.path / "current") == digests[version]
        trees = sorted(p.name for p in (home.path / ".steppatch/trees").iterdir())
        assert len(trees) == 2, trees  # one tree and its state file, nothing left over
        outcomes[version] += 1
    print("outcomes", outcomes, "apply took", round(duration, 2))
    assert sum(outcomes.values()) == 12


def root_of(repo: Repository) -> bytes:
    return (repo.root / "root.json").read_bytes()


def run_apply(home: Path, wait: bool) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "steppatch_cli", "--home", str(home), "apply", "to:big/latest.spr"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    if wait:
        assert proc.wait(timeout=120) == 0
    return proc
