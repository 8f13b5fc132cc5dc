"""One fill per key with fakes: many waiters, failures shared, cancelled waiters."""

from __future__ import annotations

import asyncio

import pytest

from steppatch.server._coalesce import Coalescer


def test_many_waiters_one_fill() -> None:
    async def main() -> None:
        c: Coalescer[bytes] = Coalescer()
        calls = 0
        gate = asyncio.Event()

        async def fill() -> bytes:
            nonlocal calls
            calls += 1
            await gate.wait()
            return b"verified"

        waiters = [asyncio.create_task(c.run("k", fill)) for _ in range(100)]
        await asyncio.sleep(0)
        assert c.running("k")
        gate.set()
        assert await asyncio.gather(*waiters) == [b"verified"] * 100
        assert calls == 1 and c.started == 1 and c.joined == 99
        assert not c.running("k")
        # Done: the next request starts a new fill.
        assert await c.run("k", fill) == b"verified" and calls == 2

    asyncio.run(main())


def test_failure_reaches_every_waiter_and_is_not_cached() -> None:
    async def main() -> None:
        c: Coalescer[int] = Coalescer()

        async def bad() -> int:
            await asyncio.sleep(0.01)
            raise OSError("upstream broke")

        results = await asyncio.gather(*(c.run("k", bad) for _ in range(5)),
                                       return_exceptions=True)
        assert all(isinstance(r, OSError) for r in results)
        assert c.started == 1

        async def good() -> int:
            return 7

        assert await c.run("k", good) == 7

    asyncio.run(main())


def test_cancelled_waiter_does_not_cancel_the_fill() -> None:
    async def main() -> None:
        c: Coalescer[str] = Coalescer()
        finished = asyncio.Event()

        async def fill() -> str:
            await asyncio.sleep(0.05)
            finished.set()
            return "stored"

        waiter = asyncio.create_task(c.run("k", fill))
        await asyncio.sleep(0.01)
        waiter.cancel()  # the client disconnected
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.wait_for(finished.wait(), 1)
        await c.wait_all()
        assert not c.running("k")

    asyncio.run(main())
