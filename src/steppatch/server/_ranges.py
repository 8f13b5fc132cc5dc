"""HTTP Range and conditional-request rules for immutable files (RFC 9110), no I/O.

One range per request: a multi-range request is answered with the whole file (allowed by RFC 9110
section 14.2, and no client of ours asks for more than one range).
"""

from __future__ import annotations

import re

from steppatch import _record as record

__all__ = ["ByteRange", "Unsatisfiable", "etag_matches", "parse_range"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@record.frozen
class ByteRange:
    """Bytes ``start`` to ``end`` inclusive, as in ``Content-Range: bytes start-end/length``."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """How many bytes the range holds."""
        return self.end - self.start + 1


class Unsatisfiable(ValueError):
    """The range lies wholly outside the file (HTTP 416)."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range ``header`` asks for in a file of ``size`` bytes, or ``None`` for the whole.

    A header that is absent, malformed or names several ranges is ignored (the whole file).
    Raises :class:`Unsatisfiable` when the range starts at or past the end (or is an empty
    suffix).
    """
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if m is None:
        return None
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable(header)
        return ByteRange(max(size - suffix, 0), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise Unsatisfiable(header)
    return ByteRange(start, min(end, size - 1))


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, ``*`` matches)."""
    if header is None:
        return False
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag.removeprefix("W/"):
            return True
    return False
