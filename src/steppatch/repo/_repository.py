"""A repository on local disk, as the release engineer builds it.

Layout (``docs/formats.md``)::

    index.json                             every component version and recipe, with hashes
    NAME/MAJOR.MINOR/NAME-VERSION.spr       component recipes
    NAME/latest.spr                        the newest version's recipe
    manifests/ab/abcdef....json            manifests, by sha256 of their bytes
    objects/ab/abcdef...                   file contents, by sha256

``index.json`` is written last, atomically: it is the repository's commit point, and a reader
never sees a version whose manifest or objects are missing.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs
from packaging.version import Version

from steppatch._fs import atomic_write, file_lock
from steppatch.errors import (
    ConfigError,
    MissingFile,
    ReleaseError,
    RepositoryConflict,
    ResolutionImpossible,
    UnsafePath,
)
from steppatch.formats import dump_index, dump_manifest, parse_index
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import (
    ComponentVersion,
    FileRef,
    Recipe,
    RecipeKind,
    RepositoryIndex,
)
from steppatch.paths import safe_relpath
from steppatch.recipe import component_recipe, dump_recipe, pinned_recipe
from steppatch.repo._source import ComponentSource, read_source
from steppatch.solver import solve
from steppatch.store import ObjectStore
from steppatch.versions import major_minor

__all__ = ["AddResult", "Repository"]

INDEX_PATH = "index.json"
_LOCK_NAME = ".steppatch-repo.lock"


@attrs.frozen
class AddResult:
    """What :meth:`Repository.add` did for one source."""

    name: str
    version: Version
    added: bool
    recipe: str


def sha256_bytes(data: bytes) -> str:
    """The sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def component_recipe_path(name: str, version: Version) -> str:
    """``restapi/7.0/restapi-7.0.40.spr``."""
    return f"{name}/{major_minor(version)}/{name}-{version}.spr"


class Repository:
    """A repository directory that this process may write. Open with :meth:`open`."""

    def __init__(self, root: Path, index: RepositoryIndex, limits: Limits) -> None:
        self.root = root
        self._index = index
        self.limits = limits
        self.objects = ObjectStore(root / "objects", durable=True)

    @property
    def index(self) -> RepositoryIndex:
        """The repository's current index."""
        return self._index

    @classmethod
    def init(cls, root: Path | str, limits: Limits = DEFAULT_LIMITS) -> Repository:
        """Make an empty repository in ``root`` (created if missing, else it must be empty).

        Raises :class:`ConfigError` if ``root`` holds anything.
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        if any(root.iterdir()):
            raise ConfigError(str(root), "not empty: a new repository needs an empty directory")
        index = RepositoryIndex()
        atomic_write(root / INDEX_PATH, dump_index(index))
        return cls(root, index, limits)

    @classmethod
    def open(cls, root: Path | str, limits: Limits = DEFAULT_LIMITS) -> Repository:
        """Open an existing repository. Raises :class:`ConfigError` if it is not one."""
        root = Path(root)
        try:
            data = (root / INDEX_PATH).read_bytes()
        except FileNotFoundError:
            raise ConfigError(str(root), "not a repository (no index.json)") from None
        return cls(root, parse_index(data, str(root / INDEX_PATH), limits), limits)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Re-read the index under the lock: another process may have published meanwhile.
        with file_lock(self.root / _LOCK_NAME, timeout=60):
            data = (self.root / INDEX_PATH).read_bytes()
            self._index = parse_index(data, str(self.root / INDEX_PATH), self.limits)
            yield

    def add(self, source_dir: Path | str) -> AddResult:
        """Publish the component version in ``source_dir``.

        The same name and version with identical content is a no-op (``added`` is false); with
        different content :class:`RepositoryConflict` is raised and nothing is written. Raises
        :class:`~steppatch.errors.ComponentSourceError` for a bad source.
        """
        source = read_source(Path(source_dir), self.limits)
        manifest_bytes = dump_manifest(source.manifest)
        manifest_sha = sha256_bytes(manifest_bytes)
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
        )
        with self._locked():
            existing = self._index.get(source.name, source.version)
            if existing == entry:
                return AddResult(source.name, source.version, False, recipe_path)
            if existing is not None:
                raise RepositoryConflict(
                    f"{source.name} {source.version} is already published with different "
                    f"{_difference(existing, entry)}; publish a new version instead"
                )
            self._write_objects(source)
            self._write_file(entry.manifest.path, manifest_bytes)
            recipe_bytes = dump_recipe(component_recipe(source.name, source.version))
            recipes = dict(self._index.recipes)
            recipes[recipe_path] = self._write_file(recipe_path, recipe_bytes)
            components = {n: dict(vs) for n, vs in self._index.components.items()}
            components.setdefault(source.name, {})[source.version] = entry
            newest = max(components[source.name])
            latest_path = f"{source.name}/latest.spr"
            recipes[latest_path] = self._write_file(
                latest_path, dump_recipe(component_recipe(source.name, newest))
            )
            self._commit(RepositoryIndex(components, recipes))
        return AddResult(source.name, source.version, True, recipe_path)

    def release(self, path: str, pins: Mapping[str, Version], name: str = "") -> Recipe:
        """Publish a release recipe at ``path`` pinning exactly ``pins``.

        Raises :class:`ReleaseError` when a pinned version does not exist or the set does not
        satisfy its own dependency ranges (including a dependency it does not pin), and
        :class:`RepositoryConflict` when ``path`` already holds a different recipe.
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
            index = self._index
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
                if held.sha256 == sha256_bytes(data):
                    return recipe
                raise RepositoryConflict(f"{path} already holds a different recipe")
            if path == INDEX_PATH or path.startswith(("objects/", "manifests/")):
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

    def _write_file(self, path: str, data: bytes) -> FileRef:
        target = self.root / safe_relpath(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
        return FileRef(path, sha256_bytes(data), len(data))

    def _commit(self, index: RepositoryIndex) -> None:
        atomic_write(self.root / INDEX_PATH, dump_index(index))
        self._index = index


def _difference(old: ComponentVersion, new: ComponentVersion) -> str:
    for field in ("manifest", "dependencies", "hot", "summary", "notes"):
        if getattr(old, field) != getattr(new, field):
            return "files" if field == "manifest" else field
    return "content"

