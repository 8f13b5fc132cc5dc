"""Small filesystem helpers shared by the edges: durable atomic writes and an inter-process lock.

Not part of the core: the core never imports this module.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from steppatch.errors import LockedError, WouldOverwrite

__all__ = [
    "atomic_write",
    "checkpoint",
    "file_lock",
    "fsync_dir",
    "sync_filesystem",
    "temp_path",
    "write_new",
]

#: ``STEPPATCH_TEST_KILL_AT=NAME`` makes the process SIGKILL itself at checkpoint NAME: the crash
#: tests use it to stop an apply at every named step. Read once; unset in normal use.
_KILL_AT = os.environ.get("STEPPATCH_TEST_KILL_AT", "")


def checkpoint(name: str) -> None:
    """A named step of a change to a home, where the crash tests may kill the process."""
    if name == _KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)

@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs``, loaded on first use. Looked up in the running program (which links
    libc), not through ``ctypes.util.find_library``: that runs ``ldconfig``, a process."""
    import ctypes

    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes = [ctypes.c_int]
    return syncfs


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> None:
    """Make everything written to the filesystem holding ``path`` durable.

    One ``syncfs(2)`` instead of an ``fsync`` per file: building a tree of thousands of files is
    then bounded by the disk, not by thousands of flushes. Falls back to ``sync(2)``.
    """
    syncfs = _syncfs()
    if syncfs is not None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    os.sync()


def temp_path(path: Path) -> Path:
    """A fresh name beside ``path`` for a temporary that replaces it: ``.NAME.tmp-PID-RANDOM``.

    Unique per call, not per process: the server's worker threads write the same paths at once.
    The ``.NAME.tmp-`` prefix is what sweepers of litter match.
    """
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(8).hex()}")


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, never a mix.

    Raises ``OSError`` from the filesystem.
    """
    tmp = temp_path(path)
    # O_EXCL: a name is never shared, not even by two threads writing the same path at once.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)  # the umask narrowed what os.open gave
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` holding ``data`` with exactly ``mode``, durably: never replacing a file,
    never following a link (``O_CREAT | O_EXCL | O_NOFOLLOW``, then ``fsync``).

    The one create-new writer: keys, certificates, requests. A failure part-way removes what it
    created. Raises :class:`~steppatch.errors.WouldOverwrite` if ``path`` exists (a dangling link
    too), ``OSError`` from the filesystem.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise WouldOverwrite(str(path)) from None
    try:
        # the umask may have removed bits we want (0644), never added any
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if fd != -1:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise


@contextlib.contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block.

    The kernel drops the lock when its holder dies, so a lock of a killed process is never stale.
    Waits up to ``timeout`` seconds, then raises :class:`LockedError`.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise LockedError(str(path)) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def scan_dir(path: str | Path) -> list[os.DirEntry[str]]:
    """The entries of directory ``path`` (``[]`` if it is gone or not a directory)."""
    try:
        with os.scandir(path) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def remove_unless_locked(path: Path) -> None:
    """Remove ``path`` (a partial download or fill) unless a writer holds its ``flock`` now."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return
            raise
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def sorted_entries(directory: Path) -> list[Path]:
    """The entries of ``directory``, sorted (``[]`` if it is gone or not a directory)."""
    try:
        return sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def size_of(path: Path) -> int:
    """``path``'s size, not following a link (0 if it is gone)."""
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def stale_files(directory: Path, now: float, max_age: float) -> list[Path]:
    """The entries of ``directory`` last modified more than ``max_age`` seconds before ``now``
    (the system's clock: files' times are), e.g. partial downloads a crash left."""
    stale = []
    for path in sorted_entries(directory):
        try:
            mtime = path.lstat().st_mtime
        except OSError:
            mtime = 0.0  # gone meanwhile: its removal is a no-op
        if now - mtime > max_age:
            stale.append(path)
    return stale
