"""A repository on local disk, as the release engineer builds it.

Layout (``docs/formats.md``)::

    root.json, roots/N.root.json           the root of trust: keys and thresholds of each role
    timestamp.json                         short-lived; pins the current index by version and hash
    indexes/N.index.json                   the signed index: every component version and recipe
    NAME/MAJOR.MINOR/NAME-VERSION.spr       component recipes
    NAME/latest.spr                        the newest version's recipe
    manifests/ab/abcdef....json            manifests, by sha256 of their bytes
    objects/ab/abcdef...                   file contents, by sha256
    transfers/ab/abcdef....json            each version's deltas and compressed forms (optional)
    deltas/ab/abcdef...                    deltas and compressed forms, by sha256 of their bytes

``timestamp.json`` is written last, atomically: it is the repository's commit point, and a reader
never sees a version whose manifest or objects are missing. Indexes are written under their version
so that a reader holding an older timestamp still finds the index it pins. Signing keys live in a
key directory outside the published tree (by default ``REPO.keys`` beside ``REPO``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from packaging.version import Version

from steppatch import _record as record
from steppatch._fs import atomic_write, file_lock
from steppatch.errors import (
    ConfigError,
    MissingFile,
    ReleaseError,
    RepositoryConflict,
    RepositoryError,
    ResolutionImpossible,
    UnsafePath,
)
from steppatch.formats import (
    dump_manifest,
    dump_transfers,
    index_from_json,
    index_to_json,
    parse_manifest,
)
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import (
    ComponentVersion,
    FileRef,
    Manifest,
    Recipe,
    RecipeKind,
    RepositoryIndex,
    Transfers,
)
from steppatch.paths import safe_relpath
from steppatch.recipe import component_recipe, dump_recipe, pinned_recipe
from steppatch.repo._deltas import compute_transfers
from steppatch.repo._keys import KeyRing, check_outside, default_key_dir
from steppatch.repo._source import ComponentSource, read_source
from steppatch.solver import solve
from steppatch.store import ObjectStore
from steppatch.trust import (
    ROLES,
    Root,
    SigningKey,
    TrustedMetadataSet,
    load_trusted_root,
    make_index,
    make_root,
    make_timestamp,
    rotate,
    sha256_hex,
    sign,
    verify_length_and_hash,
)
from steppatch.versions import major_minor

__all__ = ["AddResult", "Expiry", "Repository", "component_recipe_path", "published_index"]

ROOT_PATH = "root.json"
TIMESTAMP_PATH = "timestamp.json"
_LOCK_NAME = ".steppatch-repo.lock"
_RESERVED = (
    "root.json",
    "timestamp.json",
    "roots/",
    "indexes/",
    "objects/",
    "manifests/",
    "transfers/",
    "deltas/",
)


def root_path(version: int) -> str:
    """Where root version ``version`` is published."""
    return f"roots/{version}.root.json"


def index_path(version: int) -> str:
    """Where index version ``version`` is published."""
    return f"indexes/{version}.index.json"


@record.frozen
class Expiry:
    """How long each role's metadata stays valid after signing (days)."""

    root_days: float = 365
    index_days: float = 365
    timestamp_days: float = 7


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@record.frozen
class AddResult:
    """What :meth:`Repository.add` did for one source."""

    name: str
    version: Version
    added: bool
    recipe: str


def component_recipe_path(name: str, version: Version) -> str:
    """``restapi/7.0/restapi-7.0.40.spr``."""
    return f"{name}/{major_minor(version)}/{name}-{version}.spr"


