"""Issue 17: a home's disk stays bounded. ``gc`` keeps the live state, the last ``keep_history``
replaced states and what a prepare downloaded; a rollback within them downloads nothing, one past
them says the state was pruned; SIGKILL at every step of a collection and at random moments
leaves every kept state whole. Real processes, real disk.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from steppatch import Home, Repository
from steppatch.errors import ConfigError, HistoryPruned, InputError, NothingToRollBack
from steppatch.transport import FileFetcher
from tests.builders import component, home_for, repository, tree

VERSIONS = 8


def files(version: int) -> dict[str, object]:
    spec: dict[str, object] = {"lib": ("dir", 0o755)}
    for i in range(12):
        # half the files change at every version, half never do
        same = i % 2 == 0
        seed = i if same else version * 1000 + i
        spec[f"lib/f{i:02d}.bin"] = random.Random(seed).randbytes(4096)
    spec["VERSION"] = f"{version}\n".encode()
    return spec


def ref(version: int) -> str:
    return f"to:app/{version}.0/app-{version}.0.spr"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("gc")
    repo = repository(
        root,
        *(component(root / "src", "app", f"{v}.0", files(v)) for v in range(1, VERSIONS + 1)),  # type: ignore[arg-type]
    )
    return {"root": root, "repo": repo}


def repo_of(world: dict[str, object]) -> Repository:
    repo = world["repo"]
    assert isinstance(repo, Repository)
    return repo


class Recording:
    """A file fetcher that records every path it reads."""

    def __init__(self, root: Path) -> None:
        self.inner = FileFetcher(root)
        self.paths: list[str] = []

    @property
    def url(self) -> str:
        return self.inner.url

    def fetch(self, path: str, offset: int = 0) -> Iterator[bytes]:
        self.paths.append(path)
        return self.inner.fetch(path, offset)

    def content(self) -> list[str]:
        """What was read beyond the signed metadata: manifests, objects, recipes."""
        return [
            p for p in self.paths
            if not (p in ("timestamp.json", "root.json") or p.startswith(("roots/", "indexes/")))
        ]


def applied_home(world: dict[str, object], path: Path, upto: int = VERSIONS) -> Home:
    home = home_for(repo_of(world), path)
    for v in range(1, upto + 1):
        home.apply([ref(v)])
    return home


def version_of(home: Path) -> str:
    versions = Home.open(home).status().versions()
    return str(versions["app"]) if versions else "-"


def roll_back_all(world: dict[str, object], home: Path) -> list[str]:
    """Roll back through every kept entry (none may download anything, each leaves no drift):
    the versions gone through, then ``pruned`` if the end was a pruned history."""
    seen = []
    while True:
        recording = Recording(repo_of(world).root)
        h = Home.open(home, fetcher=recording)
        try:
            h.rollback()
        except NothingToRollBack as e:
            if isinstance(e, HistoryPruned):
                seen.append("pruned")
            break
        assert recording.content() == [], recording.content()
        assert not h.verify()
        seen.append(version_of(home))
    return seen


def test_gc_keeps_the_last_states_and_rollback_downloads_nothing(
    world: dict[str, object], tmp_path: Path
) -> None:
    home = applied_home(world, tmp_path / "home")
    history = sorted(p.name for p in (home.path / ".steppatch/history").glob("*.spr"))
    assert len(history) == 5  # keep_history's default, collected after each apply
    assert [h[:6] for h in history] == ["000004", "000005", "000006", "000007", "000008"]
    sizes = home.sizes()
    assert sizes.cache > 0 and sizes.trees > 0 and sizes.history > 0
    assert roll_back_all(world, home.path) == ["7.0", "6.0", "5.0", "4.0", "3.0", "pruned"]
    assert version_of(home.path) == "3.0"
    # Past the kept history: typed, and nothing changed.
    before = tree(home.path / "current")
    with pytest.raises(HistoryPruned) as caught:
        home.rollback()
    assert caught.value.pruned == 3 and "pruned" in str(caught.value)
    assert isinstance(caught.value, NothingToRollBack)
    assert tree(home.path / "current") == before and version_of(home.path) == "3.0"


def test_keep_option_dry_run_and_freed_bytes(world: dict[str, object], tmp_path: Path) -> None:
    home = applied_home(world, tmp_path / "home")
    before = home.sizes()
    dry = home.gc(keep=1, dry_run=True)
    assert dry.dry_run and dry.history == 4 and dry.objects > 0 and dry.bytes > 0
    assert home.sizes() == before  # nothing removed
    done = home.gc(keep=1)
    assert (done.history, done.objects, done.bytes) == (dry.history, dry.objects, dry.bytes)
    after = home.sizes()
    assert before.total - after.total == done.bytes
    assert home.gc(keep=1).bytes == 0  # nothing left to free
    assert roll_back_all(world, home.path) == ["7.0", "pruned"]
    with pytest.raises(InputError):
        home.gc(keep=-1)


def test_keep_zero_leaves_only_the_live_state(world: dict[str, object], tmp_path: Path) -> None:
    home = applied_home(world, tmp_path / "home", upto=3)
    home.gc(keep=0)
    objects = [p for p in (home.path / ".steppatch/cache/objects").rglob("*") if p.is_file()]
    live = {p.name for p in objects}
    assert len(live) <= 13  # at most the live state's own objects
    with pytest.raises(HistoryPruned):
        home.rollback()
    assert not home.verify()


def test_prepared_downloads_stay_until_the_next_apply(
    world: dict[str, object], tmp_path: Path
) -> None:
    home = applied_home(world, tmp_path / "home", upto=2)
    plan = home.prepare([ref(VERSIONS)])
    assert plan.download_objects > 0
    home.gc(keep=0)
    recording = Recording(repo_of(world).root)
    Home.open(home.path, fetcher=recording).apply([ref(VERSIONS)])
    assert not [p for p in recording.paths if p.startswith("objects/")]


def test_older_than_drops_prepared_downloads(world: dict[str, object], tmp_path: Path) -> None:
    home = applied_home(world, tmp_path / "home", upto=2)
    plan = home.prepare([ref(VERSIONS)])
    home.gc(keep=0)
    assert home.gc(keep=0, older_than=3600).objects == 0  # younger than an hour: kept
    assert home.gc(keep=0, older_than=0).objects == plan.download_objects
    recording = Recording(repo_of(world).root)
    Home.open(home.path, fetcher=recording).apply([ref(VERSIONS)])
    fetched = [p for p in recording.paths if p.startswith("objects/")]
    assert len(fetched) == plan.download_objects
    with pytest.raises(InputError):
        home.gc(older_than=-1)


def test_manual_gc_mode_keeps_everything(world: dict[str, object], tmp_path: Path) -> None:
    home = home_for(repo_of(world), tmp_path / "home")
    config = home.path / "steppatch.toml"
    config.write_text(config.read_text().replace('gc = "auto"', 'gc = "manual"'))
    home = Home.open(home.path)
    for v in range(1, VERSIONS + 1):
        assert home.apply([ref(v)]).collected is None
    assert len(list((home.path / ".steppatch/history").glob("*.spr"))) == VERSIONS
    assert home.gc().history == VERSIONS - 5


@pytest.mark.parametrize(
    ("line", "problem"),
    [("keep_history = -1", "keep_history"), ('keep_history = "5"', "keep_history"),
     ('gc = "sometimes"', "'gc'")],
)
def test_bad_gc_settings_are_refused(tmp_path: Path, line: str, problem: str) -> None:
    from steppatch.config import parse_home_config

    with pytest.raises(ConfigError, match=problem):
        parse_home_config(f'updates = "file:///x"\n{line}\n'.encode(), "steppatch.toml")


def cli(home: Path, *args: str, kill_at: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEPPATCH_TEST_KILL_AT": kill_at}
    return subprocess.run(
        [sys.executable, "-m", "steppatch_cli", "--home", str(home), *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )


GC_STEPS = ["gc-decided", "gc-marked", "gc-history", "gc-manifests", "gc-objects", "gc-done"]


def test_sigkill_at_every_gc_step(world: dict[str, object], tmp_path: Path) -> None:
    base = tmp_path / "base"
    home = home_for(repo_of(world), base)
    config = base / "steppatch.toml"
    config.write_text(config.read_text().replace('gc = "auto"', 'gc = "manual"'))
    for v in range(1, VERSIONS + 1):
        Home.open(base).apply([ref(v)])
    del home
    for step in GC_STEPS:
        copy = tmp_path / step
        subprocess.run(["cp", "-a", str(base), str(copy)], check=True)
        done = cli(copy, "gc", "--keep", "3", kill_at=step)
        assert done.returncode == -signal.SIGKILL, (step, done.stderr)
        assert cli(copy, "verify").returncode == 0
        everything = ["7.0", "6.0", "5.0", "4.0", "3.0", "2.0", "1.0", "-"]
        expected = {
            "gc-decided": everything,  # nothing recorded or removed yet
            # Marked pruned, not removed yet: the entries still work (their objects are there).
            "gc-marked": [*everything, "pruned"],
            "gc-history": [*everything[:-1], "pruned"],  # the oldest entry went first
        }.get(step, ["7.0", "6.0", "5.0", "pruned"])
        assert roll_back_all(world, copy) == expected, step


def test_sigkill_at_random_moments_of_a_gc(world: dict[str, object], tmp_path: Path) -> None:
    base = tmp_path / "base"
    home_for(repo_of(world), base)
    config = base / "steppatch.toml"
    config.write_text(config.read_text().replace('gc = "auto"', 'gc = "manual"'))
    for v in range(1, VERSIONS + 1):
        Home.open(base).apply([ref(v)])
    rng = random.Random(20261206)
    started = time.monotonic()
    probe = tmp_path / "probe"
    subprocess.run(["cp", "-a", str(base), str(probe)], check=True)
    assert cli(probe, "gc", "--keep", "2").returncode == 0
    duration = time.monotonic() - started
    for attempt in range(4):
        copy = tmp_path / f"k{attempt}"
        subprocess.run(["cp", "-a", str(base), str(copy)], check=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "steppatch_cli", "--home", str(copy), "gc", "--keep", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.0, duration))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert cli(copy, "verify").returncode == 0
        # Killed before its decision was made, the collection kept everything: more to roll
        # back through, but never a state whose objects are missing.
        seen = roll_back_all(world, copy)
        assert seen[:2] == ["7.0", "6.0"], seen


def test_a_kept_entry_without_its_files_record_stops_object_removal(
    world: dict[str, object], tmp_path: Path
) -> None:
    # A history entry made before the state file was kept beside it (an older steppatch).
    home = home_for(repo_of(world), tmp_path / "home")
    config = home.path / "steppatch.toml"
    config.write_text(config.read_text().replace('gc = "auto"', 'gc = "manual"'))
    for v in range(1, 5):
        Home.open(home.path).apply([ref(v)])
    newest = sorted((home.path / ".steppatch/history").glob("*.state.json"))[-1]
    newest.unlink()
    before = sorted(p.name for p in (home.path / ".steppatch/cache/objects").rglob("*"))
    done = Home.open(home.path).gc(keep=2)
    assert done.unknown_history == 1 and done.objects == 0 and done.history == 2
    assert "predate" in done.summary()
    assert sorted(p.name for p in (home.path / ".steppatch/cache/objects").rglob("*")) == before
    # The rollback to it still works: its manifest is downloaded, its objects are cached.
    recording = Recording(repo_of(world).root)
    Home.open(home.path, fetcher=recording).rollback()
    assert version_of(home.path) == "3.0"
    assert not [p for p in recording.paths if p.startswith("objects/")]
