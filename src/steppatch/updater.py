"""The front door for an installation: :class:`Home`, a thin facade over injected parts.

In the manner of python-tuf's ngclient ``Updater``: :class:`Home` holds the parts (the home's files
:class:`~steppatch.home.HomeDir`, the repository client, the application's
:class:`~steppatch.home.Service`, the fetchers, the one clock, limits, progress), takes the home's
lock, and delegates each job to the module that does it:

- :mod:`steppatch.pipeline`: resolve -> build -> go live (apply, prepare, rollback, stage/switch);
- :mod:`steppatch.home` (``_staged``): staged applies on disk;
- :mod:`steppatch.offline_apply`: making and applying offline patch files (their own client);
- :mod:`steppatch.configedit`: config edits as pure functions, applied by the one locked edit
  :meth:`~steppatch.home.HomeDir.edit_config`;
- :mod:`steppatch.ping`: checking a mirror.

Every CLI command about a home is one call of it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from steppatch import _record as record
from steppatch import configedit
from steppatch.clock import Clock, utcnow
from steppatch.config import (
    HomeConfig,
    MirrorEntry,
    NodeEntry,
    check_node_name,
    parse_location,
)
from steppatch.errors import (
    ConfigOutdated,
    HomeError,
    InputError,
    SteppatchError,
)
from steppatch.home import HomeDir, HomeTls
from steppatch.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from packaging.version import Version

    from steppatch.collect import Collection
    from steppatch.configcheck import ConfigFinding
    from steppatch.home import HomeSizes, Service
    from steppatch.model import ComponentVersion, HomeState, NodeSnapshot, Recipe
    from steppatch.offline import PatchInfo
    from steppatch.pipeline import (
        ApplyPipeline,
        ApplyReport,
        ApplyStartFailed,
        Progress,
        StagedApply,
    )
    from steppatch.plan import Drift, Plan, SyncMode
    from steppatch.remote import RepositoryClient
    from steppatch.transport import MirrorPool, TlsConfig
    from steppatch.transport._base import Fetcher
    from steppatch.transport._probe import PingCheck
    from steppatch.trust import Root

# Re-exported from the pipeline (and the probe) on first use: the facade's import stays cheap
# for the commands that only read the home (status, verify, snapshot).
_REEXPORTS = {
    "ApplyReport": "steppatch.pipeline",
    "ApplyStartFailed": "steppatch.pipeline",
    "Progress": "steppatch.pipeline",
    "StagedApply": "steppatch.pipeline",
    "PingCheck": "steppatch.transport._probe",
}


def __getattr__(name: str) -> object:
    module = _REEXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


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

#: ``fetchers(url)``: the fetcher for one mirror's URL (raises for a URL it cannot use)
Fetchers = Callable[[str], "Fetcher"]


def split_refs(text: str) -> list[str]:
    """``"to:a.spr,to:b.spr"`` -> ``["to:a.spr", "to:b.spr"]``; blanks are dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


@record.frozen
class Update:
    """Newer versions of an installed component (oldest first), with their notes."""

    name: str
    installed: Version
    available: tuple[ComponentVersion, ...]


