"""Restarting a running ``mirror serve`` in place (``mirror upgrade``, ``docs/foothold.md``).

The server's side is :class:`RestartOnHangup`: SIGHUP stops it gracefully, then it executes its
own command line again (same pid, one generation on, counted in ``STEPPATCH_SERVE_GENERATION``).
The upgrader's side is :func:`restart_server`: it finds the process holding the store's lock
(:func:`lock_holder`, from ``/proc/locks``), signals it and waits until the new generation holds
the lock again and answers on its admin port (:func:`admin_health`). Linux only (``/proc``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from steppatch import _record as record
from steppatch.errors import LocalEnvironmentError

if TYPE_CHECKING:
    from steppatch.server.config import Address

__all__ = [
    "GENERATION_VARIABLE",
    "RESTART_SIGNAL",
    "RestartFailed",
    "RestartOnHangup",
    "ServerRestart",
    "admin_health",
    "local_opener",
    "lock_holder",
    "restart_server",
]

#: how many times a ``mirror serve`` process has re-executed itself (``/proc/PID/environ``)
GENERATION_VARIABLE = "STEPPATCH_SERVE_GENERATION"
RESTART_SIGNAL = signal.SIGHUP


class RestartFailed(LocalEnvironmentError):
    """A running ``mirror serve`` could not be restarted in place; ``pid`` is the process."""

    def __init__(self, pid: int, problem: str) -> None:
        super().__init__(f"the mirror server (pid {pid}) {problem}")
        self.pid = pid
        self.problem = problem


class RestartOnHangup:
    """``mirror serve``'s side of an in-place restart.

    SIGHUP stops the server gracefully (as SIGTERM does); :meth:`reexec` then runs the same
    command line again, so the process keeps its pid (a supervisor sees no exit) and runs what
    ``current`` now holds.
    """

    def __init__(self) -> None:
        self.requested = False
        signal.signal(RESTART_SIGNAL, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        # While the server runs, SIGTERM is its own graceful stop; before or after, the flag
        # alone makes the process re-execute once serve() returns.
        if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            signal.raise_signal(signal.SIGTERM)

    def reexec(self) -> NoReturn:
        """Replace this process with the same command line, one generation on."""
        generation = _int(os.environ.get(GENERATION_VARIABLE)) + 1
        env = {**os.environ, GENERATION_VARIABLE: str(generation)}
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


@record.frozen
class ServerRestart:
    """A server restarted in place: its pid, its new generation and its command line."""

    pid: int
    generation: int
    command: tuple[str, ...]


def lock_holder(lock: Path) -> int | None:
    """The pid holding an exclusive ``flock`` on ``lock`` (a server's ``store/.lock``), from
    ``/proc/locks``; ``None`` when no process does. Linux only."""
    try:
        inode = lock.stat().st_ino
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    target = os.path.realpath(lock)
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5308424 0 EOF"; "->" marks a waiter
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[3] != "WRITE":
            continue
        if fields[5].rsplit(":", 1)[-1] != str(inode):
            continue
        pid = int(fields[4])
        # The inode alone may match a file on another filesystem: confirm the process has this
        # file open. Another user's descriptors cannot be listed; the match must do then.
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except PermissionError:
            return pid
        except OSError:
            continue
        for fd in descriptors:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
    return None


def _proc_text(pid: int, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_text(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    stat = _proc_text(pid, "stat")
    # "PID (comm) STATE ...": a zombie has exited and only waits for its parent.
    return bool(stat) and stat.rpartition(")")[2].split()[:1] != ["Z"]


def _catches(pid: int, signum: int) -> bool:
    for line in _proc_text(pid, "status").splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def _generation(pid: int) -> int:
    for item in _proc_text(pid, "environ").split("\0"):
        if item.startswith(f"{GENERATION_VARIABLE}="):
            return _int(item.partition("=")[2])
    return 0


def restart_server(
    lock: Path, healthy: Callable[[], bool], timeout: float
) -> ServerRestart | None:
    """Restart the ``mirror serve`` process holding ``lock`` in place and wait until it holds
    the lock again and ``healthy()``; ``None`` when no server runs on it.

    Raises :class:`RestartFailed` when the process cannot restart in place (it predates it),
    exits, or is not healthy within ``timeout`` seconds.
    """
    pid = lock_holder(lock)
    if pid is None:
        return None
    if not _catches(pid, RESTART_SIGNAL):
        raise RestartFailed(
            pid, "cannot restart in place (an older steppatch); restart it with its supervisor, "
            "e.g. systemctl restart steppatch-mirror"
        )
    generation = _generation(pid)
    os.kill(pid, RESTART_SIGNAL)
    deadline = time.monotonic() + timeout
    while True:
        if not _alive(pid):
            raise RestartFailed(pid, "exited while restarting; see its log")
        if _generation(pid) > generation and lock_holder(lock) == pid and healthy():
            command = tuple(_proc_text(pid, "cmdline").split("\0")[:-1])
            return ServerRestart(pid, _generation(pid), command)
        if time.monotonic() > deadline:
            raise RestartFailed(pid, f"did not come back healthy within {timeout:g} s")
        time.sleep(0.1)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the redirect answer itself is then the HTTPError


def local_opener() -> urllib.request.OpenerDirector:
    """An opener for the server's own admin port: no proxy from the environment (``http_proxy``
    would otherwise carry a request for 127.0.0.1 elsewhere), no redirect followed."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def admin_health(admin_listen: Address, timeout: float = 2.0) -> Callable[[], bool]:
    """The health probe of a server whose admin port listens on ``admin_listen`` (its config's
    ``admin_listen``): whether ``/health`` answers 200 (only the status is read, never the body;
    no proxy, no redirect). A kernel-chosen admin port (0) changes with every restart, so there is
    nothing to ask: always true."""
    host = admin_listen.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{f'[{host}]' if ':' in host else host}:{admin_listen.port}/health"

    def healthy() -> bool:
        if admin_listen.port == 0:
            return True
        try:
            with local_opener().open(url, timeout=timeout) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    return healthy
