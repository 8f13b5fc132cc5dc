"""The orchestrator: resolve -> fetch -> verify -> plan -> apply.

:class:`Home` is the library's front door for an installation. It joins the edges (a
:class:`~steppatch.transport.Fetcher` for the repository, the home's files and cache) to the pure
core (recipes, solver, plan). Every CLI command about a home is one call of it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import attrs
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from steppatch.config import HomeConfig
from steppatch.errors import BadReference, IntegrityError, UnknownReference
from steppatch.formats import parse_index, parse_manifest
from steppatch.home import HomeDir
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import (
    ComponentVersion,
    EntryKind,
    FileRef,
    HomeState,
    InstalledComponent,
    Manifest,
    Recipe,
    RecipeKind,
    RepositoryIndex,
)
from steppatch.plan import Plan, TreeEntry, component_changes, merge_manifests
from steppatch.recipe import dump_recipe, parse_recipe, pinned_recipe
from steppatch.solver import solve
from steppatch.store import ObjectStore
from steppatch.transport import Fetcher, fetch_bytes, fetcher_for

__all__ = ["Home", "Progress", "RepositoryClient", "Update", "split_refs"]

#: ``progress(stage, done, total)``: called as long work advances (bytes for downloads)
Progress = Callable[[str, int, int], None]

INDEX_PATH = "index.json"


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def split_refs(text: str) -> list[str]:
    """``"to:a.spr,to:b.spr"`` -> ``["to:a.spr", "to:b.spr"]``; blanks are dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _check(data: bytes, ref: FileRef, what: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != ref.length or digest != ref.sha256:
        raise IntegrityError(
            what,
            f"{ref.length} bytes with sha256 {ref.sha256}",
            f"{len(data)} bytes with sha256 {digest}",
        )


class RepositoryClient:
    """Reads one repository through a fetcher, checking every document against the index."""

    def __init__(self, fetcher: Fetcher, limits: Limits = DEFAULT_LIMITS) -> None:
        self.fetcher = fetcher
        self.limits = limits
        self._index: RepositoryIndex | None = None

    def index(self) -> RepositoryIndex:
        """The repository's index (fetched once per client)."""
        if self._index is None:
            data = fetch_bytes(self.fetcher, INDEX_PATH, self.limits.max_index_bytes, "index")
            self._index = parse_index(data, f"{self.fetcher.url}/{INDEX_PATH}", self.limits)
        return self._index

    def recipe(self, path: str) -> Recipe:
        """The recipe published at ``path``. Raises :class:`UnknownReference` if there is none."""
        ref = self.index().recipes.get(path)
        if ref is None:
            raise UnknownReference(f"to:{path}", self.fetcher.url)
        data = fetch_bytes(self.fetcher, path, ref.length, f"recipe {path}")
        _check(data, ref, f"recipe {path}")
        return parse_recipe(data, f"to:{path}", self.limits)

    def manifest(self, cv: ComponentVersion) -> Manifest:
        """The manifest of a listed component version, checked against the index."""
        what = f"manifest of {cv.name} {cv.version}"
        data = fetch_bytes(self.fetcher, cv.manifest.path, cv.manifest.length, what)
        _check(data, cv.manifest, what)
        manifest = parse_manifest(data, what, self.limits)
        if (manifest.component, manifest.version) != (cv.name, cv.version):
            raise IntegrityError(
                what, f"{cv.name} {cv.version}", f"{manifest.component} {manifest.version}"
            )
        return manifest

    def fetch_object(self, sha256: str, size: int, store: ObjectStore) -> None:
        """Download one object into ``store``, verified (length and hash) before it is kept."""
        path = f"objects/{sha256[:2]}/{sha256}"
        store.add(self.fetcher.fetch(path), sha256, size, f"object {sha256}")


@attrs.frozen
class Update:
    """Newer versions of an installed component (oldest first), with their notes."""

    name: str
    installed: Version
    available: tuple[ComponentVersion, ...]


@attrs.frozen
class _Resolution:
    plan: Plan
    state: HomeState
    tree: dict[str, TreeEntry]
    old_tree: dict[str, TreeEntry]
    missing: tuple[tuple[str, int], ...]


class Home:
    """One installation. Construct with :meth:`init` or :meth:`open`."""

    def __init__(
        self,
        files: HomeDir,
        fetcher: Fetcher | None = None,
        limits: Limits = DEFAULT_LIMITS,
        progress: Progress | None = None,
    ) -> None:
        self.files = files
        self.limits = limits
        self.progress = progress or _no_progress
        self._fetcher = fetcher
        self._client: RepositoryClient | None = None

    @classmethod
    def init(
        cls, path: Path | str, updates: str, system: str = "", limits: Limits = DEFAULT_LIMITS
    ) -> Home:
        """Make a new, empty home at ``path`` that takes updates from ``updates``.

        Raises :class:`~steppatch.errors.ConfigError` for a URL steppatch cannot use and
        :class:`~steppatch.errors.HomeError` if ``path`` is a home already.
        """
        fetcher = fetcher_for(updates)
        files = HomeDir.create(Path(path), HomeConfig(updates=updates, system=system))
        return cls(files, fetcher, limits)

    @classmethod
    def open(
        cls,
        path: Path | str,
        limits: Limits = DEFAULT_LIMITS,
        fetcher: Fetcher | None = None,
        progress: Progress | None = None,
    ) -> Home:
        """Open the home at ``path``. Raises :class:`~steppatch.errors.HomeError`."""
        return cls(HomeDir.open(Path(path)), fetcher, limits, progress)

    @property
    def path(self) -> Path:
        return self.files.root

    @property
    def repository(self) -> RepositoryClient:
        """The client for the home's repository (made on first use)."""
        if self._client is None:
            fetcher = self._fetcher or fetcher_for(self.files.config.updates)
            self._client = RepositoryClient(fetcher, self.limits)
        return self._client

    # --- reading -------------------------------------------------------------------------------

    def status(self) -> HomeState:
        """What is installed."""
        with self.files.locked(self.limits.lock_timeout_seconds):
            return self.files.state()

    def snapshot(self, path: Path | str | None = None) -> Recipe:
        """The home's thin snapshot (component versions only); written to ``path`` if given."""
        with self.files.locked(self.limits.lock_timeout_seconds):
            recipe = self._thin_snapshot(self.files.state())
        if path is not None:
            Path(path).write_bytes(dump_recipe(recipe))
        return recipe

    def showupdates(self) -> list[Update]:
        """For each installed component, the newer versions the repository has."""
        installed = self.status().versions()
        index = self.repository.index()
        updates = []
        for name, version in installed.items():
            newer = tuple(
                index.components[name][v] for v in index.versions(name) if v > version
            )
            updates.append(Update(name, version, newer))
        return updates

    # --- changing -------------------------------------------------------------------------------

    def prepare(self, refs: Sequence[str]) -> Plan:
        """Resolve ``refs`` and download what applying them needs; the managed tree is untouched.

        Raises :class:`~steppatch.errors.ResolutionImpossible` when the request cannot be met,
        :class:`~steppatch.errors.UnknownReference` / :class:`BadReference` for bad references,
        :class:`~steppatch.errors.PathConflict` when two components claim a path, and
        repository or network errors from fetching.
        """
        with self.files.locked(self.limits.lock_timeout_seconds):
            resolution = self._resolve(refs)
            self._download(resolution.missing)
            return resolution.plan

    def apply(self, refs: Sequence[str]) -> Plan:
        """Bring the home to what ``refs`` ask for: resolve, download, build, switch.

        A crash at any point leaves the old state or the new one. Raises what :meth:`prepare`
        raises, and :class:`~steppatch.errors.IntegrityError` for a corrupt object (the cache
        entry is removed; the home is unchanged).
        """
        with self.files.locked(self.limits.lock_timeout_seconds):
            resolution = self._resolve(refs)
            if resolution.plan.empty:
                return resolution.plan
            self._download(resolution.missing)
            self.progress("install", 0, len(resolution.tree))
            tree_id = self.files.build_tree(resolution.tree, resolution.old_tree)
            old_state = self.files.state()
            self.files.record_history(
                f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.spr",
                dump_recipe(self._thin_snapshot(old_state)),
            )
            self.files.commit(tree_id, resolution.state)
            self.progress("install", len(resolution.tree), len(resolution.tree))
            return resolution.plan

    # --- internals -------------------------------------------------------------------------------

    def _thin_snapshot(self, state: HomeState) -> Recipe:
        return pinned_recipe(
            RecipeKind.SNAPSHOT,
            state.versions(),
            name=f"snapshot-{self.files.config.system or 'home'}",
            system=self.files.config.system,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )

    def _load_ref(self, ref: str) -> Recipe:
        if ref.startswith("to:"):
            path = ref[3:]
            if not path:
                raise BadReference(ref, "'to:' needs a recipe path")
            return self.repository.recipe(path)
        local = Path(ref)
        if not local.is_file():
            raise BadReference(ref, "not 'to:PATH' and no such local .spr file")
        data = local.read_bytes()
        return parse_recipe(data, ref, self.limits)

    def _resolve(self, refs: Sequence[str]) -> _Resolution:
        if not refs:
            raise BadReference("", "no reference given")
        recipes = [self._load_ref(ref) for ref in refs]
        wanted: dict[str, SpecifierSet] = {}
        for recipe in recipes:
            for name, spec in recipe.components.items():
                wanted[name] = wanted.get(name, SpecifierSet()) & spec
        state = self.files.state()
        installed = state.versions()
        exact = any(r.exact for r in recipes)
        keep = {n: v for n, v in installed.items() if n in wanted} if exact else installed
        index = self.repository.index()
        target = solve(
            [Requirement(f"{name}{spec}") for name, spec in sorted(wanted.items())],
            index,
            installed=keep,
            max_rounds=self.limits.solver_max_rounds,
        )
        changes = component_changes(installed, target, set(wanted))
        components: dict[str, InstalledComponent] = {}
        for name, version in sorted(target.items()):
            held = state.components.get(name)
            if held is not None and held.version == version:
                components[name] = held
                continue
            cv = index.components[name][version]
            manifest = self.repository.manifest(cv)
            components[name] = InstalledComponent(manifest, cv.manifest.sha256, cv.hot)
        tree = merge_manifests({n: c.manifest for n, c in components.items()})
        old_tree = merge_manifests({n: c.manifest for n, c in state.components.items()})
        missing = _missing_objects(tree, old_tree, self.files.cache)
        hot = all(c.new is not None and components[c.name].hot for c in changes)
        plan = Plan(
            target=target,
            changes=changes,
            hot=hot,
            download_objects=len(missing),
            download_bytes=sum(size for _sha, size in missing),
        )
        return _Resolution(plan, HomeState(components), tree, old_tree, missing)

    def _download(self, missing: Iterable[tuple[str, int]]) -> None:
        items = list(missing)
        total = sum(size for _sha, size in items)
        done = 0
        self.progress("download", done, total)
        for sha256, size in items:
            self.repository.fetch_object(sha256, size, self.files.cache)
            done += size
            self.progress("download", done, total)


def _missing_objects(
    tree: dict[str, TreeEntry], old_tree: dict[str, TreeEntry], cache: ObjectStore
) -> tuple[tuple[str, int], ...]:
    """Objects the new tree needs that neither the live tree (same entry) nor the cache holds."""
    needed: dict[str, int] = {}
    for path, held in tree.items():
        e = held.entry
        if e.kind is not EntryKind.FILE or e.sha256 is None:
            continue
        before = old_tree.get(path)
        if before is not None and before.entry == e:
            continue
        if not cache.has(e.sha256):
            needed[e.sha256] = e.size
    return tuple(sorted(needed.items()))

