"""The tool as a component: a tool home installed from the foothold updates itself A -> B -> A,
survives SIGKILL at every step, refuses tampered and unrunnable versions, and ``mirror upgrade``
restarts a running server in place.

Real processes (the tool runs through its own launcher), a real disk, real SIGKILLs, a real
HTTPS server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
import zipfile
from pathlib import Path

import attrs
import pytest
from packaging.version import Version

from steppatch import Home, Repository, pki
from steppatch.selfupdate import DEFAULT_CHANNEL, publish_self
from tests.foothold_helpers import clean_python, offline_env, session_foothold

A, B = Version("1.0"), Version("2.0")


@attrs.frozen
class World:
    root: Path
    repo: Repository
    tool: Path

    @property
    def launcher(self) -> Path:
        return self.tool / "bin" / "steppatch"

    def run(
        self, *args: str | Path, expect: int | None = 0, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """The installed tool, through its launcher, on a host with no package index."""
        done = subprocess.run(
            [str(self.launcher), *map(str, args)], env=offline_env(self.root, **env),
            capture_output=True, text=True, timeout=300, check=False,
        )
        if expect is not None:
            assert done.returncode == expect, done.stdout + done.stderr
        return done

    def version(self) -> str:
        """What the installed tool says it is; it must run to say it."""
        info = json.loads(self.run("foothold", "info", "--json").stdout)
        return str(info["foothold"]["version"])

    def installed(self) -> Version:
        """What the tool home's state says (after recovery of any interrupted apply)."""
        return Home.open(self.tool).status().versions()["steppatch"]

    def reset(self) -> None:
        """A installed, the channel at B."""
        Home.open(self.tool).apply([f"to:steppatch/{A}/steppatch-{A}.spr"])
        self.repo.release(DEFAULT_CHANNEL, {"steppatch": B}, replace=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    built = session_foothold(tmp_path_factory)
    python = clean_python(tmp_path_factory)
    root = tmp_path_factory.mktemp("self-update")
    repo = Repository.init(root / "repo")
    publish_self(repo, A)
    tool = root / "tool"
    env = offline_env(root, STEPPATCH_FOOTHOLD_ENVS=str(root / "foothold-envs"))
    # As the manual's foothold: unpack, make the tool's home, apply the tool's channel.
    root_json = repo.root / "root.json"
    for args in (
        ["--home", tool, "init", "--updates", repo.root.as_uri(), "--root", root_json],
        ["self-update", "--tool-home", tool],
    ):
        done = subprocess.run([python, built.pyz, *args], env=env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    publish_self(repo, B)
    return World(root, repo, tool)


def test_self_update_from_a_to_b_and_back(world: World) -> None:
    world.reset()
    assert world.version() == "1.0"
    result = json.loads(world.run("self-update", "--json").stdout)
    assert (result["from"], result["to"], result["changed"]) == ("1.0", "2.0", True)
    assert result["check"]["version"] == "2.0"
    assert world.version() == "2.0" and world.installed() == B
    again = json.loads(world.run("self-update", "--json").stdout)
    assert again["changed"] is False and again["check"] is None
    # B differs from A in its archive only: the wheels are the same objects.
    index = world.repo.index
    files = {
        v: {e.path: e.sha256 for e in Home.open(world.tool).repository.manifest(
            index.components["steppatch"][v]).files()}
        for v in (A, B)
    }
    changed = {p for p in files[A] if files[A][p] != files[B].get(p)}
    assert changed == {"steppatch.pyz"}
    # Withdrawing B: publishing A again is a no-op (the build is deterministic) that moves
    # the channel back.
    assert publish_self(world.repo, A).component.added is False
    back = json.loads(world.run("self-update", "--json").stdout)
    assert (back["from"], back["to"]) == ("2.0", "1.0")
    assert world.version() == "1.0" and world.installed() == A
    # Private environments of the old and the new build only.
    assert len([p for p in (world.tool / "envs").iterdir()]) == 2


def test_a_self_update_killed_at_any_step_leaves_a_working_tool(world: World) -> None:
    # Apply's own steps are killed one by one in test_crash_safety and test_apply_faults; here,
    # the self-update's: before the apply, either side of its commit point, after it.
    outcome = {
        "tool-checked": "1.0",  # B tried, nothing installed yet
        "state-written": "1.0",  # the switch (the commit point) not reached
        "switched": "2.0",
        "launcher-written": "2.0",
    }
    for point, version in outcome.items():
        world.reset()
        killed = world.run("self-update", expect=None, STEPPATCH_TEST_KILL_AT=point)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr)
        assert world.version() == version, point
        assert str(world.installed()) == version, point
    # And at a moment nobody chose (a self-update takes about 2 s here; later is fine too).
    world.reset()
    proc = subprocess.Popen(
        [str(world.launcher), "self-update"], env=offline_env(world.root),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(random.Random(7).uniform(0.3, 2.5))
    proc.kill()
    proc.wait()
    assert world.version() in ("1.0", "2.0")
    assert str(world.installed()) == world.version()
    world.run("self-update")
    assert world.version() == "2.0"


def test_a_tampered_or_unrunnable_update_leaves_the_working_version(
    world: World, tmp_path: Path
) -> None:
    world.reset()
    home = Home.open(world.tool)
    manifest = home.repository.manifest(world.repo.index.components["steppatch"][B])
    pyz = next(e for e in manifest.files() if e.path == "steppatch.pyz")
    assert pyz.sha256 is not None
    home.files.cache.remove(pyz.sha256)  # so that it is downloaded again
    # Every route to the new build tampered with: the object, and the deltas and compressed
    # forms published beside it (a home takes those first, and falls back to the object).
    published = [world.repo.root / "objects" / pyz.sha256[:2] / pyz.sha256]
    published += [p for p in (world.repo.root / "deltas").rglob("*") if p.is_file()]
    originals = {path: path.read_bytes() for path in published}
    for path, original in originals.items():
        os.chmod(path, 0o644)
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        refused = world.run("self-update", expect=3)
        assert pyz.sha256 in refused.stderr or "sha256" in refused.stderr
    finally:
        for path, original in originals.items():
            path.write_bytes(original)
    assert world.version() == "1.0" and world.installed() == A

    # A version that verifies but does not run on this host.
    source = tmp_path / "broken"
    (source / "files").mkdir(parents=True)
    (source / "component.toml").write_text('name = "steppatch"\nversion = "3.0"\n')
    with zipfile.ZipFile(source / "files" / "steppatch.pyz", "w") as z:
        z.writestr("__main__.py", "import sys\nsys.exit('boom: this build needs glibc 9')\n")
    world.repo.add(source)
    world.repo.release(DEFAULT_CHANNEL, {"steppatch": Version("3.0")}, replace=True)
    refused = world.run("self-update", expect=5)
    assert "does not run on this host" in refused.stderr
    assert "boom: this build needs glibc 9" in refused.stderr
    assert world.version() == "1.0" and world.installed() == A
    world.reset()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _served_archive(pid: int) -> str:
    """The foothold archive a process has open (its bootstrap pins it)."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if "steppatch.pyz" in target:
            return target
    raise AssertionError("the server holds no foothold archive open")


def test_mirror_upgrade_updates_the_tool_and_restarts_the_server_in_place(
    world: World, tmp_path: Path
) -> None:
    world.reset()
    ca = pki.make_ca()
    server = pki.issue_server_cert(ca, ["127.0.0.1"])
    for name, data in (("ca.crt", ca.cert_pem), ("server.crt", server.cert_pem),
                       ("server.key", server.key_pem)):
        (tmp_path / name).write_bytes(data)
    listen, admin = _free_port(), _free_port()
    config = tmp_path / "origin.toml"
    config.write_text(
        f'listen = "127.0.0.1:{listen}"\nadmin_listen = "127.0.0.1:{admin}"\n'
        f'store = "{tmp_path / "store"}"\n'
        f'[tls]\ncert = "{tmp_path / "server.crt"}"\nkey = "{tmp_path / "server.key"}"\n'
        f'client_ca = "{tmp_path / "ca.crt"}"\n[origin]\nrepository = "{world.repo.root}"\n'
    )
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen(
            [str(world.launcher), "mirror", "serve", "--config", str(config)],
            env=offline_env(world.root, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
            stderr=log, text=True,
        )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        before = _served_archive(proc.pid)
        result = json.loads(world.run("mirror", "upgrade", "--config", config, "--json").stdout)
        assert (result["from"], result["to"]) == ("1.0", "2.0")
        assert result["restart"]["pid"] == proc.pid  # in place: a supervisor sees no exit
        assert result["restart"]["generation"] == 1
        second = json.loads(proc.stdout.readline())  # the re-executed server is ready again
        assert second == first
        after = _served_archive(proc.pid)
        assert after != before
        assert after == os.path.realpath(world.tool / "current" / "steppatch.pyz")
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/health", timeout=5) as r:
            assert json.loads(r.read())["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        # With no server running, an upgrade updates and says how to start one.
        done = world.run("mirror", "upgrade", "--config", config)
        assert "is current" in done.stdout and "No server runs on" in done.stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
