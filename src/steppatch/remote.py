"""Reading a repository through an untrusted channel: every byte traced to signed metadata.

:class:`RepositoryClient` runs one update session in the order TUF prescribes: root one version
at a time (N -> N+1), then the timestamp, then the index it pins; each verified by the core
(:mod:`steppatch.trust`) before it is stored (atomically) or used. Recipes and manifests are then
checked against the lengths and hashes of the verified index, objects against their manifests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from steppatch._fs import atomic_write
from steppatch.clock import Clock, utcnow
from steppatch.errors import HomeError, IntegrityError, MissingFile, TooLarge, UnknownReference
from steppatch.formats import index_from_json, parse_manifest
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import ComponentVersion, Manifest, Recipe, RepositoryIndex
from steppatch.recipe import parse_recipe
from steppatch.store import ObjectStore
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

__all__ = ["Clock", "MetadataStore", "RepositoryClient", "fetch_root_for_tofu", "utcnow"]

T = TypeVar("T")

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

