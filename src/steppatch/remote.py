"""Reading a repository through an untrusted channel: every byte traced to signed metadata.

:class:`RepositoryClient` runs one update session in the order TUF prescribes: root one version
at a time (N -> N+1), then the timestamp, then the index it pins; each verified by the core
(:mod:`steppatch.trust`) before it is stored (atomically) or used. Recipes and manifests are then
checked against the lengths and hashes of the verified index, objects against their manifests.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from steppatch import _record as record
from steppatch._fs import atomic_write, checkpoint
from steppatch.clock import Clock, utcnow
from steppatch.delta import decode
from steppatch.errors import (
    HomeError,
    IntegrityError,
    MissingFile,
    NetworkError,
    RepositoryError,
    TooLarge,
    UnknownReference,
)
from steppatch.formats import index_from_json, parse_manifest, parse_transfers
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import ComponentVersion, Manifest, Recipe, RepositoryIndex, Transfers
from steppatch.recipe import parse_recipe
from steppatch.routes import Fetch, Route, route_of
from steppatch.store import ObjectStore, hash_file
from steppatch.transport import (
    DownloadProgress,
    Fetcher,
    MirrorPool,
    NoMirrorLeft,
    ObjectRequest,
    download_objects,
    fetch_bytes,
)
from steppatch.trust import (
    Root,
    TrustedMetadataSet,
    load_trusted_root,
    sha256_hex,
    verify_length_and_hash,
)
from steppatch.zipdelta import apply_zip_delta

__all__ = [
    "Clock",
    "MetadataStore",
    "RepositoryClient",
    "RoutedResult",
    "fetch_root_for_tofu",
    "utcnow",
]

T = TypeVar("T")

#: fallbacks from a delta or compressed form to the whole object (``-v`` shows them)
log = logging.getLogger("steppatch.routes")


@record.frozen
class RoutedResult:
    """What :meth:`RepositoryClient.fetch_routed` did: the route each object came by (a
    fallback counted as ``whole``) and, for each fallback, why."""

    done: tuple[Fetch, ...]
    fallbacks: tuple[tuple[str, str], ...] = ()

class MetadataStore:
    """The verified metadata a home trusts: ``root.json``, ``timestamp.json``, ``index.json``.

    Only bytes that passed verification are written here, each atomically.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, role: str) -> bytes | None:
        """The stored document of ``role``, or ``None``."""
        try:
            return (self.root / f"{role}.json").read_bytes()
        except FileNotFoundError:
            return None

    def write(self, role: str, data: bytes) -> None:
        """Store a verified document (nothing is written when it is stored already)."""
        if self.read(role) == data:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / f"{role}.json", data)

    def forget(self, role: str) -> None:
        """Drop a document that is no longer trusted (after a key rotation)."""
        (self.root / f"{role}.json").unlink(missing_ok=True)


def fetch_root_for_tofu(fetcher: Fetcher, limits: Limits = DEFAULT_LIMITS) -> tuple[bytes, Root]:
    """Trust on first use: the repository's current ``root.json``, checked to be self-signed.

    Raises metadata errors if it is not a valid root; the caller shows the key ids to the operator.
    """
    data = fetch_bytes(fetcher, "root.json", limits.max_root_bytes, "root metadata")
    return data, load_trusted_root(data, limits.trust())


