"""Issue 17 on a mirror: the store keeps what its last ``keep_indexes`` verified indexes name
(everything in HISTORIC mode), nothing being filled is removed, old partial fills go, and
SIGKILL at every step of a collection or at random moments never leaves a kept index's content
missing. The store against file:// upstreams (``mirror gc`` works without a server), and one
running server for the periodic collection, ``POST /gc`` and the metrics.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.version import Version

from steppatch import Repository
from steppatch.model import EntryKind, RepositoryIndex
from steppatch.server import parse_config
from steppatch.server._gc import collect_store, held_indexes
from steppatch.server._metrics import Metrics
from steppatch.server._store import FillControl, MirrorStore
from steppatch.server._upstream import Upstreams
from tests.integration.server.conftest import (
    Servers,
    blob,
    free_port,
    make_component,
    wait_for,
)

DAY = 86400.0


def config_text(store: Path, repo: Path, root: Path, **extra: object) -> str:
    lines = [f'store = "{store}"', f'trusted_root = "{root}"', "upstream_retry_s = 60"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    lines += ['[tls]', 'cert = "a"', 'key = "b"', 'client_ca = "c"',
              "[[upstreams]]", 'id = "u0"', f'url = "{repo.as_uri()}"']
    return "\n".join(lines) + "\n"


def withdraw(repo: Repository, name: str, version: str) -> None:
    """Publish an index without ``name`` ``version`` (as a publisher pruning old versions)."""
    with repo._locked():
        index = repo.index
        components = {n: dict(vs) for n, vs in index.components.items()}
        gone = components[name].pop(Version(version))
        recipes = {p: r for p, r in index.recipes.items() if p != gone.recipe}
        repo._commit(RepositoryIndex(components, recipes))


class World:
    """A repository published step by step and a mirror store following it, full."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.repo = Repository.init(tmp / "repo")
        self.root = tmp / "root.json"
        self.root.write_bytes((self.repo.root / "root.json").read_bytes())
        self.store_dir = tmp / "store"
        self.config = tmp / "mirror.toml"
        self.config.write_text(config_text(self.store_dir, self.repo.root, self.root))
        self.ups = Upstreams(parse_config(self.config.read_bytes(), "m.toml", tmp), Metrics())

    def store(self) -> MirrorStore:
        return MirrorStore(self.store_dir, self.root.read_bytes(), Metrics())

    def publish(self, version: int) -> None:
        files = {f"lib/f{i}.bin": blob(2048, version * 100 + i) for i in range(4)}
        files["lib/same.bin"] = blob(2048, 7)
        self.repo.add(make_component(self.tmp / "src", "app", f"{version}.0", files))
        self.follow()

    def follow(self) -> None:
        store = self.store()
        store.refresh(self.ups)
        for process in ("historic", "released"):
            while items := store.bulk_items(process):
                for item in items:
                    store.fill(item, self.ups, FillControl())


def kept_content(store: MirrorStore, keep: int) -> dict[str, int]:
    """Every file the last ``keep`` indexes name that the mirror must serve: recipes,
    manifests, and the objects of those manifests (sha256 -> length)."""
    indexes, _ = held_indexes(store)
    wanted: dict[str, int] = {}
    for v in sorted(indexes)[-keep:]:
        index = indexes[v]
        for ref in index.recipes.values():
            wanted[ref.sha256] = ref.length
        for cvs in index.components.values():
            for cv in cvs.values():
                wanted[cv.manifest.sha256] = cv.manifest.length
                from steppatch.formats import parse_manifest

                manifest = parse_manifest(store.objects.path(cv.manifest.sha256).read_bytes(), "m")
                for e in manifest.entries:
                    if e.kind is EntryKind.FILE and e.sha256 is not None:
                        wanted[e.sha256] = e.size
    return wanted


