"""The bulk processes' bandwidth cap and back-off, as plain values with an injected clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["TokenBucket", "backoff_seconds"]


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
