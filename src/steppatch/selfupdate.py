"""The tool as a component: publish the running steppatch into a repository, update the tool's
own installation from it, and upgrade a mirror (then restart its server in place with
:mod:`steppatch.server`'s restart helpers; their names stay importable from here)
(``docs/foothold.md``).

A *tool home* is an ordinary steppatch home whose managed tree holds component ``steppatch`` (a
foothold: ``steppatch.pyz`` and ``wheels/``), with a launcher outside the tree, ``bin/steppatch``,
that runs whatever ``current`` holds. A self-update is an apply of that home, so it is verified
and switched by one atomic rename like any other; before the switch the new version is run once
from a scratch copy (``foothold info --check``), so a version that does not run on this host is
refused while the working one stays in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from packaging.version import InvalidVersion, Version

from steppatch import _record as record
from steppatch._fs import atomic_write, checkpoint
from steppatch.channel import DEFAULT_CHANNEL, DEFAULT_REF, TOOL_COMPONENT, TOOL_HOME_VARIABLE
from steppatch.errors import InputError, LocalEnvironmentError
from steppatch.foothold import ENVS_VARIABLE, PYZ_NAME, Foothold, build_foothold, read_foothold
from steppatch.foothold._errors import BadFootholdInfo, FootholdError
from steppatch.foothold._info import parse_foothold_info
from steppatch.home import ProgramResult, run_program
from steppatch.model import EntryKind, Manifest
from steppatch.paths import safe_relpath
from steppatch.repo import AddResult, Repository
from steppatch.server._restart import (
    GENERATION_VARIABLE,
    RestartFailed,
    RestartOnHangup,
    ServerRestart,
    admin_health,
    lock_holder,
    restart_server,
)
from steppatch.store import copy_verified
from steppatch.updater import ApplyReport, Home, Progress

__all__ = [
    "DEFAULT_CHANNEL",
    "DEFAULT_REF",
    "GENERATION_VARIABLE",
    "LAUNCHER",
    "TOOL_COMPONENT",
    "TOOL_HOME_VARIABLE",
    "MirrorUpgrade",
    "Published",
    "RestartFailed",
    "RestartOnHangup",
    "SelfUpdate",
    "SelfUpdateLimits",
    "ServerRestart",
    "ToolCheck",
    "ToolCheckFailed",
    "lock_holder",
    "publish_self",
    "restart_server",
    "self_update",
    "tool_home_path",
    "upgrade_mirror",
    "write_launcher",
]

LAUNCHER = "bin/steppatch"
ENVS_DIR = "envs"


@record.frozen
class SelfUpdateLimits:
    """Time bounds of a self-update and of a server restart, in seconds."""

    #: the new version's first run installs its wheels (about 30 MB unpacked)
    check_timeout_seconds: float = 300.0
    restart_timeout_seconds: float = 120.0


class ToolRunner(Protocol):
    """Runs a program to completion (default: :func:`steppatch.home.run_program`)."""

    def __call__(
        self, argv: Sequence[str], env: Mapping[str, str], timeout: float
    ) -> ProgramResult: ...


class ToolCheckFailed(LocalEnvironmentError):
    """The new version did not run here; nothing was installed. ``version`` is the one tried,
    ``detail`` what it said."""

    def __init__(self, version: str, detail: str) -> None:
        super().__init__(
            f"steppatch {version} does not run on this host, so it was not installed (the "
            f"working version stays): {detail}"
        )
        self.version = version
        self.detail = detail


# --- publishing ----------------------------------------------------------------------------------


@record.frozen
class Published:
    """What :func:`publish_self` did: the component, the foothold built for it, the channel."""

    component: AddResult
    foothold: Foothold
    channel: str


def publish_self(
    repo: Repository,
    version: Version | None = None,
    *,
    channel: str = DEFAULT_CHANNEL,
    wheels: Path | None = None,
    progress: Progress | None = None,
) -> Published:
    """Publish the running steppatch as component ``steppatch`` at ``version`` (default: its own
    version), a foothold in the directory layout, and move the release recipe ``channel`` to it.

    The build is deterministic, so publishing the same version again is a no-op that only moves
    the channel back (how a publisher withdraws a bad version). Raises what
    :func:`~steppatch.foothold.build_foothold`, :meth:`Repository.add` and
    :meth:`Repository.release` raise.
    """
    with tempfile.TemporaryDirectory(prefix="steppatch-add-self-") as tmp:
        source = Path(tmp)
        built = build_foothold(
            source / "files", version=str(version) if version is not None else None,
            wheels=wheels, progress=progress,
        )
        (source / "component.toml").write_text(_component_toml(built), encoding="utf-8")
        added = repo.add(source)
    repo.release(
        channel, {TOOL_COMPONENT: added.version}, name=f"{TOOL_COMPONENT}-{added.version}",
        replace=True,
    )
    return Published(added, built, channel)


def _component_toml(built: Foothold) -> str:
    wheels = sorted({p.detail for p in built.parts if p.kind == "wheel"})
    zipped = sum(1 for p in built.parts if p.kind == "zipped")
    notes = (
        f"steppatch {built.steppatch} as a foothold (build {built.build[:16]}): {zipped} "
        f"distributions zipped, {len(wheels)} wheels; Python {built.python_requires}."
    )
    return (
        f'name = "{TOOL_COMPONENT}"\nversion = "{built.version}"\n'
        'summary = "the steppatch patch tool (steppatch.pyz and its wheels)"\n'
        f"notes = {json.dumps(notes)}\n"
    )


# --- updating a tool home ------------------------------------------------------------------------


@record.frozen
class ToolCheck:
    """What the new version said about itself when it was tried."""

    version: str
    build: str
    python: str
    platform: str


@record.frozen
class SelfUpdate:
    """What :func:`self_update` did. ``check`` and ``applied`` are ``None`` when the installed
    version was already the one asked for."""

    tool_home: Path
    old: Version | None
    new: Version
    launcher: Path
    check: ToolCheck | None = None
    applied: ApplyReport | None = None

    @property
    def changed(self) -> bool:
        return self.old != self.new


def tool_home_path(explicit: Path | None) -> Path:
    """The tool home to update: ``explicit``, else ``$STEPPATCH_TOOL_HOME`` (the launcher sets
    it). Raises :class:`InputError` when there is neither."""
    if explicit is not None:
        return explicit.absolute()
    env = os.environ.get(TOOL_HOME_VARIABLE)
    if env:
        return Path(env).absolute()
    raise InputError(
        "this steppatch does not run from a tool home: give --tool-home DIR, a home made with "
        "'steppatch --home DIR init ...' (docs/foothold.md)"
    )


def self_update(
    tool_home: Path | str,
    ref: str = DEFAULT_REF,
    *,
    python: str | None = None,
    progress: Progress | None = None,
    runner: ToolRunner = run_program,
    limits: SelfUpdateLimits = SelfUpdateLimits(),
) -> SelfUpdate:
    """Bring the tool home to the steppatch version ``ref`` names, then (re)write its launcher.

    Resolves and downloads first (:meth:`Home.prepare`), tries the new version from a scratch copy
    with ``python`` (default: this interpreter, which the launcher then uses), and only then
    applies the component recipe of exactly that version: a crash at any point leaves the old
    version or the new one, both runnable. Environments of builds other than the old and the
    new one are removed from ``TOOL_HOME/envs``.

    Raises :class:`InputError` when ``ref`` does not name component ``steppatch``,
    :class:`ToolCheckFailed` when the new version does not run here, and what
    :meth:`Home.prepare` and :meth:`Home.apply` raise (a tampered download, the network).
    """
    tool_home = Path(tool_home).absolute()
    python = python or sys.executable
    home = Home.open(tool_home, progress=progress)
    old = home.status().versions().get(TOOL_COMPONENT)
    old_build = _installed_build(home)
    plan = home.prepare([ref])
    new = plan.target.get(TOOL_COMPONENT)
    if new is None:
        raise InputError(f"{ref} does not name component {TOOL_COMPONENT!r}")
    check = applied = None
    if new != old:
        cv = home.repository.index().components[TOOL_COMPONENT][new]
        manifest = home.repository.manifest(cv)
        with tempfile.TemporaryDirectory(dir=home.files.state_dir, prefix="tool-check-") as tmp:
            _materialize(home, manifest, Path(tmp))
            check = _check_tool(
                runner, python, Path(tmp) / PYZ_NAME, tool_home / ENVS_DIR, new, limits
            )
        checkpoint("tool-checked")
        # The component recipe of exactly the version tried, not the channel again: the
        # channel may have moved meanwhile.
        applied = home.apply([f"to:{cv.recipe}"])
    launcher = write_launcher(tool_home, python)
    checkpoint("launcher-written")
    _prune_envs(tool_home / ENVS_DIR, {check.build if check else None, old_build})
    return SelfUpdate(tool_home, old, new, launcher, check, applied)


def _installed_build(home: Home) -> str | None:
    with contextlib.suppress(FootholdError, OSError):
        return str(read_foothold(home.path / "current" / PYZ_NAME).get("build", "")) or None
    return None


def _materialize(home: Home, manifest: Manifest, dest: Path) -> None:
    """The files of ``manifest`` under ``dest``, each copied from the cache (or the live tree
    for unchanged files) with its hash checked."""
    live = {
        e.sha256: home.files.current / e.path
        for c in home.status().components.values()
        for e in c.manifest.files()
        if e.sha256
    }
    for e in manifest.entries:
        target = dest / safe_relpath(e.path)
        if e.kind is EntryKind.DIR:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if e.kind is EntryKind.SYMLINK:
            assert e.target is not None
            os.symlink(e.target, target)
            continue
        assert e.sha256 is not None
        if home.files.cache.has(e.sha256):
            home.files.cache.copy_out(e.sha256, e.size, target, e.mode)
        elif e.sha256 in live:
            copy_verified(live[e.sha256], e.sha256, e.size, target, e.mode, f"live {e.path}")
        else:
            raise LocalEnvironmentError(f"{e.path} of the new steppatch is not in the cache")


def _check_tool(
    runner: ToolRunner, python: str, pyz: Path, envs: Path, version: Version,
    limits: SelfUpdateLimits,
) -> ToolCheck:
    """Run the new version once: it must start, import everything it carries, and say it is
    ``version``. Its wheels are installed into ``envs`` on the way, ready for its first use."""
    env = {k: v for k, v in os.environ.items() if k != "STEPPATCH_TEST_KILL_AT"}
    env[ENVS_VARIABLE] = str(envs)
    argv = [python, str(pyz), "foothold", "info", "--json", "--check"]
    result = runner(argv, env, limits.check_timeout_seconds)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise ToolCheckFailed(
            str(version), f"exit code {result.returncode}: {lines[-1] if lines else 'no output'}"
        )
    try:
        said = parse_foothold_info(result.stdout.encode(), f"steppatch {version}")
        if said.foothold is None:
            raise BadFootholdInfo(f"steppatch {version}", "it runs from no foothold")
        found = Version(said.foothold.version)
    except (BadFootholdInfo, InvalidVersion) as e:
        raise ToolCheckFailed(str(version), f"it did not describe itself: {e}") from None
    check = ToolCheck(str(found), said.foothold.build, said.python, said.platform)
    if found != version:
        raise ToolCheckFailed(str(version), f"it says it is {found}")
    return check


_LAUNCHER = """#!/bin/sh
# The launcher of the steppatch tool home {home}, written by 'steppatch self-update'.
# It runs whatever {home}/current holds: a self-update switches that atomically.
STEPPATCH_TOOL_HOME={q_home}
{envs_var}={q_envs}
export STEPPATCH_TOOL_HOME {envs_var}
exec {q_python} {q_pyz} "$@"
"""


def write_launcher(tool_home: Path, python: str) -> Path:
    """Write ``TOOL_HOME/bin/steppatch`` (atomically, when it changes) running ``python`` on
    ``TOOL_HOME/current/steppatch.pyz``. Raises ``OSError``."""
    text = _LAUNCHER.format(
        home=tool_home,
        q_home=shlex.quote(str(tool_home)),
        envs_var=ENVS_VARIABLE,
        q_envs=shlex.quote(str(tool_home / ENVS_DIR)),
        q_python=shlex.quote(python),
        q_pyz=shlex.quote(str(tool_home / "current" / PYZ_NAME)),
    )
    path = tool_home / LAUNCHER
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8") == text:
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode(), mode=0o755)
    return path


def _prune_envs(envs: Path, keep: set[str | None]) -> None:
    """Remove the private environments of builds other than ``keep`` (their names start with
    the build id's first 16 digits)."""
    prefixes = {k[:16] for k in keep if k}
    if not prefixes or not envs.is_dir():
        return
    for entry in envs.iterdir():
        if not entry.name.startswith(".") and entry.name[:16] not in prefixes:
            shutil.rmtree(entry, ignore_errors=True)


# --- upgrading a mirror: self-update, then restart its server in place (server._restart) ------


@record.frozen
class MirrorUpgrade:
    """What :func:`upgrade_mirror` did; ``restart`` is ``None`` when no server was running."""

    update: SelfUpdate
    restart: ServerRestart | None


def upgrade_mirror(
    config: Path,
    tool_home: Path,
    ref: str = DEFAULT_REF,
    *,
    progress: Progress | None = None,
    limits: SelfUpdateLimits = SelfUpdateLimits(),
) -> MirrorUpgrade:
    """``mirror upgrade``: self-update ``tool_home``, then restart the server running on
    ``config``'s store in place (as the manual's "apply to:updates/mirror/latest.spr, then
    restart"). The config is read first, so a bad one changes nothing.

    Raises what :func:`self_update` and :func:`restart_server` raise, and
    :class:`~steppatch.server.MirrorConfigError`.
    """
    from steppatch import server

    cfg = server.load_config(config)
    update = self_update(tool_home, ref, progress=progress, limits=limits)
    restart = restart_server(
        cfg.store / ".lock", admin_health(cfg.admin_listen), limits.restart_timeout_seconds
    )
    return MirrorUpgrade(update, restart)
