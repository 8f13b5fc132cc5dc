"""The updates server: serve a published repository (origin), or relay upstream servers through
a verified store (mirror). ``aiohttp.web`` in one process; see ``docs/mirror.md``. An upgrade
restarts it in place (``_restart``: SIGHUP and ``execve``, the store lock's holder from
``/proc/locks``, the admin port's health probe).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from steppatch._lazy import attach

if TYPE_CHECKING:
    from steppatch.server._app import print_ready, serve, server_ssl_context
    from steppatch.server._fleet import fleet_report
    from steppatch.server._ops import MirrorStatus, collect_mirror, mirror_status, sync_once
    from steppatch.server._restart import (
        GENERATION_VARIABLE,
        RestartFailed,
        RestartOnHangup,
        ServerRestart,
        admin_health,
        lock_holder,
        restart_server,
    )
    from steppatch.server.config import DownloadMode, MirrorConfig, load_config, parse_config
    from steppatch.server.errors import (
        MirrorConfigError,
        NotServed,
        PrivateKeyServed,
        SnapshotQuotaExceeded,
        SnapshotRateLimited,
        SnapshotRefused,
        StoreError,
        StoreFull,
        UpstreamUnavailable,
    )

__getattr__, __dir__ = attach(
    __name__,
    {
        "steppatch.server._app": ("print_ready", "serve", "server_ssl_context"),
        "steppatch.server._fleet": ("fleet_report",),
        "steppatch.server._ops": ("MirrorStatus", "collect_mirror", "mirror_status", "sync_once"),
        "steppatch.server._restart": (
            "GENERATION_VARIABLE",
            "RestartFailed",
            "RestartOnHangup",
            "ServerRestart",
            "admin_health",
            "lock_holder",
            "restart_server",
        ),
        "steppatch.server.config": ("DownloadMode", "MirrorConfig", "load_config", "parse_config"),
        "steppatch.server.errors": (
            "MirrorConfigError",
            "NotServed",
            "PrivateKeyServed",
            "SnapshotQuotaExceeded",
            "SnapshotRateLimited",
            "SnapshotRefused",
            "StoreError",
            "StoreFull",
            "UpstreamUnavailable",
        ),
    },
)

__all__ = [
    "GENERATION_VARIABLE",
    "DownloadMode",
    "MirrorConfig",
    "MirrorConfigError",
    "MirrorStatus",
    "NotServed",
    "PrivateKeyServed",
    "RestartFailed",
    "RestartOnHangup",
    "ServerRestart",
    "SnapshotQuotaExceeded",
    "SnapshotRateLimited",
    "SnapshotRefused",
    "StoreError",
    "StoreFull",
    "UpstreamUnavailable",
    "admin_health",
    "collect_mirror",
    "fleet_report",
    "load_config",
    "lock_holder",
    "mirror_status",
    "parse_config",
    "print_ready",
    "restart_server",
    "serve",
    "server_ssl_context",
    "sync_once",
]
