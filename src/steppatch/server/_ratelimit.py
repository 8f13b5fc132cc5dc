"""The bulk processes' bandwidth cap and back-off, as plain values with an injected clock."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["TokenBucket", "UploadRate", "backoff_seconds"]


def backoff_seconds(factor: float, took: float) -> float:
    """How long a bulk process sleeps after a download that took ``took`` seconds (the manual's
    ``bulkBackoffFactor``: 2 s at 1.5 -> 3 s)."""
    return max(factor * took, 0.0)


class TokenBucket:
    """``rate`` bytes per second on average, bursts up to ``burst`` bytes.

    Callers take the bytes first and then wait off the debt (:meth:`take` returns the wait), so
    a chunk larger than the burst is still allowed and the long-run rate stays exact.
    Thread-safe; :meth:`acquire` sleeps in the calling thread (a fill's worker thread).
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.rate = rate
        # A tenth of a second's worth: small enough that a window of a second is within a few
        # percent of the cap, large enough not to sleep after every small chunk.
        self.burst = burst if burst is not None else rate / 10
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def take(self, n: int) -> float:
        """Take ``n`` bytes; the seconds to wait before taking more."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            return max(-self._tokens / self.rate, 0.0)

    def acquire(self, n: int) -> float:
        """Take ``n`` bytes and sleep off any debt; the seconds slept."""
        wait = self.take(n)
        if wait > 0:
            self._sleep(wait)
        return wait


#: table size at which :class:`UploadRate` first forgets idle keys (then at twice what is left)
_PRUNE_AT = 1024


class UploadRate:
    """At most ``per_minute`` uploads a minute for each key (a system), in bursts of up to that
    many (at least one); ``0`` means no limit. Thread-safe, with an injected clock.

    Memory: one entry per key seen recently; entries that have filled up again are forgotten
    whenever the table doubles, so the table holds only keys that uploaded in the last minute.
    """

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 0:
            raise ValueError(f"per_minute must be >= 0, not {per_minute}")
        self.per_second = per_minute / 60
        self.burst = max(per_minute, 1.0)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._prune_at = _PRUNE_AT
        self._lock = threading.Lock()

    def take(self, key: str) -> int:
        """Count one upload for ``key``: ``0`` when allowed, else the whole seconds to wait
        (nothing is counted then)."""
        if self.per_second == 0:
            return 0
        with self._lock:
            now = self._clock()
            tokens, when = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - when) * self.per_second)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return max(math.ceil((1 - tokens) / self.per_second), 1)
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) >= self._prune_at:
                self._prune(now)
            return 0

    def _prune(self, now: float) -> None:
        full = [k for k, (t, w) in self._buckets.items()
                if t + (now - w) * self.per_second >= self.burst]
        for key in full:
            del self._buckets[key]
        self._prune_at = max(_PRUNE_AT, 2 * len(self._buckets))

    def __len__(self) -> int:
        return len(self._buckets)
