"""The orchestrator: resolve -> fetch -> verify -> plan -> apply.

:class:`Home` is the library's front door for an installation. It joins the edges (a
:class:`~steppatch.transport.Fetcher` for the repository, the home's files and cache) to the pure
core (recipes, solver, plan). Every CLI command about a home is one call of it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import attrs
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from steppatch._fs import atomic_write, checkpoint
from steppatch._json import Fields, dump_json, load_json_object
from steppatch.config import (
    HomeConfig,
    MirrorEntry,
    NodeEntry,
    check_node_name,
    parse_location,
)
from steppatch.configcheck import ConfigFinding, check_config
from steppatch.errors import (
    BadReference,
    ConfigOutdated,
    HomeError,
    InputError,
    InsufficientSpace,
    IntegrityError,
    LocalEnvironmentError,
    NetworkError,
    NothingToRollBack,
    NotHot,
    ServiceError,
    StagedApplyMissing,
    StalePatch,
    SteppatchError,
    TooLarge,
    WrongEnvironment,
)
from steppatch.formats import dump_state, parse_state
from steppatch.home import HomeDir, Service, ShellService, scan_tree
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import (
    ComponentVersion,
    FileEntry,
    HomeState,
    InstalledComponent,
    Recipe,
    RecipeKind,
)
from steppatch.offline import PatchFile, PatchInfo, write_patch
from steppatch.paths import safe_relpath
from steppatch.plan import (
    Drift,
    Plan,
    StepKind,
    SyncMode,
    TreeEntry,
    TreeStep,
    component_changes,
    diff_tree,
    merge_manifests,
    tree_steps,
)
from steppatch.recipe import dump_recipe, parse_recipe, pinned_recipe, pinned_versions
from steppatch.remote import (
    Clock,
    MetadataStore,
    RepositoryClient,
    fetch_root_for_tofu,
    utcnow,
)
from steppatch.solver import solve
from steppatch.store import ObjectStore
from steppatch.transport import (
    Fetcher,
    FileFetcher,
    HttpsFetcher,
    Mirror,
    MirrorPool,
    TlsConfig,
    TlsError,
    fetch_bytes,
    fetcher_for,
)
from steppatch.trust import Root, load_trusted_root

__all__ = [
    "ApplyReport",
    "ApplyStartFailed",
    "Home",
    "PingCheck",
    "Progress",
    "StagedApply",
    "Update",
    "split_refs",
]

#: staged applies live in ``.steppatch/staged/TOKEN/`` (docs/formats.md)
STAGED_DIR = "staged"
STAGED_FORMAT = "steppatch-staged/1"
_TREE_ID = re.compile(r"[0-9]{8}T[0-9]{6}-[0-9a-f]{8}")

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
class ApplyReport:
    """What an apply did.

    ``displaced``: files the operator had added where a new entry needed the path, kept under
    ``.steppatch/displaced/``; ``config_findings``: settings to correct before the next start;
    ``restarted``: whether the application was stopped and started; ``snapshot_drift``: for a
    full snapshot, how the tree differs from the files it recorded (``None`` otherwise);
    ``upload``: what became of the thin snapshot sent to the selected mirror.
    """

    plan: Plan
    displaced: tuple[str, ...] = ()
    config_findings: tuple[ConfigFinding, ...] = ()
    restarted: bool = False
    snapshot_drift: Drift | None = None
    upload: str = ""


@attrs.frozen
class StagedApply:
    """A staged apply: ``token`` names it for :meth:`Home.switch_staged` (empty: nothing to
    do); ``plan`` is what switching it does.
    """

    token: str
    plan: Plan


@attrs.frozen
class PingCheck:
    """One check of ``ping``: ``name`` (reachable, tls, signed metadata), passed, and detail."""

    name: str
    ok: bool
    detail: str


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


@attrs.frozen
class _Resolution:
    plan: Plan
    state: HomeState  # the state the apply makes
    old: HomeState  # the state it replaces
    steps: tuple[TreeStep, ...]
    missing: tuple[tuple[str, int], ...]

    def is_hot(self, name: str) -> bool:
        held = self.state.components.get(name)
        return held is not None and held.hot


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
        ca: bytes | None = None,
        client_cert: tuple[bytes, bytes] | None = None,
        mirror_id: str = "primary",
        limits: Limits = DEFAULT_LIMITS,
        fetcher: Fetcher | None = None,
    ) -> Home:
        """Make a new, empty home at ``path`` that takes updates from ``updates``.

        ``root`` is the repository's root metadata, obtained from its publisher out of band; or,
        with ``trust_on_first_use``, the root the repository serves now is trusted (see
        :attr:`trusted_root` for its key ids). For an ``https://`` mirror, ``ca`` is the private
        CA certificate (PEM) it is pinned to and ``client_cert`` the home's certificate and key
        (PEM; or later, ``steppatch enroll``). The mirror gets priority 100.

        Raises :class:`InputError` if neither or both of ``root`` and ``trust_on_first_use``
        are given, metadata errors if the root is not a valid self-signed root,
        :class:`~steppatch.errors.ConfigError` for a URL or certificate steppatch cannot use and
        :class:`~steppatch.errors.HomeError` if ``path`` is a home already.
        """
        if (root is None) == (not trust_on_first_use):
            raise InputError(
                "give the repository's root metadata (--root FILE) or, knowingly, "
                "--trust-on-first-use"
            )
        path = Path(path).absolute()
        config = HomeConfig(
            updates=updates, system=system, mirrors=(MirrorEntry(mirror_id, updates, 100),)
        )
        with tempfile.TemporaryDirectory(prefix=".steppatch-init-") as staging:
            # Certificates are checked by using them before the home exists.
            tls = _write_tls(Path(staging), ca, client_cert)
            fetcher = fetcher or fetcher_for(updates, tls, limits.transport())
            if root is None:
                root, _ = fetch_root_for_tofu(fetcher, limits)
            else:
                load_trusted_root(root, limits.trust())
            files = HomeDir.create(path, config)
            MetadataStore(files.metadata_dir).write("root", root)
            if tls is not None:
                shutil.copytree(staging, files.tls_dir, dirs_exist_ok=True)
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
    def tls(self) -> TlsConfig | None:
        """The private CA and client certificate in ``.steppatch/tls/``, if the home has them."""
        return _read_tls(self.files.tls_dir)

    def mirror_pool(self) -> MirrorPool:
        """The home's mirrors, the selected one first, then by priority."""
        tls = self.tls
        mirrors = [
            Mirror(m.id, m.url, m.priority, m.name) for m in self.files.config.mirror_list()
        ]
        transport = self.limits.transport()
        # Keep the configured order (the selected mirror first): priorities are not re-sorted.
        ranked = [attrs.evolve(m, priority=len(mirrors) - i) for i, m in enumerate(mirrors)]
        return MirrorPool(ranked, lambda m: fetcher_for(m.url, tls, transport), transport)

    @property
    def repository(self) -> RepositoryClient:
        """The client for the home's repository (made on first use)."""
        if self._client is None:
            source = self._fetcher or self.mirror_pool()
            self._client = RepositoryClient(
                source, MetadataStore(self.files.metadata_dir), self.limits, self.clock
            )
        return self._client

    @property
    def service(self) -> Service:
        """The application's start/stop commands, from the home's config."""
        return ShellService(
            self.files.config.service, self.files.root, self.limits.service_timeout_seconds
        )

    # --- reading -------------------------------------------------------------------------------

    def status(self) -> HomeState:
        """What is installed."""
        with self._locked():
            return self.files.state()

    def snapshot(self, path: Path | str | None = None, *, full: bool = False) -> Recipe:
        """The home's snapshot; written to ``path`` if given.

        Thin: component versions only (what may go upstream). ``full`` adds every managed
        entry as it is on disk now: hash, mode, link target.
        """
        with self._locked():
            state = self.files.state()
            files = scan_tree(self.files.current, hashes=True) if full else None
        recipe = self._thin_snapshot(state, files)
        if path is not None:
            Path(path).write_bytes(dump_recipe(recipe))
        return recipe

    def verify(self, against: Recipe | None = None) -> Drift:
        """How the managed tree differs from its manifests (or a full snapshot's files).

        Every file is hashed: size and modification time are never trusted alone.
        Raises :class:`InputError` if ``against`` is not a full snapshot.
        """
        if against is not None and not against.files:
            raise InputError("verify needs a full snapshot (steppatch snapshot --full)")
        with self._locked():
            files = against.files if against is not None else None
            return self.files.drift(files, workers=self.limits.hash_workers)

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

    def config_findings(self) -> list[ConfigFinding]:
        """Settings in ``HOME/config.properties`` that installed components deprecate or renamed."""
        with self._locked():
            state = self.files.state()
        return self._config_findings(state)

    # --- mirrors ---------------------------------------------------------------------------------

    def mirrors(self) -> list[tuple[MirrorEntry, bool]]:
        """The mirrors in the order they are tried, each with whether it is the selected one."""
        config = self.files.config
        return [(m, m.url == config.updates) for m in config.mirror_list()]

    def add_mirror(self, mirror: MirrorEntry) -> None:
        """Add a mirror. Raises :class:`InputError` if its id is taken or its URL unusable."""
        fetcher_for(mirror.url, self.tls, self.limits.transport())  # refuses unusable URLs

        def change(config: HomeConfig) -> HomeConfig:
            if any(m.id == mirror.id for m in config.mirrors):
                raise InputError(f"a mirror with id {mirror.id!r} exists already")
            return attrs.evolve(config, mirrors=(*config.mirrors, mirror))

        self._edit_config(change)

    def remove_mirror(self, mirror_id: str) -> None:
        """Remove a mirror. Raises :class:`InputError` for an unknown id or the last mirror."""

        def change(config: HomeConfig) -> HomeConfig:
            kept = tuple(m for m in config.mirrors if m.id != mirror_id)
            if len(kept) == len(config.mirrors):
                raise InputError(f"no mirror with id {mirror_id!r}")
            if not kept:
                raise InputError("the last mirror cannot be removed (add another first)")
            updates = config.updates
            if not any(m.url == updates for m in kept):
                updates = max(kept, key=lambda m: m.priority).url
            return attrs.evolve(config, mirrors=kept, updates=updates)

        self._edit_config(change)

    def select_mirror(self, url: str) -> None:
        """Make ``url`` the mirror tried first (as the manuals' ``--updates=URL``); a URL not
        listed yet is added with priority 0. Raises :class:`InputError` for an unusable URL.
        """
        fetcher_for(url, self.tls, self.limits.transport())

        def change(config: HomeConfig) -> HomeConfig:
            mirrors = config.mirrors
            if not any(m.url == url for m in mirrors):
                taken = {m.id for m in mirrors}
                new_id = next(
                    f"mirror{i}" for i in range(1, len(taken) + 2) if f"mirror{i}" not in taken
                )
                mirrors = (*mirrors, MirrorEntry(new_id, url, 0))
            return attrs.evolve(config, updates=url, mirrors=mirrors)

        self._edit_config(change)

    # --- cluster nodes ----------------------------------------------------------------------------

    def add_node(self, node: NodeEntry) -> None:
        """Add another node of this home's cluster.

        Raises :class:`InputError` for a bad name or location, a name taken (this node's
        included), a location listed already or this home itself, and
        :class:`~steppatch.errors.HomeError` for a local path that is not a home.
        """
        check_node_name(node.name)
        location = parse_location(node.location)

        def change(config: HomeConfig) -> HomeConfig:
            if node.name == config.node or any(n.name == node.name for n in config.nodes):
                raise InputError(f"a node named {node.name!r} exists already")
            if any(parse_location(n.location) == location for n in config.nodes):
                raise InputError(f"{location} is listed already")
            if not location.is_ssh:
                other = HomeDir.open(Path(location.path))
                if other.root.resolve() == self.files.root.resolve():
                    raise InputError(f"{location} is this home; it is always a node of its cluster")
            return attrs.evolve(config, nodes=(*config.nodes, node))

        self._edit_config(change)

    def remove_node(self, name: str) -> None:
        """Remove a node from the cluster's list. Raises :class:`InputError` for an unknown one."""

        def change(config: HomeConfig) -> HomeConfig:
            kept = tuple(n for n in config.nodes if n.name != name)
            if len(kept) == len(config.nodes):
                raise InputError(f"no node named {name!r}")
            return attrs.evolve(config, nodes=kept)

        self._edit_config(change)

    def name_node(self, name: str) -> None:
        """Name this node in its cluster. Raises :class:`InputError` for a bad or taken name."""
        check_node_name(name)

        def change(config: HomeConfig) -> HomeConfig:
            if any(n.name == name for n in config.nodes):
                raise InputError(f"another node is named {name!r}")
            return attrs.evolve(config, node=name)

        self._edit_config(change)

    def _edit_config(self, change: Callable[[HomeConfig], HomeConfig]) -> None:
        """Write ``change(config)``, the config read again under the lock: two edits at once
        both land. What ``change`` raises leaves the file as it was."""
        with self._locked():
            fresh = HomeDir.open(self.files.root).config
            self.files.write_config(change(fresh))

    def ping(self, url: str | None = None) -> list[PingCheck]:
        """Check one mirror (default: the selected one): reachable, its TLS identity, and that its
        signed metadata verifies against this home's trust. Read-only: what verifies is not
        stored. Each check says whether it passed and why; a check after a failed one is skipped.
        """
        url = url or self.files.config.updates
        checks: list[PingCheck] = []
        try:
            fetcher = fetcher_for(url, self.tls, self.limits.transport())
        except SteppatchError as e:
            return [PingCheck("configuration", False, str(e))]
        if isinstance(fetcher, HttpsFetcher):
            try:
                identity = fetcher.probe()
            except TlsError as e:
                return [PingCheck("reachable", True, url), PingCheck("tls", False, str(e))]
            except SteppatchError as e:
                return [PingCheck("reachable", False, str(e))]
            checks.append(PingCheck("reachable", True, f"{identity.host}:{identity.port}"))
            cert = identity.certificate
            names = ", ".join((*cert.hostnames, *cert.ip_addresses)) or cert.subject
            checks.append(
                PingCheck(
                    "tls", True, f"{identity.tls_version} {identity.cipher}, server {names}"
                )
            )
        with tempfile.TemporaryDirectory(prefix=".steppatch-ping-") as scratch:
            store = MetadataStore(Path(scratch))
            trusted = MetadataStore(self.files.metadata_dir)
            for role in ("root", "timestamp", "index"):
                data = trusted.read(role)
                if data is not None:
                    store.write(role, data)
            client = RepositoryClient(fetcher, store, self.limits, self.clock)
            try:
                index = client.index()
            except (NetworkError, LocalEnvironmentError) as e:
                checks.append(PingCheck("reachable", False, str(e)))
                return checks
            except SteppatchError as e:
                checks.append(PingCheck("signed metadata", False, str(e)))
                return checks
        if not checks:
            checks.append(PingCheck("reachable", True, url))
        versions = sum(len(v) for v in index.components.values())
        checks.append(
            PingCheck("signed metadata", True, f"verified: {versions} component version(s)")
        )
        return checks

    # --- the application --------------------------------------------------------------------------

    def start(self, *, force: bool = False) -> None:
        """Start the application. Refuses (:class:`ConfigOutdated`) while ``config.properties``
        holds settings the installed components no longer accept, unless ``force``.
        Raises :class:`~steppatch.errors.ServiceError` when the start command fails.
        """
        findings = self.config_findings()
        if findings and not force:
            raise ConfigOutdated(tuple(findings))
        self.service.start()

    def stop(self) -> None:
        """Stop the application. Raises :class:`~steppatch.errors.ServiceError`."""
        self.service.stop()

    # --- changing -------------------------------------------------------------------------------

    def prepare(self, refs: Sequence[str], *, sync: SyncMode | None = None) -> Plan:
        """Resolve ``refs`` and download what applying them needs; the managed tree is untouched.

        Raises :class:`~steppatch.errors.ResolutionImpossible` when the request cannot be met,
        :class:`~steppatch.errors.UnknownReference` / :class:`BadReference` for bad references,
        :class:`~steppatch.errors.PathConflict` when two components claim a path, metadata,
        repository and network errors from fetching.
        """
        with self._locked():
            resolution = self._resolve(self._load_refs(refs), sync)
            self._download(resolution.missing)
            return resolution.plan

    def apply(
        self, refs: Sequence[str], *, hot: bool = False, sync: SyncMode | None = None
    ) -> ApplyReport:
        """Bring the home to what ``refs`` ask for: resolve, download, build, stop, switch, start.

        ``hot`` switches without stopping the application, and is refused (:class:`NotHot`)
        before anything happens unless every changed component allows it. ``sync`` also repairs
        drift: changed and missing managed files are restored, and with ``SyncMode.DELETE`` files
        the manifests do not list are removed. A crash at any point leaves the old state or the
        new one. Raises what :meth:`prepare` raises, :class:`InsufficientSpace` before staging,
        :class:`~steppatch.errors.IntegrityError` for a corrupt object (home unchanged),
        :class:`~steppatch.errors.ServiceError` when stopping fails (home unchanged), and
        :class:`ApplyStartFailed` when the application does not start after the switch.
        """
        with self._locked():
            return self._apply(self._load_refs(refs), hot=hot, sync=sync, record=True)

    def rollback(self) -> ApplyReport:
        """Return to the state the last apply replaced (its thin snapshot in the history).

        Each rollback consumes one history entry, so repeated rollbacks go further back.
        Raises :class:`NothingToRollBack` when there is no history.
        """
        with self._locked():
            entries = sorted(self.files.history.glob("*.spr"))
            if not entries:
                raise NothingToRollBack(str(self.files.root))
            last = entries[-1]
            recipe = parse_recipe(last.read_bytes(), str(last), self.limits)
            report = self._apply([recipe], hot=False, sync=None, record=False)
            last.unlink()
            return report

    # --- staged applies (clusters) ------------------------------------------------------------

    def stage(
        self, refs: Sequence[str | Recipe], *, hot: bool = False, sync: SyncMode | None = None
    ) -> StagedApply:
        """The first half of an apply: resolve, download, verify and build the new tree, and
        keep it under ``.steppatch/staged/`` until :meth:`switch_staged` makes it live (or
        :meth:`discard_staged` drops it). The live tree and the application are untouched.

        A home keeps one staged apply: staging again discards the earlier one. When there is
        nothing to do the result's ``token`` is empty. Raises what :meth:`apply` raises before
        its switch (:class:`NotHot` included).
        """
        with self._locked():
            recipes = [r if isinstance(r, Recipe) else self._load_ref(r) for r in refs]
            if not recipes:
                raise BadReference("", "no reference given")
            self._discard_all_staged()
            resolution = self._resolve(recipes, sync)
            plan = resolution.plan
            if hot and not plan.hot:
                raise NotHot(
                    tuple(c.name for c in plan.changes if not resolution.is_hot(c.name))
                )
            if plan.empty:
                return StagedApply("", plan)
            tree_id, displaced = self._build(resolution)
            staged = self.files.state_dir / STAGED_DIR / tree_id
            staged.mkdir(parents=True)
            # Out of trees/, so that recovery (which removes trees current does not use) keeps it.
            os.replace(self.files.trees / tree_id, staged / "tree")
            atomic_write(staged / "state.json", dump_state(resolution.state))
            atomic_write(staged / "history.spr", dump_recipe(self._thin_snapshot(resolution.old)))
            record = {
                "format": STAGED_FORMAT,
                "tree": tree_id,
                "base": resolution.old.fingerprint(),
                "hot": hot,
                "requested": sorted({n for r in recipes for n in r.components}),
                "repairs": plan.repairs,
                "displaced": list(displaced),
            }
            # Written last: a staged apply without it is incomplete and is never switched.
            atomic_write(staged / "staged.json", dump_json(record))
            return StagedApply(tree_id, plan)

    def switch_staged(self, token: str) -> ApplyReport:
        """The second half of an apply: record the state replaced, stop the application, make
        the staged tree live, start it. The same single commit point as :meth:`apply`.

        Raises :class:`StagedApplyMissing` if the staged apply is gone or the home changed
        since it was staged (it is discarded then), and what :meth:`apply` raises from its
        switch on (:class:`ServiceError`, :class:`ApplyStartFailed`).
        """
        with self._locked():
            staged = self._staged_dir(token)
            record_path = staged / "staged.json"
            if not record_path.is_file():
                raise StagedApplyMissing(str(self.files.root), token, "not found; stage again")
            def fail(problem: str) -> NoReturn:
                raise StagedApplyMissing(str(self.files.root), token, f"record: {problem}")

            record = _read_staged_record(record_path.read_bytes(), fail)
            old = self.files.state()
            if old.fingerprint() != record.base:
                self._discard_staged(staged)
                raise StagedApplyMissing(
                    str(self.files.root), token, "the home changed since it was staged; stage again"
                )
            state = parse_state((staged / "state.json").read_bytes(), str(staged / "state.json"))
            history = parse_recipe((staged / "history.spr").read_bytes(), "staged history")
            target = state.versions()
            plan = Plan(
                target=target,
                changes=component_changes(old.versions(), target, set(record.requested)),
                hot=record.hot,
                repairs=record.repairs,
            )
            tree_id = record.tree
            if not _is_tree_id(tree_id) or not (staged / "tree").is_dir():
                self._discard_staged(staged)
                raise StagedApplyMissing(str(self.files.root), token, "its tree is missing")
            os.replace(staged / "tree", self.files.trees / tree_id)
            shutil.rmtree(staged)
            return self._go_live(
                tree_id, list(record.displaced), plan, state, history, hot=record.hot
            )

    def discard_staged(self, token: str | None = None) -> None:
        """Drop a staged apply (``None``: every one). Dropping one that is gone is no error."""
        with self._locked():
            if token is None:
                self._discard_all_staged()
            else:
                self._discard_staged(self._staged_dir(token))

    def load_recipes(self, refs: Sequence[str]) -> list[Recipe]:
        """The recipes ``refs`` name (``to:PATH`` from the repository, or local files).

        Raises :class:`BadReference`, :class:`~steppatch.errors.UnknownReference`, metadata and
        network errors.
        """
        with self._locked():
            return self._load_refs(refs)

    def _staged_dir(self, token: str) -> Path:
        if not _is_tree_id(token):
            raise InputError(f"{token!r} is not a staged apply's token")
        return self.files.state_dir / STAGED_DIR / token

    def _discard_staged(self, staged: Path) -> None:
        if (staged / "tree").is_dir():
            # Back among the trees, where discard knows how to remove read-only directories.
            os.replace(staged / "tree", self.files.trees / staged.name)
        self.files.discard(staged.name)
        shutil.rmtree(staged, ignore_errors=True)

    def _discard_all_staged(self) -> None:
        root = self.files.state_dir / STAGED_DIR
        if root.is_dir():
            for staged in sorted(root.iterdir()):
                self._discard_staged(staged)

    # --- offline ---------------------------------------------------------------------------------

    def prepare_offline(
        self, refs: Sequence[str], target: Recipe, output: Path | str
    ) -> tuple[PatchInfo, int]:
        """Make a patch file for the environment ``target`` (its snapshot) at ``output``.

        Resolves ``refs`` against the snapshot's versions and writes the signed metadata, the
        recipes, the manifests that change and only the objects the target lacks. Deterministic.
        Returns what the patch is for and its size. Raises :class:`InputError` if ``target`` is
        not a snapshot of an environment, and what :meth:`prepare` raises.
        """
        if target.kind is not RecipeKind.SNAPSHOT or not target.environment:
            raise InputError(
                "--target must be a snapshot taken with 'steppatch snapshot' on the installation"
            )
        base = pinned_versions(target)
        with self._locked():
            recipes = self._load_refs(refs)
            index = self.repository.index()
            solution, _wanted = self._solve(recipes, base)
            held: set[str] = set()
            for name, version in base.items():
                cv = index.get(name, version)
                if cv is None:
                    raise InputError(
                        f"the snapshot's {name} {version} is not in the repository, so what the "
                        "installation holds cannot be known"
                    )
                held.update(e.sha256 for e in self.repository.manifest(cv).files() if e.sha256)
            members: dict[str, bytes | Path] = {}
            needed: dict[str, int] = {}
            changed = {n: c for n, c in solution.items() if base.get(n) != c}
            manifests = {}
            for name, version in sorted(changed.items()):
                cv = index.components[name][version]
                manifests[name] = self.repository.manifest(cv)
                members[cv.manifest.path] = self._raw(cv.manifest.path, cv.manifest.length)
                for e in manifests[name].files():
                    if e.sha256 and e.sha256 not in held:
                        needed[e.sha256] = e.size
            merge_manifests(manifests)  # two components claiming a path: refused now
            self._download(sorted(needed.items()))
            for sha256 in sorted(needed):
                members[f"objects/{sha256[:2]}/{sha256}"] = self.files.cache.path(sha256)
            patch_refs = []
            for i, ref in enumerate(refs):
                if ref.startswith("to:"):
                    path = ref[3:]
                    members[path] = self._raw(path, index.recipes[path].length)
                    patch_refs.append(ref)
                else:
                    members[f"local/{i}.spr"] = dump_recipe(recipes[i])
                    patch_refs.append(f"local:local/{i}.spr")
            members.update(self._metadata_members())
        info = PatchInfo(
            environment=target.environment,
            system=target.system,
            fingerprint=target.fingerprint,
            base=base,
            target=solution,
            refs=tuple(patch_refs),
            objects=len(needed),
            object_bytes=sum(needed.values()),
        )
        return info, write_patch(Path(output), info, members)

    def apply_patch(
        self, path: Path | str, *, force: bool = False, hot: bool = False
    ) -> ApplyReport:
        """Apply an offline patch file, with no network: verify it whole, check it was made for
        this environment and its current state, verify its signed metadata against the trusted
        root, then apply it like any apply.

        Raises :class:`~steppatch.offline.PatchError` for a damaged file,
        :class:`WrongEnvironment`, :class:`StalePatch` (unless ``force``, which re-resolves
        against the real state; objects the patch lacks then fail the apply), metadata errors,
        and what :meth:`apply` raises. Applying a patch whose target is installed changes nothing.
        """
        patch = PatchFile.open(path, self.limits)
        info = patch.info
        environment = self.files.environment_id()
        if info.environment != environment:
            raise WrongEnvironment(
                f"{info.system or 'an unnamed system'} ({info.environment})",
                f"{self.files.config.system or 'unnamed'} ({environment})",
            )
        with self._locked():
            state = self.files.state()
            if state.versions() == dict(info.target):
                return ApplyReport(Plan(dict(info.target), (), True))
            if state.fingerprint() != info.fingerprint and not force:
                now = state.versions()
                raise StalePatch(tuple(str(c) for c in component_changes(info.base, now, ())))
            with tempfile.TemporaryDirectory(dir=self.files.state_dir, prefix="patch-") as tmp:
                patch.extract(Path(tmp))
                saved = self._client
                self._client = RepositoryClient(
                    FileFetcher(tmp), MetadataStore(self.files.metadata_dir), self.limits,
                    self.clock,
                )
                try:
                    recipes = [self._patch_ref(ref, Path(tmp)) for ref in info.refs]
                    return self._apply(recipes, hot=hot, sync=None, record=True)
                finally:
                    self._client = saved

    def _patch_ref(self, ref: str, root: Path) -> Recipe:
        if ref.startswith("local:"):
            member = root / safe_relpath(ref[len("local:"):])
            return parse_recipe(member.read_bytes(), ref, self.limits)
        return self._load_ref(ref)

    def _raw(self, path: str, length: int) -> bytes:
        """A published file's bytes (to put in a patch; the installation verifies them)."""
        return self.repository.pool.call(
            lambda fetcher: fetch_bytes(fetcher, path, length, path), path
        )

    def _metadata_members(self) -> dict[str, bytes | Path]:
        """The signed metadata a patch carries: every root version, the timestamp, its index."""
        store = MetadataStore(self.files.metadata_dir)
        trusted = self.repository.refresh()
        members: dict[str, bytes | Path] = {}
        limit = self.limits.max_root_bytes
        for version in range(1, trusted.root.version + 1):
            path = f"roots/{version}.root.json"
            members[path] = self._raw(path, limit)
        timestamp, index = store.read("timestamp"), store.read("index")
        assert timestamp is not None and index is not None and trusted.index is not None
        members["timestamp.json"] = timestamp
        members[f"indexes/{trusted.index.version}.index.json"] = index
        return members

    # --- internals -------------------------------------------------------------------------------

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return self.files.locked(self.limits.lock_timeout_seconds)

    def _apply(
        self, recipes: list[Recipe], *, hot: bool, sync: SyncMode | None, record: bool
    ) -> ApplyReport:
        resolution = self._resolve(recipes, sync)
        plan = resolution.plan
        if hot and not plan.hot:
            raise NotHot(tuple(c.name for c in plan.changes if not resolution.is_hot(c.name)))
        if plan.empty:
            return ApplyReport(plan)
        tree_id, displaced = self._build(resolution)
        history = None
        if record:
            history = self._thin_snapshot(resolution.old)
        return self._go_live(
            tree_id, displaced, plan, resolution.state, history, hot=hot, recipes=recipes
        )

    def _build(self, resolution: _Resolution) -> tuple[str, list[str]]:
        """Download what is missing and build the new tree beside the live one."""
        self._check_space(resolution)
        self._download(resolution.missing)
        checkpoint("downloaded")
        tree_id, displaced = self.files.build_tree(
            resolution.steps, lambda done, total: self.progress("stage", done, total)
        )
        checkpoint("staged")
        return tree_id, displaced

    def _go_live(
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
                f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.spr", dump_recipe(history)
            )
        restart = not hot and bool(plan.changes)
        if restart:
            try:
                self.service.stop()
            except ServiceError:
                self.files.discard(tree_id)
                if recorded is not None:
                    recorded.unlink()
                raise
            checkpoint("stopped")
        self.files.commit(tree_id, state)
        report = ApplyReport(
            plan,
            displaced=tuple(displaced),
            config_findings=tuple(self._config_findings(state)),
            restarted=restart,
            snapshot_drift=_snapshot_drift(list(recipes), self.files.current),
        )
        report = attrs.evolve(report, upload=self._upload_snapshot(state))
        if restart:
            try:
                self.service.start()
            except ServiceError as e:
                raise ApplyStartFailed(report, e) from e
        return report

    def _upload_snapshot(self, state: HomeState) -> str:
        """Send the thin snapshot to the selected mirror; a failure is reported, never raised."""
        system = self.files.config.system
        if not system:
            return "skipped: the home has no system name"
        mirror, fetcher = self.repository.pool.current("snapshot upload")
        if not isinstance(fetcher, HttpsFetcher):
            return f"skipped: {mirror.url} is not a server"
        # Names, versions and the system name: nothing else leaves the installation.
        payload = pinned_recipe(RecipeKind.SNAPSHOT, state.versions(), system=system)
        try:
            status = fetcher.put(f"snapshots/{system}.spr", dump_recipe(payload))
        except SteppatchError as e:
            return f"failed: {e}"
        return "sent" if status in (200, 201, 204) else f"failed: {mirror.url} answered {status}"

    def _config_findings(self, state: HomeState) -> list[ConfigFinding]:
        path = self.files.root / "config.properties"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return check_config(text, {n: c.config for n, c in state.components.items() if c.config})

    def _check_space(self, resolution: _Resolution) -> None:
        needed = resolution.plan.download_bytes + sum(
            s.entry.size for s in resolution.steps if s.kind is StepKind.FETCH
        )
        free = shutil.disk_usage(self.files.state_dir).free
        if needed + self.limits.disk_reserve_bytes > free:
            raise InsufficientSpace(str(self.files.state_dir), needed, free)

    def _thin_snapshot(
        self, state: HomeState, files: Mapping[str, FileEntry] | None = None
    ) -> Recipe:
        return pinned_recipe(
            RecipeKind.SNAPSHOT,
            state.versions(),
            name=f"snapshot-{self.files.config.system or 'home'}",
            system=self.files.config.system,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            files=files,
            environment=self.files.environment_id(),
            fingerprint=state.fingerprint(),
        )

    def _load_refs(self, refs: Sequence[str]) -> list[Recipe]:
        if not refs:
            raise BadReference("", "no reference given")
        return [self._load_ref(ref) for ref in refs]

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

    def _solve(
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
            self.repository.index(),
            installed=keep,
            max_rounds=self.limits.solver_max_rounds,
        )
        return target, set(wanted)

    def _resolve(self, recipes: list[Recipe], sync: SyncMode | None) -> _Resolution:
        state = self.files.state()
        installed = state.versions()
        index = self.repository.index()
        target, wanted = self._solve(recipes, installed)
        changes = component_changes(installed, target, wanted)
        components: dict[str, InstalledComponent] = {}
        for name, version in sorted(target.items()):
            held = state.components.get(name)
            if held is not None and held.version == version:
                components[name] = held
                continue
            cv = index.components[name][version]
            manifest = self.repository.manifest(cv)
            components[name] = InstalledComponent(
                manifest, cv.manifest.sha256, cv.hot, cv.config
            )
        tree = merge_manifests({n: c.manifest for n, c in components.items()})
        old_tree = merge_manifests({n: c.manifest for n, c in state.components.items()})
        live = scan_tree(
            self.files.current, hashes=sync is not None, workers=self.limits.hash_workers
        )
        steps = tree_steps(tree, old_tree, live, sync)
        missing = _missing_objects(steps, self.files.cache)
        if missing:
            missing = self._take_from_live(missing, old_tree)
        repairs = 0
        if sync is not None:
            drift = diff_tree({p: t.entry for p, t in tree.items()}, live)
            repairs = len(drift.changed) + len(drift.missing)
            if sync is SyncMode.DELETE:
                repairs += len(drift.extra)
        hot = all(c.new is not None and components[c.name].hot for c in changes)
        plan = Plan(
            target=target,
            changes=changes,
            hot=hot,
            download_objects=len(missing),
            download_bytes=sum(size for _sha, size in missing),
            repairs=repairs,
        )
        return _Resolution(plan, HomeState(components), state, tuple(steps), missing)

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
                    self.files.cache.add_file(self.files.current / path, sha256, size)
                    continue
                except (IntegrityError, TooLarge, OSError):
                    pass  # drifted or unreadable: download it
            still.append((sha256, size))
        return tuple(still)

    def _download(self, missing: Sequence[tuple[str, int]]) -> None:
        if missing:
            self.repository.fetch_objects(missing, self.files.cache, progress=self.progress)