class Repository:
    """A repository directory that this process publishes to. Make with :meth:`init`, or
    :meth:`open` an existing one.
    """

    def __init__(
        self,
        root: Path,
        trusted: _Published,
        key_dir: Path,
        limits: Limits,
        expiry: Expiry,
    ) -> None:
        self.root = root
        self.key_dir = key_dir
        self.limits = limits
        self.expiry = expiry
        self.objects = ObjectStore(root / "objects", durable=True)
        self.deltas = ObjectStore(root / "deltas", durable=True)
        self._published = trusted
        self._ring: KeyRing | None = None

    @property
    def index(self) -> RepositoryIndex:
        """The repository's current index."""
        return self._published.index

    @property
    def trusted_root(self) -> Root:
        """The current root metadata (keys and thresholds)."""
        return self._published.root

    @classmethod
    def init(
        cls,
        root: Path | str,
        keys: Path | str | None = None,
        limits: Limits = DEFAULT_LIMITS,
        expiry: Expiry = Expiry(),
    ) -> Repository:
        """Make an empty, signed repository in ``root`` (created if missing, else empty).

        ``keys`` is the key directory: existing keys there are used, else new ones are made
        (default ``ROOT.keys`` beside ``root``). Raises :class:`ConfigError` if ``root`` holds
        anything, :class:`KeysInsideRepository` (before anything is created) if ``keys``, fully
        resolved, lies inside it.
        """
        root = Path(root).absolute()
        key_dir = Path(keys).absolute() if keys else default_key_dir(root)
        check_outside(key_dir, root)
        root.mkdir(parents=True, exist_ok=True)
        if any(root.iterdir()):
            raise ConfigError(str(root), "not empty: a new repository needs an empty directory")
        ring = KeyRing.load(key_dir) if any(key_dir.glob("*.pem")) else KeyRing.create(key_dir)
        now = _utcnow()
        root_bytes = sign(
            make_root(
                {role: [k.public for k in ring.keys[role]] for role in ROLES},
                {role: 1 for role in ROLES},
                1,
                now + dt.timedelta(days=expiry.root_days),
            ),
            ring.keys["root"],
        )
        (root / "roots").mkdir()
        atomic_write(root / root_path(1), root_bytes)
        atomic_write(root / ROOT_PATH, root_bytes)
        trusted_root = load_trusted_root(root_bytes, limits.trust())
        published = _Published(trusted_root, RepositoryIndex(), 0, 0)
        repo = cls(root, published, key_dir, limits, expiry)
        repo._ring = ring
        repo._commit(RepositoryIndex())
        return repo

    @classmethod
    def open(
        cls,
        root: Path | str,
        keys: Path | str | None = None,
        limits: Limits = DEFAULT_LIMITS,
        expiry: Expiry = Expiry(),
    ) -> Repository:
        """Open an existing repository. Keys are read only when something is signed.

        Raises :class:`ConfigError` if ``root`` is not a repository, :class:`KeysInsideRepository`
        if the key directory (fully resolved) lies inside it, and metadata errors if its
        published metadata does not verify against its own root.
        """
        root = Path(root).absolute()
        key_dir = Path(keys).absolute() if keys else default_key_dir(root)
        check_outside(key_dir, root)
        if not (root / TIMESTAMP_PATH).is_file():
            raise ConfigError(str(root), "not a repository (no timestamp.json)")
        return cls(root, _read_published(root, limits), key_dir, limits, expiry)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Every locked step signs: refuse a key directory inside before touching anything.
        check_outside(self.key_dir, self.root)
        # Re-read under the lock: another process may have published meanwhile.
        with file_lock(self.root / _LOCK_NAME, timeout=60):
            self._published = _read_published(self.root, self.limits)
            yield

    def _keys(self) -> KeyRing:
        # Checked again at each use: the key directory may have become a symlink since open().
        check_outside(self.key_dir, self.root)
        if self._ring is None:
            self._ring = KeyRing.load(self.key_dir)
        return self._ring

    def add(
        self, source_dir: Path | str, progress: Callable[[str, int, int], None] | None = None
    ) -> AddResult:
        """Publish the component version in ``source_dir``.

        The same name and version with identical content is a no-op (``added`` is false); with
        different content :class:`RepositoryConflict` is raised and nothing is written. Raises
        :class:`~steppatch.errors.ComponentSourceError` for a bad source. ``progress(stage,
        done, total)``: stage ``"deltas"``, bytes of new objects whose deltas are made.
        """
        source = read_source(Path(source_dir), self.limits)
        manifest_bytes = dump_manifest(source.manifest)
        manifest_sha = sha256_hex(manifest_bytes)
        recipe_path = component_recipe_path(source.name, source.version)
        entry = ComponentVersion(
            name=source.name,
            version=source.version,
            manifest=FileRef(
                f"manifests/{manifest_sha[:2]}/{manifest_sha}.json",
                manifest_sha,
                len(manifest_bytes),
            ),
            recipe=recipe_path,
            summary=source.summary,
            notes=source.notes,
            hot=source.hot,
            dependencies=source.dependencies,
            config=source.config,
        )
        with self._locked():
            existing = self.index.get(source.name, source.version)
            if existing is not None and record.evolve(existing, transfers=None) == entry:
                return AddResult(source.name, source.version, False, recipe_path)
            if existing is not None:
                raise RepositoryConflict(
                    f"{source.name} {source.version} is already published with different "
                    f"{_difference(existing, entry)}; publish a new version instead"
                )
            self._write_objects(source)
            entry = record.evolve(entry, transfers=self._write_transfers(source, progress))
            self._write_file(entry.manifest.path, manifest_bytes)
            recipe_bytes = dump_recipe(component_recipe(source.name, source.version))
            recipes = dict(self.index.recipes)
            recipes[recipe_path] = self._write_file(recipe_path, recipe_bytes)
            components = {n: dict(vs) for n, vs in self.index.components.items()}
            components.setdefault(source.name, {})[source.version] = entry
            newest = max(components[source.name])
            latest_path = f"{source.name}/latest.spr"
            recipes[latest_path] = self._write_file(
                latest_path, dump_recipe(component_recipe(source.name, newest))
            )
            self._commit(RepositoryIndex(components, recipes))
        return AddResult(source.name, source.version, True, recipe_path)

    def release(
        self, path: str, pins: Mapping[str, Version], name: str = "", *, replace: bool = False
    ) -> Recipe:
        """Publish a release recipe at ``path`` pinning exactly ``pins``.

        ``replace`` lets a channel (``updates/steppatch/latest.spr``) move to another pin set;
        without it, ``path`` is written once. Raises :class:`ReleaseError` when a pinned version
        does not exist or the set does not satisfy its own dependency ranges (including a
        dependency it does not pin), and :class:`RepositoryConflict` when ``path`` already
        holds a different recipe and ``replace`` is false.
        """
        try:
            path = safe_relpath(path)
        except UnsafePath as e:
            raise ReleaseError(f"release path {path!r}: {e.problem}") from None
        if not path.endswith(".spr"):
            raise ReleaseError(f"release path {path!r}: a recipe's name ends in .spr")
        if not pins:
            raise ReleaseError("a release pins at least one component")
        recipe = pinned_recipe(
            RecipeKind.RELEASE, pins, name=name or path.rpartition("/")[2].removesuffix(".spr")
        )
        data = dump_recipe(recipe)
        with self._locked():
            index = self.index
            for pin_name, version in sorted(pins.items()):
                if index.get(pin_name, version) is None:
                    known = ", ".join(str(v) for v in index.versions(pin_name)) or "none"
                    raise ReleaseError(
                        f"{pin_name}=={version} is not in the repository (versions: {known})"
                    )
            requirements = [f"{n}=={v}" for n, v in sorted(pins.items())]
            try:
                solution = solve(requirements, index, max_rounds=self.limits.solver_max_rounds)
            except ResolutionImpossible as e:
                raise ReleaseError(f"the pinned set breaks its own dependencies:\n{e}") from e
            unpinned = sorted(set(solution) - set(pins))
            if unpinned:
                raise ReleaseError(
                    "the release does not pin "
                    + ", ".join(f"{n} (needs {solution[n]} or another match)" for n in unpinned)
                )
            held = index.recipes.get(path)
            if held is not None:
                if held.sha256 == sha256_hex(data):
                    return recipe
                if not replace:
                    raise RepositoryConflict(f"{path} already holds a different recipe")
            if path.startswith(_RESERVED):
                raise ReleaseError(f"release path {path!r} is reserved by the repository layout")
            recipes = dict(index.recipes)
            recipes[path] = self._write_file(path, data)
            self._commit(RepositoryIndex(index.components, recipes))
        return recipe

    def read(self, path: str) -> bytes:
        """The bytes of a published file. Raises :class:`MissingFile`."""
        try:
            return (self.root / safe_relpath(path)).read_bytes()
        except FileNotFoundError:
            raise MissingFile(str(self.root / path)) from None

    def _write_objects(self, source: ComponentSource) -> None:
        for entry in source.manifest.files():
            assert entry.sha256 is not None
            # add_file re-hashes: a source edited since read_source is refused, not published
            self.objects.add_file(source.file_path(entry), entry.sha256, entry.size)

    def _previous_manifests(self, name: str, version: Version) -> list[Manifest]:
        """The manifests of the ``Limits.delta_history_versions`` versions of ``name`` below
        ``version``, newest first; one that cannot be read is left out (no deltas from it)."""
        older = [v for v in self.index.versions(name) if v < version]
        keep = self.limits.delta_history_versions
        found = []
        for v in reversed(older[len(older) - keep :] if keep > 0 else []):
            ref = self.index.components[name][v].manifest
            try:
                data = self.read(ref.path)
                verify_length_and_hash(data, ref.length, ref.sha256, ref.path)
                found.append(parse_manifest(data, ref.path, self.limits))
            except (RepositoryError, OSError):
                continue
        return found

    def _write_transfers(
        self, source: ComponentSource, progress: Callable[[str, int, int], None] | None
    ) -> FileRef | None:
        """Compute and store the deltas and compressed forms of the new version's objects;
        write its transfers document. ``None`` when nothing is cheaper than the objects."""
        previous = self._previous_manifests(source.name, source.version)
        objects = compute_transfers(
            source.manifest, previous, self.objects, self.deltas, self.limits, progress
        )
        if not objects:
            return None
        data = dump_transfers(Transfers(source.name, source.version, objects))
        sha = sha256_hex(data)
        return self._write_file(f"transfers/{sha[:2]}/{sha}.json", data)

    def _write_file(self, path: str, data: bytes) -> FileRef:
        target = self.root / safe_relpath(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
        return FileRef(path, sha256_hex(data), len(data))

    def sign(self, expires: dt.datetime | None = None) -> int:
        """Re-sign the index and timestamp with new versions; return the new index version.

        ``expires`` (aware) overrides both documents' expiry. Raises :class:`ConfigError` when
        the signing keys cannot be read.
        """
        with self._locked():
            self._commit(self.index, expires)
        return self._published.index_version

    def rotate_keys(self, role: str) -> Root:
        """Replace every key of ``role`` by a new one and publish root N+1.

        Root N+1 is signed by the old root keys and (when the root role rotates) the new ones,
        so clients trusting root N move to it. The index and timestamp are re-signed. The old
        keys move to the key directory's ``retired/``. Raises ValueError for an unknown role.
        """
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
        with self._locked():
            ring = self._keys()
            current = self._published.root
            new_key = SigningKey.generate()
            signing = [*ring.keys["root"], *([new_key] if role == "root" else [])]
            data = rotate(
                current,
                signing_keys=signing,
                expires=_utcnow() + dt.timedelta(days=self.expiry.root_days),
                keys_by_role={role: [new_key.public]},
                limits=self.limits.trust(),
            )
            old_keys = list(ring.keys[role])
            ring.add(role, new_key)  # written before anything refers to it: never lost
            new_root = load_trusted_root(data, self.limits.trust())
            atomic_write(self.root / root_path(new_root.version), data)
            atomic_write(self.root / ROOT_PATH, data)
            ring.retire(role, old_keys)
            self._published = record.evolve(self._published, root=new_root)
            self._commit(self.index)
        return self._published.root

    def _commit(self, index: RepositoryIndex, expires: dt.datetime | None = None) -> None:
        ring = self._keys()
        now = _utcnow()
        published = self._published
        version = published.index_version + 1
        index_bytes = sign(
            make_index(
                index_to_json(index),
                version,
                expires or now + dt.timedelta(days=self.expiry.index_days),
            ),
            ring.keys["index"],
        )
        (self.root / "indexes").mkdir(exist_ok=True)
        atomic_write(self.root / index_path(version), index_bytes)
        timestamp_bytes = sign(
            make_timestamp(
                index_bytes,
                version,
                published.timestamp_version + 1,
                expires or now + dt.timedelta(days=self.expiry.timestamp_days),
            ),
            ring.keys["timestamp"],
        )
        atomic_write(self.root / TIMESTAMP_PATH, timestamp_bytes)
        self._published = _Published(
            published.root, index, version, published.timestamp_version + 1
        )


@record.frozen
class _Published:
    root: Root
    index: RepositoryIndex
    index_version: int
    timestamp_version: int


def _read_published(root: Path, limits: Limits) -> _Published:
    """The repository's own metadata, signatures and pins checked (expiry is not: the release
    engineer must be able to re-sign an expired repository).
    """
    trust_limits = limits.trust()
    root_bytes = (root / ROOT_PATH).read_bytes()
    timestamp_bytes = (root / TIMESTAMP_PATH).read_bytes()
    trusted = TrustedMetadataSet.reload(
        root_bytes, timestamp_bytes, None, now=_utcnow(), limits=trust_limits
    )
    timestamp = trusted.timestamp
    assert timestamp is not None
    pin = timestamp.index
    index_bytes = (root / index_path(pin.version)).read_bytes()
    verify_length_and_hash(index_bytes, pin.length, pin.sha256, index_path(pin.version))
    trusted = TrustedMetadataSet.reload(
        root_bytes, timestamp_bytes, index_bytes, now=_utcnow(), limits=trust_limits
    )
    assert trusted.index is not None
    index = index_from_json(trusted.index.payload, str(root / index_path(pin.version)))
    return _Published(trusted.root, index, pin.version, timestamp.version)


def published_index(root: Path, limits: Limits = DEFAULT_LIMITS) -> RepositoryIndex:
    """The index a repository directory publishes now, verified against its own root and the
    timestamp's pin (expiry is not checked). Raises ``OSError`` (a file missing) and
    :class:`~steppatch.errors.RepositoryError` (metadata that does not verify)."""
    return _read_published(Path(root), limits).index


def _difference(old: ComponentVersion, new: ComponentVersion) -> str:
    for field in ("manifest", "dependencies", "hot", "config", "summary", "notes"):
        if getattr(old, field) != getattr(new, field):
            return "files" if field == "manifest" else field
    return "content"

