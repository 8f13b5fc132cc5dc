from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from steppatch import _record as record
from steppatch.errors import (
    MissingFile,
    NetworkError,
    RepositoryError,
    SteppatchError,
    UnknownReference,
)
from steppatch.transport._base import Fetcher
from steppatch.transport._limits import DEFAULT_TRANSPORT_LIMITS, TransportLimits
from steppatch.transport.errors import NoMirrorLeft

__all__ = ["Mirror", "MirrorPool"]

T = TypeVar("T")


@record.frozen
class Mirror:
    """One place a repository can be read from. A higher ``priority`` is tried first."""

    id: str
    url: str
    priority: int = 0
    name: str = ""


class MirrorPool:
    """Mirrors in priority order (higher first; equal priorities keep the given order).

    A mirror that fails is skipped for the rest of the pool's life (one run); the reason is kept,
    so that when every mirror has failed, :class:`NoMirrorLeft` can say why each one did.
    Fetchers are made on first use by ``connect``. Thread-safe.

    Two ways to read through the pool:

    - :meth:`call` runs a function against the current mirror, and on a mirror's fault (a
      network error, or a repository error such as bytes failing verification or a 404 of a
      listed file) marks it failed and runs the function again on the next. Use it for every
      file signed metadata lists.
    - :meth:`fetch` makes the pool a :class:`Fetcher`: a download that breaks off continues on
      the same mirror (``limits.retries`` times, if it made progress) or the next one with a
      Range request. A 404 is passed through without failover, as it may be an answer (probing
      for a newer root); the pool cannot check bytes here, the caller does.
    """

    def __init__(
        self,
        mirrors: Sequence[Mirror],
        connect: Callable[[Mirror], Fetcher],
        limits: TransportLimits = DEFAULT_TRANSPORT_LIMITS,
    ) -> None:
        ids = [m.id for m in mirrors]
        if len(set(ids)) != len(ids):
            raise ValueError(f"mirror ids must be unique: {ids}")
        # sorted() is stable: equal priorities keep the configured order.
        self.mirrors: tuple[Mirror, ...] = tuple(sorted(mirrors, key=lambda m: -m.priority))
        self.limits = limits
        self._connect = connect
        self._fetchers: dict[str, Fetcher] = {}
        self._failed: dict[str, SteppatchError] = {}
        self._lock = threading.Lock()

    @classmethod
    def single(
        cls, fetcher: Fetcher, limits: TransportLimits = DEFAULT_TRANSPORT_LIMITS
    ) -> MirrorPool:
        """A pool of one mirror, for code that takes a pool and was given a fetcher."""
        return cls([Mirror("default", fetcher.url)], lambda _m: fetcher, limits)

    def fork(self) -> MirrorPool:
        """A pool of the same mirrors and fetchers whose failures from now on are its own: for
        optional files (deltas) whose absence must not fail a mirror for the required ones."""
        pool = MirrorPool(self.mirrors, self._connect, self.limits)
        with self._lock:
            pool._fetchers = dict(self._fetchers)
            pool._failed = dict(self._failed)
        return pool

    @property
    def failed(self) -> dict[str, SteppatchError]:
        """Each failed mirror's id and its error, in the order they failed."""
        with self._lock:
            return dict(self._failed)

    @property
    def selected(self) -> Mirror | None:
        """The mirror the next request goes to (``None`` when all have failed)."""
        with self._lock:
            return next((m for m in self.mirrors if m.id not in self._failed), None)

    @property
    def url(self) -> str:
        mirror = self.selected
        return mirror.url if mirror is not None else ", ".join(m.url for m in self.mirrors)

    def current(self, what: str) -> tuple[Mirror, Fetcher]:
        """The best mirror not failed so far, and its fetcher.

        Raises :class:`NoMirrorLeft` (naming ``what``) when none is left, and whatever making the
        fetcher raises (an unusable certificate is the home's problem, not the mirror's).
        """
        with self._lock:
            for mirror in self.mirrors:
                if mirror.id in self._failed:
                    continue
                fetcher = self._fetchers.get(mirror.id)
                if fetcher is None:
                    fetcher = self._fetchers[mirror.id] = self._connect(mirror)
                return mirror, fetcher
            raise NoMirrorLeft(what, self._failed)

    def mark_failed(self, mirror: Mirror, error: SteppatchError) -> None:
        """Skip ``mirror`` from now on; the first reason given is kept."""
        with self._lock:
            self._failed.setdefault(mirror.id, error)

    def call(self, fn: Callable[[Fetcher], T], what: str, *, missing_is_failure: bool = True) -> T:
        """``fn(fetcher)`` on the best mirror, failing over on the mirror's faults.

        ``fn`` must be safe to run again (fetch, verify, return). A 404 (:class:`MissingFile`)
        fails the mirror unless ``missing_is_failure`` is false, when it is raised as is.
        :class:`UnknownReference` is the request's fault and raised as is. Raises
        :class:`NoMirrorLeft` when every mirror has failed.
        """
        while True:
            mirror, fetcher = self.current(what)
            try:
                return fn(fetcher)
            except MissingFile as e:
                if not missing_is_failure:
                    raise
                self.mark_failed(mirror, e)
            except UnknownReference:
                raise
            except (NetworkError, RepositoryError) as e:
                self.mark_failed(mirror, e)

    def fetch(self, path: str, offset: int = 0) -> Iterator[bytes]:
        """The file's bytes from ``offset`` on, continuing on another mirror if one breaks off.

        Raises :class:`MissingFile` from the first mirror that answers 404 and
        :class:`NoMirrorLeft` when every mirror has failed.
        """
        held = offset
        mirror_id = ""
        tries = 0
        while True:
            mirror, fetcher = self.current(path)
            if mirror.id != mirror_id:
                mirror_id, tries = mirror.id, 0
            start = held
            try:
                for chunk in fetcher.fetch(path, held):
                    held += len(chunk)
                    yield chunk
                return
            except NetworkError as e:
                if held > start and tries < self.limits.retries:
                    tries += 1
                    continue
                self.mark_failed(mirror, e)
