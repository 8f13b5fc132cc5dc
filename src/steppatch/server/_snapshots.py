"""Thin snapshots uploaded by clients: each may store its own system's only.

``PUT /snapshots/NAME.spr`` stores the thin snapshot of system ``NAME``; the client certificate
must carry ``NAME``. A mirror forwards what it received upstream as
``PUT /snapshots/MIRROR/NAME.spr`` under its own certificate (``MIRROR``): the first path
segment is always the uploader's own name, so no server needs to trust a relay to write in another
system's name. ``GET`` of the same path returns the latest, to the same system only.

Layout: ``snapshots/PATH/TIME-SHA8.spr`` (the last ``keep`` uploads; TIME is UTC to the
microsecond), ``snapshots/PATH/latest.spr``, and ``snapshots/.outbox/`` (uploads a mirror has
not forwarded yet: the newest of each system).

Bounds (``docs/mirror.md``): a thin document (no ``files``, no ``nodes``, short strings, a bounded
number of components), ``keep`` uploads per path, ``quota_bytes`` under each uploader's name (its
own snapshots and those it relays), ``rate`` uploads a minute per path, ``outbox_max`` entries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import requests

from steppatch._fs import atomic_write
from steppatch._json import load_json_object
from steppatch.errors import InputError, NetworkError, RecipeError
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import Recipe, RecipeKind
from steppatch.pki import validate_system_name
from steppatch.recipe import parse_recipe
from steppatch.server._ratelimit import UploadRate
from steppatch.server.errors import (
    SnapshotQuotaExceeded,
    SnapshotRateLimited,
    SnapshotRefused,
    StoreError,
    StoreFull,
)

__all__ = ["MAX_DEPTH", "SnapshotStore", "check_snapshot", "disk_charge"]

#: how many relays a snapshot may pass (each adds one path segment)
MAX_DEPTH = 8
_OUTBOX = ".outbox"
_LATEST = "latest.spr"
#: the fields a thin snapshot may have: names and versions, the system, when, which environment
_THIN_FIELDS = frozenset(
    {"format", "kind", "components", "name", "system", "created", "environment", "fingerprint",
     "nodes"}
)
_THIN_NODE_FIELDS = frozenset({"name", "components", "environment", "fingerprint"})
#: the quota charges each file at least one filesystem block, so that many tiny files (each an
#: inode) cost what they take on disk
_BLOCK = 4096


def disk_charge(size: int) -> int:
    """What a stored file of ``size`` bytes counts against a quota: whole 4 KiB blocks."""
    return max(-(-size // _BLOCK), 1) * _BLOCK


def _check_thin(doc: dict[str, Any], limits: Limits) -> None:
    """Refuse what a thin snapshot never holds, before any of it is parsed further."""
    if "files" in doc:
        raise SnapshotRefused(
            400, "a thin snapshot lists no files: component names and versions only", "files"
        )
    extra = sorted(set(doc) - _THIN_FIELDS)
    if extra:
        raise SnapshotRefused(400, f"{extra[0]!r} is not a field of a thin snapshot", extra[0])
    longest = limits.max_snapshot_string_chars
    for field in sorted(_THIN_FIELDS - {"components", "nodes"}):
        value = doc.get(field)
        if isinstance(value, str) and len(value) > longest:
            raise SnapshotRefused(400, f"{field}: longer than {longest} characters", field)
    _check_thin_components(doc.get("components"), "components", limits)
    nodes = doc.get("nodes")
    if nodes is None:
        return
    # A cluster snapshot: each node thin too (a name, its versions, its ids), a bounded number.
    if not isinstance(nodes, list):
        raise SnapshotRefused(400, "nodes: expected a list", "nodes")
    if len(nodes) > limits.max_snapshot_nodes:
        raise SnapshotRefused(413, f"more than {limits.max_snapshot_nodes} nodes", "nodes")
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise SnapshotRefused(400, f"nodes[{i}]: expected an object", "nodes")
        extra = sorted(set(node) - _THIN_NODE_FIELDS)
        if extra:
            raise SnapshotRefused(
                400, f"nodes[{i}]: {extra[0]!r} is not a field of a thin node", "nodes"
            )
        for field in sorted(_THIN_NODE_FIELDS - {"components"}):
            value = node.get(field)
            if isinstance(value, str) and len(value) > longest:
                raise SnapshotRefused(
                    400, f"nodes[{i}].{field}: longer than {longest} characters", "nodes"
                )
        _check_thin_components(node.get("components"), f"nodes[{i}].components", limits)


def _check_thin_components(components: object, where: str, limits: Limits) -> None:
    if not isinstance(components, dict):
        return  # parse_recipe says what is wrong
    field = where.split(".")[0].split("[")[0]
    if len(components) > limits.max_snapshot_components:
        raise SnapshotRefused(
            413, f"{where}: more than {limits.max_snapshot_components} components", field
        )
    longest = limits.max_snapshot_string_chars
    for name, pin in components.items():
        if len(name) > longest or (isinstance(pin, str) and len(pin) > longest):
            shown = name if len(name) <= longest else name[:32] + "..."
            raise SnapshotRefused(400, f"{where}.{shown}: longer than {longest} characters", field)


def check_snapshot(
    path: str, owner: str | None, body: bytes, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[str], Recipe]:
    """Check an upload of ``body`` to ``snapshots/PATH`` by the system ``owner`` (from its
    certificate). Returns the path's names (without ``.spr``) and the recipe.

    Raises :class:`SnapshotRefused`: 403 when ``owner`` may not write there, 400 for a path or
    document that is not a thin snapshot of the system the path names, 413 when too large.
    """
    if owner is None:
        raise SnapshotRefused(403, "the client certificate carries no system name")
    parts = path.split("/")
    if not parts[-1].endswith(".spr") or len(parts) > MAX_DEPTH:
        raise SnapshotRefused(400, f"expected snapshots/NAME.spr (at most {MAX_DEPTH} levels)")
    names = [*parts[:-1], parts[-1].removesuffix(".spr")]
    try:
        for name in names:
            validate_system_name(name)
    except InputError as e:
        raise SnapshotRefused(400, str(e)) from e
    if names[0] != owner:
        raise SnapshotRefused(403, f"system {owner!r} may store its own snapshots only")
    if len(body) > limits.max_snapshot_bytes:
        raise SnapshotRefused(413, f"larger than {limits.max_snapshot_bytes} bytes")

    def fail(problem: str) -> NoReturn:
        raise SnapshotRefused(400, problem)

    _check_thin(load_json_object(body, fail), limits)
    try:
        recipe = parse_recipe(body, f"snapshot {path}", limits)
    except RecipeError as e:
        raise SnapshotRefused(400, e.problem) from e
    if recipe.kind is not RecipeKind.SNAPSHOT:
        raise SnapshotRefused(400, f"a {recipe.kind.value} recipe is not a snapshot")
    if recipe.system != names[-1]:
        raise SnapshotRefused(
            400, f"the snapshot is of system {recipe.system!r}, not {names[-1]!r}"
        )
    for name, spec in recipe.components.items():
        pins = list(spec)
        if len(pins) != 1 or pins[0].operator != "==" or "*" in pins[0].version:
            raise SnapshotRefused(400, f"component {name!r}: a thin snapshot pins one version")
    return names, recipe


class SnapshotStore:
    """Uploaded snapshots under ``root``; ``forward`` keeps an outbox for the upstreams.

    One server per store (the store lock), so the bytes used under each uploader's name are
    counted once from disk and then kept up to date in memory. Uploads under one name are
    serialized; different names are stored in parallel.
    """

    def __init__(
        self,
        root: Path,
        forward: bool,
        limits: Limits = DEFAULT_LIMITS,
        *,
        keep: int = 20,
        quota_bytes: int = 256 * 1024 * 1024,
        rate: float = 6.0,
        outbox_max: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.forward = forward
        self.limits = limits
        self.keep = keep
        self.quota_bytes = quota_bytes
        self.outbox_max = outbox_max
        self.rate = UploadRate(rate, clock)
        #: outbox entries dropped to stay within ``outbox_max``
        self.dropped = 0
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._used: dict[str, int] = {}
        self._outbox_lock = threading.Lock()
        self._last_ns = 0
        self._last_us = 0

    def put(self, path: str, owner: str | None, body: bytes) -> str:
        """Store an upload (see :func:`check_snapshot`); returns where it was kept. The oldest
        uploads beyond ``keep`` at that path are removed.

        Raises :class:`SnapshotRefused`: :class:`SnapshotRateLimited` (nothing counted or
        stored), :class:`SnapshotQuotaExceeded` (nothing stored); :class:`StoreFull` /
        :class:`StoreError`.
        """
        names, _recipe = check_snapshot(path, owner, body, self.limits)
        key = "/".join(names)
        wait = self.rate.take(key)
        if wait:
            raise SnapshotRateLimited(key, wait)
        digest = hashlib.sha256(body).hexdigest()
        folder = self.root.joinpath(*names)
        with self._guard:
            lock = self._locks.setdefault(names[0], threading.Lock())
        with lock:
            with self._guard:
                # Names sort in the order stored (retention removes the first ones, latest.spr
                # is the last one), even for uploads within one tick of the clock.
                self._last_us = max(time.time_ns() // 1000, self._last_us + 1)
                seconds, micros = divmod(self._last_us, 1_000_000)
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds))
            name = f"{stamp}.{micros:06d}Z-{digest[:8]}.spr"
            try:
                self._store(names[0], folder, name, path, body)
            except OSError as e:
                self._used.pop(names[0], None)  # counted again from disk next time
                cls = StoreFull if e.errno == 28 else StoreError
                raise cls(str(folder), e.strerror or str(e)) from e
        return key + "/" + name

    def _store(self, owner: str, folder: Path, name: str, path: str, body: bytes) -> None:
        used = self._used.get(owner)
        if used is None:
            used = self._used[owner] = _usage(self.root / owner)
        uploads = _uploads(folder)
        doomed = uploads[: max(len(uploads) - (self.keep - 1), 0)]
        latest = folder / _LATEST
        replaced = []
        with contextlib.suppress(FileNotFoundError):
            replaced.append((latest, latest.stat().st_size))
        freed = sum(disk_charge(size) for _f, size in doomed + replaced)
        needed = used - freed + 2 * disk_charge(len(body))  # the upload and latest.spr
        # An upload that does not grow the total is taken even over the quota (a lowered one).
        if needed > self.quota_bytes and needed > used:
            raise SnapshotQuotaExceeded(owner, used, needed, self.quota_bytes)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / name, body)
        atomic_write(latest, body)
        if self.forward:
            self._queue(path, body)
        for file, _size in doomed:
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
        self._used[owner] = needed

    def _queue(self, path: str, body: bytes) -> None:
        """Add the upload to the outbox: it replaces a waiting one of the same path (only the
        newest state of a system matters upstream); beyond ``outbox_max`` the oldest entries
        are dropped."""
        outbox = self.root / _OUTBOX
        tag = hashlib.sha256(path.encode()).hexdigest()[:16]
        doc = {"path": path, "snapshot": body.decode("utf-8")}
        with self._outbox_lock:
            # Names sort in the order queued, also within one tick of the clock.
            self._last_ns = max(time.time_ns(), self._last_ns + 1)
            item = outbox / f"{self._last_ns}-{tag}.json"
            outbox.mkdir(exist_ok=True)
            atomic_write(item, json.dumps(doc).encode())
            waiting = []
            for entry in sorted(outbox.glob("*.json")):
                if entry != item and entry.name.endswith(f"-{tag}.json"):
                    entry.unlink(missing_ok=True)
                else:
                    waiting.append(entry)
            for entry in waiting[: max(len(waiting) - self.outbox_max, 0)]:
                entry.unlink(missing_ok=True)
                self.dropped += 1

    def get(self, path: str, owner: str | None) -> bytes:
        """The latest snapshot stored at ``path``. Raises :class:`SnapshotRefused` (403 for
        another system's, 404 when there is none)."""
        if owner is None:
            raise SnapshotRefused(403, "the client certificate carries no system name")
        parts = path.split("/")
        names = [*parts[:-1], parts[-1].removesuffix(".spr")]
        try:
            for name in names:
                validate_system_name(name)
        except InputError as e:
            raise SnapshotRefused(404, str(e)) from e
        if names[0] != owner:
            raise SnapshotRefused(403, f"system {owner!r} may read its own snapshots only")
        try:
            return self.root.joinpath(*names, "latest.spr").read_bytes()
        except OSError:
            raise SnapshotRefused(404, "no snapshot stored") from None

    def pending(self) -> int:
        """How many uploads wait to be forwarded."""
        outbox = self.root / _OUTBOX
        return len(list(outbox.glob("*.json"))) if outbox.is_dir() else 0

    def flush(self, send: Callable[[str, bytes], int]) -> tuple[int, int]:
        """Forward each waiting upload, oldest first, with ``send(path, body) -> HTTP status``
        (raising ``OSError``, :class:`NetworkError` or a :class:`requests.RequestException`
        when the upstream cannot be reached). Returns (forwarded, refused); what could not be
        sent (unreachable, 5xx, 429) stays for next time."""
        outbox = self.root / _OUTBOX
        sent = refused = 0
        if not outbox.is_dir():
            return 0, 0
        for item in sorted(outbox.glob("*.json")):
            try:
                raw = item.read_bytes()
            except FileNotFoundError:
                continue  # replaced by a newer upload of the same system, or dropped
            except OSError:
                break
            try:
                doc = json.loads(raw)
                upload, body = doc["path"], doc["snapshot"].encode("utf-8")
            except (ValueError, KeyError, TypeError, AttributeError):
                status = 400
            else:
                try:
                    status = send(upload, body)
                except (OSError, NetworkError, requests.RequestException):
                    break
            if 200 <= status < 300:
                sent += 1
            elif status == 429:
                break  # the upstream's rate limit: the same upload is welcome later
            elif 400 <= status < 500:
                # Refused for good (the upstream's rule or our bytes): retrying cannot help.
                refused += 1
            else:
                break
            with contextlib.suppress(FileNotFoundError):
                item.unlink()
        return sent, refused


def _uploads(folder: Path) -> list[tuple[Path, int]]:
    """The uploads kept in ``folder`` with their sizes, oldest first (names start with the
    time)."""
    found = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name.startswith(".") or entry.name == _LATEST or not entry.name.endswith(".spr"):
            continue
        with contextlib.suppress(FileNotFoundError):
            if entry.is_file(follow_symlinks=False):
                found.append((Path(entry.path), entry.stat(follow_symlinks=False).st_size))
    return found


def _usage(folder: Path) -> int:
    """What the files under ``folder`` count against a quota (temporaries excluded)."""
    total = 0
    for base, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                with contextlib.suppress(FileNotFoundError):
                    total += disk_charge(os.lstat(os.path.join(base, name)).st_size)
    return total
