"""Operations without the server: ``steppatch mirror status`` and ``steppatch mirror sync
--once``. When a server runs on the store, they ask it on its admin port instead.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from typing import Any

from steppatch import _record as record
from steppatch.collect import Collection
from steppatch.errors import InputError, LockedError, SteppatchError, TooLarge
from steppatch.limits import DEFAULT_LIMITS
from steppatch.server._app import _store_lock
from steppatch.server._gc import collect_store, store_sizes
from steppatch.server._metrics import Metrics
from steppatch.server._ratelimit import TokenBucket, backoff_seconds
from steppatch.server._restart import local_opener
from steppatch.server._store import FillControl, MirrorStore, store_usage
from steppatch.server._upstream import Upstreams
from steppatch.server.config import DownloadMode, MirrorConfig
from steppatch.server.errors import MirrorConfigError, StoreError, UpstreamUnavailable
from steppatch.transport import DEFAULT_TRANSPORT_LIMITS

__all__ = ["MirrorStatus", "collect_mirror", "mirror_status", "sync_once"]


@record.frozen
class MirrorStatus:
    """What a store holds and how the server on it is doing (``health`` is ``None`` when no
    server answers on the admin port)."""

    mode: str
    download: str
    store: str
    objects: int
    bytes: int
    state: dict[str, Any]
    health: dict[str, Any] | None
    sizes: dict[str, int] = record.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return record.asdict(self)


def _admin(
    config: MirrorConfig, method: str, path: str, timeout: float, payload: bytes = b"{}"
) -> dict[str, Any]:
    """Ask the admin port, with the token from the config; a POST sends an empty JSON object
    (``POST /sync`` takes nothing else)."""
    host = config.admin_listen.host
    host = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1"
    headers = {}
    if config.admin_token is not None:
        headers["Authorization"] = f"Bearer {config.admin_token}"
    body = None
    if method == "POST":
        body = payload
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        f"http://{host}:{config.admin_listen.port}{path}", body, headers, method=method
    )
    limit = DEFAULT_TRANSPORT_LIMITS.max_answer_bytes
    with local_opener().open(request, timeout=timeout) as response:
        body = response.read(limit + 1)
        if len(body) > limit:
            raise TooLarge(f"the answer of {request.full_url}", limit)
        result: dict[str, Any] = json.loads(body)
        return result


def mirror_status(config: MirrorConfig) -> MirrorStatus:
    """Read the store; ask a running server for its health. O(files in the store)."""
    objects, size = store_usage(config.store)
    sizes = store_sizes(config.store).to_json()
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads((config.store / "state.json").read_bytes())
    health = None
    with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
        health = _admin(config, "GET", "/health", 2.0)
    return MirrorStatus(
        mode="mirror" if config.is_mirror else "origin",
        download=config.download.value if config.is_mirror else "-",
        store=str(config.store),
        objects=objects,
        bytes=size,
        state=state,
        health=health,
        sizes=sizes,
    )


def collect_mirror(config: MirrorConfig, *, dry_run: bool = False) -> dict[str, Any]:
    """Collect the store (``steppatch mirror gc``): here when no server holds it, else through
    the running server's admin port (``POST /gc``), which coordinates with what it fills and
    sends. Returns what was (or, with ``dry_run``, would be) freed.

    Raises :class:`InputError` for an origin, :class:`StoreError` (a server holds the store but
    does not answer), :class:`MirrorConfigError`, metadata errors for a store that does not
    verify.
    """
    if not config.is_mirror:
        raise InputError("an origin serves its repository directory: there is nothing to collect")
    try:
        with _store_lock(config.store):
            return {"via": "here", **_collect_here(config, dry_run).to_json()}
    except LockedError:
        body = json.dumps({"dry_run": dry_run}).encode()
        try:
            result = _admin(config, "POST", "/gc", 600.0, body)
        except (OSError, urllib.error.URLError) as e:
            raise StoreError(
                str(config.store), f"locked by a server that does not answer on its admin port: {e}"
            ) from e
    if not result.get("collected", False):
        why = result.get("why")
        raise StoreError(str(config.store), f"the running server's collection failed: {why}")
    result.pop("collected", None)
    return {"via": "running server", **result}


def _collect_here(config: MirrorConfig, dry_run: bool) -> Collection:
    assert config.trusted_root is not None
    try:
        trusted_root = config.trusted_root.read_bytes()
    except OSError as e:
        raise MirrorConfigError(config.source, "trusted_root", f"cannot read: {e}") from e
    store = MirrorStore(config.store, trusted_root, Metrics())
    try:
        return collect_store(
            store,
            keep_indexes=config.keep_indexes,
            historic=config.download is DownloadMode.HISTORIC,
            dry_run=dry_run,
            now=time.time(),
            partial_max_age=DEFAULT_LIMITS.partial_max_age_seconds,
        )
    except OSError as e:
        raise StoreError(str(config.store), e.strerror or str(e)) from e


def sync_once(config: MirrorConfig, *, capped: bool = True) -> dict[str, Any]:
    """Refresh the metadata once, then run each bulk process of the configured mode once.

    When a server holds the store, it is asked to sync (``POST /sync``) instead. Raises
    :class:`InputError` for an origin, :class:`UpstreamUnavailable`, :class:`StoreError`,
    :class:`MirrorConfigError`.
    """
    if not config.is_mirror:
        raise InputError("an origin serves its repository directory: there is nothing to sync")
    try:
        with _store_lock(config.store):
            return _sync_here(config, capped)
    except LockedError:
        try:
            result = _admin(config, "POST", "/sync", 600.0)
        except (OSError, urllib.error.URLError) as e:
            raise StoreError(
                str(config.store), f"locked by a server that does not answer on its admin port: {e}"
            ) from e
        return {"via": "running server", **result}


def _sync_here(config: MirrorConfig, capped: bool) -> dict[str, Any]:
    assert config.trusted_root is not None
    try:
        trusted_root = config.trusted_root.read_bytes()
    except OSError as e:
        raise MirrorConfigError(config.source, "trusted_root", f"cannot read: {e}") from e
    metrics = Metrics()
    store = MirrorStore(config.store, trusted_root, metrics)
    upstreams = Upstreams(config, metrics)
    try:
        changed = store.refresh(upstreams)
        processes = {
            DownloadMode.HISTORIC: ("historic", "released"),
            DownloadMode.RELEASED: ("released",),
            DownloadMode.ON_DEMAND: (),
        }[config.download]
        done: dict[str, int] = {}
        errors: dict[str, str] = {}
        for process in processes:
            limiter = TokenBucket(config.bulk_bytes_per_s) if capped else None
            done[process] = 0
            failed: set[str] = set()
            while items := [i for i in store.bulk_items(process) if i.sha256 not in failed]:
                for item in items:
                    control = FillControl(limiter=limiter, process=process)
                    started = time.monotonic()
                    try:
                        store.fill(item, upstreams, control)
                    except (UpstreamUnavailable, StoreError):
                        raise
                    except SteppatchError as e:
                        failed.add(item.sha256)
                        errors[item.path] = str(e)
                        continue
                    done[process] += 1
                    if capped:
                        time.sleep(
                            backoff_seconds(config.bulk_backoff_factor, time.monotonic() - started)
                        )
            store.state.setdefault("bulk", {})[process] = {
                "state": "idle", "done": done[process], "pending": 0, "errors": len(failed),
            }
        store.save_state()
        return {"index_changed": changed, "downloaded": done, "errors": errors, **store.summary()}
    finally:
        upstreams.close()
