"""Issue 6 fault tests: SIGKILL at every step and at random moments, full disk, concurrent
applies, sync-delete after local changes, idempotence, hostile manifests. Real processes, real disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from packaging.version import Version

from steppatch import Home, Limits, Repository
from steppatch.errors import (
    InsufficientSpace,
    LockedError,
    MalformedDocument,
    NothingToRollBack,
)
from steppatch.model import ComponentVersion, FileRef, RepositoryIndex
from steppatch.plan import SyncMode
from tests.builders import component, home_for, repository, tree

V1 = "to:app/1.0/app-1.0.spr"
V2 = "to:app/2.0/app-2.0.spr"


def files(version: int, count: int = 60, size: int = 64 * 1024) -> dict[str, object]:
    rng = random.Random(version)
    spec: dict[str, object] = {f"empty-v{version}": ("dir", 0o755), "ro": ("dir", 0o555)}
    for i in range(count):
        # a third of the files change between versions, a third are only in one of them
        if i % 3 == 0:
            spec[f"lib/same{i:03d}.bin"] = random.Random(i).randbytes(size)
        elif i % 3 == 1:
            spec[f"lib/changed{i:03d}.bin"] = rng.randbytes(size)
        else:
            spec[f"lib/v{version}-only{i:03d}.bin"] = rng.randbytes(size)
    spec["ro/readme"] = f"version {version}\n".encode()
    spec["bin/run"] = b"#!/bin/sh\n"
    spec["current"] = ("link", "lib/changed001.bin")
    if version == 2:
        spec["lib/became-dir"] = ("dir", 0o750)
        spec["lib/became-dir/inside"] = b"x"
    else:
        spec["lib/became-dir"] = b"was a file"
    return spec


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("faults")
    repo = repository(
        root,
        component(root / "src", "app", "1.0", files(1)),  # type: ignore[arg-type]
        component(root / "src", "app", "2.0", files(2)),  # type: ignore[arg-type]
    )
    expected = {}
    for ref in (V1, V2):
        home = home_for(repo, root / f"ref-{ref[-7:-4]}")
        home.apply([ref])
        expected[ref] = tree(home.path / "current")
    assert expected[V1] != expected[V2]
    return {"root": root, "repo": repo, "expected": expected}


def repo_of(world: dict[str, object]) -> Repository:
    repo = world["repo"]
    assert isinstance(repo, Repository)
    return repo


def cli(home: Path, *args: str, kill_at: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEPPATCH_TEST_KILL_AT": kill_at}
    return subprocess.run(
        [sys.executable, "-m", "steppatch_cli", "--home", str(home), *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def settled(home: Path, world: dict[str, object]) -> str:
    """Recover (any command does), then say which version the tree exactly equals."""
    assert cli(home, "status").returncode == 0
    expected = world["expected"]
    assert isinstance(expected, dict)
    actual = tree(home / "current")
    leftovers = sorted(p.name for p in (home / ".steppatch/trees").iterdir())
    assert len(leftovers) == 2, leftovers  # one tree and its state: nothing half-made remains
    for ref, wanted in expected.items():
        if actual == wanted:
            version = Home.open(home).status().versions()["app"]
            assert ref.endswith(f"app-{version}.spr")  # state and tree agree
            return str(ref)
    raise AssertionError("the managed tree is neither the old nor the new one")


STEPS_BEFORE_SWITCH = ["downloaded", "staging", "staged", "stopped", "state-written"]


@pytest.mark.parametrize("step", [*STEPS_BEFORE_SWITCH, "switched"])
def test_sigkill_at_every_step(world: dict[str, object], tmp_path: Path, step: str) -> None:
    repo = repo_of(world)
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    done = cli(home.path, "apply", V2, kill_at=step)
    assert done.returncode == -signal.SIGKILL, done
    assert settled(home.path, world) == (V1 if step in STEPS_BEFORE_SWITCH else V2)


def test_killed_recovery_still_converges(world: dict[str, object], tmp_path: Path) -> None:
    repo = repo_of(world)
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    assert cli(home.path, "apply", V2, kill_at="staged").returncode == -signal.SIGKILL
    for _ in range(3):  # the recovery itself is killed before each removal it makes
        assert cli(home.path, "status", kill_at="recovering").returncode == -signal.SIGKILL
    assert settled(home.path, world) == V1


def test_sigkill_at_100_random_moments(world: dict[str, object], tmp_path: Path) -> None:
    repo = repo_of(world)
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    rng = random.Random(20261122)
    started = time.monotonic()
    assert cli(home.path, "apply", V2).returncode == 0
    duration = time.monotonic() - started
    current, seen = V2, {V1: 0, V2: 0}
    for _ in range(100):
        target = V1 if current == V2 else V2
        proc = subprocess.Popen(
            [sys.executable, "-m", "steppatch_cli", "--home", str(home.path), "apply", target],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.1 * duration, duration))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        current = settled(home.path, world)
        seen[current] += 1
    assert sum(seen.values()) == 100


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
        capture_output=True, check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_short_disk_is_refused_before_staging(
    world: dict[str, object], small_disk: Path
) -> None:
    repo = repo_of(world)
    home = home_for(repo, small_disk / "home")
    before = unmetadata(tree(home.path))
    with pytest.raises(InsufficientSpace) as info:
        home.apply([V1])
    assert info.value.needed > info.value.free
    assert unmetadata(tree(home.path)) == before  # verified metadata may have been stored


def test_full_disk_during_staging_leaves_the_old_tree(
    world: dict[str, object], small_disk: Path
) -> None:
    repo = repo_of(world)
    path = home_for(repo, small_disk / "home").path
    before = tree(path / "current")
    # Everything is downloaded (the cache fits), then, with the estimate disabled, the disk
    # fills up while the new tree is being staged.
    reckless = Home.open(path, limits=Limits(disk_reserve_bytes=-(2**40)))
    reckless.prepare([V1])
    with pytest.raises(OSError) as info:
        reckless.apply([V1])
    assert info.value.errno == 28  # ENOSPC
    assert tree(path / "current") == before
    assert len(list((path / ".steppatch/trees").iterdir())) == 2


def test_a_second_apply_waits_for_the_first(world: dict[str, object], tmp_path: Path) -> None:
    repo = repo_of(world)
    home = home_for(repo, tmp_path / "home")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "steppatch_cli", "--home", str(home.path), "apply", ref],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for ref in (V1, V2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert settled(home.path, world) in (V1, V2)


def test_a_held_lock_is_refused_with_a_clear_message(
    world: dict[str, object], tmp_path: Path
) -> None:
    repo = repo_of(world)
    home = home_for(repo, tmp_path / "home")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with Home.open(home.path).files.locked(5):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    try:
        with pytest.raises(LockedError) as info:
            Home.open(home.path, limits=Limits(lock_timeout_seconds=0.2)).apply([V1])
        assert "locked by another steppatch process" in str(info.value)
    finally:
        release.set()
        holder.join()
    assert Home.open(home.path).status().versions() == {}


def test_a_lock_of_a_killed_process_is_taken_over(
    world: dict[str, object], tmp_path: Path
) -> None:
    repo = repo_of(world)
    home = home_for(repo, tmp_path / "home")
    assert cli(home.path, "apply", V1, kill_at="staged").returncode == -signal.SIGKILL
    assert cli(home.path, "apply", V1).returncode == 0


def test_sync_delete_after_local_changes_equals_the_snapshot(
    world: dict[str, object], tmp_path: Path
) -> None:
    repo = repo_of(world)
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    snapshot = tmp_path / "v1.spr"
    home.snapshot(snapshot)
    home.apply([V2])
    current = home.path / "current"
    (current / "added.txt").write_text("mine")
    (current / "lib/added-dir").mkdir()
    (current / "lib/added-dir/x").write_text("mine too")
    changed = next(p for p in (current / "lib").iterdir() if p.name.startswith("changed"))
    changed.write_bytes(b"edited")
    next(p for p in (current / "lib").iterdir() if p.name.startswith("same")).unlink()
    (current / "current").unlink()
    os.symlink("bin/run", current / "current")
    report = Home.open(home.path).apply([str(snapshot)], sync=SyncMode.DELETE)
    assert report.plan.repairs >= 0
    expected = world["expected"]
    assert isinstance(expected, dict)
    assert tree(current) == expected[V1]
    assert not Home.open(home.path).verify()


def test_sync_keep_restores_but_keeps_added_files(
    world: dict[str, object], tmp_path: Path
) -> None:
    repo = repo_of(world)
    home = home_for(repo, tmp_path / "home")
    home.apply([V2])
    current = home.path / "current"
    (current / "added.txt").write_text("mine")
    victim = next(p for p in (current / "lib").iterdir() if p.name.startswith("same"))
    victim.write_bytes(b"edited")
    drift = home.verify()
    assert drift.changed == (f"lib/{victim.name}",) and drift.extra == ("added.txt",)
    report = home.apply([V2], sync=SyncMode.KEEP)
    assert report.plan.repairs == 1 and not report.plan.changes
    assert (current / "added.txt").read_text() == "mine"
    assert home.verify().extra == ("added.txt",) and not home.verify().changed


def test_a_plain_apply_keeps_added_files_and_displaces_those_in_the_way(
    world: dict[str, object], tmp_path: Path
) -> None:
    repo = repo_of(world)
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    current = home.path / "current"
    (current / "notes.txt").write_text("keep me")
    (current / "lib/v2-only002.bin").write_text("in the way")  # a path version 2 installs
    report = home.apply([V2])
    assert report.displaced == ("lib/v2-only002.bin",)
    assert (current / "notes.txt").read_text() == "keep me"
    aside = list((home.path / ".steppatch/displaced").rglob("v2-only002.bin"))
    assert [p.read_text() for p in aside] == ["in the way"]


def test_rollback_returns_to_the_replaced_state(
    world: dict[str, object], tmp_path: Path
) -> None:
    repo = repo_of(world)
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    home.apply([V2])
    expected = world["expected"]
    assert isinstance(expected, dict)
    home.rollback()
    assert tree(home.path / "current") == expected[V1]
    home.rollback()
    assert tree(home.path / "current") == {}
    with pytest.raises(NothingToRollBack):
        home.rollback()


def mtimes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.lstat().st_mtime_ns for p in root.rglob("*")
    } | {".": root.stat().st_mtime_ns}


def test_applying_the_same_thing_twice_writes_nothing(
    world: dict[str, object], tmp_path: Path
) -> None:
    repo = repo_of(world)
    home = home_for(repo, tmp_path / "home")
    home.apply([V2])
    before = (tree(home.path), mtimes(home.path))
    time.sleep(0.01)
    report = Home.open(home.path).apply([V2])
    assert report.plan.empty
    assert (tree(home.path), mtimes(home.path)) == before


@pytest.mark.parametrize(
    "entry",
    [
        {"path": "../escape", "type": "file", "mode": "0644", "size": 1, "sha256": "a" * 64},
        {"path": "/etc/evil", "type": "file", "mode": "0644", "size": 1, "sha256": "a" * 64},
        {"path": "link", "type": "symlink", "target": "../../../etc"},
        {"path": "dev", "type": "chardev", "mode": "0644"},
        {"path": "suid", "type": "file", "mode": "4755", "size": 1, "sha256": "a" * 64},
    ],
)
def test_hostile_manifests_are_refused_before_anything_is_written(
    tmp_path: Path, entry: dict[str, object]
) -> None:
    evil = Repository.init(tmp_path / "evil")
    data = json.dumps(
        {"component": "evil", "entries": [entry], "format": "steppatch-manifest/1",
         "version": "1.0"}
    ).encode()
    sha = hashlib.sha256(data).hexdigest()
    (evil.root / "manifests/ev").mkdir(parents=True)
    (evil.root / f"manifests/ev/{sha}.json").write_bytes(data)
    cv = ComponentVersion(
        name="evil", version=Version("1.0"),
        manifest=FileRef(f"manifests/ev/{sha}.json", sha, len(data)), recipe="evil/1.0/e.spr",
    )
    recipe = json.dumps(
        {"components": {"evil": "==1.0"}, "format": "steppatch-recipe/1", "kind": "release"}
    ).encode()
    (evil.root / "evil/1.0").mkdir(parents=True)
    (evil.root / "evil/1.0/e.spr").write_bytes(recipe)
    ref = FileRef("evil/1.0/e.spr", hashlib.sha256(recipe).hexdigest(), len(recipe))
    evil._commit(RepositoryIndex({"evil": {cv.version: cv}}, {ref.path: ref}))  # signed, as if
    home = home_for(evil, tmp_path / "home")
    before = unmetadata(tree(home.path))
    with pytest.raises(MalformedDocument):
        home.apply(["to:evil/1.0/e.spr"])
    assert unmetadata(tree(home.path)) == before
    assert not (tmp_path / "escape").exists()


def unmetadata(found: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in found.items() if not k.startswith(".steppatch/metadata")}