class Home:
    """One installation. Construct with :meth:`init` or :meth:`open`.

    The parts are injected: ``fetcher`` reads the repository (default: the home's mirrors, in
    order, through ``fetchers``); ``fetchers`` makes the fetcher for a mirror's URL (default:
    ``file://`` or ``https://`` with the home's TLS files); ``service`` starts and stops the
    application (default: the commands of the home's config); ``clock`` is the one clock of
    every record the home keeps and of the metadata's expiry checks.
    """

    def __init__(
        self,
        files: HomeDir,
        fetcher: Fetcher | None = None,
        limits: Limits = DEFAULT_LIMITS,
        progress: Progress | None = None,
        clock: Clock = utcnow,
        *,
        service: Service | None = None,
        fetchers: Fetchers | None = None,
    ) -> None:
        self.files = files
        self.limits = limits
        self.progress: Progress = progress or _no_progress
        self.clock = clock
        self._fetcher = fetcher
        self._fetchers = fetchers
        self._service = service
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
        clock: Clock = utcnow,
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
        import shutil
        import tempfile

        from steppatch.remote import MetadataStore, fetch_root_for_tofu
        from steppatch.transport import fetcher_for
        from steppatch.trust import load_trusted_root

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
            tls = HomeTls(Path(staging)).write(ca, client_cert)
            fetcher = fetcher or fetcher_for(updates, tls, limits.transport())
            if root is None:
                root, _ = fetch_root_for_tofu(fetcher, limits)
            else:
                load_trusted_root(root, limits.trust())
            files = HomeDir.create(path, config, now=clock())
            MetadataStore(files.metadata_dir).write("root", root)
            if tls is not None:
                shutil.copytree(staging, files.tls_dir, dirs_exist_ok=True)
        return cls(files, fetcher, limits, clock=clock)

    @classmethod
    def open(
        cls,
        path: Path | str,
        limits: Limits = DEFAULT_LIMITS,
        fetcher: Fetcher | None = None,
        progress: Progress | None = None,
        clock: Clock = utcnow,
        *,
        service: Service | None = None,
        fetchers: Fetchers | None = None,
    ) -> Home:
        """Open the home at ``path``. Raises :class:`~steppatch.errors.HomeError`."""
        return cls(
            HomeDir.open(Path(path)), fetcher, limits, progress, clock,
            service=service, fetchers=fetchers,
        )

    # --- the parts -------------------------------------------------------------------------------

    @property
    def trusted_root(self) -> Root:
        """The root metadata this home trusts now (its keys, thresholds, version)."""
        from steppatch.remote import MetadataStore
        from steppatch.trust import load_trusted_root

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
        return self.files.tls.config()

    def fetcher_for(self, url: str) -> Fetcher:
        """The fetcher for the mirror at ``url`` (the injected ``fetchers``, or the default).
        Raises :class:`~steppatch.errors.ConfigError` for a URL steppatch cannot use."""
        from steppatch.transport import fetcher_for

        if self._fetchers is not None:
            return self._fetchers(url)
        return fetcher_for(url, self.tls, self.limits.transport())

    def mirror_pool(self) -> MirrorPool:
        """The home's mirrors, the selected one first, then by priority."""
        from steppatch.transport import Mirror, MirrorPool, fetcher_for

        mirrors = [
            Mirror(m.id, m.url, m.priority, m.name) for m in self.files.config.mirror_list()
        ]
        # Keep the configured order (the selected mirror first): priorities are not re-sorted.
        ranked = [record.evolve(m, priority=len(mirrors) - i) for i, m in enumerate(mirrors)]
        if self._fetchers is not None:
            connect = self._fetchers
            return MirrorPool(ranked, lambda m: connect(m.url), self.limits.transport())
        tls, transport = self.tls, self.limits.transport()
        return MirrorPool(ranked, lambda m: fetcher_for(m.url, tls, transport), transport)

    @property
    def repository(self) -> RepositoryClient:
        """The client for the home's repository (made on first use)."""
        from steppatch.remote import MetadataStore, RepositoryClient

        if self._client is None:
            source = self._fetcher or self.mirror_pool()
            self._client = RepositoryClient(
                source, MetadataStore(self.files.metadata_dir), self.limits, self.clock
            )
        return self._client

    @property
    def service(self) -> Service:
        """The application's start/stop commands (injected, or from the home's config)."""
        if self._service is not None:
            return self._service
        from steppatch.home import ShellService

        return ShellService(
            self.files.config.service, self.files.root, self.limits.service_timeout_seconds
        )

    @property
    def pipeline(self) -> ApplyPipeline:
        """The apply pipeline over this home's parts (call it with the lock held)."""
        from steppatch.pipeline import ApplyPipeline

        return ApplyPipeline(
            self.files,
            self.repository,
            self.service,
            limits=self.limits,
            progress=self.progress,
            clock=self.clock,
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
            files = None
            if full:
                from steppatch.home import scan_tree

                files = scan_tree(self.files.current, hashes=True)
        from steppatch.home._records import thin_snapshot

        recipe = thin_snapshot(self.files, state, self.clock(), files)
        if path is not None:
            from steppatch.recipe import dump_recipe

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
        return [
            Update(name, version, tuple(
                index.components[name][v] for v in index.versions(name) if v > version
            ))
            for name, version in installed.items()
        ]

    def config_findings(self) -> list[ConfigFinding]:
        """Settings in ``HOME/config.properties`` that installed components deprecate or renamed."""
        with self._locked():
            state = self.files.state()
        from steppatch.home._records import config_findings

        return config_findings(self.files, state)

    # --- mirrors ---------------------------------------------------------------------------------

    def mirrors(self) -> list[tuple[MirrorEntry, bool]]:
        """The mirrors in the order they are tried, each with whether it is the selected one."""
        config = self.files.config
        return [(m, m.url == config.updates) for m in config.mirror_list()]

    def add_mirror(self, mirror: MirrorEntry) -> None:
        """Add a mirror. Raises :class:`InputError` if its id is taken or its URL unusable."""
        self.fetcher_for(mirror.url)  # refuses unusable URLs
        self._edit_config(lambda config: configedit.add_mirror(config, mirror))

    def remove_mirror(self, mirror_id: str) -> None:
        """Remove a mirror. Raises :class:`InputError` for an unknown id or the last mirror."""
        self._edit_config(lambda config: configedit.remove_mirror(config, mirror_id))

    def select_mirror(self, url: str) -> None:
        """Make ``url`` the mirror tried first (as the manuals' ``--updates=URL``); a URL not
        listed yet is added with priority 0. Raises :class:`InputError` for an unusable URL.
        """
        self.fetcher_for(url)
        self._edit_config(lambda config: configedit.select_mirror(config, url))

    def ping(self, url: str | None = None) -> list[PingCheck]:
        """Check one mirror (default: the selected one): reachable, its TLS identity, and that its
        signed metadata verifies against this home's trust. Read-only: what verifies is not
        stored. Each check says whether it passed and why; a check after a failed one is skipped.
        """
        from steppatch.ping import ping_mirror

        url = url or self.files.config.updates
        try:
            fetcher = self.fetcher_for(url)
        except SteppatchError as e:
            from steppatch.transport._probe import PingCheck

            return [PingCheck("configuration", False, str(e))]
        return ping_mirror(fetcher, url, self.files.metadata_dir, self.limits, self.clock)

    # --- cluster nodes ----------------------------------------------------------------------------

    def add_node(self, node: NodeEntry) -> None:
        """Add another node of this home's cluster.

        Raises :class:`InputError` for a bad name or location, a name taken (this node's
        included), a location listed already or this home itself, and
        :class:`~steppatch.errors.HomeError` for a local path that is not a home.
        """
        check_node_name(node.name)  # both refused before the lock is taken
        location = parse_location(node.location)

        def change(config: HomeConfig) -> HomeConfig:
            changed = configedit.add_node(config, node)
            if not location.is_ssh:
                other = HomeDir.open(Path(location.path))
                if other.root.resolve() == self.files.root.resolve():
                    raise InputError(f"{location} is this home; it is always a node of its cluster")
            return changed

        self._edit_config(change)

    def remove_node(self, name: str) -> None:
        """Remove a node from the cluster's list. Raises :class:`InputError` for an unknown one."""
        self._edit_config(lambda config: configedit.remove_node(config, name))

    def name_node(self, name: str) -> None:
        """Name this node in its cluster. Raises :class:`InputError` for a bad or taken name."""
        self._edit_config(lambda config: configedit.name_node(config, name))

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
            pipeline = self.pipeline
            return pipeline.prepare(pipeline.load_refs(refs), sync)

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
            pipeline = self.pipeline
            report = pipeline.apply(pipeline.load_refs(refs), hot=hot, sync=sync, record=True)
            return self._collect_after(report)

    def rollback(self) -> ApplyReport:
        """Return to the state the last apply replaced (its thin snapshot in the history).

        Each rollback consumes one history entry, so repeated rollbacks go further back.
        Raises :class:`NothingToRollBack` when there is no history.
        """
        with self._locked():
            return self._collect_after(self.pipeline.rollback())

    def load_recipes(self, refs: Sequence[str]) -> list[Recipe]:
        """The recipes ``refs`` name (``to:PATH`` from the repository, or local files).

        Raises :class:`BadReference`, :class:`~steppatch.errors.UnknownReference`, metadata and
        network errors.
        """
        with self._locked():
            return self.pipeline.load_refs(refs)

    def upload_snapshot(
        self, versions: Mapping[str, Version], nodes: Sequence[NodeSnapshot] = ()
    ) -> str:
        """Send a thin snapshot of ``versions`` (a cluster's: with its ``nodes``, each a name
        and versions) to the selected mirror, as every apply does with its own. Returns
        ``sent``, ``skipped: ...`` or ``failed: ...``; never raises."""
        with self._locked():
            return self.pipeline.upload_thin(versions, nodes)

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
        from steppatch.model import Recipe

        with self._locked():
            pipeline = self.pipeline
            recipes = [r if isinstance(r, Recipe) else pipeline.load_ref(r) for r in refs]
            return pipeline.stage(recipes, hot=hot, sync=sync)

    def switch_staged(self, token: str) -> ApplyReport:
        """The second half of an apply: record the state replaced, stop the application, make
        the staged tree live, start it. The same single commit point as :meth:`apply`.

        Raises :class:`StagedApplyMissing` if the staged apply is gone or the home changed
        since it was staged (it is discarded then), and what :meth:`apply` raises from its
        switch on (:class:`ServiceError`, :class:`ApplyStartFailed`).
        """
        with self._locked():
            return self._collect_after(self.pipeline.switch_staged(token))

    def discard_staged(self, token: str | None = None) -> None:
        """Drop a staged apply (``None``: every one). Dropping one that is gone is no error."""
        with self._locked():
            from steppatch.home import StagedApplies

            staged = StagedApplies(self.files)
            if token is None:
                staged.discard_all()
            else:
                staged.discard(token)

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
        from steppatch.offline_apply import prepare_offline

        return prepare_offline(self.pipeline, refs, target, output)

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
        from steppatch.offline_apply import apply_patch

        report = apply_patch(self.pipeline, path, force=force, hot=hot)
        if report.plan.empty or self.files.config.gc != "auto":
            return report
        with self._locked():
            return self._collect_after(report)

    # --- disk ------------------------------------------------------------------------------------

    def gc(
        self,
        *,
        keep: int | None = None,
        older_than: float | None = None,
        dry_run: bool = False,
    ) -> Collection:
        """Remove what no kept state needs: history entries past the newest ``keep``
        (default ``keep_history`` in ``steppatch.toml``), the stored manifests and cached objects
        neither the live state nor a kept entry names, and partial downloads older than
        ``Limits.partial_max_age_seconds``. Objects a ``prepare`` stored for a plan not applied
        yet stay, unless stored more than ``older_than`` seconds ago. ``dry_run`` removes
        nothing and says what would go. A crash at any moment leaves every kept state whole.

        Raises :class:`InputError` for a negative ``keep`` or ``older_than``,
        :class:`HomeError` (nothing removed) if the live state cannot be read.
        """
        if keep is not None and keep < 0:
            raise InputError(f"--keep {keep}: must be 0 or more")
        if older_than is not None and older_than < 0:
            raise InputError(f"--older-than {older_than}: must be 0 or more")
        with self._locked():
            return self._collect(keep, older_than, dry_run)

    def sizes(self) -> HomeSizes:
        """Bytes held by the managed trees, the cache, the history and the stored manifests."""
        from steppatch.home import home_sizes

        with self._locked():
            return home_sizes(self.files)

    def _collect(self, keep: int | None, older_than: float | None, dry_run: bool) -> Collection:
        from steppatch.home import collect_home

        return collect_home(
            self.files,
            keep=self.files.config.keep_history if keep is None else keep,
            older_than=older_than,
            dry_run=dry_run,
            now=time.time(),  # compared with files' times: the system's clock
            partial_max_age=self.limits.partial_max_age_seconds,
        )

    def _collect_after(self, report: ApplyReport) -> ApplyReport:
        """The collection after an apply (lock held), unless ``gc = "manual"`` or nothing
        changed. A failure of it is reported, never raised: the apply is done."""
        if report.plan.empty or self.files.config.gc != "auto":
            return report
        try:
            collected = self._collect(None, None, False)
        except (SteppatchError, OSError):
            return report
        return record.evolve(report, collected=collected)

    # --- internals -------------------------------------------------------------------------------

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return self.files.locked(self.limits.lock_timeout_seconds)

    def _edit_config(self, change: Callable[[HomeConfig], HomeConfig]) -> None:
        self.files.edit_config(change, self.limits.lock_timeout_seconds)


def _no_progress(stage: str, done: int, total: int) -> None:
    pass
