"""What the HTTP layer serves: an origin (a repository directory) or a mirror (upstreams relayed
through a verified store), plus health, bulk processes and snapshot forwarding.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import functools
import hashlib
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from steppatch import pki
from steppatch.collect import Collection
from steppatch.errors import NetworkError, SteppatchError, UnsafePath
from steppatch.limits import DEFAULT_LIMITS
from steppatch.model import RepositoryIndex
from steppatch.paths import safe_relpath
from steppatch.remote import utcnow
from steppatch.server._coalesce import Coalescer
from steppatch.server._fleet import FleetSource, store_recipes
from steppatch.server._gc import collect_store, store_sizes
from steppatch.server._metrics import Metrics
from steppatch.server._origin import PublishedRepository
from steppatch.server._ratelimit import TokenBucket, backoff_seconds
from steppatch.server._snapshots import SnapshotStore
from steppatch.server._store import FillControl, Held, Item, MirrorStore, Stopped
from steppatch.server._upstream import Upstreams
from steppatch.server.config import DownloadMode, MirrorConfig
from steppatch.server.errors import (
    MirrorConfigError,
    NotServed,
    StoreError,
    UpstreamUnavailable,
)

__all__ = ["MirrorService", "OriginService", "Service", "describe_metrics"]

T = TypeVar("T")

_CONTENT_ADDRESSED = re.compile(
    r"((?:objects|deltas)/[0-9a-f]{2}/([0-9a-f]{64})"
    r"|(?:manifests|transfers)/[0-9a-f]{2}/([0-9a-f]{64})\.json)"
)
_VERSIONED = re.compile(r"(roots/\d+\.root|indexes/\d+\.index)\.json")
_ROOT_PATH = re.compile(r"roots/([1-9][0-9]{0,8})\.root\.json")
_OBJECT_PATH = re.compile(r"(objects|deltas)/[0-9a-f]{2}/[0-9a-f]{64}")


def describe_metrics(m: Metrics) -> None:
    """Declare the metrics every server exposes (docs/mirror.md lists them)."""
    for name, kind, text in (
        ("requests_total", "counter", "HTTP requests on the service port, by method and status"),
        ("response_bytes_total", "counter", "body bytes sent on the service port"),
        ("cache_hits_total", "counter", "content requests served from the store"),
        ("cache_misses_total", "counter", "content requests that needed a fill"),
        ("fills_joined_total", "counter", "requests that waited on a fill already running"),
        ("upstream_fetches_total", "counter", "downloads started from an upstream"),
        ("objects_from_deltas_total", "counter", "objects bulk sync rebuilt from a delta"),
        ("objects_from_zip_deltas_total", "counter",
         "archives bulk sync rebuilt from a zip delta (also in objects_from_deltas_total)"),
        ("upstream_bytes_total", "counter", "bytes received from upstreams"),
        ("upstream_errors_total", "counter", "upstream failures (network or bad content)"),
        ("metadata_refreshes_total", "counter", "metadata update sessions, by result"),
        ("bulk_bytes_total", "counter", "bytes downloaded by the bulk processes"),
        ("bulk_items_total", "counter", "items downloaded by the bulk processes"),
        ("bulk_errors_total", "counter", "bulk downloads that failed"),
        ("bulk_backoff_seconds_total", "counter", "seconds the bulk processes backed off"),
        ("bulk_pending", "gauge", "items a bulk process still has to download"),
        ("snapshots_stored_total", "counter", "thin snapshots stored"),
        ("snapshots_forwarded_total", "counter", "thin snapshots forwarded upstream"),
        ("healthy", "gauge", "1 when health is ok, 0 when degraded"),
        ("fleet_systems", "gauge", "systems that uploaded a snapshot, by state"),
        ("fleet_components_behind", "gauge", "per system: components with a newer version"),
        ("gc_runs_total", "counter", "garbage collections of the store, by result"),
        ("gc_freed_bytes_total", "counter", "bytes garbage collection freed"),
        ("gc_removed_total", "counter", "files garbage collection removed, by kind"),
        ("store_bytes", "gauge", "bytes the store holds, by part (at start and after each gc)"),
    ):
        m.describe(name, kind, text)


def _hidden(path: str) -> bool:
    # Dot files are the publisher's and the store's own (locks, temporaries, partial fills).
    return any(part.startswith(".") for part in path.split("/"))


class Service:
    """The common part: config, metrics, the worker pool, snapshots."""

    def __init__(
        self, config: MirrorConfig, metrics: Metrics, executor: concurrent.futures.Executor
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.executor = executor
        self.snapshots = SnapshotStore(
            config.store / "snapshots", forward=config.is_mirror, limits=DEFAULT_LIMITS,
            keep=config.snapshot_keep, quota_bytes=config.snapshot_quota_bytes,
            rate=config.snapshot_rate, outbox_max=config.snapshot_outbox_max,
        )
        self.started = time.monotonic()
        #: the fleet pages' source: the uploaded snapshots against the index served now
        self.fleet = FleetSource(
            config.store / "snapshots", self.fleet_index, store_recipes(config),
            datetime.timedelta(days=config.stale_after_days), DEFAULT_LIMITS,
        )

    def fleet_index(self) -> tuple[RepositoryIndex | None, int | None]:
        """The verified index served now and its version (``None`` when unknown)."""
        return None, None

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the bounded worker pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def locate(self, path: str) -> Held:
        """What to send for ``path``. Raises :class:`NotServed`, :class:`UpstreamUnavailable`,
        :class:`StoreError` and other :class:`SteppatchError` subclasses."""
        raise NotImplementedError

    def health(self) -> dict[str, Any]:
        """``status`` (``ok``/``degraded``), ``reasons`` and what is held."""
        raise NotImplementedError

    def start(self) -> None:
        """Start background tasks (in the running loop)."""

    def sending(self, held: Held) -> contextlib.AbstractContextManager[None]:
        """Hold ``held`` while it is sent (a mirror's collection leaves it alone)."""
        return contextlib.nullcontext()

    async def collect(self, *, dry_run: bool) -> dict[str, Any]:
        """Collect the store now (``POST /gc``): what it freed, as JSON."""
        return {"collected": False, "why": "an origin serves its repository: nothing to collect"}

    async def sync_now(self) -> dict[str, Any]:
        """Refresh metadata and wake the bulk processes now (``POST /sync``)."""
        return {"synced": False, "why": "an origin does not sync"}

    async def close(self) -> None:
        """Stop background work; fills stop at their next chunk, keeping partial files."""


class OriginService(Service):
    """Serves a published repository directory read-only."""

    def __init__(
        self, config: MirrorConfig, metrics: Metrics, executor: concurrent.futures.Executor
    ) -> None:
        super().__init__(config, metrics, executor)
        assert config.origin is not None
        self.repository = config.origin.repository.absolute()
        if not (self.repository / "timestamp.json").is_file():
            raise MirrorConfigError(
                config.source, "origin.repository", f"{self.repository} is not a repository"
            )
        self.published = PublishedRepository(self.repository)

    def fleet_index(self) -> tuple[RepositoryIndex | None, int | None]:
        return self.published.current(), None

    async def locate(self, path: str) -> Held:
        # In the pool: a publish makes the next request read and verify the new index.
        return await self.blocking(self.lookup, path)

    def lookup(self, path: str) -> Held:
        """A file of the published layout (:class:`PublishedRepository`); small mutable ones
        (metadata, recipes) read whole, so that a publish that replaces them never shows half
        of each. Raises :class:`NotServed` for anything else: keys, stray files, dot files."""
        try:
            safe_relpath(path)
        except UnsafePath:
            raise NotServed(path) from None
        if _hidden(path) or not self.published.is_published(path):
            raise NotServed(path)
        file = self.repository / path
        try:
            # O_NOFOLLOW: a repository's files are never symlinks, so none can lead outside.
            fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            raise NotServed(path) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or not file.resolve().is_relative_to(
                self.repository.resolve()
            ):
                raise NotServed(path)
            m = _CONTENT_ADDRESSED.fullmatch(path)
            if m is not None:
                sha = m.group(2) or m.group(3)
                return Held(file, st.st_size, f'"{sha}"', True)
            if _VERSIONED.fullmatch(path):
                return Held(file, st.st_size, f'"{st.st_size:x}-{st.st_mtime_ns:x}"', True)
            data = os.read(fd, DEFAULT_LIMITS.max_recipe_bytes + 1)
            if len(data) > DEFAULT_LIMITS.max_recipe_bytes:
                return Held(file, st.st_size, f'"{st.st_size:x}-{st.st_mtime_ns:x}"', False)
            return Held(None, len(data), f'"{hashlib.sha256(data).hexdigest()}"', False, data)
        finally:
            os.close(fd)

    def health(self) -> dict[str, Any]:
        reasons = []
        if not (self.repository / "timestamp.json").is_file():
            reasons.append(f"the repository {self.repository} has no timestamp.json")
        # What the last request found (health runs in the loop: it does not read the index).
        if self.published.problem is not None:
            reasons.append(f"the repository {self.repository}: {self.published.problem}")
        status = "degraded" if reasons else "ok"
        self.metrics.set("healthy", 0 if reasons else 1)
        return {"status": status, "reasons": reasons, "mode": "origin",
                "repository": str(self.repository)}


class MirrorService(Service):
    """Relays upstreams through a verified, content-addressed store (see :mod:`._store`)."""

    def __init__(
        self, config: MirrorConfig, metrics: Metrics, executor: concurrent.futures.Executor
    ) -> None:
        super().__init__(config, metrics, executor)
        assert config.trusted_root is not None
        try:
            trusted_root = config.trusted_root.read_bytes()
        except OSError as e:
            raise MirrorConfigError(config.source, "trusted_root", f"cannot read: {e}") from e
        self.store = MirrorStore(config.store, trusted_root, metrics)
        self.upstreams = Upstreams(config, metrics)
        self.fills: Coalescer[Held] = Coalescer()
        self.checks: Coalescer[bool] = Coalescer()
        self.refreshes: Coalescer[bool] = Coalescer()
        self.controls: dict[str, FillControl] = {}
        self.problems: dict[str, str] = {}
        self.stop_event = threading.Event()
        self._wakes: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._failed_refresh_at: float | None = None
        self.bulk: dict[str, dict[str, Any]] = {}
        self._name = self._own_name()
        self._collecting = asyncio.Lock()
        self.last_gc: dict[str, Any] | None = None

    def fleet_index(self) -> tuple[RepositoryIndex | None, int | None]:
        index = self.store.index
        return index, (self.store.meta.index_version if index is not None else None)

    def _own_name(self) -> str | None:
        tls = self.config.upstream_tls
        if tls is None or tls.cert is None:
            return None
        try:
            return pki.read_certificate(tls.cert.read_bytes(), str(tls.cert)).system_name
        except (OSError, SteppatchError):
            return None

    # --- serving -----------------------------------------------------------------------------

    async def locate(self, path: str) -> Held:
        try:
            safe_relpath(path)
        except UnsafePath:
            raise NotServed(path) from None
        if _hidden(path):
            raise NotServed(path)
        if path == "timestamp.json":
            await self.refresh_if_stale(client=True)
        try:
            entry = self.store.lookup(path)
        except NotServed:
            entry = await self._second_look(path)
        if isinstance(entry, Item):
            return await self.content(entry, urgent=True)
        return entry

    async def _second_look(self, path: str) -> Held | Item:
        # Not in the verified metadata held. An object may be in a manifest not fetched yet; an
        # older root may be fetched and checked against the next; anything else may be new.
        if _OBJECT_PATH.fullmatch(path) and self.store.index is not None:
            control = FillControl(urgent=True, stop=self.stop_event)
            await self.refreshes.run(
                "catalogue",
                lambda: self._guarded(self.store.complete_catalogue, self.upstreams, control),
            )
            return self.store.lookup(path)
        m = _ROOT_PATH.fullmatch(path)
        if m is not None and int(m.group(1)) < min(self.store.meta.root_versions):
            version = int(m.group(1))
            return await self.fills.run(
                path, lambda: self.blocking(self.store.fill_old_root, version, self.upstreams)
            )
        await self.refresh_if_stale(client=True)
        return self.store.lookup(path)

    async def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            result = await self.blocking(fn, *args)
        except StoreError as e:
            self.problems["store"] = str(e)
            raise
        self.problems.pop("store", None)
        return result

    async def content(self, item: Item, *, urgent: bool) -> Held:
        """The verified stored file of ``item``, filled first if needed (one fill, however many
        ask). Raises what :meth:`MirrorStore.fill` raises."""
        store = self.store
        if store.objects.has(item.sha256):
            ok = not store.needs_check(item.sha256) or await self.checks.run(
                item.sha256, lambda: self.blocking(store.check, item)
            )
            if ok:
                if urgent:
                    self.metrics.inc("cache_hits_total", kind=item.kind)
                    store._link_takeout(item.path, store.objects.path(item.sha256))
                return Held(store.objects.path(item.sha256), item.length,
                            f'"{item.sha256}"', item.kind != "recipe")
        if urgent:
            self.metrics.inc("cache_misses_total", kind=item.kind)
            running = self.controls.get(item.sha256)
            if running is not None:
                # A client waits: the bulk cap no longer applies to this fill.
                running.urgent = True
                self.metrics.inc("fills_joined_total")
        control = FillControl(urgent=urgent, stop=self.stop_event)
        return await self.fills.run(item.sha256, lambda: self._fill(item, control))

    async def _fill(self, item: Item, control: FillControl) -> Held:
        self.controls[item.sha256] = control
        try:
            return await self._guarded(self.store.fill, item, self.upstreams, control)
        finally:
            self.controls.pop(item.sha256, None)

    def sending(self, held: Held) -> contextlib.AbstractContextManager[None]:
        file = held.file
        if file is None or file.parent.parent != self.store.objects.root:
            return contextlib.nullcontext()
        return self.store.pinned(file.name)

    # --- garbage collection ------------------------------------------------------------------

    async def collect(self, *, dry_run: bool) -> dict[str, Any]:
        async with self._collecting:
            try:
                done = await self.blocking(self._collect, dry_run)
            except (SteppatchError, OSError) as e:
                self.metrics.inc("gc_runs_total", result="failed")
                self.problems["gc"] = f"garbage collection failed: {e}"
                return {"collected": False, "why": str(e)}
        self.problems.pop("gc", None)
        return {"collected": True, **done.to_json()}

    def _collect(self, dry_run: bool) -> Collection:
        config = self.config
        done = collect_store(
            self.store,
            keep_indexes=config.keep_indexes,
            historic=config.download is DownloadMode.HISTORIC,
            dry_run=dry_run,
            now=time.time(),
            partial_max_age=DEFAULT_LIMITS.partial_max_age_seconds,
        )
        if not dry_run:
            self.metrics.inc("gc_runs_total", result="ok")
            self.metrics.inc("gc_freed_bytes_total", done.bytes)
            for kind, count in (("recipe", done.recipes), ("manifest", done.manifests),
                                ("object", done.objects), ("partial", done.partial)):
                self.metrics.inc("gc_removed_total", count, kind=kind)
            self.last_gc = {"at": utcnow().isoformat(), **done.to_json()}
        self._measure()
        return done

    def _measure(self) -> None:
        sizes = store_sizes(self.config.store)
        for part, value in sizes.to_json().items():
            self.metrics.set("store_bytes", value, part=part)

    async def _gc_loop(self) -> None:
        with contextlib.suppress(SteppatchError, OSError):
            await self.blocking(self._measure)
        interval = self.config.gc_interval_s
        if interval <= 0:
            return
        while not self.stop_event.is_set():
            await self._sleep(interval)
            if self.stop_event.is_set():
                return
            await self.collect(dry_run=False)

    # --- metadata ----------------------------------------------------------------------------

    async def refresh_if_stale(self, *, client: bool) -> None:
        """Refresh the metadata if it is older than ``metadata_max_age_s`` (a client's request)
        or always (the poller). Failing upstreams only make health degraded while something is
        held; with nothing held, raises :class:`UpstreamUnavailable`."""
        now = time.monotonic()
        last = self.store.last_refresh
        if client:
            if last is not None and now - last < self.config.metadata_max_age_s:
                return
            failed = self._failed_refresh_at
            if failed is not None and now - failed < self.config.upstream_retry_s:
                if self.store.meta.timestamp is None:
                    raise UpstreamUnavailable(
                        "timestamp.json", self.upstreams.errors(), self.upstreams.retry_after()
                    )
                return
        try:
            await self.refreshes.run("refresh", self._refresh)
        except UpstreamUnavailable:
            if self.store.meta.timestamp is None:
                raise

    async def _refresh(self) -> bool:
        try:
            changed = await self._guarded(self.store.refresh, self.upstreams)
        except UpstreamUnavailable as e:
            self._failed_refresh_at = time.monotonic()
            self.problems["upstream"] = f"no upstream answered with valid metadata: {e.problem}"
            self.metrics.inc("metadata_refreshes_total", result="failed")
            raise
        self._failed_refresh_at = None
        self.problems.pop("upstream", None)
        self.metrics.inc("metadata_refreshes_total", result="ok")
        if changed:
            for wake in self._wakes.values():
                wake.set()
        if self.snapshots.pending():
            await self.blocking(self._forward_snapshots)
        return changed

    def _forward_snapshots(self) -> None:
        if self._name is None:
            return
        if not any(u.url.startswith("https:") for u in self.config.upstreams):
            return

        def send(path: str, body: bytes) -> int:
            # The upstreams' own pinned transport (CA, client certificate, no proxy or .netrc
            # from the environment, no redirect), never a bare requests call.
            try:
                return self.upstreams.put(f"snapshots/{self._name}/{path}", body)
            except NetworkError as e:
                # "cannot be reached" for the outbox: kept for the next round.
                raise ConnectionError(str(e)) from e

        sent, refused = self.snapshots.flush(send)
        self.metrics.inc("snapshots_forwarded_total", sent, result="ok")
        self.metrics.inc("snapshots_forwarded_total", refused, result="refused")

    async def sync_now(self) -> dict[str, Any]:
        try:
            changed = await self.refreshes.run("refresh", self._refresh)
        except SteppatchError as e:
            return {"synced": False, "why": str(e)}
        return {"synced": True, "index_changed": changed, **self.store.summary()}

    # --- background --------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._poll()))
        self._tasks.append(asyncio.create_task(self._gc_loop()))
        mode = self.config.download
        processes = {
            DownloadMode.HISTORIC: ("historic", "released"),
            DownloadMode.RELEASED: ("released",),
            DownloadMode.ON_DEMAND: (),
        }[mode]
        for process in processes:
            self.bulk[process] = {"state": "starting", "done": 0, "pending": 0, "errors": 0}
            self._wakes[process] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._bulk(process)))

    async def _poll(self) -> None:
        while not self.stop_event.is_set():
            with contextlib.suppress(SteppatchError):
                await self.refresh_if_stale(client=False)
            await self._sleep(self.config.poll_interval_s)

    async def _sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        # Interruptible: the stop flag is checked often, ``wake`` ends the wait early.
        end = time.monotonic() + seconds
        while not self.stop_event.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            if wake is not None and wake.is_set():
                return
            await asyncio.sleep(min(left, 0.05))

    async def _bulk(self, process: str) -> None:
        """One bulk process: fetch what its plan lists, one item at a time, within its own
        cap, sleeping ``bulk_backoff_factor`` times each download's duration after it."""
        config = self.config
        limiter = TokenBucket(config.bulk_bytes_per_s)
        status = self.bulk[process]
        wake = self._wakes[process]
        while not self.stop_event.is_set():
            # Cleared before planning: a refresh that lands while planning wakes the next wait.
            wake.clear()
            try:
                items = await self.blocking(self.store.bulk_items, process)
            except (SteppatchError, OSError):
                items = []
            status["pending"] = len(items)
            self.metrics.set("bulk_pending", len(items), process=process)
            if not items:
                status["state"] = "idle" if self.store.index is not None else "waiting"
                await self._sleep(config.poll_interval_s, wake)
                continue
            progressed = False
            for item in items:
                if self.stop_event.is_set():
                    return
                if self.store.objects.has(item.sha256):
                    continue
                status["state"] = "downloading"
                status["current"] = item.path
                control = FillControl(limiter=limiter, process=process, stop=self.stop_event)
                started = time.monotonic()
                try:
                    if self.fills.running(item.sha256):
                        await self.content(item, urgent=False)
                    else:
                        await self.fills.run(
                            item.sha256, functools.partial(self._fill, item, control)
                        )
                except Stopped:
                    return
                except (SteppatchError, OSError) as e:
                    status["errors"] += 1
                    status["last_error"] = str(e)
                    self.metrics.inc("bulk_errors_total", process=process)
                    if isinstance(e, UpstreamUnavailable | StoreError):
                        break
                    continue
                took = time.monotonic() - started
                progressed = True
                status["done"] += 1
                status["pending"] = max(status["pending"] - 1, 0)
                self.metrics.inc("bulk_items_total", process=process)
                self.metrics.set("bulk_pending", status["pending"], process=process)
                pause = backoff_seconds(config.bulk_backoff_factor, took)
                status["state"] = "backoff"
                self.metrics.inc("bulk_backoff_seconds_total", pause, process=process)
                await self._sleep(pause)
            status.pop("current", None)
            self.store.state.setdefault("bulk", {})[process] = dict(status)
            with contextlib.suppress(StoreError):
                await self.blocking(self.store.save_state)
            if not progressed:
                status["state"] = "retrying"
                await self._sleep(max(config.upstream_retry_s, 1.0), wake)

    def health(self) -> dict[str, Any]:
        reasons = list(self.problems.values())
        errors = self.upstreams.errors()
        for upstream in self.upstreams.down():
            reasons.append(f"upstream {upstream} unreachable: {errors.get(upstream, '')}")
        summary = self.store.summary()
        if self.store.meta.timestamp is None:
            reasons.append("no metadata from any upstream yet")
        elif summary["timestamp_expires"] and summary["timestamp_expires"] <= utcnow().isoformat():
            reasons.append(f"the timestamp metadata expired at {summary['timestamp_expires']}")
        reasons = list(dict.fromkeys(reasons))
        self.metrics.set("healthy", 0 if reasons else 1)
        return {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "mode": "mirror",
            "download": self.config.download.value,
            "upstreams": [u.id for u in self.config.upstreams],
            "bulk": {k: dict(v) for k, v in self.bulk.items()},
            "fills_running": len(self.fills),
            "snapshots_pending": self.snapshots.pending(),
            "snapshots_dropped": self.snapshots.dropped,
            "last_gc": self.last_gc,
            **summary,
        }

    async def close(self) -> None:
        self.stop_event.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.fills.wait_all()
        self.upstreams.close()


def make_service(
    config: MirrorConfig, metrics: Metrics, executor: concurrent.futures.Executor
) -> Service:
    """The service ``config`` asks for. Raises :class:`MirrorConfigError`, :class:`StoreError`,
    metadata errors for a trusted root that does not verify."""
    describe_metrics(metrics)
    try:
        config.store.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(str(config.store), e.strerror or str(e)) from e
    if config.is_mirror:
        return MirrorService(config, metrics, executor)
    return OriginService(config, metrics, executor)

