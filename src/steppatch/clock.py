"""The one clock of a home: a callable returning the current time, timezone-aware.

Injected into :class:`~steppatch.updater.Home` (default :func:`utcnow`) and read for every record
the home keeps: the metadata expiry checks of an update session, history names, snapshot times,
tree ids (which are staged applies' tokens). Monotonic timers for timeouts are not clock readings
and stay on ``time.monotonic``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

__all__ = ["Clock", "history_stamp", "snapshot_stamp", "tree_stamp", "utcnow"]

#: returns the current time, timezone-aware; read once per update session
Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    """The default clock."""
    return dt.datetime.now(dt.UTC)


def _utc(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC)


def snapshot_stamp(now: dt.datetime) -> str:
    """A snapshot's ``created`` field: ``2026-06-01T12:00:00Z``."""
    return _utc(now).strftime("%Y-%m-%dT%H:%M:%SZ")


def history_stamp(now: dt.datetime) -> str:
    """The time part of a history entry's name: ``20260601T120000Z``."""
    return _utc(now).strftime("%Y%m%dT%H%M%SZ")


def tree_stamp(now: dt.datetime) -> str:
    """The time part of a tree id: ``20260601T120000``."""
    return _utc(now).strftime("%Y%m%dT%H%M%S")