def _merge_ranges(recipes: Sequence[Recipe]) -> dict[str, SpecifierSet]:
    """Every component the recipes name, with their ranges intersected."""
    wanted: dict[str, SpecifierSet] = {}
    for recipe in recipes:
        for name, spec in recipe.components.items():
            wanted[name] = wanted.get(name, SpecifierSet()) & spec
    return wanted


def _write_tls(
    directory: Path, ca: bytes | None, client_cert: tuple[bytes, bytes] | None
) -> TlsConfig | None:
    """Write the CA and client certificate as a home keeps them; ``None`` without a CA."""
    if ca is None:
        if client_cert is not None:
            raise InputError("a client certificate needs the private CA too (--ca)")
        return None
    atomic_write(directory / "ca.crt", ca)
    if client_cert is not None:
        atomic_write(directory / "client.crt", client_cert[0])
        atomic_write(directory / "client.key", client_cert[1], mode=0o600)
    return _read_tls(directory)


def _read_tls(directory: Path) -> TlsConfig | None:
    ca, cert, key = directory / "ca.crt", directory / "client.crt", directory / "client.key"
    if not ca.is_file():
        return None
    if cert.is_file() and key.is_file():
        return TlsConfig(ca, cert, key)
    return TlsConfig(ca)


def _snapshot_drift(recipes: list[Recipe], tree: Path) -> Drift | None:
    """For a full snapshot, how the new tree differs from the files it recorded."""
    files: dict[str, FileEntry] = {}
    for recipe in recipes:
        files.update(recipe.files)
    if not files:
        return None
    return diff_tree(files, scan_tree(tree, hashes=True))


