"""The one time format of metadata: UTC to the second, ``2026-12-01T00:00:00Z``."""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["format_time", "parse_time", "require_aware"]

_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def require_aware(moment: datetime, name: str) -> datetime:
    """``moment`` converted to UTC. Raises ValueError if it is naive (a clock without a zone)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """``moment`` in metadata form; sub-second parts are dropped. Raises ValueError if naive."""
    return require_aware(moment, "time").strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An aware UTC datetime from metadata form. Raises ValueError for any other form."""
    if not _TIME.fullmatch(text):
        raise ValueError(f"expected a time like 2026-12-01T00:00:00Z, got {text[:40]!r}")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
