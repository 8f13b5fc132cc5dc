"""Reading a tree on disk back: its entries (for sync and snapshots) and its drift (verify)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from steppatch._heap import gc_paused
from steppatch.home._hash_helper import (
    BOOTSTRAP,
    NOT_A_FILE,
    OPEN_DIR,
    OPEN_FILE,
    RECORD,
    encode_work,
    hash_dirs,
)
from steppatch.model import EntryKind, FileEntry

if TYPE_CHECKING:
    from steppatch.plan import Drift

__all__ = ["check_tree", "gc_paused", "scan_tree"]

#: the regular files of one directory: its path relative to the root ("" for the root) and names
_Dir = tuple[str, list[str]]
#: below this many files a helper process (about 15 ms to start) costs more than it saves
_HELPER_MIN_FILES = 2000
_SMALL = 1024 * 1024


def _walk(
    base: str, lstat_files: bool, many: Callable[[], None] | None = None
) -> tuple[dict[str, FileEntry], list[_Dir]]:
    """Every entry below ``base`` that is not a regular file, and the regular files by directory.

    With ``lstat_files`` the files are also returned as entries (mode and size from ``lstat``,
    no hash). The file type comes from the directory listing (``d_type``): a regular file costs
    no system call here. Links are never followed. ``many`` is called once, as soon as the walk
    has found enough files to share them with helpers. Raises ``OSError``.
    """
    entries: dict[str, FileEntry] = {}
    dirs: list[_Dir] = []
    stack = [""]
    found = 0
    while stack:
        prefix = stack.pop()
        names: list[str] = []
        with os.scandir(f"{base}/{prefix}" if prefix else base) as it:
            for item in it:
                rel = f"{prefix}/{item.name}" if prefix else item.name
                if item.is_file(follow_symlinks=False) and not lstat_files:
                    names.append(item.name)
                    continue
                st = item.stat(follow_symlinks=False)
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISREG(st.st_mode):
                    names.append(item.name)
                    entries[rel] = FileEntry(rel, EntryKind.FILE, mode, st.st_size)
                elif stat.S_ISLNK(st.st_mode):
                    target = os.readlink(item.path)
                    entries[rel] = FileEntry(rel, EntryKind.SYMLINK, 0o777, target=target)
                elif stat.S_ISDIR(st.st_mode):
                    entries[rel] = FileEntry(rel, EntryKind.DIR, mode)
                    stack.append(rel)
                else:
                    # A fifo, socket or device: never read, always drift.
                    entries[rel] = FileEntry(rel, EntryKind.FILE, mode, 0, "special")
        if names:
            dirs.append((prefix, names))
            found += len(names)
            if many is not None and found >= _HELPER_MIN_FILES:
                many()
                many = None
    return entries, dirs


def _paths(dirs: Sequence[_Dir]) -> Iterator[str]:
    for prefix, names in dirs:
        for name in names:
            yield f"{prefix}/{name}" if prefix else name


class _Helper:
    """A helper process hashing one share of the files (see ``_hash_helper``): started first,
    given its share once the walk has found the files (its interpreter starts meanwhile)."""

    def __init__(self) -> None:
        self.share: list[_Dir] = []
        self.count = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", BOOTSTRAP, str(Path(__file__).parent)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self._feeder: threading.Thread | None = None

    def give(self, base: str, share: list[_Dir]) -> None:
        """Send the helper its share of the files."""
        self.share = share
        self.count = sum(len(names) for _prefix, names in share)
        # Fed from a thread: the helper reads its work only once its interpreter has started.
        self._feeder = threading.Thread(target=self._feed, args=(encode_work(base, share),))
        self._feeder.start()

    def _feed(self, work: bytes) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # a helper that died is noticed by results()
            self.proc.stdin.write(work)
            self.proc.stdin.close()

    def results(self) -> list[tuple[int, int, bytes]] | None:
        """One record per file of the share, in order; ``None`` if the helper failed."""
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self.proc.wait()
        if self._feeder is not None:
            self._feeder.join()
        if self.proc.returncode != 0 or len(out) != RECORD.size * self.count:
            return None
        return list(RECORD.iter_unpack(out))

    def stop(self) -> None:
        """End the helper if it still runs, and release its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._feeder is not None:
            self._feeder.join()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class _Helpers:
    """The helper processes of one scan, started as soon as the walk finds many files."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.started: list[_Helper] = []

    def start(self) -> None:
        """Start ``workers - 1`` helpers, unless there is no interpreter to run (a frozen
        program) or one cannot start (then none is used)."""
        if self.workers < 2 or getattr(sys, "frozen", False) or not sys.executable:
            return
        try:
            for _ in range(self.workers - 1):
                self.started.append(_Helper())
        except OSError:
            self.stop()

    def stop(self) -> None:
        """End the helpers still running."""
        for helper in self.started:
            helper.stop()
        self.started = []


def _start_helpers(
    base: str, dirs: list[_Dir], helpers: _Helpers, own_weight: float
) -> tuple[list[_Dir], list[_Helper]]:
    """Split the files among this process and the started helpers; give each its share.

    This process's share is ``own_weight`` times a helper's (it has other work meanwhile).
    Returns this process's share and the helpers given work; none when there are few files or
    no helper started: then this process does it all.
    """
    total = sum(len(names) for _prefix, names in dirs)
    if total < _HELPER_MIN_FILES or not helpers.started:
        helpers.stop()
        return dirs, []
    workers = len(helpers.started) + 1
    own_count = round(total * own_weight / (own_weight + workers - 1))
    sizes = [own_count, *_split(total - own_count, workers - 1)]
    shares: list[list[_Dir]] = [[] for _ in sizes]
    at, room = 0, sizes[0]
    for prefix, names in dirs:
        # Whole directories where they fit, so that each is opened once; a large one is split.
        start = 0
        while start < len(names):
            while room == 0 and at < len(sizes) - 1:
                at += 1
                room = sizes[at]
            take = len(names) - start if at == len(sizes) - 1 else min(room, len(names) - start)
            shares[at].append((prefix, names[start : start + take]))
            start += take
            room -= take
    for helper, share in zip(helpers.started, shares[1:], strict=True):
        helper.give(base, share)
    return shares[0], helpers.started


def _split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` near-equal whole numbers."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def scan_tree(root: Path, *, hashes: bool, workers: int = 2) -> dict[str, FileEntry]:
    """Every entry below ``root`` (links not followed), as :class:`FileEntry` values, by path.

    With ``hashes``, files carry their sha256 (and the mode and size of the bytes read), hashed
    by this process and ``workers - 1`` helper processes; without, ``sha256`` is ``None``.
    Anything that is not a file, directory or symlink is reported as a file whose hash is
    ``"special"``, so that it always counts as drift. Raises ``OSError``. Cost: one ``lstat`` per
    entry, or with ``hashes`` one open, fstat and read of every file.
    """
    with gc_paused():
        return _scan(str(root), hashes, workers)


def _scan(base: str, hashes: bool, workers: int) -> dict[str, FileEntry]:
    pool = _Helpers(workers)
    try:
        entries, dirs = _walk(base, lstat_files=not hashes, many=pool.start if hashes else None)
        if not hashes:
            return dict(sorted(entries.items()))
        own, helpers = _start_helpers(base, dirs, pool, own_weight=1.0)
        found = [(own, hash_dirs(base, own))]
        for helper in helpers:
            found.append((helper.share, helper.results() or hash_dirs(base, helper.share)))
    finally:
        pool.stop()
    if hashes:
        for share, records in found:
            for rel, (mode, size, digest) in zip(_paths(share), records, strict=True):
                if mode == NOT_A_FILE:
                    entries[rel] = FileEntry(rel, EntryKind.FILE, 0, 0, "special")
                else:
                    entries[rel] = FileEntry(
                        rel, EntryKind.FILE, stat.S_IMODE(mode), size, digest.hex()
                    )
    return dict(sorted(entries.items()))


def check_tree(
    root: Path,
    expected: Mapping[str, FileEntry] | Callable[[], Mapping[str, FileEntry]],
    *,
    workers: int = 2,
) -> Drift:
    """How the tree below ``root`` differs from ``expected``: what ``diff_tree`` says of a hashed
    :func:`scan_tree`, with less work.

    ``expected`` may be a function that loads the entries: it is called once the helper
    processes hash, so that loading and hashing overlap. In this process a file is read only
    when it is expected as a file of the mode and size found (otherwise it differs without a
    hash, or is extra); every such file is hashed, size and time are never trusted alone.
    Raises ``OSError`` if the tree cannot be read, and what ``expected`` raises. Cost: the walk,
    then one open, fstat and read per file, shared by this process and ``workers - 1`` helpers.
    """
    with gc_paused():
        return _check(str(root), expected, workers)


def _check(
    base: str,
    expected: Mapping[str, FileEntry] | Callable[[], Mapping[str, FileEntry]],
    workers: int,
) -> Drift:
    # plans load with the first check, not with the home (`status` reads the state only)
    from steppatch.plan import drift_from, same_entry

    pool = _Helpers(workers)
    try:
        # The helpers' interpreters start while the walk goes on.
        others, dirs = _walk(base, lstat_files=False, many=pool.start)
        # Loading the manifests takes this process about as long as hashing a fifth of the files
        # (measured, 100,000 files): the helpers take more so that both finish together.
        own, helpers = _start_helpers(
            base, dirs, pool, own_weight=0.6 if callable(expected) else 1.0
        )
        wanted = expected() if callable(expected) else expected
        changed: list[str] = []
        extra: list[str] = []
        seen = 0
        for path, found in others.items():
            want = wanted.get(path)
            if want is None:
                extra.append(path)
                continue
            seen += 1
            if not same_entry(want, found):
                changed.append(path)
        seen += _check_own(base, own, wanted, changed, extra)
        for helper in helpers:
            records = helper.results() or hash_dirs(base, helper.share)
            seen += _check_records(helper.share, records, wanted, changed, extra)
    finally:
        pool.stop()
    if seen == len(wanted):
        missing: Sequence[str] = ()
    else:
        found_paths = set(others)
        found_paths.update(_paths(dirs))
        missing = [p for p in wanted if p not in found_paths]
    return drift_from(changed, missing, extra)


def _check_own(
    base: str,
    dirs: Sequence[_Dir],
    expected: Mapping[str, FileEntry],
    changed: list[str],
    extra: list[str],
) -> int:
    """Compare the files of ``dirs`` with ``expected``, adding to ``changed`` and ``extra``;
    returns how many were expected. The loop every file goes through in this process: names
    bound locally, the common case (a small file, whole in one read) inline."""
    seen = 0
    file_kind = EntryKind.FILE
    open_, fstat, read, close, sha256 = os.open, os.fstat, os.read, os.close, hashlib.sha256
    is_reg, imode = stat.S_ISREG, stat.S_IMODE
    for prefix, names in dirs:
        dfd = open_(f"{base}/{prefix}" if prefix else base, OPEN_DIR)
        try:
            for name in names:
                rel = f"{prefix}/{name}" if prefix else name
                want = expected.get(rel)
                if want is None:
                    extra.append(rel)
                    continue
                seen += 1
                if want.kind is not file_kind:
                    changed.append(rel)
                    continue
                try:
                    fd = open_(name, OPEN_FILE, dir_fd=dfd)
                except OSError:
                    changed.append(rel)  # replaced by a link or removed since the walk
                    continue
                try:
                    st = fstat(fd)
                    size = st.st_size
                    if (
                        not is_reg(st.st_mode)
                        or imode(st.st_mode) != want.mode
                        or size != want.size
                    ):
                        changed.append(rel)
                        continue
                    if size < _SMALL:
                        data = read(fd, size + 1)
                        if len(data) == size:
                            if sha256(data).hexdigest() != want.sha256:
                                changed.append(rel)
                            continue
                finally:
                    close(fd)
                # Large, or changed while being read: the careful path, from the start.
                mode, size, digest = hash_dirs(base, [(prefix, [name])])[0]
                if mode == NOT_A_FILE or (imode(mode), size, digest.hex()) != (
                    want.mode, want.size, want.sha256
                ):
                    changed.append(rel)
        finally:
            close(dfd)
    return seen


def _check_records(
    dirs: Sequence[_Dir],
    records: Sequence[tuple[int, int, bytes]],
    expected: Mapping[str, FileEntry],
    changed: list[str],
    extra: list[str],
) -> int:
    """As :func:`_check_own`, for files a helper hashed (``records``, in the order of ``dirs``)."""
    # The loop every file a helper hashed goes through: names bound locally.
    seen = 0
    file_kind, get, imode = EntryKind.FILE, expected.get, stat.S_IMODE
    for rel, (mode, size, digest) in zip(_paths(dirs), records, strict=True):
        want = get(rel)
        if want is None:
            extra.append(rel)
            continue
        seen += 1
        if (
            size != want.size
            or want.kind is not file_kind
            or mode == NOT_A_FILE
            or imode(mode) != want.mode
            or digest.hex() != want.sha256
        ):
            changed.append(rel)
    return seen
