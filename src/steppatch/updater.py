"""The orchestrator: resolve -> fetch -> verify -> plan -> apply.

:class:`Home` is the library's front door for an installation. It joins the edges (a
:class:`~steppatch.transport.Fetcher` for the repository, the home's files and cache) to the pure
core (recipes, solver, plan). Every CLI command about a home is one call of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import attrs
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from steppatch.config import HomeConfig
from steppatch.errors import BadReference, HomeError, InputError
from steppatch.home import HomeDir
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import (
    ComponentVersion,
    EntryKind,
    HomeState,
    InstalledComponent,
    Recipe,
    RecipeKind,
)
from steppatch.plan import Plan, TreeEntry, component_changes, merge_manifests
from steppatch.recipe import dump_recipe, parse_recipe, pinned_recipe
from steppatch.remote import (
    Clock,
    MetadataStore,
    RepositoryClient,
    fetch_root_for_tofu,
    utcnow,
)
from steppatch.solver import solve
from steppatch.store import ObjectStore
from steppatch.transport import Fetcher, fetcher_for
from steppatch.trust import Root, load_trusted_root

__all__ = ["Home", "Progress", "Update", "split_refs"]

#: ``progress(stage, done, total)``: called as long work advances (bytes for downloads)
Progress = Callable[[str, int, int], None]

def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def split_refs(text: str) -> list[str]:
    """``"to:a.spr,to:b.spr"`` -> ``["to:a.spr", "to:b.spr"]``; blanks are dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


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
        clock: Clock = utcnow,
    ) -> None:
        self.files = files
        self.limits = limits
        self.progress = progress or _no_progress
        self.clock = clock
        self._fetcher = fetcher
        self._client: RepositoryClient | None = None

    @classmethod
    def init(
        cls,
        path: Path | str,
        updates: str,
        *,
        root: bytes | None = None,
        trust_on_first_use: bool = False,
        system: str = "",
        limits: Limits = DEFAULT_LIMITS,
        fetcher: Fetcher | None = None,
    ) -> Home:
        """Make a new, empty home at ``path`` that takes updates from ``updates``.

        ``root`` is the repository's root metadata, obtained from its publisher out of band; or,
        with ``trust_on_first_use``, the root the repository serves now is trusted (see
        :attr:`trusted_root` for its key ids). Raises :class:`InputError` if neither or both are
        given, metadata errors if the root is not a valid self-signed root,
        :class:`~steppatch.errors.ConfigError` for a URL steppatch cannot use and
        :class:`~steppatch.errors.HomeError` if ``path`` is a home already.
        """
        if (root is None) == (not trust_on_first_use):
            raise InputError(
                "give the repository's root metadata (--root FILE) or, knowingly, "
                "--trust-on-first-use"
            )
        fetcher = fetcher or fetcher_for(updates)
        if root is None:
            root, _ = fetch_root_for_tofu(fetcher, limits)
        else:
            load_trusted_root(root, limits.trust())
        files = HomeDir.create(Path(path), HomeConfig(updates=updates, system=system))
        MetadataStore(files.metadata_dir).write("root", root)
        return cls(files, fetcher, limits)

    @classmethod
    def open(
        cls,
        path: Path | str,
        limits: Limits = DEFAULT_LIMITS,
        fetcher: Fetcher | None = None,
        progress: Progress | None = None,
        clock: Clock = utcnow,
    ) -> Home:
        """Open the home at ``path``. Raises :class:`~steppatch.errors.HomeError`."""
        return cls(HomeDir.open(Path(path)), fetcher, limits, progress, clock)

    @property
    def trusted_root(self) -> Root:
        """The root metadata this home trusts now (its keys, thresholds, version)."""
        data = MetadataStore(self.files.metadata_dir).read("root")
        if data is None:
            raise HomeError(str(self.files.root), "no trusted root")
        return load_trusted_root(data, self.limits.trust())

    @property
    def path(self) -> Path:
        return self.files.root

    @property
    def repository(self) -> RepositoryClient:
        """The client for the home's repository (made on first use)."""
        if self._client is None:
            fetcher = self._fetcher or fetcher_for(self.files.config.updates)
            self._client = RepositoryClient(
                fetcher, MetadataStore(self.files.metadata_dir), self.limits, self.clock
            )
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