def assert_serves(store: MirrorStore, wanted: dict[str, int]) -> None:
    from steppatch.store import hash_file

    for sha, length in wanted.items():
        assert hash_file(store.objects.path(sha)) == (sha, length), sha


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    for v in (1, 2, 3):
        w.publish(v)
    withdraw(w.repo, "app", "1.0")
    w.follow()
    withdraw(w.repo, "app", "2.0")
    w.follow()
    return w


def test_collection_keeps_what_the_kept_indexes_name(world: World) -> None:
    store = world.store()
    indexes, unreadable = held_indexes(store)
    assert unreadable == [] and len(indexes) == 5
    everything = kept_content(store, 5)
    before = {p.name for p in store.objects.root.glob("??/*")}
    assert set(everything) == before
    # The default keeps ten indexes: all five here, nothing goes.
    assert collect_store(store, keep_indexes=10, historic=False, dry_run=False, now=time.time(),
                         partial_max_age=DAY).bytes == 0
    dry = collect_store(store, keep_indexes=1, historic=False, dry_run=True, now=time.time(),
                        partial_max_age=DAY)
    assert {p.name for p in store.objects.root.glob("??/*")} == before
    assert dry.kept_indexes == (max(indexes),) and dry.manifests == 2 and dry.objects == 8
    assert dry.recipes >= 2  # app 1.0 and 2.0's recipes and the latest.spr they replaced
    done = collect_store(store, keep_indexes=1, historic=False, dry_run=False, now=time.time(),
                         partial_max_age=DAY)
    assert (done.objects, done.manifests, done.recipes, done.bytes) == (
        dry.objects, dry.manifests, dry.recipes, dry.bytes
    )
    after = {p.name for p in store.objects.root.glob("??/*")}
    assert after == set(kept_content(store, 1))
    assert_serves(store, kept_content(store, 1))
    # The takeout view lost its links to what went, and kept the others.
    takeout = {p.name for p in (store.takeout / "objects").glob("??/*")}
    assert takeout and takeout <= after


def test_historic_mode_keeps_every_index_content(world: World) -> None:
    store = world.store()
    before = {p.name for p in store.objects.root.glob("??/*")}
    done = collect_store(store, keep_indexes=1, historic=True, dry_run=False, now=time.time(),
                         partial_max_age=DAY)
    assert done.bytes == 0 and done.kept_indexes == tuple(sorted(held_indexes(store)[0]))
    assert len(done.kept_indexes) == 5
    assert {p.name for p in store.objects.root.glob("??/*")} == before


def test_busy_files_and_fresh_partials_stay(world: World) -> None:
    store = world.store()
    doomed = sorted(set(kept_content(store, 5)) - set(kept_content(store, 1)))
    old = store.objects.partial_path("ab" * 32)
    fresh = store.objects.partial_path("cd" * 32)
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_bytes(b"x" * 10)
    fresh.write_bytes(b"y" * 10)
    os.utime(old, (time.time() - 2 * DAY, time.time() - 2 * DAY))
    with store.pinned(doomed[0]):
        done = collect_store(store, keep_indexes=1, historic=False, dry_run=False,
                             now=time.time(), partial_max_age=DAY)
    assert store.objects.has(doomed[0])  # being filled or sent: left alone
    assert not any(store.objects.has(sha) for sha in doomed[1:])
    assert done.partial == 1 and not old.exists() and fresh.exists()
    # The next collection takes it.
    collect_store(store, keep_indexes=1, historic=False, dry_run=False, now=time.time(),
                  partial_max_age=DAY)
    assert not store.objects.has(doomed[0])


def test_a_damaged_index_or_manifest_stops_content_removal(world: World) -> None:
    store = world.store()
    newest = max((store.metadata_dir / "indexes").glob("*.index.json"),
                 key=lambda p: int(p.name.split(".")[0]))
    newest.write_bytes(b"{not json")
    before = {p.name for p in store.objects.root.glob("??/*")}
    done = collect_store(store, keep_indexes=1, historic=False, dry_run=False, now=time.time(),
                         partial_max_age=DAY)
    assert done.bytes == 0 and done.unknown_history == 1
    assert {p.name for p in store.objects.root.glob("??/*")} == before


