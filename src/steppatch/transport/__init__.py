"""Fetching bytes from repositories and mirrors.

A :class:`Fetcher` implements one primitive, :meth:`Fetcher.fetch` (a path and an offset in,
chunks out); :func:`fetch_capped` (and :func:`fetch_bytes`, which joins its chunks) adds the
length cap once for every implementation, while reading, so no fetcher can make the client read
more than a limit allows. :class:`FileFetcher` reads a local directory,
:class:`HttpsFetcher` a mirror over HTTPS with a client certificate, pinned to a private CA.
:class:`MirrorPool` tries mirrors by priority and fails over; :func:`download_objects` downloads
many objects in parallel into an :class:`~steppatch.store.ObjectStore`, resumably.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from steppatch._lazy import attach

if TYPE_CHECKING:
    from steppatch.transport._base import Fetcher, fetch_bytes, fetch_capped, fetcher_for
    from steppatch.transport._download import (
        DownloadProgress,
        DownloadResult,
        ObjectRequest,
        download_objects,
    )
    from steppatch.transport._file import FileFetcher
    from steppatch.transport._https import HttpsFetcher, TlsConfig, TlsIdentity, make_ssl_context
    from steppatch.transport._limits import DEFAULT_TRANSPORT_LIMITS, TransportLimits
    from steppatch.transport._pool import Mirror, MirrorPool
    from steppatch.transport._probe import PingCheck, probe_connection
    from steppatch.transport.errors import (
        ConnectionFailed,
        HttpStatusError,
        NoMirrorLeft,
        TimedOut,
        TlsError,
        TlsProblem,
    )

__getattr__, __dir__ = attach(
    __name__,
    {
        "steppatch.transport._base": ("Fetcher", "fetch_bytes", "fetch_capped", "fetcher_for"),
        "steppatch.transport._download": (
            "DownloadProgress",
            "DownloadResult",
            "ObjectRequest",
            "download_objects",
        ),
        "steppatch.transport._file": ("FileFetcher",),
        "steppatch.transport._https": (
            "HttpsFetcher",
            "TlsConfig",
            "TlsIdentity",
            "make_ssl_context",
    "probe_connection",
        ),
        "steppatch.transport._limits": ("DEFAULT_TRANSPORT_LIMITS", "TransportLimits"),
        "steppatch.transport._pool": ("Mirror", "MirrorPool"),
        "steppatch.transport._probe": ("PingCheck", "probe_connection"),
        "steppatch.transport.errors": (
            "ConnectionFailed",
            "HttpStatusError",
            "NoMirrorLeft",
            "TimedOut",
            "TlsError",
            "TlsProblem",
        ),
    },
)

__all__ = [
    "DEFAULT_TRANSPORT_LIMITS",
    "ConnectionFailed",
    "DownloadProgress",
    "DownloadResult",
    "Fetcher",
    "FileFetcher",
    "HttpStatusError",
    "HttpsFetcher",
    "Mirror",
    "MirrorPool",
    "NoMirrorLeft",
    "ObjectRequest",
    "PingCheck",
    "TimedOut",
    "TlsConfig",
    "TlsError",
    "TlsIdentity",
    "TlsProblem",
    "TransportLimits",
    "download_objects",
    "fetch_bytes",
    "fetch_capped",
    "fetcher_for",
    "make_ssl_context",
    "probe_connection",
]
