"""Request coalescing: one fill per key, however many requests wait on it.

The fill runs as its own task: a waiter that goes away (a client that disconnects) stops waiting
but does not cancel the fill, so the next request finds the object stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Runs at most one ``start()`` per key at a time; every caller gets its result.

    ``started`` and ``joined`` count fills begun and requests that waited on a running one.
    """

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[T]] = {}
        self.started = 0
        self.joined = 0

    def running(self, key: str) -> bool:
        """Whether a fill for ``key`` is under way."""
        return key in self._running

    def __len__(self) -> int:
        return len(self._running)

    async def run(self, key: str, start: Callable[[], Awaitable[T]]) -> T:
        """The result of the one fill of ``key``, started now unless one runs already.

        Raises what the fill raises (to every waiter). Cancelling the caller does not cancel the
        fill.
        """
        future = self._running.get(key)
        if future is None:
            future = asyncio.ensure_future(start())
            self._running[key] = future
            self.started += 1
            future.add_done_callback(lambda f: self._done(key, f))
        else:
            self.joined += 1
        return await asyncio.shield(future)

    def _done(self, key: str, future: asyncio.Future[T]) -> None:
        if self._running.get(key) is future:
            del self._running[key]
        # Retrieve the outcome so that a fill nobody waits for any more logs no warning; its
        # error was recorded by the fill itself.
        if not future.cancelled():
            future.exception()

    async def wait_all(self) -> None:
        """Wait for every running fill to end (on shutdown)."""
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
