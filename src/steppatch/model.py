"""The value types everything else passes around: immutable, parsed, checked.

A *component version* has a *manifest* (its files); a *recipe* names component requirements; the
repository's *index* lists every component version and recipe with the hash and length of the
document that describes it; a home's *state* is what is installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from steppatch import _record as record

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet

__all__ = [
    "ComponentVersion",
    "ConfigChecks",
    "Encoded",
    "EntryKind",
    "FileEntry",
    "FileRef",
    "HomeState",
    "InstalledComponent",
    "Manifest",
    "NodeSnapshot",
    "ObjectTransfers",
    "Recipe",
    "RecipeKind",
    "RepositoryIndex",
    "Transfers",
]

def _frozen_map(items: Mapping[Any, Any]) -> Mapping[Any, Any]:
    # Any: attrs converters cannot be generic; the field annotations keep the types.
    return MappingProxyType(dict(items))


class EntryKind(StrEnum):
    """What a manifest entry is."""

    FILE = "file"
    SYMLINK = "symlink"
    DIR = "dir"


@record.frozen
class FileEntry:
    """One entry of a manifest: a regular file, a symlink or a directory, at a safe relative path.

    ``sha256`` and ``size`` are set for files only, ``target`` for symlinks only.
    """

    path: str
    kind: EntryKind
    mode: int = 0o644
    size: int = 0
    sha256: str | None = None
    target: str | None = None


@record.frozen
class Manifest:
    """The files of one component version, sorted by path."""

    component: str
    version: Version
    entries: tuple[FileEntry, ...]

    def files(self) -> Iterable[FileEntry]:
        """The regular-file entries."""
        return (e for e in self.entries if e.kind is EntryKind.FILE)

    @property
    def total_size(self) -> int:
        """Bytes of all regular files."""
        return sum(e.size for e in self.files())


@record.frozen
class FileRef:
    """Where a document lies in a repository and the length and hash it must have."""

    path: str
    sha256: str
    length: int


@record.frozen
class ConfigChecks:
    """Settings of the home's ``config.properties`` that a component version no longer accepts.

    ``deprecated``: keys to remove; ``renamed``: old key to its new name.
    """

    deprecated: tuple[str, ...] = ()
    renamed: Mapping[str, str] = record.field(factory=dict, converter=_frozen_map)

    def __bool__(self) -> bool:
        return bool(self.deprecated or self.renamed)


@record.frozen
class ComponentVersion:
    """A published component version as the repository index lists it."""

    name: str
    version: Version
    manifest: FileRef
    recipe: str
    summary: str = ""
    notes: str = ""
    hot: bool = False
    dependencies: Mapping[str, SpecifierSet] = record.field(
        factory=dict, converter=_frozen_map
    )
    config: ConfigChecks = ConfigChecks()
    #: the version's deltas and compressed forms (``steppatch-transfers/1``), if any
    transfers: FileRef | None = None


@record.frozen
class Encoded:
    """A delta (``base`` set: the sha256 of the object it starts from) or a compressed form
    (``base`` is ``None``) of an object, stored under its own ``sha256`` in ``deltas/``."""

    sha256: str
    length: int
    base: str | None = None
    #: a zip delta (``steppatch.zipdelta``): the length of the target's expanded form
    expanded: int | None = None

    @property
    def path(self) -> str:
        """Where the repository and mirrors publish it."""
        return f"deltas/{self.sha256[:2]}/{self.sha256}"


@record.frozen
class ObjectTransfers:
    """The cheaper ways to an object of ``size`` bytes than downloading it whole."""

    size: int
    compressed: Encoded | None = None
    deltas: tuple[Encoded, ...] = ()


@record.frozen
class Transfers:
    """What a component version's transfers document lists: for objects (by sha256) of its
    manifest, their compressed forms and deltas from objects of earlier versions."""

    component: str
    version: Version
    objects: Mapping[str, ObjectTransfers] = record.field(factory=dict, converter=_frozen_map)


@record.frozen
class RepositoryIndex:
    """Every component version and every recipe a repository publishes."""

    components: Mapping[str, Mapping[Version, ComponentVersion]] = record.field(
        factory=dict, converter=_frozen_map
    )
    recipes: Mapping[str, FileRef] = record.field(factory=dict, converter=_frozen_map)

    def get(self, name: str, version: Version) -> ComponentVersion | None:
        """The listed component version, or ``None``."""
        return self.components.get(name, {}).get(version)

    def versions(self, name: str) -> list[Version]:
        """The versions of ``name``, oldest first (empty for an unknown name)."""
        return sorted(self.components.get(name, {}))

    def dependencies(self, name: str, version: Version) -> Mapping[str, SpecifierSet]:
        """The dependency ranges of a listed version (so an index is a solver's package index)."""
        return self.components[name][version].dependencies


class RecipeKind(StrEnum):
    """The kinds of ``.spr`` documents."""

    COMPONENT = "component"
    RELEASE = "release"
    SNAPSHOT = "snapshot"


@record.frozen
class NodeSnapshot:
    """One node's part of a cluster snapshot: what it had installed when the snapshot was taken."""

    name: str
    versions: Mapping[str, Version] = record.field(converter=_frozen_map)
    environment: str = ""
    fingerprint: str = ""


@record.frozen
class Recipe:
    """A document naming component requirements.

    ``components`` maps a component name to the range it must be in. A snapshot is *exact*: a home
    brought to it has those components and no others.
    """

    kind: RecipeKind
    components: Mapping[str, SpecifierSet] = record.field(converter=_frozen_map)
    name: str = ""
    system: str = ""
    created: str = ""
    #: a snapshot: the environment it was taken of, and a fingerprint of that state
    environment: str = ""
    fingerprint: str = ""
    #: a full snapshot: every managed entry as it was on disk (path -> entry)
    files: Mapping[str, FileEntry] = record.field(factory=dict, converter=_frozen_map)
    #: a cluster snapshot: every node as it was (``components`` are the versions to bring
    #: every node to)
    nodes: tuple[NodeSnapshot, ...] = ()

    @property
    def exact(self) -> bool:
        """Whether components the recipe does not list are removed when it is applied."""
        return self.kind is RecipeKind.SNAPSHOT


@record.frozen
class InstalledComponent:
    """A component version installed in a home, with the manifest it was installed from."""

    manifest: Manifest
    manifest_sha256: str
    hot: bool = False
    config: ConfigChecks = ConfigChecks()

    @property
    def name(self) -> str:
        return self.manifest.component

    @property
    def version(self) -> Version:
        return self.manifest.version


@record.frozen
class HomeState:
    """What a home has installed."""

    components: Mapping[str, InstalledComponent] = record.field(
        factory=dict, converter=_frozen_map
    )

    def versions(self) -> dict[str, Version]:
        """Component name to installed version."""
        return {name: c.version for name, c in sorted(self.components.items())}

    def fingerprint(self) -> str:
        """A digest of exactly what is installed (versions and their manifests' hashes)."""
        import hashlib

        lines = "".join(
            f"{name} {c.version} {c.manifest_sha256}\n"
            for name, c in sorted(self.components.items())
        )
        return hashlib.sha256(lines.encode()).hexdigest()
