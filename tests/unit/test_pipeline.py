"""The apply pipeline driven in process: the in-memory fake mirror, a fake service, a fake clock.

No subprocess runs here (a fixture makes any attempt fail), no server starts: the repository is
built on disk by the release side and served from memory by :class:`FakeMirror`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from steppatch import Home, Repository, configedit
from steppatch.config import MirrorEntry, NodeEntry
from steppatch.errors import InputError, RepositoryError, ServiceError, StagedApplyMissing
from steppatch.home import HomeDir, StagedApplies
from steppatch.pipeline import ApplyPipeline, ApplyStartFailed
from steppatch.remote import MetadataStore, RepositoryClient
from tests.builders import component, repository
from tests.unit.transport.fakes import FakeMirror

#: the fake clock's reading: a day ahead of the real time (so it is not the system clock's),
#: inside the metadata's validity (a week for the timestamp)
LATER = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(microsecond=0)


class FakeClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.readings = 0

    def __call__(self) -> dt.datetime:
        self.readings += 1
        return self.now


class FakeService:
    """The Service protocol, recording every call; ``fail`` names an action that fails."""

    def __init__(self, fail: str = "") -> None:
        self.calls: list[str] = []
        self.fail = fail

    def _do(self, action: str) -> None:
        self.calls.append(action)
        if action == self.fail:
            raise ServiceError(action, f"fake {action}", 1, "refused")

    def stop(self) -> None:
        self._do("stop")

    def start(self) -> None:
        self._do("start")

    def running(self) -> bool | None:
        return None


# Fakes only: a test that starts a process fails.
pytestmark = pytest.mark.usefixtures("no_subprocess")


def served(repo: Repository) -> dict[str, bytes]:
    """Every published file of ``repo``, by repository path (what the fake mirror serves)."""
    return {
        p.relative_to(repo.root).as_posix(): p.read_bytes()
        for p in repo.root.rglob("*")
        if p.is_file()
    }


class World:
    def __init__(self, tmp_path: Path) -> None:
        srcs = tmp_path / "src"
        self.repo = repository(
            tmp_path,
            component(srcs, "core", "1.0", {"bin/core": b"core 1\n", "lib/a": b"a\n"}),
            component(srcs, "core", "2.0", {"bin/core": b"core 2\n", "lib/a": b"a\n"}),
            component(srcs, "addon", "1.0", {"addon.txt": b"addon 1\n"}, hot=True),
            component(srcs, "addon", "1.1", {"addon.txt": b"addon 1.1\n"}, hot=True),
        )
        self.mirror = FakeMirror("fake", served(self.repo))
        self.clock = FakeClock(LATER)
        self.service = FakeService()
        root = (self.repo.root / "root.json").read_bytes()
        Home.init(
            tmp_path / "home", updates=self.mirror.url, root=root, fetcher=self.mirror,
            clock=self.clock,
        )
        self.files = HomeDir.open(tmp_path / "home")

    def pipeline(self) -> ApplyPipeline:
        client = RepositoryClient(
            self.mirror, MetadataStore(self.files.metadata_dir), clock=self.clock
        )
        return ApplyPipeline(self.files, client, self.service, clock=self.clock)

    def home(self) -> Home:
        return Home.open(
            self.files.root, fetcher=self.mirror, clock=self.clock, service=self.service
        )

    def run(self, *refs: str, hot: bool = False, record: bool = True) -> None:
        with self.files.locked(5):
            p = self.pipeline()
            p.apply(p.load_refs(refs), hot=hot, sync=None, record=record)

    def live(self, path: str) -> bytes:
        return (self.files.current / path).read_bytes()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield World(tmp_path)


def test_install_fetches_from_the_fake_mirror_and_starts(world: World) -> None:
    world.run("to:core/1.0/core-1.0.spr")
    assert world.live("bin/core") == b"core 1\n"
    assert {n: str(v) for n, v in world.files.state().versions().items()} == {"core": "1.0"}
    assert any(path.startswith("objects/") for path, _ in world.mirror.calls)
    assert world.service.calls == ["stop", "start"]


def test_upgrade_stops_then_starts_and_a_hot_apply_does_not(world: World) -> None:
    world.run("to:core/1.0/core-1.0.spr", "to:addon/1.0/addon-1.0.spr")
    world.service.calls.clear()
    world.run("to:core/2.0/core-2.0.spr")
    assert world.live("bin/core") == b"core 2\n"
    assert world.service.calls == ["stop", "start"]
    world.service.calls.clear()
    world.run("to:addon/1.1/addon-1.1.spr", hot=True)
    assert world.live("addon.txt") == b"addon 1.1\n"
    assert world.service.calls == []


def test_rollback_returns_to_the_state_replaced(world: World) -> None:
    world.run("to:core/1.0/core-1.0.spr")
    world.run("to:core/2.0/core-2.0.spr")
    with world.files.locked(5):
        world.pipeline().rollback()
    assert world.live("bin/core") == b"core 1\n"


def test_a_failed_start_leaves_the_new_tree_live(world: World) -> None:
    world.run("to:core/1.0/core-1.0.spr")
    world.service.fail = "start"
    with pytest.raises(ApplyStartFailed) as caught:
        world.run("to:core/2.0/core-2.0.spr")
    assert caught.value.report.restarted
    assert caught.value.cause.action == "start"
    assert world.live("bin/core") == b"core 2\n"  # switched; 'rollback' goes back
    assert world.service.calls[-2:] == ["stop", "start"]


def test_a_failed_stop_leaves_the_home_as_it_was(world: World) -> None:
    world.run("to:core/1.0/core-1.0.spr")
    history = sorted(world.files.history.iterdir())
    world.service.fail = "stop"
    with pytest.raises(ServiceError):
        world.run("to:core/2.0/core-2.0.spr")
    assert world.live("bin/core") == b"core 1\n"
    assert sorted(world.files.history.iterdir()) == history
    assert [p.name for p in world.files.trees.iterdir() if p.is_dir()] == [world.files.current.name]


def test_history_names_snapshot_times_and_tree_ids_come_from_the_clock(world: World) -> None:
    world.run("to:core/1.0/core-1.0.spr")
    world.run("to:core/2.0/core-2.0.spr")
    last = world.files.last_history()
    assert last is not None
    assert last.name.endswith(f"-{LATER.strftime('%Y%m%dT%H%M%SZ')}.spr")
    assert f'"{LATER.strftime("%Y-%m-%dT%H:%M:%SZ")}"' in last.read_text()
    assert world.files.current.name.startswith(LATER.strftime("%Y%m%dT%H%M%S"))
    snapshot = world.home().snapshot()
    assert snapshot.created == LATER.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_clock_decides_metadata_expiry(world: World) -> None:
    world.clock.now = LATER + dt.timedelta(days=30)  # past the timestamp's week
    with pytest.raises(RepositoryError):
        world.run("to:core/1.0/core-1.0.spr")


def test_stage_switch_and_discard_through_the_staged_storage(world: World) -> None:
    home = world.home()
    home.apply(["to:core/1.0/core-1.0.spr"])
    world.service.calls.clear()
    staged = home.stage(["to:core/2.0/core-2.0.spr"])
    assert staged.token and world.live("bin/core") == b"core 1\n"
    assert world.service.calls == []
    assert (StagedApplies(world.files).root / staged.token / "staged.json").is_file()
    report = home.switch_staged(staged.token)
    assert report.restarted and world.live("bin/core") == b"core 2\n"
    assert world.service.calls == ["stop", "start"]
    assert not (StagedApplies(world.files).root / staged.token).exists()

    again = home.stage(["to:core/1.0/core-1.0.spr"])
    home.discard_staged(again.token)
    with pytest.raises(StagedApplyMissing):
        home.switch_staged(again.token)
    assert world.live("bin/core") == b"core 2\n"


def test_a_staged_apply_is_refused_once_the_home_changed(world: World) -> None:
    home = world.home()
    home.apply(["to:core/1.0/core-1.0.spr"])
    staged = home.stage(["to:core/2.0/core-2.0.spr"])
    home.apply(["to:addon/1.0/addon-1.0.spr"])
    with pytest.raises(StagedApplyMissing, match="changed since"):
        home.switch_staged(staged.token)
    assert not (StagedApplies(world.files).root / staged.token).exists()


def test_ping_verifies_the_fake_mirror_without_storing(world: World) -> None:
    stored = sorted(p.name for p in world.files.metadata_dir.iterdir())
    home = Home.open(world.files.root, clock=world.clock, fetchers=lambda url: world.mirror)
    checks = home.ping()
    assert [(c.name, c.ok) for c in checks] == [("reachable", True), ("signed metadata", True)]
    assert sorted(p.name for p in world.files.metadata_dir.iterdir()) == stored
    world.mirror.fault = "refuse"
    assert [(c.name, c.ok) for c in home.ping()] == [("reachable", False)]


def test_config_edits_are_pure_and_land_through_the_locked_edit(world: World) -> None:
    config = world.files.config
    added = configedit.add_mirror(config, MirrorEntry("second", "file:///srv/repo", 50))
    assert world.files.config == config  # nothing changed until written
    assert [m.id for m in added.mirrors] == ["primary", "second"]
    with pytest.raises(InputError):
        configedit.add_mirror(added, MirrorEntry("second", "file:///other", 1))
    selected = configedit.select_mirror(added, "file:///srv/new")
    assert selected.updates == "file:///srv/new" and selected.mirrors[-1].id == "mirror1"
    removed = configedit.remove_mirror(selected, "mirror1")
    assert removed.updates == config.updates  # the highest priority left
    named = configedit.name_node(config, "alpha")
    with pytest.raises(InputError):
        configedit.add_node(named, NodeEntry("alpha", "/elsewhere"))
    world.files.edit_config(lambda c: configedit.name_node(c, "alpha"), 5)
    assert HomeDir.open(world.files.root).config.node == "alpha"
