from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed

from steppatch import _record as record
from steppatch.errors import IntegrityError, MissingFile, NetworkError, TooLarge
from steppatch.store import ObjectStore
from steppatch.transport._base import Fetcher
from steppatch.transport._limits import DEFAULT_TRANSPORT_LIMITS, TransportLimits
from steppatch.transport._pool import MirrorPool
from steppatch.transport.errors import NoMirrorLeft

__all__ = ["DownloadProgress", "DownloadResult", "ObjectRequest", "download_objects"]

#: ``progress(stage, done_bytes, total_bytes)``; the stage is ``"download"``
DownloadProgress = Callable[[str, int, int], None]

# Calls of the progress callback are at most this far apart in time (and one per object).
_PROGRESS_INTERVAL = 0.1


@record.frozen
class ObjectRequest:
    """One object to download: its path in the repository, and the hash and exact length signed
    metadata gives for it."""

    path: str
    sha256: str
    length: int


@record.frozen
class DownloadResult:
    """What :func:`download_objects` did.

    ``downloaded``: objects stored now; ``present``: objects the store held already;
    ``received_bytes``: bytes taken from the network (including any that failed verification);
    ``resumed_bytes``: bytes taken from partial files of interrupted runs.
    """

    downloaded: int
    present: int
    received_bytes: int
    resumed_bytes: int


class _Cancelled(Exception):
    pass


class _Run:
    """Shared state of one call of :func:`download_objects`."""

    def __init__(
        self,
        pool: MirrorPool,
        store: ObjectStore,
        limits: TransportLimits,
        progress: DownloadProgress | None,
        total: int,
    ) -> None:
        self.pool = pool
        self.store = store
        self.limits = limits
        self.progress = progress
        self.total = total
        self.done = 0
        self.received = 0
        self.resumed = 0
        self.downloaded = 0
        self.present = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._last_report = 0.0

    def advance(self, done: int, received: int = 0, force: bool = False) -> None:
        with self._lock:
            self.done += done
            self.received += received
            now = time.monotonic()
            due = force or now - self._last_report >= _PROGRESS_INTERVAL
            if self.progress is not None and due:
                self._last_report = now
                # Called under the lock: callbacks (a progress bar) need not be thread-safe.
                self.progress("download", self.done, self.total)

    def count(self, *, downloaded: int = 0, present: int = 0, resumed: int = 0) -> None:
        with self._lock:
            self.downloaded += downloaded
            self.present += present
            self.resumed += resumed

    def get(self, req: ObjectRequest) -> None:
        if self.stop.is_set():
            raise _Cancelled
        if self.store.has(req.sha256):
            self.count(present=1)
            self.advance(req.length, force=True)
            return
        what = f"object {req.sha256}"
        part = self.store.open_partial(req.sha256, req.length, what)
        try:
            self.count(resumed=part.offset)
            self.advance(part.offset)
            restarted = False
            tries: dict[str, int] = {}
            counted = part.offset  # progress this object contributes so far
            while True:
                mirror, fetcher = self.pool.current(req.path)
                start = part.offset
                try:
                    if not part.complete:
                        for chunk in fetcher.fetch(req.path, part.offset):
                            part.write(chunk)
                            counted += len(chunk)
                            self.advance(len(chunk), len(chunk))
                            if self.stop.is_set():
                                raise _Cancelled
                    part.finish()
                    break
                except (IntegrityError, TooLarge) as e:
                    # The partial file is gone (finish and write discard it); so is its progress.
                    self.advance(-counted)
                    counted = 0
                    part.close()
                    part = self.store.open_partial(req.sha256, req.length, what)
                    if isinstance(e, IntegrityError) and start > 0 and not restarted:
                        # Bytes kept from an earlier run may be the bad ones: one fresh try here.
                        restarted = True
                        continue
                    self.pool.mark_failed(mirror, e)
                except MissingFile as e:
                    self.pool.mark_failed(mirror, e)
                except NetworkError as e:
                    used = tries.get(mirror.id, 0)
                    if part.offset > start and used < self.limits.retries:
                        tries[mirror.id] = used + 1
                        continue
                    self.pool.mark_failed(mirror, e)
        finally:
            part.close()
        self.count(downloaded=1)
        self.advance(0, force=True)


def _as_pool(source: MirrorPool | Fetcher, limits: TransportLimits) -> MirrorPool:
    return source if isinstance(source, MirrorPool) else MirrorPool.single(source, limits)


def download_objects(
    source: MirrorPool | Fetcher,
    objects: Iterable[ObjectRequest],
    store: ObjectStore,
    *,
    limits: TransportLimits | None = None,
    progress: DownloadProgress | None = None,
) -> DownloadResult:
    """Download ``objects`` into ``store``, ``limits.parallel_downloads`` at a time.

    Each object is verified (exact length, sha256) before the store holds it; until then its
    bytes live in a partial file, from which a later run resumes with an HTTP Range request.
    A mirror that fails (see :class:`MirrorPool`) is skipped and the object continues from the
    next one. On the first error that no mirror can cure, the other downloads stop (their
    partial files kept) and that error is raised: :class:`~steppatch.transport.NoMirrorLeft`
    when every mirror failed (given a single fetcher: that fetcher's own error), and
    :class:`~steppatch.errors.LockedError` or ``OSError`` from the store. ``limits`` defaults to
    the pool's. Costs one hash pass over every byte, plus one over a resumed prefix.
    """
    if limits is None:
        limits = source.limits if isinstance(source, MirrorPool) else DEFAULT_TRANSPORT_LIMITS
    pool = _as_pool(source, limits)
    unique: dict[str, ObjectRequest] = {}
    for req in objects:
        held = unique.setdefault(req.sha256, req)
        if held.length != req.length:
            raise ValueError(f"object {req.sha256} requested with two lengths")
    run = _Run(pool, store, limits, progress, sum(r.length for r in unique.values()))
    run.advance(0, force=True)
    if unique:
        workers = min(limits.parallel_downloads, len(unique))
        with ThreadPoolExecutor(workers, thread_name_prefix="steppatch-download") as executor:
            futures = [executor.submit(run.get, req) for req in unique.values()]
            error: BaseException | None = None
            try:
                for future in as_completed(futures):
                    error = future.exception()
                    if error is not None and not isinstance(error, _Cancelled):
                        break
                    error = None
            finally:
                if error is not None or sys.exc_info()[0] is not None:
                    # Stop the others between two chunks; their partial files stay.
                    run.stop.set()
                    for future in futures:
                        future.cancel()
        if error is not None:
            if (
                isinstance(error, NoMirrorLeft)
                and not isinstance(source, MirrorPool)
                and len(error.errors) == 1
            ):
                # One fetcher, not a pool: its own error says more.
                (only,) = error.errors.values()
                raise only from error
            raise error
    run.advance(0, force=True)
    return DownloadResult(run.downloaded, run.present, run.received, run.resumed)

