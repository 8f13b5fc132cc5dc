"""The bulk cap and back-off with a fake clock."""

from __future__ import annotations

import pytest

from steppatch.server._ratelimit import TokenBucket, backoff_seconds


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("chunk", [1000, 65536, 262144, 1_000_000])
def test_long_run_rate_is_the_cap(chunk: int) -> None:
    clock = FakeClock()
    bucket = TokenBucket(1_250_000, clock=clock, sleep=clock.sleep)
    total = 0
    while total < 50_000_000:
        bucket.acquire(chunk)
        total += chunk
    rate = (total - bucket.burst) / clock.now
    assert rate == pytest.approx(1_250_000, rel=0.01)


def test_idle_time_earns_one_burst_only() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, burst=100, clock=clock, sleep=clock.sleep)
    clock.now = 3600.0
    assert bucket.take(100) == 0
    assert bucket.take(100) == pytest.approx(0.1)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_backoff_is_factor_times_duration() -> None:
    assert backoff_seconds(1.5, 2.0) == 3.0  # the manual's example
    assert backoff_seconds(0, 5.0) == 0
    assert backoff_seconds(1.5, -1) == 0
