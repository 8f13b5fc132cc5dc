"""Fetching bytes from one repository location.

A :class:`Fetcher` implements one primitive, :meth:`Fetcher.fetch` (a path in, chunks out);
:func:`fetch_bytes` adds the length cap once for every implementation, so no fetcher can make the
client read more than a limit allows.
"""

from __future__ import annotations

from steppatch.transport._base import Fetcher, fetch_bytes, fetcher_for
from steppatch.transport._file import FileFetcher

__all__ = ["Fetcher", "FileFetcher", "fetch_bytes", "fetcher_for"]
