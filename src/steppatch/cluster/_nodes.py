"""The nodes of a cluster, behind one small Protocol: a home on a local path, or over SSH.

A node over SSH runs ``steppatch --home PATH node VERB`` there (the hidden ``node`` commands,
docs/formats.md "steppatch-node/1") through the system ``ssh`` client, or the command in
``$STEPPATCH_SSH`` (as git's ``GIT_SSH_COMMAND``), and reads one JSON answer.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import subprocess
import threading
import time
from typing import IO, TYPE_CHECKING, Protocol

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
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import Recipe
from steppatch.plan import SyncMode
from steppatch.recipe import dump_recipe
from steppatch.updater import Home

if TYPE_CHECKING:
    # the pipeline (and the solver) only when a node stages: `nodes` lists them without it
    from steppatch.pipeline import Progress, StagedApply

__all__ = ["LocalNode", "Node", "SshNode", "connect_node"]

#: seconds a status question may take; staging and switching may download and restart for long
STATUS_TIMEOUT = 60.0
SSH_UNREACHABLE = 255
# one read of a node's output; the bound on the whole is Limits.max_node_answer_bytes
_READ_CHUNK = 64 * 1024


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
        self,
        name: str,
        location: Location,
        command: str = "",
        ssh: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.name = name
        self.limits = limits
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
        from steppatch.pipeline import StagedApply

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
        and exit code, exit code 4 when the node cannot be reached, and
        :attr:`NodeError.exit_code` when it answers more than ``limits.max_node_answer_bytes``
        (the command is killed then: its answer is never held whole)."""
        argv = self._argv(args)
        try:
            done = _run_bounded(argv, stdin, timeout, self.limits.max_node_answer_bytes)
        except FileNotFoundError:
            raise NodeError(
                self.name, f"cannot run {argv[0]!r} (is an ssh client installed?)",
                NetworkError.exit_code,
            ) from None
        except subprocess.TimeoutExpired:
            raise NodeError(
                self.name, f"no answer within {timeout:.0f} s over ssh", NetworkError.exit_code
            ) from None
        except _TooMuchOutput as e:
            raise NodeError(
                self.name, f"answered more than {e.limit} bytes (max_node_answer_bytes)",
                NodeError.exit_code,
            ) from None
        if done.returncode == 0:
            return done.stdout
        message = _last_error(done.stderr)
        if done.returncode == SSH_UNREACHABLE:
            raise NodeError(
                self.name, f"unreachable over ssh: {message}", NetworkError.exit_code
            )
        raise NodeError(self.name, message, done.returncode)


class _TooMuchOutput(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit


def _run_bounded(
    argv: list[str], stdin: bytes, timeout: float | None, limit: int
) -> subprocess.CompletedProcess[bytes]:
    """``subprocess.run(argv, input=stdin, capture_output=True)`` holding at most ``limit``
    bytes of stdout (more kills the command: :class:`_TooMuchOutput`) and the last ``limit``
    bytes of stderr (where the node's error line is). Raises ``subprocess.TimeoutExpired``
    (the command is killed) and ``OSError`` from starting it."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

    def feed(pipe: IO[bytes]) -> None:
        # A thread: the node may answer before it has read all its input.
        with contextlib.suppress(OSError):
            pipe.write(stdin)
        with contextlib.suppress(OSError):
            pipe.close()

    writer = threading.Thread(target=feed, args=(proc.stdin,), daemon=True)
    writer.start()
    out = bytearray()
    err = bytearray()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            while sel.get_map():
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    raise subprocess.TimeoutExpired(argv, timeout or 0.0)
                for key, _events in sel.select(wait):
                    chunk = os.read(key.fd, _READ_CHUNK)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    buf: bytearray = key.data
                    buf += chunk
                    if buf is out and len(out) > limit:
                        raise _TooMuchOutput(limit)
                    if buf is err and len(err) > limit:
                        del err[: len(err) - limit]
        returncode = proc.wait(None if deadline is None else max(deadline - time.monotonic(), 0))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
        writer.join()
    return subprocess.CompletedProcess(argv, returncode, bytes(out), bytes(err))


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
