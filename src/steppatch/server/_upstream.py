"""A mirror's upstreams: ordered failover (the transport's :class:`MirrorPool`) plus a memory of
which upstreams failed lately, so that a request does not wait on a server known to be down.

Blocking: runs in the server's worker threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from steppatch.errors import NetworkError, SteppatchError
from steppatch.server._metrics import Metrics
from steppatch.server.config import MirrorConfig
from steppatch.server.errors import UpstreamUnavailable
from steppatch.transport import (
    Fetcher,
    HttpsFetcher,
    Mirror,
    MirrorPool,
    NoMirrorLeft,
    TlsConfig,
    TransportLimits,
    fetcher_for,
)

__all__ = ["Upstreams"]

T = TypeVar("T")


class Upstreams:
    """The configured upstreams, tried in priority order.

    A pool from the transport marks a mirror failed for its whole life (one home's run); a server
    lives for months, so each operation gets a fresh pool over the upstreams that have not failed
    in the last ``upstream_retry_s`` seconds. Fetchers (and their connection pools) are kept.
    """

    def __init__(
        self,
        config: MirrorConfig,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.mirrors = tuple(Mirror(u.id, u.url, u.priority, u.name) for u in config.upstreams)
        tls = config.upstream_tls
        self._tls = (
            None if tls is None else TlsConfig(ca_file=tls.ca, cert_file=tls.cert, key_file=tls.key)
        )
        self.limits = TransportLimits(
            connect_timeout_seconds=config.upstream_connect_timeout_s,
            read_timeout_seconds=config.upstream_read_timeout_s,
            parallel_downloads=config.workers,
            # A failed download moves on to the next upstream, resuming from the bytes held.
            retries=0,
        )
        self._fetchers: dict[str, Fetcher] = {}
        self._ids: dict[str, str] = {}
        self._down_until: dict[str, float] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()

    def _connect(self, mirror: Mirror) -> Fetcher:
        with self._lock:
            fetcher = self._fetchers.get(mirror.id)
            if fetcher is None:
                fetcher = fetcher_for(mirror.url, self._tls, self.limits)
                self._fetchers[mirror.id] = fetcher
                self._ids[fetcher.url] = mirror.id
            return fetcher

    def id_of(self, fetcher: Fetcher) -> str:
        """The id of the upstream ``fetcher`` reads from."""
        with self._lock:
            return self._ids.get(fetcher.url, fetcher.url)

    def errors(self) -> dict[str, str]:
        """Why each upstream failed last (cleared when it next succeeds)."""
        with self._lock:
            return dict(self._errors)

    def down(self) -> list[str]:
        """The ids of upstreams skipped now because they failed lately."""
        now = self.clock()
        with self._lock:
            return [m for m, until in self._down_until.items() if until > now]

    def retry_after(self) -> int:
        """Seconds until a skipped upstream is tried again (at least 1)."""
        now = self.clock()
        with self._lock:
            waits = [until - now for until in self._down_until.values() if until > now]
        return max(1, int(min(waits, default=1) + 0.999))

    def call(
        self, fn: Callable[[Fetcher], T], what: str, *, probe: bool = False, optional: bool = False
    ) -> T:
        """``fn(fetcher)`` on the best upstream, failing over on an upstream's faults.

        ``probe`` tries upstreams that failed lately too (the periodic metadata poll, which is
        how a recovered upstream is noticed). Raises :class:`UpstreamUnavailable` (fast, without
        a try, when every upstream failed lately and ``probe`` is false), and what ``fn`` raises
        that is not an upstream's fault (``OSError`` from the store, configuration errors).
        ``optional`` content (deltas, transfers documents: an upstream of an older version has
        none) does not count against an upstream when it fails.
        """
        now = self.clock()
        with self._lock:
            usable = [
                m for m in self.mirrors if probe or self._down_until.get(m.id, 0.0) <= now
            ]
            reasons = {m.id: self._errors.get(m.id, "failed lately") for m in self.mirrors}
        if not usable:
            raise UpstreamUnavailable(what, reasons, self.retry_after())
        pool = MirrorPool(usable, self._connect, self.limits)
        try:
            result = pool.call(fn, what)
        except NoMirrorLeft as e:
            if not optional:
                self._record(pool.failed)
            raise UpstreamUnavailable(what, e.reasons, self.retry_after()) from e
        if not optional:
            self._record(pool.failed)
        used = pool.selected
        if used is not None:
            with self._lock:
                self._down_until.pop(used.id, None)
                self._errors.pop(used.id, None)
        return result

    def put(self, path: str, data: bytes) -> int:
        """Send ``data`` to ``path`` on the first ``https://`` upstream (by priority) that
        answers, and return its HTTP status (snapshot forwarding).

        Goes through the same pinned fetcher as every read: the private CA only, the mirror's
        client certificate, no proxy, ``.netrc`` or CA bundle from the environment, no
        redirect followed, the answer's body not read. Raises the last upstream's
        :class:`NetworkError` when none could be reached, and a :class:`NetworkError` naming
        ``path`` when no upstream is ``https://``.
        """
        error: NetworkError | None = None
        for mirror in sorted(self.mirrors, key=lambda m: -m.priority):
            fetcher = self._connect(mirror) if mirror.url.startswith("https:") else None
            if not isinstance(fetcher, HttpsFetcher):
                continue
            try:
                return fetcher.put(path, data)
            except NetworkError as e:
                error = e
        if error is None:
            raise NetworkError(path, "no https:// upstream to send it to")
        raise error

    def _record(self, failed: dict[str, SteppatchError]) -> None:
        until = self.clock() + self.config.upstream_retry_s
        with self._lock:
            for mirror_id, error in failed.items():
                self._errors[mirror_id] = str(error)
                kind = "network" if isinstance(error, NetworkError) else "content"
                self.metrics.inc("upstream_errors_total", upstream=mirror_id, kind=kind)
                # Bad bytes or a missing listed file are the upstream's fault too, but only a
                # network failure says it is down: other files may still come from it.
                if isinstance(error, NetworkError):
                    self._down_until[mirror_id] = until

    def close(self) -> None:
        """Close every upstream connection."""
        with self._lock:
            fetchers = list(self._fetchers.values())
            self._fetchers.clear()
        for f in fetchers:
            close = getattr(f, "close", None)
            if close is not None:
                close()