@attrs.frozen
class _StagedRecord:
    """A staged apply's ``staged.json``: what :meth:`Home.switch_staged` needs to finish it."""

    tree: str
    base: str
    hot: bool
    requested: tuple[str, ...]
    repairs: int
    displaced: tuple[str, ...]


def _read_staged_record(data: bytes, fail: Callable[[str], NoReturn]) -> _StagedRecord:
    """Parse a ``steppatch-staged/1`` record; ``fail(problem)`` raises the caller's error."""
    f = Fields(load_json_object(data, fail), "", fail)
    if f.get("format", str) != STAGED_FORMAT:
        f.fail("format", f"expected {STAGED_FORMAT!r}")
    lists: dict[str, tuple[str, ...]] = {}
    for field in ("requested", "displaced"):
        listed = f.get(field, list)
        if not all(isinstance(item, str) for item in listed):
            f.fail(field, "expected a list of strings")
        lists[field] = tuple(listed)
    return _StagedRecord(
        tree=f.get("tree", str),
        base=f.get("base", str),
        hot=f.get("hot", bool),
        requested=lists["requested"],
        repairs=f.get("repairs", int),
        displaced=lists["displaced"],
    )


def _is_tree_id(text: str) -> bool:
    return _TREE_ID.fullmatch(text) is not None


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