def mirror_cli(world: World, *args: str, kill_at: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEPPATCH_TEST_KILL_AT": kill_at}
    return subprocess.run(
        [sys.executable, "-m", "steppatch_cli", "mirror", "gc", "--config", str(world.config),
         *args], capture_output=True, text=True, env=env, timeout=60, check=False,
    )


def keep_one(world: World) -> None:
    world.config.write_text(
        config_text(world.store_dir, world.repo.root, world.root, keep_indexes=1)
    )


@pytest.mark.parametrize("step", ["mirror-gc-decided", "mirror-gc-objects", "mirror-gc-done"])
def test_sigkill_at_every_step_of_a_mirror_gc(world: World, step: str) -> None:
    keep_one(world)
    wanted = kept_content(world.store(), 1)
    done = mirror_cli(world, kill_at=step)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert_serves(world.store(), wanted)
    finished = json.loads(mirror_cli(world, "--json").stdout)
    assert finished["via"] == "here"
    store = world.store()
    assert {p.name for p in store.objects.root.glob("??/*")} == set(wanted)
    assert_serves(store, wanted)


def test_sigkill_at_random_moments_of_a_mirror_gc(world: World, tmp_path: Path) -> None:
    keep_one(world)
    wanted = kept_content(world.store(), 1)
    rng = random.Random(20261206)
    started = time.monotonic()
    dry = mirror_cli(world, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    duration = time.monotonic() - started
    assert json.loads(dry.stdout)["dry_run"] is True
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "steppatch_cli", "mirror", "gc", "--config",
             str(world.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.0, duration))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert_serves(world.store(), wanted)
    assert mirror_cli(world).returncode == 0
    assert {p.name for p in world.store().objects.root.glob("??/*")} == set(wanted)


def test_bad_keep_indexes_is_refused(tmp_path: Path) -> None:
    from steppatch.server import MirrorConfigError

    for bad in ("keep_indexes = 0", "gc_interval_s = -1", 'keep_indexes = "ten"'):
        text = config_text(tmp_path / "s", tmp_path, tmp_path / "r.json") + bad + "\n"
        # top-level keys must come before the tables
        text = bad + "\n" + text.replace(bad + "\n", "")
        with pytest.raises(MirrorConfigError):
            parse_config(text.encode(), "m.toml", tmp_path)


def test_a_running_server_collects_and_reports_sizes(
    world: World, servers: Servers, tmp_path: Path
) -> None:
    origin = servers.origin(world.repo.root)
    mirror = servers.mirror([origin], world.root, keep_indexes=1, gc_interval_s=0.5,
                            download="historic", admin_listen=f"127.0.0.1:{free_port()}")
    wait_for(lambda: mirror.health().get("bulk", {}).get("historic", {}).get("state") == "idle")
    # The periodic collection runs (HISTORIC: every index's content is kept).
    wait_for(lambda: mirror.health().get("last_gc") is not None)
    assert mirror.metric("store_bytes", part="store") > 0
    assert mirror.metric("gc_runs_total", result="ok") >= 1
    # `mirror gc` with a server on the store goes through its admin port.
    done = subprocess.run(
        [sys.executable, "-m", "steppatch_cli", "mirror", "gc", "--config", str(mirror.config),
         "--json"], capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["via"] == "running server" and result["kept_indexes"]
    status = subprocess.run(
        [sys.executable, "-m", "steppatch_cli", "mirror", "status", "--config",
         str(mirror.config), "--json"], capture_output=True, text=True, timeout=60, check=False,
    )
    sizes = json.loads(status.stdout)["sizes"]
    assert sizes["store"] > 0 and sizes["total"] >= sizes["store"]
