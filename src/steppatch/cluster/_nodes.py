"""The nodes of a cluster, behind one small Protocol: a home on a local path, or over SSH.

A node over SSH runs ``steppatch --home PATH node VERB`` there (the hidden ``node`` commands,
docs/formats.md "steppatch-node/1") through the system ``ssh`` client, or the command in
``$STEPPATCH_SSH`` (as git's ``GIT_SSH_COMMAND``), and reads one JSON answer.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from typing import Protocol

from steppatch.cluster._core import (
    Location,
    NodeStatus,
    SwitchResult,
    parse_location,
    parse_node_answer,
    plan_from_json,
    versions_from_json,
)
from steppatch.config import NodeEntry
from steppatch.errors import NetworkError, NodeError
from steppatch.model import Recipe
from steppatch.plan import SyncMode
from steppatch.recipe import dump_recipe
from steppatch.updater import Home, Progress, StagedApply

__all__ = ["LocalNode", "Node", "SshNode", "connect_node"]

#: seconds a status question may take; staging and switching may download and restart for long
STATUS_TIMEOUT = 60.0
SSH_UNREACHABLE = 255


class Node(Protocol):
    """One node of a cluster."""

    @property
    def name(self) -> str: ...

    @property
    def location(self) -> str: ...

    def status(self) -> NodeStatus:
        """What the node has installed. Raises :class:`~steppatch.errors.SteppatchError`."""
        ...

    def stage(self, recipe: Recipe, *, hot: bool, sync: SyncMode | None) -> StagedApply:
        """Resolve, download, verify and build on the node; nothing goes live."""
        ...

    def switch(self, token: str) -> SwitchResult:
        """Make the staged apply live on the node (stop, switch, start)."""
        ...

    def discard(self, token: str) -> None:
        """Drop the staged apply (no error if it is gone)."""
        ...


class LocalNode:
    """A home on this machine (this node itself, another home, or a shared filesystem)."""

    def __init__(self, name: str, home: Home, *, is_self: bool = False) -> None:
        self.name = name
        self.home = home
        self.is_self = is_self

    @property
    def location(self) -> str:
        return str(self.home.path)

    def status(self) -> NodeStatus:
        state = self.home.status()
        return NodeStatus(
            self.name,
            self.location,
            is_self=self.is_self,
            versions=state.versions(),
            environment=self.home.files.environment_id(),
            fingerprint=state.fingerprint(),
        )

    def stage(self, recipe: Recipe, *, hot: bool, sync: SyncMode | None) -> StagedApply:
        return self.home.stage([recipe], hot=hot, sync=sync)

    def switch(self, token: str) -> SwitchResult:
        return SwitchResult(self.home.switch_staged(token).restarted)

    def discard(self, token: str) -> None:
        self.home.discard_staged(token)


class SshNode:
    """A home on another host, reached with ``ssh``; ``steppatch`` must be installed there."""

    def __init__(
        self, name: str, location: Location, command: str = "", ssh: str | None = None
    ) -> None:
        self.name = name
        self.where = location
        self.command = command or "steppatch"  # split like a shell: it may carry arguments
        self.ssh = shlex.split(ssh if ssh is not None else os.environ.get("STEPPATCH_SSH", "ssh"))

    @property
    def location(self) -> str:
        return str(self.where)

    def status(self) -> NodeStatus:
        f = parse_node_answer(self._run(["status"], timeout=STATUS_TIMEOUT), self.name)
        return NodeStatus(
            self.name,
            self.location,
            versions=versions_from_json(f, "versions"),
            environment=f.get("environment", str, ""),
            fingerprint=f.get("fingerprint", str, ""),
        )

    def stage(self, recipe: Recipe, *, hot: bool, sync: SyncMode | None) -> StagedApply:
        args = ["stage", *(["--hot"] if hot else []), *(["--sync", sync.value] if sync else [])]
        f = parse_node_answer(self._run(args, stdin=dump_recipe(recipe)), self.name)
        return StagedApply(f.get("token", str, ""), plan_from_json(f.obj.get("plan"), self.name))

    def switch(self, token: str) -> SwitchResult:
        f = parse_node_answer(self._run(["switch", token]), self.name)
        return SwitchResult(f.get("restarted", bool))

    def discard(self, token: str) -> None:
        self._run(["discard", token], timeout=STATUS_TIMEOUT)

    def _argv(self, args: list[str]) -> list[str]:
        where = self.where
        target = f"{where.user}@{where.host}" if where.user else where.host
        port = ["-p", str(where.port)] if where.port is not None else []
        # ssh joins its arguments into one string for the remote shell: quote each once.
        remote = shlex.join([*shlex.split(self.command), "--home", where.path, "node", *args])
        return [*self.ssh, "-o", "BatchMode=yes", *port, "--", target, remote]

    def _run(self, args: list[str], *, stdin: bytes = b"", timeout: float | None = None) -> bytes:
        """Run a ``node`` command there. Raises :class:`NodeError` with the node's own message
        and exit code, or exit code 4 when the node cannot be reached."""
        argv = self._argv(args)
        try:
            done = subprocess.run(
                argv, input=stdin, capture_output=True, timeout=timeout, check=False
            )
        except FileNotFoundError:
            raise NodeError(
                self.name, f"cannot run {argv[0]!r} (is an ssh client installed?)",
                NetworkError.exit_code,
            ) from None
        except subprocess.TimeoutExpired:
            raise NodeError(
                self.name, f"no answer within {timeout:.0f} s over ssh", NetworkError.exit_code
            ) from None
        if done.returncode == 0:
            return done.stdout
        message = _last_error(done.stderr)
        if done.returncode == SSH_UNREACHABLE:
            raise NodeError(
                self.name, f"unreachable over ssh: {message}", NetworkError.exit_code
            )
        raise NodeError(self.name, message, done.returncode)


def _last_error(stderr: bytes) -> str:
    """The node's ``error: ...`` line (steppatch prints one), else the last line of stderr."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    return lines[-1] if lines else "failed with no message"


def connect_node(entry: NodeEntry, progress: Progress | None = None) -> Node:
    """The node a config entry names. Raises :class:`~steppatch.errors.InputError` for a bad
    location and :class:`~steppatch.errors.HomeError` for a local path that is not a home."""
    location = parse_location(entry.location)
    if location.is_ssh:
        return SshNode(entry.name, location, entry.command)
    return LocalNode(entry.name, Home.open(location.path, progress=progress))
