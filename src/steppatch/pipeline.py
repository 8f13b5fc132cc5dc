"""The apply pipeline: resolve -> build -> go live, over parts it is given.

:class:`ApplyPipeline` holds a home's files (:class:`~steppatch.home.HomeDir`), one repository
client (:class:`~steppatch.remote.RepositoryClient`), the application's
:class:`~steppatch.home.Service`, the home's one clock, its limits and a progress callback. It
never takes the home's lock: its caller (:class:`~steppatch.updater.Home`) holds it around every
call. The steps, in order (``docs/architecture.md``):

- :meth:`ApplyPipeline.resolve`: the references solved against what is installed, the manifests
  of changed components fetched and checked (merged: two components claiming a path fail here),
  the live tree read back, the steps that build the new tree planned;
- :meth:`ApplyPipeline.build`: space checked, missing objects downloaded (verified), the new tree
  built beside the live one;
- :meth:`ApplyPipeline.go_live`: history recorded, the application stopped, the one commit
  point, the application started.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from steppatch import _record as record
from steppatch._fs import checkpoint
from steppatch.clock import Clock, history_stamp, utcnow
from steppatch.collect import Collection
from steppatch.configcheck import ConfigFinding
from steppatch.errors import (
    BadReference,
    HistoryPruned,
    IntegrityError,
    LocalEnvironmentError,
    NothingToRollBack,
    NotHot,
    ServiceError,
    SteppatchError,
    TooLarge,
)
from steppatch.home import HomeDir, Service, StagedApplies, StagedRecord, scan_tree
from steppatch.home._records import config_findings, thin_snapshot
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import (
    FileEntry,
    HomeState,
    InstalledComponent,
    NodeSnapshot,
    ObjectTransfers,
    Recipe,
    RecipeKind,
)
from steppatch.plan import (
    Drift,
    Plan,
    StepKind,
    SyncMode,
    TreeEntry,
    TreeStep,
    check_symlinks,
    component_changes,
    diff_tree,
    merge_manifests,
    tree_steps,
)
from steppatch.recipe import dump_recipe, parse_recipe, pinned_recipe
from steppatch.routes import Fetch, choose_routes, route_totals
from steppatch.solver import solve
from steppatch.store import ObjectStore

if TYPE_CHECKING:
    from steppatch.remote import RepositoryClient

__all__ = [
    "ApplyPipeline",
    "ApplyReport",
    "ApplyStartFailed",
    "Progress",
    "Resolution",
    "StagedApply",
    "config_findings",
    "thin_snapshot",
]

#: ``progress(stage, done, total)``: called as long work advances (bytes for downloads)
Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


@record.frozen
class ApplyReport:
    """What an apply did.

    ``displaced``: files the operator had added where a new entry needed the path, kept under
    ``.steppatch/displaced/``; ``config_findings``: settings to correct before the next start;
    ``restarted``: whether the application was stopped and started; ``snapshot_drift``: for a
    full snapshot, how the tree differs from the files it recorded (``None`` otherwise);
    ``upload``: what became of the thin snapshot sent to the selected mirror; ``collected``:
    what the collection after it removed (``None``: none ran, ``gc = "manual"``).
    """

    plan: Plan
    displaced: tuple[str, ...] = ()
    config_findings: tuple[ConfigFinding, ...] = ()
    restarted: bool = False
    snapshot_drift: Drift | None = None
    upload: str = ""
    collected: Collection | None = None


@record.frozen
class StagedApply:
    """A staged apply: ``token`` names it for :meth:`Home.switch_staged` (empty: nothing to
    do); ``plan`` is what switching it does.
    """

    token: str
    plan: Plan


class ApplyStartFailed(LocalEnvironmentError):
    """The apply switched the home, but the application did not start afterwards.

    ``report`` says what was applied; ``cause`` is the failed start. ``steppatch rollback``
    returns to the state before.
    """

    def __init__(self, report: ApplyReport, cause: ServiceError) -> None:
        super().__init__(
            f"the apply completed, but the application did not start: {cause}. "
            "Fix the cause and run 'steppatch start', or go back with 'steppatch rollback'"
        )
        self.report = report
        self.cause = cause


@record.frozen
class Resolution:
    """What :meth:`ApplyPipeline.resolve` decided: the plan, the state it makes and the one it
    replaces, the steps that build the new tree and the objects the cache lacks for them."""

    plan: Plan
    state: HomeState  # the state the apply makes
    old: HomeState  # the state it replaces
    steps: tuple[TreeStep, ...]
    missing: tuple[tuple[str, int], ...]
    #: how each missing object comes (``steppatch.routes``)
    fetches: tuple[Fetch, ...] = ()

    def is_hot(self, name: str) -> bool:
        held = self.state.components.get(name)
        return held is not None and held.hot

    def refuse_unless_hot(self) -> None:
        """Raise :class:`NotHot` naming the changes that do not allow a hot apply, if any."""
        if not self.plan.hot:
            raise NotHot(tuple(c.name for c in self.plan.changes if not self.is_hot(c.name)))


class ApplyPipeline:
    """Resolve, build, go live on one home, with the parts it is given. Call every method with
    the home's lock held."""

    def __init__(
        self,
        files: HomeDir,
        client: RepositoryClient,
        service: Service,
        *,
        limits: Limits = DEFAULT_LIMITS,
        progress: Progress | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.files = files
        self.client = client
        self.service = service
        self.limits = limits
        self.progress = progress or _no_progress
        self.clock = clock
        self.staged = StagedApplies(files)

    @property
    def cache(self) -> ObjectStore:
        return self.files.cache

    def with_client(self, client: RepositoryClient) -> ApplyPipeline:
        """The same pipeline reading from ``client`` (an offline patch's own repository)."""
        return ApplyPipeline(
            self.files,
            client,
            self.service,
            limits=self.limits,
            progress=self.progress,
            clock=self.clock,
        )

    # --- whole operations ------------------------------------------------------------------------

    def prepare(self, recipes: list[Recipe], sync: SyncMode | None) -> Plan:
        """Resolve and download; the managed tree is untouched."""
        resolution = self.resolve(recipes, sync)
        return self.download(resolution)

    def apply(
        self, recipes: list[Recipe], *, hot: bool, sync: SyncMode | None, record: bool
    ) -> ApplyReport:
        """Resolve, build, go live; ``record`` keeps a history entry for ``rollback``."""
        resolution = self.resolve(recipes, sync)
        plan = resolution.plan
        if hot:
            resolution.refuse_unless_hot()
        if plan.empty:
            return ApplyReport(plan)
        tree_id, displaced, plan = self.build(resolution)
        history = self.thin_snapshot(resolution.old) if record else None
        return self.go_live(
            tree_id, displaced, plan, resolution.state, history, hot=hot, recipes=recipes
        )

    def rollback(self) -> ApplyReport:
        """Apply the newest history entry, then drop it. Raises :class:`NothingToRollBack`, or
        :class:`HistoryPruned` when ``gc`` removed the entries that were left."""
        last = self.files.last_history()
        if last is None:
            pruned = self.files.pruned_history()
            if pruned:
                raise HistoryPruned(str(self.files.root), pruned)
            raise NothingToRollBack(str(self.files.root))
        recipe = parse_recipe(last.read_bytes(), str(last), self.limits)
        report = self.apply([recipe], hot=False, sync=None, record=False)
        self.files.drop_history(last)
        return report

    def stage(self, recipes: list[Recipe], *, hot: bool, sync: SyncMode | None) -> StagedApply:
        """Resolve and build, then keep the tree as the home's one staged apply."""
        if not recipes:
            raise BadReference("", "no reference given")
        self.staged.discard_all()
        resolution = self.resolve(recipes, sync)
        plan = resolution.plan
        if hot:
            resolution.refuse_unless_hot()
        if plan.empty:
            return StagedApply("", plan)
        tree_id, displaced, plan = self.build(resolution)
        self.staged.keep(
            StagedRecord(
                tree_id=tree_id,
                state=resolution.state,
                history=self.thin_snapshot(resolution.old),
                base=resolution.old.fingerprint(),
                hot=hot,
                requested=frozenset(n for r in recipes for n in r.components),
                repairs=plan.repairs,
                displaced=tuple(displaced),
            )
        )
        return StagedApply(tree_id, plan)

    def switch_staged(self, token: str) -> ApplyReport:
        """Go live with the staged apply ``token`` (if the home has not changed since)."""
        old = self.files.state()
        staged = self.staged.take(token, old.fingerprint())
        target = staged.state.versions()
        plan = Plan(
            target=target,
            changes=component_changes(old.versions(), target, set(staged.requested)),
            hot=staged.hot,
            repairs=staged.repairs,
        )
        return self.go_live(
            staged.tree_id, staged.displaced, plan, staged.state, staged.history, hot=staged.hot
        )

    # --- references ------------------------------------------------------------------------------

    def load_refs(self, refs: Sequence[str]) -> list[Recipe]:
        """The recipes ``refs`` name. Raises :class:`BadReference` for none."""
        if not refs:
            raise BadReference("", "no reference given")
        return [self.load_ref(ref) for ref in refs]

    def load_ref(self, ref: str) -> Recipe:
        """``to:PATH`` from the repository (verified), or a local ``.spr`` file."""
        if ref.startswith("to:"):
            path = ref[3:]
            if not path:
                raise BadReference(ref, "'to:' needs a recipe path")
            return self.client.recipe(path)
        local = Path(ref)
        if not local.is_file():
            raise BadReference(ref, "not 'to:PATH' and no such local .spr file")
        return parse_recipe(local.read_bytes(), ref, self.limits)

    # --- 1. resolve ------------------------------------------------------------------------------

    def solve(
        self, recipes: Sequence[Recipe], installed: Mapping[str, Version]
    ) -> tuple[dict[str, Version], set[str]]:
        """What ``recipes`` resolve to on top of ``installed``, and the names they ask for.

        Installed components stay unless a snapshot among the recipes leaves them out.
        Raises :class:`~steppatch.errors.ResolutionImpossible`.
        """
        wanted = _merge_ranges(recipes)
        exact = any(r.exact for r in recipes)
        keep = {n: v for n, v in installed.items() if n in wanted} if exact else installed
        target = solve(
            [Requirement(f"{name}{spec}") for name, spec in sorted(wanted.items())],
            self.client.index(),
            installed=keep,
            max_rounds=self.limits.solver_max_rounds,
        )
        return target, set(wanted)

    def resolve(self, recipes: list[Recipe], sync: SyncMode | None) -> Resolution:
        """Solve, fetch and check the changed components' manifests, plan the new tree."""
        state = self.files.state()
        installed = state.versions()
        target, wanted = self.solve(recipes, installed)
        changes = component_changes(installed, target, wanted)
        components = self._components(state, target)
        # The manifests' check: merged into one tree, two components claiming a path fail here,
        # before anything is downloaded or built.
        tree = merge_manifests({n: c.manifest for n, c in components.items()})
        # Before the live tree is read or anything downloaded: a symlink of one component may
        # lead out through another's, so only the whole new tree can tell.
        check_symlinks(tree, target, self.limits.max_symlink_hops)
        old_tree = merge_manifests({n: c.manifest for n, c in state.components.items()})
        live = scan_tree(
            self.files.current, hashes=sync is not None, workers=self.limits.hash_workers
        )
        steps = tree_steps(tree, old_tree, live, sync)
        missing = _missing_objects(steps, self.cache)
        if missing:
            missing = self._take_from_live(missing, old_tree)
        repairs = 0
        if sync is not None:
            drift = diff_tree({p: t.entry for p, t in tree.items()}, live)
            repairs = len(drift.changed) + len(drift.missing)
            if sync is SyncMode.DELETE:
                repairs += len(drift.extra)
        hot = all(c.new is not None and components[c.name].hot for c in changes)
        fetches = self._routes(missing, components, state, old_tree)
        plan = Plan(
            target=target,
            changes=changes,
            hot=hot,
            download_objects=len(missing),
            download_bytes=sum(size for _sha, size in missing),
            repairs=repairs,
            routes=_route_table(fetches),
        )
        return Resolution(plan, HomeState(components), state, tuple(steps), missing, fetches)

    def _routes(
        self,
        missing: tuple[tuple[str, int], ...],
        components: Mapping[str, InstalledComponent],
        state: HomeState,
        old_tree: Mapping[str, TreeEntry],
    ) -> tuple[Fetch, ...]:
        """The cheapest route to each missing object: the transfers documents of the changed
        components read (verified), a delta chosen only from an object the cache or the live
        tree holds (hashed again before use)."""
        if not missing:
            return ()
        index = self.client.index()
        offers: dict[str, ObjectTransfers] = {}
        for name, comp in sorted(components.items()):
            held = state.components.get(name)
            if held is not None and held.manifest_sha256 == comp.manifest_sha256:
                continue
            cv = index.components[name][comp.manifest.version]
            found = self.client.transfers(cv)
            if found is not None:
                offers.update(found.objects)
        live = self._live_objects(old_tree)
        bases = {d.base for o in offers.values() for d in o.deltas if d.base is not None}
        held_bases = {b for b in bases if b in live or self.cache.has(b)}
        return choose_routes(missing, offers, held_bases)

    @staticmethod
    def _live_objects(old_tree: Mapping[str, TreeEntry]) -> dict[str, str]:
        return {
            held.entry.sha256: path
            for path, held in old_tree.items()
            if held.entry.sha256 is not None
        }

    def _components(
        self, state: HomeState, target: Mapping[str, Version]
    ) -> dict[str, InstalledComponent]:
        """The components of ``target``: those installed at their version as they are, the
        others with their manifest fetched (verified against the signed index)."""
        index = self.client.index()
        components: dict[str, InstalledComponent] = {}
        kept = self.files.history_manifests()
        for name, version in sorted(target.items()):
            held = state.components.get(name)
            if held is not None and held.version == version:
                components[name] = held
                continue
            cv = index.components[name][version]
            # A state of the kept history stored it (checked in full when installed; its
            # published sha256 is the one the signed index gives now): no download.
            load = kept.get(cv.manifest.sha256)
            manifest = load() if load is not None else None
            if manifest is None or (manifest.component, manifest.version) != (name, version):
                manifest = self.client.manifest(cv)
            components[name] = InstalledComponent(
                manifest, cv.manifest.sha256, cv.hot, cv.config
            )
        return components

    def _take_from_live(
        self, missing: tuple[tuple[str, int], ...], old_tree: Mapping[str, TreeEntry]
    ) -> tuple[tuple[str, int], ...]:
        """Objects a live file holds (moved, or the cache was cleared) go into the cache from
        there, verified, rather than over the network: an offline patch relies on it."""
        by_hash = {
            held.entry.sha256: path
            for path, held in old_tree.items()
            if held.entry.sha256 is not None
        }
        still = []
        for sha256, size in missing:
            path = by_hash.get(sha256)
            if path is not None:
                try:
                    self.files.cache_live_file(path, sha256, size)
                    continue
                except (IntegrityError, TooLarge, OSError):
                    pass  # drifted or unreadable: download it
            still.append((sha256, size))
        return tuple(still)

    # --- 2. build --------------------------------------------------------------------------------

    def download_whole(self, missing: Sequence[tuple[str, int]]) -> None:
        """Download whole objects into the cache, each verified before it is kept."""
        if missing:
            self.client.fetch_objects(missing, self.cache, progress=self.progress)

    def download(self, resolution: Resolution) -> Plan:
        """Get the missing objects into the cache by their routes, each verified before it is
        kept; the plan with the routes as done (fallbacks counted whole)."""
        plan = resolution.plan
        if not resolution.missing:
            return plan
        fetches = resolution.fetches or tuple(Fetch(s, n) for s, n in resolution.missing)
        live = self._live_objects(
            merge_manifests({n: c.manifest for n, c in resolution.old.components.items()})
        )

        def base_of(sha256: str) -> Path | None:
            if self.cache.has(sha256):
                return self.cache.path(sha256)
            path = live.get(sha256)
            return None if path is None else self.files.live_path(path)

        scratch = ObjectStore(self.cache.root.parent / "deltas")
        result = self.client.fetch_routed(
            fetches, self.cache, scratch, base_of, progress=self.progress
        )
        return record.evolve(
            plan, routes=_route_table(result.done), fallbacks=len(result.fallbacks)
        )

    def build(self, resolution: Resolution) -> tuple[str, list[str], Plan]:
        """Download what is missing and build the new tree beside the live one."""
        needed = resolution.plan.download_bytes + sum(
            s.entry.size for s in resolution.steps if s.kind is StepKind.FETCH
        )
        self.files.ensure_space(needed, self.limits.disk_reserve_bytes)
        plan = self.download(resolution)
        checkpoint("downloaded")
        tree_id, displaced = self.files.build_tree(
            resolution.steps,
            lambda done, total: self.progress("stage", done, total),
            now=self.clock(),
        )
        checkpoint("staged")
        return tree_id, displaced, plan

    # --- 3. go live ------------------------------------------------------------------------------

    def go_live(
        self,
        tree_id: str,
        displaced: Sequence[str],
        plan: Plan,
        state: HomeState,
        history: Recipe | None,
        *,
        hot: bool,
        recipes: Sequence[Recipe] = (),
    ) -> ApplyReport:
        """Record what is replaced, stop, switch to the built tree ``tree_id``, start."""
        recorded = None
        if history is not None:
            recorded = self.files.record_history(
                f"{history_stamp(self.clock())}.spr", dump_recipe(history)
            )
        restart = not hot and bool(plan.changes)
        if restart:
            try:
                self.service.stop()
            except ServiceError:
                self.files.discard(tree_id)
                if recorded is not None:
                    self.files.drop_history(recorded)
                raise
            checkpoint("stopped")
        self.files.commit(tree_id, state)
        report = ApplyReport(
            plan,
            displaced=tuple(displaced),
            config_findings=tuple(self.config_findings(state)),
            restarted=restart,
            snapshot_drift=_snapshot_drift(recipes, self.files),
        )
        report = record.evolve(report, upload=self._upload_snapshot(state))
        if restart:
            try:
                self.service.start()
            except ServiceError as e:
                raise ApplyStartFailed(report, e) from e
        return report

    def _upload_snapshot(self, state: HomeState) -> str:
        """Send the thin snapshot to the selected mirror; a failure is reported, never raised."""
        return self.upload_thin(state.versions())

    def upload_thin(
        self, versions: Mapping[str, Version], nodes: Sequence[NodeSnapshot] = ()
    ) -> str:
        """Send a thin snapshot of ``versions`` (with a cluster's ``nodes``: each its name and
        versions) to the selected mirror under the home's system name. Returns what became of
        it (``sent``, ``skipped: ...``, ``failed: ...``); never raises."""
        system = self.files.config.system
        if not system:
            return "skipped: the home has no system name"
        mirror, fetcher = self.client.pool.current("snapshot upload")
        from steppatch.transport import HttpsFetcher  # requests: only when uploading

        if not isinstance(fetcher, HttpsFetcher):
            return f"skipped: {mirror.url} is not a server"
        # Names, versions and the system name: nothing else leaves the installation (a node's
        # environment id and fingerprint stay home too).
        payload = pinned_recipe(RecipeKind.SNAPSHOT, versions, system=system)
        if nodes:
            payload = record.evolve(
                payload, nodes=tuple(NodeSnapshot(n.name, n.versions) for n in nodes)
            )
        try:
            status = fetcher.put(f"snapshots/{system}.spr", dump_recipe(payload))
        except SteppatchError as e:
            return f"failed: {e}"
        return "sent" if status in (200, 201, 204) else f"failed: {mirror.url} answered {status}"

    # --- the home's records ----------------------------------------------------------------------

    def thin_snapshot(
        self, state: HomeState, files: Mapping[str, FileEntry] | None = None
    ) -> Recipe:
        """The snapshot of ``state`` (thin; with ``files``, full), dated by the clock."""
        return thin_snapshot(self.files, state, self.clock(), files)

    def config_findings(self, state: HomeState) -> list[ConfigFinding]:
        """Settings in ``config.properties`` the components of ``state`` deprecate or renamed."""
        return config_findings(self.files, state)


def _merge_ranges(recipes: Sequence[Recipe]) -> dict[str, SpecifierSet]:
    """Every component the recipes name, with their ranges intersected."""
    wanted: dict[str, SpecifierSet] = {}
    for recipe in recipes:
        for name, spec in recipe.components.items():
            wanted[name] = wanted.get(name, SpecifierSet()) & spec
    return wanted


def _snapshot_drift(recipes: Sequence[Recipe], files: HomeDir) -> Drift | None:
    """For a full snapshot, how the new tree differs from the files it recorded."""
    recorded: dict[str, FileEntry] = {}
    for recipe in recipes:
        recorded.update(recipe.files)
    if not recorded:
        return None
    return diff_tree(recorded, scan_tree(files.current, hashes=True))


def _route_table(fetches: Iterable[Fetch]) -> dict[str, tuple[int, int]]:
    return {str(r): (t.objects, t.bytes) for r, t in route_totals(fetches).items()}


def _missing_objects(
    steps: Iterable[TreeStep], cache: ObjectStore
) -> tuple[tuple[str, int], ...]:
    """Objects the new tree copies out of the cache that the cache does not hold yet."""
    needed: dict[str, int] = {}
    for step in steps:
        sha256 = step.entry.sha256
        if step.kind is StepKind.FETCH and sha256 is not None and not cache.has(sha256):
            needed[sha256] = step.entry.size
    return tuple(sorted(needed.items()))