class RepositoryClient:
    """Reads one repository through mirrors, trusting only what the signed metadata vouches for.

    ``source`` is a :class:`MirrorPool` (or one fetcher): every document is read and verified
    through :meth:`MirrorPool.call`, so a mirror that is down, answers an error, or serves bytes
    that fail verification (stale or altered metadata included) is skipped for the rest of the
    run and the next one is asked. ``metadata`` holds what this client trusted last time; it must
    hold a root.
    """

    def __init__(
        self,
        source: MirrorPool | Fetcher,
        metadata: MetadataStore,
        limits: Limits = DEFAULT_LIMITS,
        clock: Clock = utcnow,
    ) -> None:
        self.pool = source if isinstance(source, MirrorPool) else MirrorPool.single(source)
        self.metadata = metadata
        self.limits = limits
        self.clock = clock
        self._index: RepositoryIndex | None = None
        self._optional: MirrorPool | None = None

    @property
    def url(self) -> str:
        """The mirror in use, for messages."""
        return self.pool.url

    def _call(self, fn: Callable[[Fetcher], T], what: str) -> T:
        try:
            return self.pool.call(fn, what)
        except NoMirrorLeft as e:
            if len(e.errors) == 1:
                # One mirror: its own error says more than "no mirror left".
                raise next(iter(e.errors.values())) from e
            raise

    def refresh(self) -> TrustedMetadataSet:
        """Run one update session: root rotations, timestamp, index. Store what verified.

        Raises :class:`~steppatch.trust.MetadataError` subclasses for every attack the core
        detects (bad signatures, rollback, freeze by expiry, mix-and-match), network and
        repository errors from fetching, and :class:`HomeError` if no root is trusted; through
        a pool of several mirrors, :class:`~steppatch.transport.NoMirrorLeft` with each one's.
        """
        return self._call(self._refresh, "signed metadata")

    def _refresh(self, fetcher: Fetcher) -> TrustedMetadataSet:
        limits = self.limits.trust()
        root_bytes = self.metadata.read("root")
        if root_bytes is None:
            raise HomeError(str(self.metadata.root), "no trusted root (run 'steppatch init')")
        # One clock reading for the whole session.
        trusted = TrustedMetadataSet.reload(
            root_bytes,
            self.metadata.read("timestamp"),
            self.metadata.read("index"),
            now=self.clock(),
            limits=limits,
        )
        for _ in range(limits.max_root_rotations + 1):
            path = f"roots/{trusted.root.version + 1}.root.json"
            try:
                data = fetch_bytes(fetcher, path, limits.max_root_bytes, "root metadata")
            except MissingFile:
                break
            before = (trusted.timestamp, trusted.index)
            trusted.update_root(data)  # raises RotationLimitReached past the limit
            self.metadata.write("root", data)
            if before != (None, None) and (trusted.timestamp, trusted.index) == (None, None):
                self.metadata.forget("timestamp")
                self.metadata.forget("index")
        data = fetch_bytes(
            fetcher, "timestamp.json", limits.max_timestamp_bytes, "timestamp metadata"
        )
        timestamp = trusted.update_timestamp(data)
        self.metadata.write("timestamp", data)
        if not self._holds_pinned_index(trusted):
            path = f"indexes/{timestamp.index.version}.index.json"
            # Never read past the length the signed timestamp gives, nor past the index limit
            # (a timestamp key alone must not be able to make a home read gigabytes).
            cap = min(timestamp.index.length, limits.max_index_bytes)
            data = fetch_bytes(fetcher, path, cap, "index metadata")
            trusted.update_index(data)
            self.metadata.write("index", data)
        return trusted

    @staticmethod
    def _holds_pinned_index(trusted: TrustedMetadataSet) -> bool:
        # The stored index is the one the new timestamp pins: no need to download it again.
        held, timestamp = trusted.index, trusted.timestamp
        if held is None or timestamp is None:
            return False
        pin = timestamp.index
        return (
            held.version == pin.version
            and len(held.raw) == pin.length
            and sha256_hex(held.raw) == pin.sha256
        )

    def index(self) -> RepositoryIndex:
        """The verified index (one update session per client).

        Raises what :meth:`refresh` raises, and :class:`~steppatch.errors.MalformedDocument` if
        the signed payload is not an index.
        """
        if self._index is None:
            trusted = self.refresh()
            index = trusted.current_index()
            self._index = index_from_json(index.payload, f"{self.url} index")
        return self._index

    def recipe(self, path: str) -> Recipe:
        """The recipe published at ``path``. Raises :class:`UnknownReference` if there is none."""
        ref = self.index().recipes.get(path)
        if ref is None:
            raise UnknownReference(f"to:{path}", self.url)

        cap = min(ref.length, self.limits.max_recipe_bytes)

        def read(fetcher: Fetcher) -> bytes:
            data = fetch_bytes(fetcher, path, cap, f"recipe {path}")
            verify_length_and_hash(data, ref.length, ref.sha256, f"recipe {path}")
            return data

        return parse_recipe(self._call(read, f"recipe {path}"), f"to:{path}", self.limits)

    def manifest(self, cv: ComponentVersion) -> Manifest:
        """The manifest of a listed component version, checked against the index.

        Raises :class:`TooLarge` for a manifest over ``max_manifest_bytes`` (while reading) or
        naming a file over ``max_object_bytes`` (before anything of it is downloaded), and
        :class:`IntegrityError` for one that is not the index's.
        """
        what = f"manifest of {cv.name} {cv.version}"
        cap = min(cv.manifest.length, self.limits.max_manifest_bytes)

        def read(fetcher: Fetcher) -> bytes:
            data = fetch_bytes(fetcher, cv.manifest.path, cap, what)
            verify_length_and_hash(data, cv.manifest.length, cv.manifest.sha256, what)
            return data

        manifest = parse_manifest(self._call(read, what), what, self.limits)
        if (manifest.component, manifest.version) != (cv.name, cv.version):
            raise IntegrityError(
                what, f"{cv.name} {cv.version}", f"{manifest.component} {manifest.version}"
            )
        limit = self.limits.max_object_bytes
        for entry in manifest.files():
            if entry.size > limit:
                raise TooLarge(f"file {entry.path} of {cv.name} {cv.version}", limit)
        return manifest

    def _optional_pool(self) -> MirrorPool:
        # Deltas and transfers documents are optional: a mirror without them (older, or not
        # filled) must stay usable for the objects, so their failures are kept apart.
        if self._optional is None:
            self._optional = self.pool.fork()
        return self._optional

    def transfers(self, cv: ComponentVersion) -> Transfers | None:
        """The verified transfers document of ``cv``, or ``None`` when the index names none or
        no mirror serves a good one (logged: the objects come whole)."""
        ref = cv.transfers
        if ref is None:
            return None
        what = f"transfers of {cv.name} {cv.version}"
        cap = min(ref.length, self.limits.max_transfers_bytes)

        def read(fetcher: Fetcher) -> bytes:
            data = fetch_bytes(fetcher, ref.path, cap, what)
            verify_length_and_hash(data, ref.length, ref.sha256, what)
            return data

        try:
            found = parse_transfers(
                self._optional_pool().call(read, what), what, self.limits
            )
        except (NetworkError, RepositoryError) as e:
            log.info("%s: not used (%s); whole objects instead", what, e)
            return None
        if (found.component, found.version) != (cv.name, cv.version):
            log.info("%s: names %s %s; not used", what, found.component, found.version)
            return None
        return found

    def fetch_routed(
        self,
        fetches: Sequence[Fetch],
        store: ObjectStore,
        scratch: ObjectStore,
        base_of: Callable[[str], Path | None],
        progress: DownloadProgress | None = None,
    ) -> RoutedResult:
        """Get each object of ``fetches`` into ``store`` by its route; any that fails (the
        delta or compressed form missing upstream or damaged, its base gone or drifted, a
        decoding that does not give the object's sha256) comes whole instead, and says so in
        the log. ``scratch`` holds downloaded deltas until decoded; ``base_of(sha256)`` is a
        file said to hold that object (hashed here before use). Raises what
        :meth:`fetch_objects` raises for the whole objects.
        """
        # Outputs a killed run left (the caller holds the home's lock): never objects.
        partial_dir = store.partial_path("x").parent
        if partial_dir.is_dir():
            for stale in partial_dir.glob("*.decode-*"):
                stale.unlink(missing_ok=True)
        encoded = [f for f in fetches if f.encoded is not None and not store.has(f.sha256)]
        done: list[Fetch] = [f for f in fetches if f not in encoded]
        fallbacks: list[tuple[str, str]] = []
        if encoded:
            self.fetch_encoded(encoded, scratch, progress)
            for f in encoded:
                # The chosen route, then the others on offer (another base, the compressed
                # form), then the whole object.
                tries = [f, *(Fetch(f.sha256, f.size, route_of(e), e) for e in f.others)]
                reasons = []
                for attempt in tries:
                    assert attempt.encoded is not None
                    try:
                        if attempt is not f:
                            # A pool of its own: the failure before must not fail it too.
                            self.fetch_encoded(
                                [attempt], scratch, strict=True, pool=self.pool.fork()
                            )
                        if not scratch.has(attempt.encoded.sha256) and not store.has(f.sha256):
                            raise MissingFile(attempt.encoded.path)
                        self._decode_one(attempt, store, scratch, base_of)
                        done.append(attempt)
                        break
                    except (NetworkError, RepositoryError, OSError) as e:
                        reasons.append(f"{attempt.route} failed: {e}")
                    finally:
                        scratch.remove(attempt.encoded.sha256)
                else:
                    done.append(Fetch(f.sha256, f.size))
                if reasons:
                    why = "; ".join(reasons)
                    then = "downloading it whole" if done[-1].route is Route.WHOLE else (
                        f"took {done[-1].route} instead"
                    )
                    log.info("object %s: %s; %s", f.sha256[:16], why, then)
                    fallbacks.append((f.sha256, why))
        whole = [(f.sha256, f.size) for f in done if f.route is Route.WHOLE]
        self.fetch_objects(whole, store, progress=progress)
        return RoutedResult(tuple(done), tuple(fallbacks))

    def fetch_encoded(
        self,
        fetches: Sequence[Fetch],
        scratch: ObjectStore,
        progress: DownloadProgress | None = None,
        *,
        strict: bool = False,
        pool: MirrorPool | None = None,
    ) -> list[Fetch]:
        """Download the deltas and compressed forms of ``fetches`` into ``scratch``, each
        verified (length, sha256); those held afterwards. A failure (an upstream without them)
        is logged, or raised when ``strict``."""
        requests = {}
        for f in fetches:
            assert f.encoded is not None
            requests[f.encoded.sha256] = ObjectRequest(
                f.encoded.path, f.encoded.sha256, f.encoded.length
            )
        try:
            download_objects(
                pool or self._optional_pool(), list(requests.values()), scratch, progress=progress
            )
        except (NetworkError, RepositoryError) as e:
            if strict:
                raise
            log.info("deltas: %s; trying the others one by one", e)
            # One missing file stops the batch and fails its mirror in the shared pool: the
            # rest, each through a pool of its own, so that one missing does not cost them all.
            for req in requests.values():
                if not scratch.has(req.sha256):
                    with contextlib.suppress(NetworkError, RepositoryError):
                        download_objects(self.pool.fork(), [req], scratch)
        return [f for f in fetches if f.encoded is not None and scratch.has(f.encoded.sha256)]

    def _decode_one(
        self,
        f: Fetch,
        store: ObjectStore,
        scratch: ObjectStore,
        base_of: Callable[[str], Path | None],
    ) -> None:
        enc = f.encoded
        assert enc is not None
        if store.has(f.sha256):
            return
        if not scratch.has(enc.sha256):
            raise MissingFile(enc.path)
        base = None
        if enc.base is not None:
            base = base_of(enc.base)
            if base is None:
                raise MissingFile(f"base {enc.base}")
            digest, _size = hash_file(base)  # the base may have drifted since it was listed
            if digest != enc.base:
                raise IntegrityError(f"base {base}", enc.base, digest)
        partial = store.partial_path(f.sha256)
        out = partial.with_name(f"{partial.name}.decode-{os.getpid()}")
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            if enc.expanded is not None and base is not None:
                # A zip delta: between the archives' expanded forms; the archive rebuilt.
                cap = self.limits.max_zip_expanded_bytes
                if enc.expanded > cap:
                    raise TooLarge(f"expanded form of {f.sha256}", cap)
                apply_zip_delta(
                    scratch.path(enc.sha256), base, out, length=f.size, expanded=enc.expanded,
                    max_member_bytes=self.limits.max_zip_member_bytes, max_expanded=cap,
                    threads=self.limits.zip_rebuild_threads,
                    max_pending_bytes=self.limits.zip_rebuild_pending_bytes,
                )  # fmt: skip
            else:
                decode(scratch.path(enc.sha256), out, base=base, length=f.size)
            checkpoint("reconstructed")  # the crash tests: a whole output, not yet adopted
            # adopt hashes it: only the object's own bytes enter the store
            if not store.adopt(out, f.sha256, f.size) and not store.has(f.sha256):
                digest, _size = hash_file(out)
                raise IntegrityError(f"object {f.sha256} from {f.route}", f.sha256, digest)
        finally:
            out.unlink(missing_ok=True)

    def fetch_objects(
        self,
        objects: Sequence[tuple[str, int]],
        store: ObjectStore,
        progress: DownloadProgress | None = None,
    ) -> None:
        """Download ``(sha256, length)`` objects into ``store``, in parallel and resumably, each
        verified (length and hash) before it is kept. Raises :class:`TooLarge`, before any
        download starts, when an object is longer than ``max_object_bytes``, and what
        :func:`~steppatch.transport.download_objects` raises.
        """
        limit = self.limits.max_object_bytes
        for sha, size in objects:
            if size > limit:
                raise TooLarge(f"object {sha}", limit)
        requests = [ObjectRequest(f"objects/{sha[:2]}/{sha}", sha, size) for sha, size in objects]
        download_objects(self.pool, requests, store, progress=progress)

