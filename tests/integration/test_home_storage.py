"""Issue 6 (bytes and speed) on a real disk: the drift check against the plain scan, helper
processes, objects moved between the cache and the trees, stored manifests, older homes.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from steppatch import Home, Repository
from steppatch.errors import HomeError, ServiceError
from steppatch.formats import dump_state
from steppatch.home import _scan
from steppatch.home._scan import check_tree, scan_tree
from steppatch.model import EntryKind, FileEntry
from steppatch.plan import diff_tree
from tests.builders import component, home_for, repository, tree

V1 = "to:app/1.0/app-1.0.spr"
V2 = "to:app/2.0/app-2.0.spr"


def files(version: int) -> dict[str, object]:
    spec: dict[str, object] = {"lib": ("dir", 0o755)}
    for i in range(30):
        changed = i % 5 == 0  # a fifth of the files change between versions
        seed = i + (1000 * version if changed else 0)
        spec[f"lib/f{i:02d}.bin"] = random.Random(seed).randbytes(4096 + i)
    spec["lib/twin-a"] = b"the same bytes twice\n"  # one object used by two paths
    spec["lib/twin-b"] = b"the same bytes twice\n"
    spec["VERSION"] = f"{version}\n".encode()
    spec["latest"] = ("link", "lib/f00.bin")
    return spec


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    root = tmp_path_factory.mktemp("storage")
    return repository(
        root,
        component(root / "src", "app", "1.0", files(1)),  # type: ignore[arg-type]
        component(root / "src", "app", "2.0", files(2)),  # type: ignore[arg-type]
    )


def cached(home: Home) -> set[str]:
    return {p.name for p in home.files.cache.root.glob("??/*")}


def objects_of(home: Home) -> dict[str, str]:
    """Path -> sha256 of every managed file, from the state."""
    return {
        e.path: e.sha256
        for c in home.status().components.values()
        for e in c.manifest.entries
        if e.sha256 is not None
    }


def stored_names(home: Home) -> set[str]:
    return {p.name for p in home.files.manifests.iterdir()}


# --- the drift check ------------------------------------------------------------------------------


def drifted_tree(root: Path) -> dict[str, FileEntry]:
    """A tree, and what it was expected to hold before every kind of drift was made."""
    (root / "d/sub").mkdir(parents=True)
    (root / "gone/deep").mkdir(parents=True)
    for name, data in {
        "same": b"same", "edited": b"edited", "grown": b"grown", "moded": b"moded",
        "d/sub/x": b"x", "to-dir": b"was a file", "to-link": b"was a file", "gone/deep/f": b"f",
        "removed": b"removed",
    }.items():
        (root / name).write_bytes(data)
    (root / "from-dir").mkdir()
    os.symlink("same", root / "link")
    os.symlink("same", root / "relinked")
    expected = scan_tree(root, hashes=True, workers=1)
    expected["ghost-dir"] = FileEntry("ghost-dir", EntryKind.DIR, 0o755)  # never made
    (root / "edited").write_bytes(b"EDITED")
    (root / "grown").write_bytes(b"grown more")
    os.chmod(root / "moded", 0o600)
    (root / "to-dir").unlink()
    (root / "to-dir").mkdir()
    (root / "to-dir/inside").write_bytes(b"i")
    (root / "to-link").unlink()
    os.symlink("same", root / "to-link")
    (root / "from-dir").rmdir()
    (root / "from-dir").write_bytes(b"now a file")
    (root / "relinked").unlink()
    os.symlink("edited", root / "relinked")
    shutil.rmtree(root / "gone")
    (root / "removed").unlink()
    (root / "extra").write_bytes(b"extra")
    (root / "extra-dir/a").mkdir(parents=True)
    (root / "extra-dir/a/b").write_bytes(b"b")
    os.mkfifo(root / "fifo")
    os.chmod(root / "d", 0o700)
    return expected


@pytest.mark.parametrize("helpers", [False, True])
def test_check_tree_says_what_diff_of_a_hashed_scan_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers: bool
) -> None:
    if helpers:
        monkeypatch.setattr(_scan, "_HELPER_MIN_FILES", 1)
    expected = drifted_tree(tmp_path)
    reference = diff_tree(expected, scan_tree(tmp_path, hashes=True, workers=1))
    assert reference.changed == (
        "d", "edited", "from-dir", "grown", "moded", "relinked", "to-dir", "to-link"
    )
    assert reference.missing == ("ghost-dir", "gone", "removed")
    assert reference.extra == ("extra", "extra-dir", "fifo", "to-dir/inside")
    for workers in (1, 2, 3):
        assert check_tree(tmp_path, expected, workers=workers) == reference
        assert check_tree(tmp_path, lambda: expected, workers=workers) == reference
        scanned = scan_tree(tmp_path, hashes=True, workers=workers)
        assert scanned == scan_tree(tmp_path, hashes=True, workers=1)


def big_tree(root: Path, count: int) -> dict[str, FileEntry]:
    for i in range(count):
        path = root / f"d{i % 7}" / f"f{i:05d}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(random.Random(i).randbytes(i % 300))
    (root / "d0/large").write_bytes(b"L" * (3 * 1024 * 1024 + 5))  # read in chunks
    return scan_tree(root, hashes=True, workers=1)


def test_helper_processes_hash_as_this_process_does(tmp_path: Path) -> None:
    expected = big_tree(tmp_path, 3 * _scan._HELPER_MIN_FILES)
    assert scan_tree(tmp_path, hashes=True, workers=2) == expected
    (tmp_path / "d3/f00003").write_bytes(b"changed")
    (tmp_path / "d6/f02001").write_bytes(b"changed too")
    drift = check_tree(tmp_path, expected, workers=3)
    assert drift.changed == ("d3/f00003", "d6/f02001") and not drift.missing and not drift.extra


def test_one_large_directory_is_shared_among_helpers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(50):
        (tmp_path / f"f{i:02d}").write_bytes(bytes([i]) * i)
    expected = scan_tree(tmp_path, hashes=True, workers=1)
    monkeypatch.setattr(_scan, "_HELPER_MIN_FILES", 1)
    started: list[int] = []
    give = _scan._Helper.give

    def counting(self: _scan._Helper, base: str, share: list[tuple[str, list[str]]]) -> None:
        started.append(sum(len(names) for _prefix, names in share))
        give(self, base, share)

    monkeypatch.setattr(_scan._Helper, "give", counting)
    (tmp_path / "f07").write_bytes(b"changed")
    assert check_tree(tmp_path, expected, workers=3).changed == ("f07",)
    assert len(started) == 2 and sum(started) < 50 and min(started) > 10


def test_helpers_start_during_the_walk_of_a_large_tree_and_never_for_a_small_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    large.mkdir()
    small_expected = big_tree(small, 20)
    large_expected = big_tree(large, _scan._HELPER_MIN_FILES + 10)
    spawned: list[int] = []
    walked: list[int] = []
    init, walk = _scan._Helper.__init__, _scan._walk

    def counting_init(self: _scan._Helper) -> None:
        spawned.append(len(walked))
        init(self)

    def counting_walk(*args: object, **kwargs: object) -> object:
        result = walk(*args, **kwargs)  # type: ignore[arg-type]
        walked.append(1)
        return result

    monkeypatch.setattr(_scan._Helper, "__init__", counting_init)
    monkeypatch.setattr(_scan, "_walk", counting_walk)
    (small / "d1/f00001").write_bytes(b"changed")
    assert check_tree(small, small_expected, workers=2).changed == ("d1/f00001",)
    assert spawned == []
    (large / "d1/f00001").write_bytes(b"changed")
    assert check_tree(large, lambda: large_expected, workers=2).changed == ("d1/f00001",)
    assert spawned == [1]  # one helper, started before the walk had returned


def test_a_helper_that_cannot_start_or_fails_is_done_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = big_tree(tmp_path, _scan._HELPER_MIN_FILES + 10)
    (tmp_path / "d1/f00001").write_bytes(b"changed")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    assert check_tree(tmp_path, expected).changed == ("d1/f00001",)
    monkeypatch.undo()
    monkeypatch.setattr(_scan, "BOOTSTRAP", "import sys; sys.exit(3)")
    assert check_tree(tmp_path, expected).changed == ("d1/f00001",)
    assert scan_tree(tmp_path, hashes=True)["d1/f00001"].sha256 == hashlib.sha256(
        b"changed"
    ).hexdigest()


# --- objects between the cache and the trees ------------------------------------------------------


def test_an_upgrade_moves_its_downloads_into_the_tree_and_keeps_what_it_replaced(
    repo: Repository, tmp_path: Path
) -> None:
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    v1 = objects_of(home)
    current = home.path / "current"
    # Downloaded for the run and used once: moved, so the tree's file is its own inode.
    assert v1["lib/f01.bin"] not in cached(home)
    assert os.stat(current / "lib/f01.bin").st_nlink == 1
    assert os.stat(current / "lib/twin-a").st_nlink == 1  # used twice: copied, then moved
    assert os.stat(current / "lib/twin-b").st_nlink == 1
    home.apply([V2])
    v2 = objects_of(home)
    replaced = {v1[p] for p in v1 if v2.get(p) != v1[p]}
    assert replaced and replaced <= cached(home)  # what a rollback needs stays
    assert not set(v2.values()) & cached(home)  # no inode shared with the live tree
    for path in v2:
        assert os.stat(current / path).st_nlink == 1
        assert os.stat(current / path).st_mode & 0o777 == 0o644
    assert not home.verify()
    # A rollback downloads nothing: every object it needs is in the cache.
    assert home.rollback().plan.download_objects == 0
    assert objects_of(home) == v1 and not home.verify()


def test_prepared_objects_are_copied_and_stay_in_the_cache(
    repo: Repository, tmp_path: Path
) -> None:
    home = home_for(repo, tmp_path / "home")
    home.prepare([V1])
    before = cached(home)
    home.apply([V1])
    assert cached(home) == before
    assert not home.verify()


def test_an_edited_live_file_never_reaches_the_cache(repo: Repository, tmp_path: Path) -> None:
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    sha = objects_of(home)["lib/f00.bin"]
    (home.path / "current/lib/f00.bin").write_bytes(b"edited in place")
    home.apply([V2])  # replaces lib/f00.bin: the edited file is not kept as the object
    assert sha not in cached(home)
    assert not home.verify()


def test_files_the_operator_added_are_kept_whatever_their_names(
    repo: Repository, tmp_path: Path
) -> None:
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    (home.path / "current/lib/odd\\name.txt").write_text("mine")
    home.apply([V2])
    assert (home.path / "current/lib/odd\\name.txt").read_text() == "mine"


def test_a_discarded_tree_gives_its_objects_back(repo: Repository, tmp_path: Path) -> None:
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    config = home.path / "steppatch.toml"
    config.write_text(config.read_text().replace('stop = ""', 'stop = "exit 1"'))
    home = Home.open(home.path)
    with pytest.raises(ServiceError):
        home.apply([V2])
    assert home.status().versions()["app"].public == "1.0"
    assert {p.name for p in (home.path / ".steppatch/trees").iterdir()} == {
        home.files.current_tree_id(), f"{home.files.current_tree_id()}.state.json"
    }
    # What the failed apply downloaded is back in the cache: the next try fetches nothing.
    config.write_text(config.read_text().replace('stop = "exit 1"', 'stop = ""'))
    plan = Home.open(home.path).prepare([V2])
    assert plan.download_objects == 0


# --- stored manifests and the state file ----------------------------------------------------------


def test_the_state_is_small_and_manifests_are_stored_once(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    other = repository(
        tmp_path / "r2",
        component(src, "app", "1.0", files(1)),  # type: ignore[arg-type]
        component(src, "app", "2.0", files(2)),  # type: ignore[arg-type]
        component(src, "tool", "1.0", {"tool/run": b"#!/bin/sh\n"}),
    )
    home = home_for(other, tmp_path / "home")
    home.apply([V1, "to:tool/1.0/tool-1.0.spr"])
    state_file = home.files.trees / f"{home.files.current_tree_id()}.state.json"
    assert b"steppatch-state/2" in state_file.read_bytes()
    assert len(state_file.read_bytes()) < 1000
    assert len(stored_names(home)) == 2
    tool = next(p for p in home.files.manifests.iterdir() if p.stat().st_size < 300)
    inode = tool.stat().st_ino
    home.apply([V2])
    # tool did not change: its stored manifest is the same file; app's old one stays while
    # the history entry of the state it replaced does (a rollback reads it there), then goes
    assert tool.stat().st_ino == inode
    assert len(stored_names(home)) == 3
    assert home.gc(keep=0).manifests == 1
    assert len(stored_names(home)) == 2
    assert Home.open(home.path).status().versions() == home.status().versions()


@pytest.mark.parametrize("step", ["staging", "state-written"])
def test_a_kill_before_the_switch_leaves_nothing_behind_and_loses_no_object(
    repo: Repository, tmp_path: Path, step: str
) -> None:
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    names = stored_names(home)
    env = {**os.environ, "STEPPATCH_TEST_KILL_AT": step}
    done = subprocess.run(
        [sys.executable, "-m", "steppatch_cli", "--home", str(home.path), "apply", V2],
        env=env, capture_output=True, check=False, timeout=120,
    )
    assert done.returncode == -signal.SIGKILL
    if step == "state-written":
        assert len(stored_names(home)) == 2  # the new one was written, the old one kept
    assert str(Home.open(home.path).status().versions()["app"]) == "1.0"  # recovers
    assert stored_names(home) == names
    assert not Home.open(home.path).verify()
    # Objects the killed build had moved out of the cache went back into it.
    assert Home.open(home.path).prepare([V2]).download_objects == 0


def test_a_damaged_stored_manifest_is_reported(repo: Repository, tmp_path: Path) -> None:
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    (path,) = home.files.manifests.iterdir()
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(HomeError, match="damaged"):
        Home.open(home.path).status()
    with pytest.raises(HomeError, match="damaged"):
        Home.open(home.path).verify()


def test_a_home_with_the_older_state_format_works_and_moves_on(
    repo: Repository, tmp_path: Path
) -> None:
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    expected = tree(home.path / "current")
    # As a home made before steppatch-state/2 has it: the manifests inline, no store.
    state = home.status()
    state_file = home.files.trees / f"{home.files.current_tree_id()}.state.json"
    state_file.write_bytes(dump_state(state))
    for item in home.files.manifests.iterdir():
        item.unlink()
    home.files.manifests.rmdir()
    old = Home.open(home.path)
    assert old.status() == state
    assert not old.verify()
    (home.path / "current/VERSION").write_text("edited")
    assert old.verify().changed == ("VERSION",)
    (home.path / "current/VERSION").write_text("1\n")
    old.apply([V2])
    assert b"steppatch-state/2" in (
        home.files.trees / f"{old.files.current_tree_id()}.state.json"
    ).read_bytes()
    old.rollback()
    assert tree(home.path / "current") == expected
