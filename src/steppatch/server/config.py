"""``mirror.toml``: the updates server's configuration, parsed into one frozen value.

Relative paths are taken relative to the directory of the config file. Unknown keys are refused, so
a typo does not pass silently. Every error names the field at fault (``docs/mirror.md`` lists them).
"""

from __future__ import annotations

import enum
import ipaddress
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from steppatch import _record as record
from steppatch._toml import TomlProblem, parse_toml
from steppatch.server.errors import MirrorConfigError

__all__ = [
    "Address",
    "DownloadMode",
    "MirrorConfig",
    "OriginConfig",
    "ServerTls",
    "Upstream",
    "UpstreamTls",
    "load_config",
    "parse_config",
]


class DownloadMode(enum.Enum):
    """What a mirror downloads before clients ask (the manuals' ``download`` option)."""

    HISTORIC = "HISTORIC"
    RELEASED = "RELEASED"
    ON_DEMAND = "ON_DEMAND"


@record.frozen
class Address:
    """A host and port to listen on."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@record.frozen
class ServerTls:
    """The service port's certificate, the CA its clients' certificates must be issued by, and
    the CRL they are checked against (reloaded when it changes, looked at every ``crl_poll_s``)."""

    cert: Path
    key: Path
    client_ca: Path
    crl: Path | None = None
    crl_poll_s: float = 5.0


@record.frozen
class UpstreamTls:
    """What a mirror presents to its upstreams (``cert``, ``key``) and the CA it pins them to."""

    cert: Path | None
    key: Path | None
    ca: Path


@record.frozen
class OriginConfig:
    """Origin mode: the published repository directory served read-only."""

    repository: Path


@record.frozen
class Upstream:
    """One server a mirror relays; a higher ``priority`` is tried first."""

    id: str
    url: str
    priority: int = 0
    name: str = ""


@record.frozen
class MirrorConfig:
    """The whole of ``mirror.toml``. Exactly one of ``origin`` and ``upstreams`` is set."""

    source: str
    listen: Address
    admin_listen: Address
    store: Path
    tls: ServerTls
    download: DownloadMode = DownloadMode.RELEASED
    bulk_download_mbit_per_s: float = 10.0
    bulk_backoff_factor: float = 1.5
    poll_interval_s: float = 300.0
    metadata_max_age_s: float = 60.0
    upstream_retry_s: float = 30.0
    upstream_connect_timeout_s: float = 5.0
    upstream_read_timeout_s: float = 30.0
    workers: int = 16
    shutdown_timeout_s: float = 10.0
    access_log: Path | None = None
    accept_snapshots: bool = True
    #: thin snapshot uploads: kept per system, bytes per uploader, uploads per minute per system
    #: (0: no limit), entries waiting to be forwarded (a mirror)
    snapshot_keep: int = 20
    snapshot_quota_bytes: int = 256 * 1024 * 1024
    snapshot_rate: float = 6.0
    snapshot_outbox_max: int = 1000
    #: the fleet pages: a system silent for longer than this is stale
    stale_after_days: float = 7.0
    #: garbage collection: content the last ``keep_indexes`` verified indexes name is kept;
    #: the server collects every ``gc_interval_s`` seconds (0: never; ``mirror gc`` still does)
    keep_indexes: int = 10
    gc_interval_s: float = 86400.0
    trusted_root: Path | None = None
    origin: OriginConfig | None = None
    upstreams: tuple[Upstream, ...] = ()
    upstream_tls: UpstreamTls | None = None
    admin_token: str | None = record.field(default=None, repr=False)

    @property
    def is_mirror(self) -> bool:
        """Whether this server relays upstreams (else it is an origin)."""
        return self.origin is None

    @property
    def bulk_bytes_per_s(self) -> float:
        """The bulk cap in bytes per second (per bulk process)."""
        return self.bulk_download_mbit_per_s * 1_000_000 / 8


_TOP = {
    "listen", "admin_listen", "store", "download", "bulk_download_mbit_per_s",
    "bulk_backoff_factor", "poll_interval_s", "metadata_max_age_s", "upstream_retry_s",
    "upstream_connect_timeout_s", "upstream_read_timeout_s", "workers", "shutdown_timeout_s",
    "access_log", "accept_snapshots", "trusted_root", "tls", "origin", "upstreams",
    "upstream_tls", "admin_token", "stale_after_days", "keep_indexes", "gc_interval_s",
}  # fmt: skip
_SNAPSHOT_KEYS = {"snapshot_keep", "snapshot_quota_bytes", "snapshot_rate", "snapshot_outbox_max"}
#: the shortest admin token accepted (about 96 bits from `openssl rand -base64 12`)
MIN_ADMIN_TOKEN = 16


class _Reader:
    """Typed access to one TOML table; every failure names ``prefix`` + the key."""

    def __init__(self, table: Mapping[str, Any], prefix: str, source: str, base: Path) -> None:
        self.table = table
        self.prefix = prefix
        self.source = source
        self.base = base

    def fail(self, key: str | None, problem: str) -> MirrorConfigError:
        field = f"{self.prefix}{key}" if key else (self.prefix.rstrip(".") or None)
        return MirrorConfigError(self.source, field, problem)

    def only(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise self.fail(key, f"unknown key (expected one of {sorted(allowed)})")

    def has(self, key: str) -> bool:
        return key in self.table

    def str_(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if value is None:
            raise self.fail(key, "missing (required)")
        if not isinstance(value, str) or not value:
            raise self.fail(key, "expected a non-empty string")
        return value

    def number(self, key: str, default: float, *, minimum: float, exclusive: bool) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, "expected a number")
        # float() of an integer of 309 digits or more overflows; nan compares false to anything
        number = float(value) if isinstance(value, float) or abs(value) < 2**1023 else math.inf
        if not math.isfinite(number):
            raise self.fail(key, "expected a finite number")
        if number < minimum or (exclusive and number == minimum):
            raise self.fail(key, f"must be {'>' if exclusive else '>='} {minimum:g}, not {value}")
        return number

    def integer(self, key: str, default: int, minimum: int) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "expected an integer")
        if value < minimum:
            raise self.fail(key, f"must be >= {minimum}, not {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "expected true or false")
        return value

    def path(self, key: str, required: bool = True) -> Path | None:
        if key not in self.table and not required:
            return None
        return self.base / self.str_(key)

    def address(self, key: str, default: str) -> Address:
        text = self.str_(key, default)
        host, sep, port_text = text.rpartition(":")
        host = host.strip("[]")
        # isascii: str.isdigit accepts digits int() refuses ("²"); five digits at most
        digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
        if not sep or not host or not digits or not 0 <= int(port_text) < 65536:
            raise self.fail(key, f"expected HOST:PORT, got {text!r}")
        return Address(host, int(port_text))

    def sub(self, key: str) -> _Reader | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(key, "expected a table")
        return _Reader(value, f"{self.prefix}{key}.", self.source, self.base)


def _upstreams(raw: object, r: _Reader) -> tuple[Upstream, ...]:
    if not isinstance(raw, list) or not raw:
        raise r.fail("upstreams", "expected one or more [[upstreams]] tables")
    result: list[Upstream] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise r.fail(f"upstreams[{i}]", "expected a table")
        u = _Reader(item, f"upstreams[{i}].", r.source, r.base)
        u.only({"id", "url", "priority", "name"})
        url = u.str_("url").rstrip("/")
        expected = f"expected an https:// (or file://) URL, got {url!r}"
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - parsed on access: raises ValueError for a bad port
        except ValueError as e:  # "https://[": Invalid IPv6 URL
            raise u.fail("url", f"{expected} ({e})") from e
        https = parts.scheme == "https"
        if parts.scheme not in ("https", "file") or (https and not parts.hostname):
            raise u.fail("url", expected)
        priority = item.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise u.fail("priority", "expected an integer")
        name = item.get("name", "")
        if not isinstance(name, str):
            raise u.fail("name", "expected a string")
        result.append(Upstream(u.str_("id"), url, priority, name))
    ids = [up.id for up in result]
    if len(set(ids)) != len(ids):
        raise r.fail("upstreams", f"upstream ids must be unique, got {ids}")
    return tuple(result)


def _refuse_overlap(r: _Reader, store: Path, repository: Path) -> None:
    # Resolved (symlinks followed, ".." after them): the store's uploaded snapshots must never
    # lie in the served repository, nor the repository in the store the server writes to.
    s, repo = store.resolve(), repository.resolve()
    if s == repo or s.is_relative_to(repo):
        raise r.fail("store", f"{store} lies in origin.repository {repository}: keep them apart")
    if repo.is_relative_to(s):
        raise r.fail("store", f"origin.repository {repository} lies in {store}: keep them apart")


def parse_config(data: bytes, source: str, base: Path | None = None) -> MirrorConfig:
    """Parse the bytes of ``mirror.toml``; relative paths are taken from ``base``.

    Raises :class:`MirrorConfigError` naming the field at fault.
    """
    base = base if base is not None else Path(source).parent
    try:
        raw = parse_toml(data)
    except TomlProblem as e:
        raise MirrorConfigError(source, None, e.problem) from e
    r = _Reader(raw, "", source, base)
    r.only(_TOP | _SNAPSHOT_KEYS)
    tls_r = r.sub("tls")
    if tls_r is None:
        raise r.fail("tls", "missing (required): the service port is HTTPS only")
    tls_r.only({"cert", "key", "client_ca", "crl", "crl_poll_s"})
    tls = ServerTls(
        tls_r.path("cert") or Path(),
        tls_r.path("key") or Path(),
        tls_r.path("client_ca") or Path(),
        crl=tls_r.path("crl", required=False),
        crl_poll_s=tls_r.number("crl_poll_s", 5.0, minimum=0, exclusive=True),
    )
    mode_text = r.str_("download", DownloadMode.RELEASED.value)
    try:
        download = DownloadMode(mode_text.upper())
    except ValueError:
        raise r.fail(
            "download", f"expected one of {[m.value for m in DownloadMode]}, got {mode_text!r}"
        ) from None
    origin_r = r.sub("origin")
    origin = None
    if origin_r is not None:
        origin_r.only({"repository"})
        origin = OriginConfig(origin_r.path("repository") or Path())
    upstreams: tuple[Upstream, ...] = ()
    if r.has("upstreams"):
        upstreams = _upstreams(r.table["upstreams"], r)
    if (origin is None) == (not upstreams):
        raise r.fail(
            None,
            "give either [origin] (serve a repository) or [[upstreams]] (mirror mode), "
            "not both and not neither",
        )
    up_tls = None
    up_r = r.sub("upstream_tls")
    if up_r is not None:
        up_r.only({"cert", "key", "ca"})
        cert, key = up_r.path("cert", required=False), up_r.path("key", required=False)
        if (cert is None) != (key is None):
            raise up_r.fail("cert" if cert is None else "key", "cert and key go together")
        up_tls = UpstreamTls(cert, key, up_r.path("ca") or Path())
    if any(u.url.startswith("https:") for u in upstreams) and up_tls is None:
        raise r.fail("upstream_tls", "missing: an https:// upstream needs the CA to pin it to")
    trusted_root = r.path("trusted_root", required=False)
    if upstreams and trusted_root is None:
        raise r.fail(
            "trusted_root", "missing (required in mirror mode): the root metadata to trust"
        )
    access_log = r.path("access_log", required=False)
    store = r.path("store") or Path()
    if origin is not None:
        _refuse_overlap(r, store, origin.repository)
    admin_listen = r.address("admin_listen", "127.0.0.1:8080")
    admin_token = _admin_token(r, admin_listen)
    return MirrorConfig(
        source=source,
        listen=r.address("listen", "127.0.0.1:8443"),
        admin_listen=admin_listen,
        store=store,
        tls=tls,
        download=download,
        bulk_download_mbit_per_s=r.number(
            "bulk_download_mbit_per_s", 10.0, minimum=0, exclusive=True
        ),
        bulk_backoff_factor=r.number("bulk_backoff_factor", 1.5, minimum=0, exclusive=False),
        poll_interval_s=r.number("poll_interval_s", 300.0, minimum=0, exclusive=True),
        metadata_max_age_s=r.number("metadata_max_age_s", 60.0, minimum=0, exclusive=False),
        upstream_retry_s=r.number("upstream_retry_s", 30.0, minimum=0, exclusive=False),
        upstream_connect_timeout_s=r.number(
            "upstream_connect_timeout_s", 5.0, minimum=0, exclusive=True
        ),
        upstream_read_timeout_s=r.number(
            "upstream_read_timeout_s", 30.0, minimum=0, exclusive=True
        ),
        workers=r.integer("workers", 16, 1),
        shutdown_timeout_s=r.number("shutdown_timeout_s", 10.0, minimum=0, exclusive=False),
        access_log=access_log,
        accept_snapshots=r.boolean("accept_snapshots", True),
        snapshot_keep=r.integer("snapshot_keep", 20, 1),
        snapshot_quota_bytes=r.integer("snapshot_quota_bytes", 256 * 1024 * 1024, 1),
        snapshot_rate=r.number("snapshot_rate", 6.0, minimum=0, exclusive=False),
        snapshot_outbox_max=r.integer("snapshot_outbox_max", 1000, 1),
        stale_after_days=_stale_after(r),
        keep_indexes=r.integer("keep_indexes", 10, 1),
        gc_interval_s=r.number("gc_interval_s", 86400.0, minimum=0, exclusive=False),
        trusted_root=trusted_root,
        origin=origin,
        upstreams=upstreams,
        upstream_tls=up_tls,
        admin_token=admin_token,
    )


#: the longest ``stale_after_days`` (a century: beyond it a date overflows)
MAX_STALE_AFTER_DAYS = 36_500


def _stale_after(r: _Reader) -> float:
    days = r.number("stale_after_days", 7.0, minimum=0, exclusive=True)
    if days > MAX_STALE_AFTER_DAYS:
        raise r.fail("stale_after_days", f"must be <= {MAX_STALE_AFTER_DAYS}, not {days:g}")
    return days


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything


def _admin_token(r: _Reader, admin_listen: Address) -> str | None:
    """The admin port's token: required unless the port listens on loopback only."""
    if not r.has("admin_token"):
        if not _loopback(admin_listen.host):
            raise r.fail(
                "admin_token",
                f"missing: admin_listen {admin_listen} is not a loopback address, so the admin "
                "port needs a token",
            )
        return None
    token = r.str_("admin_token")
    if len(token) < MIN_ADMIN_TOKEN or not token.isprintable() or token != token.strip():
        raise r.fail(
            "admin_token",
            f"expected at least {MIN_ADMIN_TOKEN} printable characters, no surrounding spaces",
        )
    return token


def load_config(path: Path | str) -> MirrorConfig:
    """Read and parse ``mirror.toml`` at ``path``.

    Raises :class:`MirrorConfigError` (a missing file is one too, with no field).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MirrorConfigError(str(path), None, f"cannot read: {e.strerror or e}") from e
    return parse_config(data, str(path), path.absolute().parent)
