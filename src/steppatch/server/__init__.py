"""The updates server: serve a published repository (origin), or relay upstream servers through
a verified store (mirror). ``aiohttp.web`` in one process; see ``docs/mirror.md``.
"""

from __future__ import annotations

from steppatch.server._app import print_ready, serve, server_ssl_context
from steppatch.server._ops import MirrorStatus, mirror_status, sync_once
from steppatch.server.config import DownloadMode, MirrorConfig, load_config, parse_config
from steppatch.server.errors import (
    MirrorConfigError,
    NotServed,
    PrivateKeyServed,
    SnapshotRefused,
    StoreError,
    StoreFull,
    UpstreamUnavailable,
)

__all__ = [
    "DownloadMode",
    "MirrorConfig",
    "MirrorConfigError",
    "MirrorStatus",
    "NotServed",
    "PrivateKeyServed",
    "SnapshotRefused",
    "StoreError",
    "StoreFull",
    "UpstreamUnavailable",
    "load_config",
    "mirror_status",
    "parse_config",
    "print_ready",
    "serve",
    "server_ssl_context",
    "sync_once",
]
