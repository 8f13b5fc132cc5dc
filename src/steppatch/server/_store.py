"""The mirror's store on disk: signed metadata it verified, and content under its sha256.

Layout (under the configured ``store``)::

    metadata/root.json, timestamp.json, index.json   what the mirror trusts now (verified)
    metadata/roots/N.root.json, indexes/N.index.json every version it verified, served as such
    objects/ab/abcdef...                              recipes, manifests, transfers documents,
                                                      objects, deltas and compressed forms by sha256
    objects/.partial/abcdef...                        fills under way (never served)
    takeout/                                          what is held, in the repository's layout
    snapshots/                                        uploaded thin snapshots
    state.json                                        bulk progress, the RELEASED baseline
    .lock                                             one server per store

Every byte is checked before it is stored: metadata by :mod:`steppatch.trust` (through
:class:`steppatch.remote.RepositoryClient`), content against the length and sha256 the verified
index (recipes, manifests, transfers documents) or a verified manifest (objects) or transfers
document (deltas, compressed forms) gives. A stored file is hashed again
once per process before it is first served. Blocking: called from worker threads.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from steppatch import _record as record
from steppatch._fs import atomic_write, temp_path
from steppatch._json import JsonProblem, parse_json
from steppatch.delta import decode
from steppatch.errors import IntegrityError, RepositoryError, TooLarge
from steppatch.formats import index_from_json, parse_manifest, parse_transfers
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import EntryKind, FileRef, RepositoryIndex
from steppatch.remote import MetadataStore, RepositoryClient, utcnow
from steppatch.server._metrics import Metrics
from steppatch.server._ratelimit import TokenBucket
from steppatch.server._upstream import Upstreams
from steppatch.server.errors import (
    NotServed,
    OptionalMissing,
    StoreError,
    StoreFull,
    UpstreamUnavailable,
)
from steppatch.store import ObjectStore, hash_file
from steppatch.transport import Fetcher, fetch_bytes
from steppatch.trust import (
    Root,
    TrustedMetadataSet,
    load_trusted_root,
    verify_root_update,
)

__all__ = [
    "FillControl",
    "Held",
    "Item",
    "MirrorStore",
    "Stopped",
    "index_item",
    "manifest_objects",
    "manifest_refs",
    "transfers_encoded",
    "transfers_refs",
]

_ROOT_PATH = re.compile(r"roots/([1-9][0-9]{0,8})\.root\.json")
_INDEX_PATH = re.compile(r"indexes/([1-9][0-9]{0,8})\.index\.json")
_MANIFEST_PATH = re.compile(r"manifests/([0-9a-f]{2})/([0-9a-f]{64})\.json")
_OBJECT_PATH = re.compile(r"objects/([0-9a-f]{2})/([0-9a-f]{64})")
_TRANSFERS_PATH = re.compile(r"transfers/([0-9a-f]{2})/([0-9a-f]{64})\.json")
_DELTA_PATH = re.compile(r"deltas/([0-9a-f]{2})/([0-9a-f]{64})")
#: content a mirror relays but no client needs: an upstream without it is not at fault
OPTIONAL_KINDS = frozenset({"transfers", "delta"})
STATE_FORMAT = "steppatch-mirror-state/1"


@record.frozen
class Held:
    """What the server can send, verified: a file on disk, or (small documents that are
    replaced while being read, such as ``timestamp.json``) the bytes themselves."""

    file: Path | None
    length: int
    etag: str
    immutable: bool
    data: bytes | None = None


@record.frozen
class Item:
    """Content a fill can fetch: the upstream ``path`` and the length and hash it must have."""

    kind: str
    path: str
    sha256: str
    length: int


class Stopped(Exception):
    """A fill was stopped because the server is shutting down (its partial file is kept)."""


@record.mutable
class FillControl:
    """How one fill runs: capped by ``limiter`` unless a client waits on it (``urgent``)."""

    limiter: TokenBucket | None = None
    urgent: bool = False
    stop: threading.Event = record.field(factory=threading.Event)
    process: str = "client"


@record.mutable
class _Meta:
    root: Root
    root_versions: dict[int, bytes]
    timestamp: bytes | None
    index_versions: dict[int, tuple[int, str]]
    index: RepositoryIndex | None
    index_version: int = 0
    timestamp_version: int = 0
    timestamp_expires: str = ""


class _Recording:
    """A fetcher that keeps the root documents passing through it (so every verified root
    version can be served as ``roots/N.root.json``, not only the newest)."""

    def __init__(self, inner: Fetcher) -> None:
        self.inner = inner
        self.roots: dict[int, bytes] = {}

    @property
    def url(self) -> str:
        return self.inner.url

    def fetch(self, path: str, offset: int = 0) -> Iterator[bytes]:
        m = _ROOT_PATH.fullmatch(path)
        if m is None:
            yield from self.inner.fetch(path, offset)
            return
        parts: list[bytes] = []
        for chunk in self.inner.fetch(path, offset):
            parts.append(chunk)
            yield chunk
        self.roots[int(m.group(1))] = b"".join(parts)


def manifest_refs(index: RepositoryIndex | None) -> dict[str, FileRef]:
    """Every manifest ``index`` lists, by sha256. O(component versions)."""
    if index is None:
        return {}
    return {
        cv.manifest.sha256: cv.manifest for cvs in index.components.values() for cv in cvs.values()
    }


def transfers_refs(index: RepositoryIndex | None) -> dict[str, FileRef]:
    """Every transfers document ``index`` lists, by sha256. O(component versions)."""
    if index is None:
        return {}
    return {
        cv.transfers.sha256: cv.transfers
        for cvs in index.components.values()
        for cv in cvs.values()
        if cv.transfers is not None
    }


def transfers_encoded(data: bytes, what: str, limits: Limits) -> dict[str, int]:
    """The deltas and compressed forms (sha256 -> length) a transfers document's bytes name.
    Raises what :func:`~steppatch.formats.parse_transfers` raises."""
    found = {}
    for ot in parse_transfers(data, what, limits).objects.values():
        for e in (*ot.deltas, *((ot.compressed,) if ot.compressed is not None else ())):
            found[e.sha256] = e.length
    return found


def manifest_objects(data: bytes, what: str, limits: Limits) -> dict[str, int]:
    """The objects (sha256 -> size) a manifest's bytes name. Raises what
    :func:`~steppatch.formats.parse_manifest` raises."""
    manifest = parse_manifest(data, what, limits)
    return {
        e.sha256: e.size
        for e in manifest.entries
        if e.kind is EntryKind.FILE and e.sha256 is not None
    }


def index_item(
    path: str,
    index: RepositoryIndex | None,
    catalogue: Mapping[str, int],
    deltas: Mapping[str, int] | None = None,
) -> Item | None:
    """The content ``path`` is, by a verified ``index``: a recipe, manifest or transfers
    document it lists, an object of a manifest already read into ``catalogue`` (sha256 ->
    size), or a delta or compressed form of a transfers document read into ``deltas``. ``None``
    when ``path`` is none of these (metadata paths are the caller's). Cheap: no I/O.
    """
    if m := _MANIFEST_PATH.fullmatch(path):
        ref = manifest_refs(index).get(m.group(2))
        return None if ref is None else Item("manifest", path, ref.sha256, ref.length)
    if m := _OBJECT_PATH.fullmatch(path):
        size = catalogue.get(m.group(2))
        return None if size is None else Item("object", path, m.group(2), size)
    if m := _TRANSFERS_PATH.fullmatch(path):
        ref = transfers_refs(index).get(m.group(2))
        return None if ref is None else Item("transfers", path, ref.sha256, ref.length)
    if m := _DELTA_PATH.fullmatch(path):
        size = (deltas or {}).get(m.group(2))
        return None if size is None else Item("delta", path, m.group(2), size)
    ref = index.recipes.get(path) if index is not None else None
    return None if ref is None else Item("recipe", path, ref.sha256, ref.length)


def _etag(sha256: str) -> str:
    return f'"{sha256}"'


def _held_bytes(data: bytes, immutable: bool) -> Held:
    return Held(None, len(data), _etag(hashlib.sha256(data).hexdigest()), immutable, data)


def _length_and_hash(data: bytes) -> tuple[int, str]:
    return len(data), hashlib.sha256(data).hexdigest()


def _store_error(path: Path, e: OSError) -> StoreError:
    cause = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(str(path), cause)
    return StoreError(str(path), cause)


class MirrorStore:
    """The store of one mirror (see the module docstring). Thread-safe."""

    def __init__(
        self,
        root: Path,
        trusted_root: bytes,
        metrics: Metrics,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.root = root
        self.limits = limits
        self.metrics = metrics
        self.metadata_dir = root / "metadata"
        self.objects = ObjectStore(root / "objects")
        self.takeout = root / "takeout"
        self.state_file = root / "state.json"
        self._lock = threading.RLock()
        self._verified: set[str] = set()
        self.catalogue: dict[str, int] = {}
        #: deltas and compressed forms (sha256 -> length) of the transfers documents held
        self.delta_catalogue: dict[str, int] = {}
        #: for an object (sha256): the deltas to it (sha256, length, base) those documents offer
        #: target sha256 -> (delta sha256, length, base sha256, expanded length of a zip delta)
        self.delta_routes: dict[str, list[tuple[str, int, str, int | None]]] = {}
        #: optional files no upstream had, in this process (bulk does not ask again)
        self.optional_missing: set[str] = set()
        self._catalogued: set[str] = set()
        #: content being filled or sent now, by sha256: garbage collection leaves it alone
        self.busy: Counter[str] = Counter()
        self.last_refresh: float | None = None
        self.state: dict[str, Any] = {"format": STATE_FORMAT, "baseline": None, "bulk": {}}
        try:
            for d in (self.metadata_dir / "roots", self.metadata_dir / "indexes", self.takeout):
                d.mkdir(parents=True, exist_ok=True)
            self._sweep()
            self.meta = self._load(trusted_root)
            if self.state_file.is_file():
                state = parse_json(self.state_file.read_bytes())
                if not isinstance(state, dict):
                    raise StoreError(str(self.state_file), "not a JSON object")
                self.state = state
        except OSError as e:
            raise _store_error(root, e) from e
        except JsonProblem as e:
            raise StoreError(str(self.state_file), e.problem) from e
        self._catalogue_held()

    # --- loading ---------------------------------------------------------------------------------

    def _sweep(self) -> None:
        # A process killed while writing leaves ObjectStore temporaries (".SHA.tmp-PID-RANDOM"):
        # never objects, only litter. Partial fills are kept: the next fill resumes them.
        objects = self.root / "objects"
        if objects.is_dir():
            for tmp in objects.glob("??/.*.tmp-*"):
                tmp.unlink(missing_ok=True)

    def _load(self, trusted_root: bytes) -> _Meta:
        store = MetadataStore(self.metadata_dir)
        if store.read("root") is None:
            root = load_trusted_root(trusted_root, self.limits.trust())
            store.write("root", trusted_root)
            atomic_write(self.metadata_dir / f"roots/{root.version}.root.json", trusted_root)
        # The stored documents are verified again: a tampered store is refused, not served.
        trusted = TrustedMetadataSet.reload(
            store.read("root") or b"",
            store.read("timestamp"),
            store.read("index"),
            now=utcnow(),
            limits=self.limits.trust(),
        )
        roots = {
            int(p.name.split(".")[0]): p.read_bytes()
            for p in (self.metadata_dir / "roots").glob("*.root.json")
        }
        roots[trusted.root.version] = trusted.root.raw
        indexes = {
            int(p.name.split(".")[0]): _length_and_hash(p.read_bytes())
            for p in (self.metadata_dir / "indexes").glob("*.index.json")
        }
        meta = _Meta(trusted.root, roots, store.read("timestamp"), indexes, None)
        if trusted.index is not None and trusted.timestamp is not None:
            meta.index = index_from_json(trusted.index.payload, "stored index")
            meta.index_version = trusted.index.version
            meta.timestamp_version = trusted.timestamp.version
            meta.timestamp_expires = trusted.timestamp.expires.isoformat()
        return meta

    def _catalogue_held(self) -> None:
        index = self.meta.index
        if index is None:
            return
        for cvs in index.components.values():
            for cv in cvs.values():
                if self.objects.has(cv.manifest.sha256):
                    with contextlib.suppress(RepositoryError, OSError):
                        self._catalogue(cv.manifest.sha256, self.objects.path(cv.manifest.sha256))
                t = cv.transfers
                if t is not None and self.objects.has(t.sha256):
                    with contextlib.suppress(RepositoryError, OSError):
                        self._catalogue_transfers(t.sha256, self.objects.path(t.sha256))

    def _catalogue_transfers(self, sha256: str, file: Path) -> None:
        transfers = parse_transfers(file.read_bytes(), f"transfers {sha256}", self.limits)
        with self._lock:
            for target, ot in transfers.objects.items():
                for e in (*ot.deltas, *((ot.compressed,) if ot.compressed is not None else ())):
                    self.delta_catalogue[e.sha256] = e.length
                    if e.base is not None:
                        routes = self.delta_routes.setdefault(target, [])
                        route = (e.sha256, e.length, e.base, e.expanded)
                        if route not in routes:
                            routes.append(route)
            self._catalogued.add(sha256)

    def _catalogue(self, sha256: str, file: Path) -> None:
        objects = manifest_objects(file.read_bytes(), f"manifest {sha256}", self.limits)
        with self._lock:
            self.catalogue.update(objects)
            self._catalogued.add(sha256)

    # --- what is held ----------------------------------------------------------------------------

    @property
    def index(self) -> RepositoryIndex | None:
        """The verified index the mirror relays now, if any."""
        return self.meta.index

    def _manifest_refs(self) -> dict[str, FileRef]:
        return manifest_refs(self.meta.index)

    def lookup(self, path: str) -> Held | Item:
        """What ``path`` is: metadata held (verified), or content (held or to fill first).

        Cheap: no network. Raises :class:`NotServed` when the verified metadata does not list
        ``path`` (the caller may refresh the metadata, or complete the catalogue, and ask again).
        """
        with self._lock:
            meta = self.meta
            if path == "root.json":
                return _held_bytes(meta.root.raw, immutable=False)
            if path == "timestamp.json":
                if meta.timestamp is None:
                    raise NotServed(path)
                return _held_bytes(meta.timestamp, immutable=False)
            if m := _ROOT_PATH.fullmatch(path):
                data = meta.root_versions.get(int(m.group(1)))
                if data is None:
                    raise NotServed(path)
                return _held_bytes(data, immutable=True)
            if m := _INDEX_PATH.fullmatch(path):
                held = meta.index_versions.get(int(m.group(1)))
                if held is None:
                    raise NotServed(path)
                length, sha = held
                return Held(self.metadata_dir / path, length, _etag(sha), True)
            item = index_item(path, meta.index, self.catalogue, self.delta_catalogue)
            if item is not None:
                # Always an item, held or not: the caller checks a held file once per process.
                return item
            m = _MANIFEST_PATH.fullmatch(path)
            if m is not None and m.group(2) in self._catalogued and self.objects.has(m.group(2)):
                # A manifest of an older index, still held: as verified as when it was filled.
                sha = m.group(2)
                return self._held_object(sha, self.objects.path(sha).stat().st_size)
            raise NotServed(path)

    def _held_object(self, sha256: str, length: int) -> Held:
        return Held(self.objects.path(sha256), length, _etag(sha256), True)

    @contextlib.contextmanager
    def pinned(self, sha256: str) -> Iterator[None]:
        """Mark ``sha256`` busy (being filled or sent) while in the block: not collected."""
        with self._lock:
            self.busy[sha256] += 1
        try:
            yield
        finally:
            with self._lock:
                self.busy[sha256] -= 1
                if self.busy[sha256] <= 0:
                    del self.busy[sha256]

    def forget(self, sha256: str) -> None:
        """Forget a stored file garbage collection removed (call with the lock held)."""
        self.catalogue.pop(sha256, None)
        self._catalogued.discard(sha256)
        self._verified.discard(sha256)

    def needs_check(self, sha256: str) -> bool:
        """Whether a stored file has not been hashed by this process yet."""
        with self._lock:
            return sha256 not in self._verified

    def check(self, item: Item) -> bool:
        """Hash a stored file once per process; a damaged one is removed (``False``: fill it)."""
        try:
            digest, size = hash_file(self.objects.path(item.sha256))
        except FileNotFoundError:
            return False
        except OSError as e:
            raise _store_error(self.root, e) from e
        if (digest, size) != (item.sha256, item.length):
            self.objects.remove(item.sha256)
            self.metrics.inc("store_damaged_total")
            return False
        with self._lock:
            self._verified.add(item.sha256)
        return True

    # --- filling content ----------------------------------------------------------------------

    def fill(self, item: Item, upstreams: Upstreams, control: FillControl) -> Held:
        """Fetch ``item`` from the upstreams, verify it, store it. The one way content enters.

        Resumes a partial fill an earlier process left. Never reads past ``item.length`` (the
        partial file refuses more). Raises :class:`TooLarge` before any byte is fetched when
        the signed length is over the limit of its kind (``max_object_bytes`` and so on),
        :class:`UpstreamUnavailable` (every upstream failed: their reasons),
        :class:`StoreFull` / :class:`StoreError` (the partial file is dropped; nothing is
        stored), :class:`Stopped`.
        """
        limit = self._content_limit(item.kind)
        if item.length > limit:
            # A signed index may still name something no mirror should hold: refused unread.
            raise TooLarge(f"{item.kind} {item.path}", limit)
        if item.kind == "object" and control.process != "client":
            held = self._fill_by_delta(item, upstreams, control)
            if held is not None:
                return held

        def attempt(fetcher: Fetcher) -> None:
            upstream = upstreams.id_of(fetcher)
            self.metrics.inc("upstream_fetches_total", upstream=upstream, kind=item.kind)
            with self.objects.open_partial(item.sha256, item.length, item.path) as part:
                if not part.complete:
                    for chunk in fetcher.fetch(item.path, part.offset):
                        if control.stop.is_set():
                            raise Stopped(item.path)
                        if control.limiter is not None and not control.urgent:
                            control.limiter.acquire(len(chunk))
                        part.write(chunk)
                        self.metrics.inc("upstream_bytes_total", len(chunk), upstream=upstream)
                        if control.process != "client":
                            self.metrics.inc(
                                "bulk_bytes_total", len(chunk), process=control.process
                            )
                part.finish()

        try:
            with self.pinned(item.sha256):
                try:
                    upstreams.call(attempt, item.path, optional=item.kind in OPTIONAL_KINDS)
                except UpstreamUnavailable as e:
                    if item.kind not in OPTIONAL_KINDS:
                        raise
                    with self._lock:
                        self.optional_missing.add(item.sha256)
                    raise OptionalMissing(item.path, str(e)) from e
                self._after_fill(item)
        except OSError as e:
            # A full disk: drop the partial file so the space comes back; nothing was stored.
            self.objects.partial_path(item.sha256).unlink(missing_ok=True)
            raise _store_error(self.root, e) from e
        with self._lock:
            self._verified.add(item.sha256)
        return self._held_object(item.sha256, item.length)

    def _fill_by_delta(
        self, item: Item, upstreams: Upstreams, control: FillControl
    ) -> Held | None:
        """Bulk only: the object rebuilt from the shortest delta (a zip delta for an archive, or
        a plain one) from an object the store holds, when one is offered and shorter; the next
        one on a failure (a zip delta this zlib cannot rebuild takes the plain delta); ``None``
        (fill it whole) when none works."""
        with self._lock:
            offers = sorted(
                (length, dsha, base, expanded)
                for dsha, length, base, expanded in self.delta_routes.get(item.sha256, ())
                if length < item.length and dsha not in self.optional_missing
            )
        for length, dsha, base, expanded in offers:
            # base, delta and result are not collected while the object is rebuilt
            with self.pinned(base), self.pinned(dsha), self.pinned(item.sha256):
                held = self._rebuild(item, dsha, length, base, expanded, upstreams, control)
            if held is not None:
                return held
        return None

    def _rebuild(
        self, item: Item, dsha: str, length: int, base: str, expanded: int | None,
        upstreams: Upstreams, control: FillControl,
    ) -> Held | None:
        """``item`` rebuilt from the delta ``dsha`` (fetched if not held; a zip delta when
        ``expanded`` is its expanded length) and the held ``base``; ``None`` on any failure."""
        if not self.objects.has(base):
            return None
        try:
            if not self.objects.has(dsha):
                self.fill(Item("delta", f"deltas/{dsha[:2]}/{dsha}", dsha, length),
                          upstreams, control)  # fmt: skip
            out = self.objects.partial_path(item.sha256).with_suffix(".decode")
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                if expanded is None:
                    decode(self.objects.path(dsha), out, base=self.objects.path(base),
                           length=item.length)  # fmt: skip
                else:
                    self._rebuild_archive(dsha, base, out, item.length, expanded)
                # adopt hashes it: only the object's own bytes are stored
                if not self.objects.adopt(out, item.sha256, item.length):
                    return None
            finally:
                out.unlink(missing_ok=True)
        except (RepositoryError, UpstreamUnavailable, OSError):
            return None
        self.metrics.inc("objects_from_deltas_total")
        if expanded is not None:
            self.metrics.inc("objects_from_zip_deltas_total")
        with self._lock:
            self._verified.add(item.sha256)
        self._after_fill(item)
        return self._held_object(item.sha256, item.length)

    def _rebuild_archive(self, dsha: str, base: str, out: Path, length: int, expanded: int) -> None:
        """An archive rebuilt from the zip delta ``dsha`` and the held archive ``base``, within a
        home's bounds (expanded form, members, threads, memory). Raises ``DeltaError`` (over a
        bound too: refused before decoding), ``OSError``; ``adopt`` checks the sha256."""
        from steppatch.zipdelta import apply_zip_delta

        limits = self.limits
        apply_zip_delta(
            self.objects.path(dsha), self.objects.path(base), out, length=length,
            expanded=expanded, max_member_bytes=limits.max_zip_member_bytes,
            max_expanded=limits.max_zip_expanded_bytes, threads=limits.zip_rebuild_threads,
            max_pending_bytes=limits.zip_rebuild_pending_bytes,
        )  # fmt: skip

    def _content_limit(self, kind: str) -> int:
        limits = self.limits
        return {
            "recipe": limits.max_recipe_bytes,
            "manifest": limits.max_manifest_bytes,
            "transfers": limits.max_transfers_bytes,
        }.get(kind, limits.max_object_bytes)

    def _after_fill(self, item: Item) -> None:
        file = self.objects.path(item.sha256)
        if item.kind in ("manifest", "transfers"):
            try:
                if item.kind == "manifest":
                    self._catalogue(item.sha256, file)
                else:
                    self._catalogue_transfers(item.sha256, file)
            except RepositoryError:
                # Hash-verified but not a manifest: the index lists garbage. Keep nothing of it.
                self.objects.remove(item.sha256)
                raise
        self._link_takeout(item.path, file)

    def _link_takeout(self, path: str, file: Path) -> None:
        dest = self.takeout / path
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_path(dest)
            os.link(file, tmp)
            try:
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as e:
            # The takeout view is a convenience: a failure to link must not fail the fill.
            self.metrics.inc("takeout_errors_total")
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _store_error(self.root, e) from e

    def complete_catalogue(self, upstreams: Upstreams, control: FillControl) -> bool:
        """Fetch every manifest of the current index not held yet, so that every object the
        index names is known (returns ``True``). Raises what :meth:`fill` raises."""
        for ref in list(self._manifest_refs().values()):
            if self.objects.has(ref.sha256):
                if ref.sha256 not in self._catalogued:
                    self._catalogue(ref.sha256, self.objects.path(ref.sha256))
                continue
            self.fill(Item("manifest", ref.path, ref.sha256, ref.length), upstreams, control)
        for ref in list(transfers_refs(self.meta.index).values()):
            try:
                if self.objects.has(ref.sha256):
                    if ref.sha256 not in self._catalogued:
                        self._catalogue_transfers(ref.sha256, self.objects.path(ref.sha256))
                    continue
                self.fill(Item("transfers", ref.path, ref.sha256, ref.length), upstreams, control)
            except (RepositoryError, UpstreamUnavailable):
                continue  # optional: homes take the whole objects
        return True

    # --- metadata ----------------------------------------------------------------------------

    def refresh(self, upstreams: Upstreams) -> bool:
        """One update session against the upstreams: new roots, the timestamp, the index it pins.

        Every document is verified by :class:`RepositoryClient` before it is stored. Returns
        whether the index changed. Raises :class:`UpstreamUnavailable` with each upstream's
        reason (a refused document counts as that upstream's fault; the next one is tried).
        """
        recorded: dict[int, bytes] = {}

        def session(fetcher: Fetcher) -> TrustedMetadataSet:
            recording = _Recording(fetcher)
            client = RepositoryClient(
                recording, MetadataStore(self.metadata_dir), self.limits, utcnow
            )
            try:
                return client.refresh()
            finally:
                recorded.update(recording.roots)

        try:
            try:
                trusted = upstreams.call(session, "timestamp.json", probe=True)
            finally:
                self._keep_roots(recorded)
            return self._adopt(trusted)
        except OSError as e:
            raise _store_error(self.root, e) from e

    def _keep_roots(self, recorded: dict[int, bytes]) -> None:
        # Keep each recorded root that chains from the one held before: verified again here,
        # so that no root is served that the chain does not vouch for.
        with self._lock:
            current = max(self.meta.root_versions)
            trusted = load_trusted_root(self.meta.root_versions[current], self.limits.trust())
        for version in sorted(v for v in recorded if v > current):
            if version != trusted.version + 1:
                break
            try:
                trusted = verify_root_update(trusted, recorded[version], self.limits.trust())
            except RepositoryError:
                break
            atomic_write(self.metadata_dir / f"roots/{version}.root.json", recorded[version])
            with self._lock:
                self.meta.root_versions[version] = recorded[version]
                self.meta.root = trusted
            name = f"roots/{version}.root.json"
            self._link_takeout(name, self.metadata_dir / name)

    def _adopt(self, trusted: TrustedMetadataSet) -> bool:
        timestamp, index = trusted.timestamp, trusted.index
        assert timestamp is not None and index is not None  # refresh() set both
        index_path = f"indexes/{index.version}.index.json"
        if index.version not in self.meta.index_versions:
            atomic_write(self.metadata_dir / index_path, index.raw)
        parsed = index_from_json(index.payload, f"index {index.version}")
        with self._lock:
            changed = index.version != self.meta.index_version
            self.meta.root = trusted.root
            self.meta.root_versions[trusted.root.version] = trusted.root.raw
            self.meta.timestamp = timestamp.raw
            self.meta.index_versions[index.version] = _length_and_hash(index.raw)
            self.meta.index = parsed
            self.meta.index_version = index.version
            self.meta.timestamp_version = timestamp.version
            self.meta.timestamp_expires = timestamp.expires.isoformat()
            self.last_refresh = time.monotonic()
            if self.state.get("baseline") is None:
                self.state["baseline"] = {
                    "index_version": index.version,
                    "components": sorted(_cv_keys(parsed)),
                    "recipes": sorted(f"{p}@{r.sha256}" for p, r in parsed.recipes.items()),
                }
            self.state["last_refresh"] = utcnow().isoformat()
        self.save_state()
        # The takeout view gets the metadata last, as a publisher writes it.
        self._link_takeout(index_path, self.metadata_dir / index_path)
        self._link_takeout("root.json", self.metadata_dir / "root.json")
        self._link_takeout("timestamp.json", self.metadata_dir / "timestamp.json")
        return changed

    def fill_old_root(self, version: int, upstreams: Upstreams) -> Held:
        """``roots/N.root.json`` for an N older than any held: fetched, and kept only if root N
        signed the held root N+1 (a backward check of the chain). Reads at most
        ``max_root_bytes`` from an upstream. Raises :class:`NotServed` (a gap above N) and
        :class:`UpstreamUnavailable` (every upstream failed or was refused: too large, not
        root N, not signing root N+1; each upstream's reason given); nothing is stored then."""
        with self._lock:
            newer = self.meta.root_versions.get(version + 1)
        if newer is None:
            raise NotServed(f"roots/{version}.root.json")
        path = f"roots/{version}.root.json"

        def attempt(fetcher: Fetcher) -> bytes:
            # Capped while reading: an upstream streaming without end is cut off at the cap.
            data = fetch_bytes(fetcher, path, self.limits.max_root_bytes, "root metadata")
            old = load_trusted_root(data, self.limits.trust())
            if old.version != version:
                raise IntegrityError(path, f"root version {version}", f"version {old.version}")
            verify_root_update(old, newer, self.limits.trust())
            return data

        data = upstreams.call(attempt, path)
        atomic_write(self.metadata_dir / path, data)
        with self._lock:
            self.meta.root_versions[version] = data
        self._link_takeout(path, self.metadata_dir / path)
        return _held_bytes(data, immutable=True)

    # --- bulk plans --------------------------------------------------------------------------

    def bulk_items(self, process: str) -> list[Item]:
        """What the ``historic`` (present at the baseline) or ``released`` (published since)
        process should fetch next and does not hold: recipes, manifests and transfers documents
        first, then the objects of the manifests held, then the deltas and compressed forms of
        the transfers documents held (so that homes can use them). Empty when that process is
        done."""
        with self._lock:
            index = self.meta.index
            baseline = self.state.get("baseline")
            if index is None or baseline is None:
                return []
            old_cvs = set(baseline["components"])
            old_recipes = set(baseline["recipes"])
        historic = process == "historic"
        items: list[Item] = []
        for path, ref in sorted(index.recipes.items()):
            if (f"{path}@{ref.sha256}" in old_recipes) == historic and not self.objects.has(
                ref.sha256
            ):
                items.append(Item("recipe", path, ref.sha256, ref.length))
        manifests: list[str] = []
        transfers: list[str] = []
        for name, cvs in sorted(index.components.items()):
            for version, cv in sorted(cvs.items()):
                if (f"{name}=={version}" in old_cvs) != historic:
                    continue
                manifests.append(cv.manifest.sha256)
                if not self.objects.has(cv.manifest.sha256):
                    ref = cv.manifest
                    items.append(Item("manifest", ref.path, ref.sha256, ref.length))
                if cv.transfers is not None:
                    ref = cv.transfers
                    transfers.append(ref.sha256)
                    if not self.objects.has(ref.sha256):
                        items.append(Item("transfers", ref.path, ref.sha256, ref.length))
        seen: set[str] = set()
        for sha in manifests:
            if not self.objects.has(sha):
                continue
            try:
                manifest = parse_manifest(
                    self.objects.path(sha).read_bytes(), f"manifest {sha}", self.limits
                )
            except (RepositoryError, OSError):
                continue
            for e in manifest.entries:
                if e.kind is not EntryKind.FILE or e.sha256 is None or e.sha256 in seen:
                    continue
                seen.add(e.sha256)
                if not self.objects.has(e.sha256):
                    items.append(
                        Item("object", f"objects/{e.sha256[:2]}/{e.sha256}", e.sha256, e.size)
                    )
        for sha in transfers:
            if not self.objects.has(sha):
                continue
            try:
                encoded = transfers_encoded(
                    self.objects.path(sha).read_bytes(), f"transfers {sha}", self.limits
                )
            except (RepositoryError, OSError):
                continue
            for dsha, length in sorted(encoded.items()):
                if dsha in self.optional_missing:
                    continue
                if dsha not in seen and not self.objects.has(dsha):
                    seen.add(dsha)
                    items.append(Item("delta", f"deltas/{dsha[:2]}/{dsha}", dsha, length))
        return items

    # --- state -------------------------------------------------------------------------------

    def save_state(self) -> None:
        """Write ``state.json`` (for ``steppatch mirror status``). Raises :class:`StoreError`."""
        with self._lock:
            data = json.dumps(self.state, indent=2, sort_keys=True).encode() + b"\n"
        try:
            atomic_write(self.state_file, data)
        except OSError as e:
            raise _store_error(self.state_file, e) from e

    def summary(self) -> dict[str, Any]:
        """What is held, for health and status."""
        with self._lock:
            meta = self.meta
            return {
                "root_version": meta.root.version,
                "timestamp_version": meta.timestamp_version,
                "timestamp_expires": meta.timestamp_expires,
                "index_version": meta.index_version,
                "objects_known": len(self.catalogue),
            }


def _cv_keys(index: RepositoryIndex) -> set[str]:
    return {f"{name}=={v}" for name, cvs in index.components.items() for v in cvs}


def store_usage(root: Path) -> tuple[int, int]:
    """How many files and bytes the content store holds (walks it: O(files))."""
    count = size = 0
    objects = root / "objects"
    if not objects.is_dir():
        return 0, 0
    for sub in objects.iterdir():
        if len(sub.name) != 2 or not sub.is_dir():
            continue
        for f in sub.iterdir():
            if not f.name.startswith("."):
                count += 1
                with contextlib.suppress(OSError):
                    size += f.stat().st_size
    return count, size
