"""The fleet: every system that uploaded a thin snapshot, what it runs and what it lacks.

Pure (no I/O): the stored uploads of each system (their times and parsed snapshots), the
mirror's verified index, the release recipes it lists and a clock value go in; a :class:`Fleet`
comes out, and :func:`fleet_to_json` writes it as ``steppatch-fleet/1`` (``docs/formats.md``).
``steppatch.server._fleet`` reads the store and calls :func:`compute_fleet`.

Per system and installed component: the newest version in the same major.minor (the patch to
take), the newest overall, whether each is hot, and the ``steppatch apply`` line that takes it.
A system is ``stale`` when its last upload is older than ``stale_after``, else ``behind`` when a
component it runs has a newer version in the index, else ``up-to-date``. Cost: O(systems x
components) with one index look-up per distinct (component, version), however many systems run it.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from packaging.version import Version

from steppatch import _record as record
from steppatch._json import Fields
from steppatch.errors import RecipeError
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import NodeSnapshot, Recipe, RecipeKind, RepositoryIndex
from steppatch.recipe import pinned_versions, recipe_fields
from steppatch.versions import is_valid_name

__all__ = [
    "DEFAULT_STALE_AFTER",
    "FLEET_FORMAT",
    "Available",
    "Change",
    "ComponentView",
    "Fleet",
    "FleetMemo",
    "FleetState",
    "HistoryEntry",
    "NodeView",
    "ReleaseView",
    "SystemUploads",
    "SystemView",
    "Upload",
    "apply_line",
    "compute_fleet",
    "diff_versions",
    "fleet_to_json",
    "parse_stored_snapshot",
    "release_notes",
    "system_to_json",
]

FLEET_FORMAT = "steppatch-fleet/1"
#: how long a system may stay silent before it counts as stale (``stale_after`` in mirror.toml)
DEFAULT_STALE_AFTER = dt.timedelta(days=7)


class FleetState(StrEnum):
    """Where a system stands."""

    UP_TO_DATE = "up-to-date"
    BEHIND = "behind"
    STALE = "stale"


@record.frozen
class Upload:
    """One stored upload: when the mirror received it, the version of each component, and the
    nodes of a cluster snapshot."""

    time: dt.datetime
    versions: Mapping[str, Version]
    nodes: tuple[NodeSnapshot, ...] = ()

    @classmethod
    def of(cls, time: dt.datetime, snapshot: Recipe) -> Upload:
        """The upload of a snapshot (one pinned version per component). Raises
        :class:`~steppatch.errors.RecipeError` for a range."""
        versions = {}
        for name, spec in snapshot.components.items():
            pins = list(spec)
            if len(pins) != 1 or pins[0].operator not in ("==", "===") or "*" in pins[0].version:
                what = snapshot.name or "snapshot"
                raise RecipeError(what, f"{name} is not pinned to one version")
            versions[name] = _version(pins[0].version)
        return cls(time, versions, snapshot.nodes)


@record.frozen
class SystemUploads:
    """What the store keeps of one system: ``name`` (its path under ``snapshots/``, a relay's
    name first), its uploads oldest first (the last one is the latest; only the latest needs
    its snapshot for the overview, the others for the history), and how many are kept."""

    name: str
    uploads: tuple[Upload, ...]
    #: how many uploads the store keeps (0: as many as ``uploads``)
    kept: int = 0


@record.frozen
class Available:
    """A newer version of an installed component: the ``apply`` line takes it."""

    version: Version
    hot: bool
    recipe: str
    #: the command that takes it (made once: a fleet shows it on every system that lacks it)
    apply: str = record.field(init=False, derive=lambda a: apply_line([a.recipe], a.hot))


@record.frozen
class ComponentView:
    """One installed component: ``listed`` is whether the index has that version; ``patch`` the
    newest version of the same major.minor, ``latest`` the newest overall (each ``None`` when it
    is not newer than the installed one)."""

    name: str
    installed: Version
    listed: bool
    patch: Available | None
    latest: Available | None
    #: every newer version in the index, oldest first (for the release notes)
    newer: tuple[Version, ...] = ()

    @property
    def behind(self) -> bool:
        return self.latest is not None


@record.frozen
class ReleaseView:
    """A release recipe of the index this system ``matches`` (runs every pinned version) or
    ``trails`` (older on some pinned component, newer on none)."""

    path: str
    name: str
    status: str
    behind: tuple[str, ...] = ()

    @property
    def apply(self) -> str:
        return apply_line([self.path], False)


@record.frozen
class NodeView:
    """One node of a cluster snapshot."""

    name: str
    versions: Mapping[str, Version]
    #: the components where this node differs from the cluster's versions
    differs: tuple[str, ...] = ()


@record.frozen
class Change:
    """A component that changed between two uploads (``old``/``new`` ``None``: added/removed)."""

    name: str
    old: Version | None
    new: Version | None


@record.frozen
class HistoryEntry:
    """One upload and what changed since the one before (``None`` for the oldest kept)."""

    time: dt.datetime
    components: int
    changes: tuple[Change, ...] | None


@record.frozen
class SystemView:
    """One system in the fleet."""

    name: str
    state: FleetState
    last_upload: dt.datetime
    uploads: int
    versions: Mapping[str, Version]
    components: tuple[ComponentView, ...]
    nodes: tuple[NodeView, ...]
    releases: tuple[ReleaseView, ...]
    history: tuple[HistoryEntry, ...]

    @property
    def behind(self) -> int:
        """How many components have a newer version."""
        return sum(1 for c in self.components if c.behind)

    @property
    def unlisted(self) -> int:
        """How many installed versions the index does not list."""
        return sum(1 for c in self.components if not c.listed)

    @property
    def commands(self) -> tuple[str, ...]:
        """What to run on the system: every patch (same major.minor) in one apply (``--hot``
        when all are hot), then each newer major.minor on its own line."""
        patches = [c.patch for c in self.components if c.patch is not None]
        lines = []
        if patches:
            lines.append(apply_line([p.recipe for p in patches], all(p.hot for p in patches)))
        for c in self.components:
            if c.latest is not None and (c.patch is None or c.latest.version != c.patch.version):
                lines.append(c.latest.apply)
        return tuple(lines)


@record.frozen
class Fleet:
    """Every system, sorted by name; when the fleet was computed and against which index."""

    now: dt.datetime
    stale_after: dt.timedelta
    index_version: int | None
    systems: tuple[SystemView, ...]
    #: whether a verified index was there to compare with (else nothing is behind)
    indexed: bool = True

    def counts(self) -> dict[str, int]:
        """Systems per state (every state present, zero included)."""
        counts = {s.value: 0 for s in FleetState}
        for system in self.systems:
            counts[system.state.value] += 1
        return counts

    def get(self, name: str) -> SystemView | None:
        """The system of that name, if it uploaded."""
        for system in self.systems:
            if system.name == name:
                return system
        return None


@functools.lru_cache(maxsize=65536)
def _version(text: str) -> Version:
    # A fleet runs few distinct versions: each is parsed once (Version objects are immutable).
    return Version(text)


@functools.lru_cache(maxsize=65536)
def _text(version: Version) -> str:
    return str(version)


def _pin(text: str) -> Version:
    # "==1.2.3" (or "===1.2.3"): one exact version, as a stored thin snapshot pins it
    if not text.startswith("==") or "*" in text or "," in text:
        raise ValueError(f"{text!r} is not one pinned version (==VERSION)")
    return _version(text.lstrip("=").strip())


def parse_stored_snapshot(
    data: bytes, source: str, time: dt.datetime, limits: Limits = DEFAULT_LIMITS
) -> Upload:
    """A stored thin snapshot (``steppatch-recipe/1`` of kind ``snapshot``, each component
    pinned ``==VERSION``, optional ``nodes``) as the upload received at ``time``. The fleet's
    fast path: no specifier sets built, each distinct version parsed once.

    Raises :class:`~steppatch.errors.RecipeError` naming the field at fault.
    """

    f, fail = recipe_fields(data, source, limits.max_snapshot_bytes, limits)
    if f.get("kind", str) != RecipeKind.SNAPSHOT.value:
        f.fail("kind", "expected 'snapshot'")
    comps = f.sub("components")
    if len(comps.obj) > limits.max_snapshot_components:
        f.fail("components", f"more than {limits.max_snapshot_components} entries")
    versions: dict[str, Version] = {}
    for name in sorted(comps.obj):
        if not is_valid_name(name):
            comps.fail(name, "not a component name")
        versions[name] = comps.parse(name, _pin)
    nodes: list[NodeSnapshot] = []
    if "nodes" in f.obj:
        listed = f.get("nodes", list)
        if len(listed) > limits.max_snapshot_nodes:
            f.fail("nodes", f"more than {limits.max_snapshot_nodes} entries")
        for i, item in enumerate(listed):
            if not isinstance(item, dict):
                f.fail(f"nodes[{i}]", "expected an object")
            node = Fields(item, f"nodes[{i}].", fail)
            pins = node.sub("components")
            if len(pins.obj) > limits.max_snapshot_components:
                node.fail("components", f"more than {limits.max_snapshot_components} entries")
            nodes.append(NodeSnapshot(
                name=node.get("name", str),
                versions={n: pins.parse(n, _version) for n in sorted(pins.obj)},
                environment=node.get("environment", str, ""),
                fingerprint=node.get("fingerprint", str, ""),
            ))
    return Upload(time, versions, tuple(nodes))


def apply_line(refs: Iterable[str], hot: bool) -> str:
    """The command that applies the recipes at ``refs`` (paths in the repository)."""
    flag = " --hot" if hot else ""
    return "steppatch apply" + flag + "".join(f" to:{ref}" for ref in refs)


def diff_versions(
    old: Mapping[str, Version], new: Mapping[str, Version]
) -> tuple[Change, ...]:
    """What changed from ``old`` to ``new``, by name."""
    changes = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a != b:
            changes.append(Change(name, a, b))
    return tuple(changes)


class _IndexView:
    """Per component: versions sorted, the newest per (major, minor); memoised component views."""

    def __init__(self, index: RepositoryIndex | None) -> None:
        self.index = index
        self._memo: dict[tuple[str, Version], ComponentView] = {}
        self._sorted: dict[str, list[Version]] = {}

    def versions(self, name: str) -> list[Version]:
        found = self._sorted.get(name)
        if found is None:
            cvs = self.index.components.get(name, {}) if self.index is not None else {}
            found = self._sorted[name] = sorted(cvs)
        return found

    def view(self, name: str, installed: Version) -> ComponentView:
        key = (name, installed)
        found = self._memo.get(key)
        if found is not None:
            return found
        versions = self.versions(name)
        listed = self.index is not None and self.index.get(name, installed) is not None
        newer = tuple(v for v in versions if v > installed)
        same = [v for v in newer if v.release[:2] == installed.release[:2]]
        patch = self._available(name, same[-1]) if same else None
        latest = self._available(name, newer[-1]) if newer else None
        found = self._memo[key] = ComponentView(name, installed, listed, patch, latest, newer)
        return found

    def _available(self, name: str, version: Version) -> Available:
        assert self.index is not None
        cv = self.index.components[name][version]
        return Available(version, cv.hot, cv.recipe)


def _release_view(
    path: str, recipe: Recipe, pins: Mapping[str, Version], versions: Mapping[str, Version]
) -> ReleaseView | None:
    shared = [n for n in sorted(pins) if n in versions]
    if not shared:
        return None
    older = tuple(n for n in shared if versions[n] < pins[n])
    newer = [n for n in shared if versions[n] > pins[n]]
    if newer:
        return None
    if not older:
        if len(shared) != len(pins):
            return None  # runs part of it only
        return ReleaseView(path, recipe.name, "matches")
    return ReleaseView(path, recipe.name, "trails", older)


def _system(
    uploads: SystemUploads,
    index: _IndexView,
    releases: Sequence[tuple[str, Recipe, dict[str, Version]]],
    history: bool,
) -> SystemView:
    """One system's view, its state as if it were not stale (the caller decides that)."""
    latest = uploads.uploads[-1]
    versions = latest.versions
    components = tuple(index.view(n, v) for n, v in sorted(versions.items()))
    nodes = tuple(
        NodeView(
            node.name,
            node.versions,
            tuple(c.name for c in diff_versions(versions, node.versions)),
        )
        for node in latest.nodes
    )
    matched = []
    for path, recipe, pins in releases:
        view = _release_view(path, recipe, pins, versions)
        if view is not None:
            matched.append(view)
    state = FleetState.BEHIND if any(c.behind for c in components) else FleetState.UP_TO_DATE
    entries: list[HistoryEntry] = []
    if history:
        before: Mapping[str, Version] | None = None
        for upload in uploads.uploads:
            changes = None if before is None else diff_versions(before, upload.versions)
            entries.append(HistoryEntry(upload.time, len(upload.versions), changes))
            before = upload.versions
    return SystemView(
        name=uploads.name,
        state=state,
        last_upload=latest.time,
        uploads=uploads.kept or len(uploads.uploads),
        versions=versions,
        components=components,
        nodes=nodes,
        releases=tuple(matched),
        history=tuple(reversed(entries)),
    )


class FleetMemo:
    """What :func:`compute_fleet` may keep between calls (a server's pages): the views of each
    system's latest upload against one index and set of releases, reused while that upload
    object, the index object and the releases are the same ones. In memory only."""

    def __init__(self) -> None:
        self._releases: tuple[tuple[str, Recipe], ...] = ()
        self._index: _IndexView | None = None
        self._systems: dict[str, tuple[Upload, int, SystemView]] = {}

    def index_view(
        self, index: RepositoryIndex | None, releases: tuple[tuple[str, Recipe], ...]
    ) -> _IndexView:
        same = (
            self._index is not None
            and self._index.index is index
            and len(releases) == len(self._releases)
            and all(a[0] == b[0] and a[1] is b[1] for a, b in zip(releases, self._releases,
                                                                    strict=True))
        )
        if not same:
            self._releases, self._index, self._systems = releases, _IndexView(index), {}
        assert self._index is not None
        return self._index

    def get(self, uploads: SystemUploads) -> SystemView | None:
        held = self._systems.get(uploads.name)
        if held is None or held[0] is not uploads.uploads[-1] or held[1] != uploads.kept:
            return None
        return held[2]

    def put(self, uploads: SystemUploads, view: SystemView) -> None:
        self._systems[uploads.name] = (uploads.uploads[-1], uploads.kept, view)


def compute_fleet(
    systems: Iterable[SystemUploads],
    index: RepositoryIndex | None,
    releases: Mapping[str, Recipe],
    now: dt.datetime,
    *,
    stale_after: dt.timedelta = DEFAULT_STALE_AFTER,
    index_version: int | None = None,
    history: bool = False,
    memo: FleetMemo | None = None,
) -> Fleet:
    """The fleet of ``systems`` (each with one upload or more) against ``index`` and its
    release recipes (path -> recipe; other kinds are ignored), at ``now`` (aware).

    ``history``: also list each system's uploads, newest first, with what changed (the page of
    one system; the overview does not need it). Systems without uploads are left out.
    ``memo``: reuse what an earlier call computed for the same uploads (without history).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    release_list = [
        (path, r, pinned_versions(r))
        for path, r in sorted(releases.items())
        if r.kind is RecipeKind.RELEASE
    ]
    if memo is not None and not history:
        view = memo.index_view(index, tuple((path, r) for path, r, _p in release_list))
    else:
        view = _IndexView(index)
    result = []
    for s in sorted(systems, key=lambda s: s.name):
        if not s.uploads:
            continue
        found = memo.get(s) if memo is not None and not history else None
        if found is None:
            found = _system(s, view, release_list, history)
            if memo is not None and not history:
                memo.put(s, found)
        if now - found.last_upload > stale_after:
            found = record.evolve(found, state=FleetState.STALE)
        result.append(found)
    return Fleet(now, stale_after, index_version, tuple(result), index is not None)


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def system_to_json(system: SystemView, now: dt.datetime) -> dict[str, Any]:
    """One system as ``steppatch-fleet/1`` lists it (what each newer version is: the document's
    ``available``)."""
    doc: dict[str, Any] = {
        "name": system.name,
        "state": system.state.value,
        "last_upload": _stamp(system.last_upload),
        "silent_s": max(int((now - system.last_upload).total_seconds()), 0),
        "uploads": system.uploads,
        "behind": system.behind,
        "components": {
            c.name: {
                "installed": _text(c.installed),
                "listed": c.listed,
                "patch": None if c.patch is None else _text(c.patch.version),
                "latest": None if c.latest is None else _text(c.latest.version),
            }
            for c in system.components
        },
        "nodes": [
            {
                "name": n.name,
                "versions": {k: str(v) for k, v in sorted(n.versions.items())},
                "differs": list(n.differs),
            }
            for n in system.nodes
        ],
        "releases": [
            {"path": r.path, "name": r.name, "status": r.status, "behind": list(r.behind),
             "apply": r.apply}
            for r in system.releases
        ],
        "commands": list(system.commands),
    }
    if system.history:
        doc["history"] = [
            {
                "time": _stamp(h.time),
                "components": h.components,
                "changes": None if h.changes is None else [
                    {"name": c.name, "from": None if c.old is None else str(c.old),
                     "to": None if c.new is None else str(c.new)}
                    for c in h.changes
                ],
            }
            for h in system.history
        ]
    return doc


def _available(fleet: Fleet) -> dict[str, dict[str, Any]]:
    found: dict[tuple[str, Version], Available] = {}
    for system in fleet.systems:
        for c in system.components:
            for a in (c.patch, c.latest):
                if a is not None:
                    found[(c.name, a.version)] = a
    out: dict[str, dict[str, Any]] = {}
    for (name, version), a in sorted(found.items()):
        out.setdefault(name, {})[str(version)] = {
            "hot": a.hot, "recipe": a.recipe, "apply": a.apply,
        }
    return out


def fleet_to_json(fleet: Fleet, unreadable: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The whole fleet as a ``steppatch-fleet/1`` document (a JSON-ready dict); ``unreadable``:
    the systems whose latest upload could not be read, with why."""
    return {
        "format": FLEET_FORMAT,
        "generated": _stamp(fleet.now),
        "stale_after_s": int(fleet.stale_after.total_seconds()),
        "indexed": fleet.indexed,
        "index_version": fleet.index_version,
        "counts": fleet.counts(),
        "systems": [system_to_json(s, fleet.now) for s in fleet.systems],
        "available": _available(fleet),
        "unreadable": [
            {"name": name, "problem": problem}
            for name, problem in sorted((unreadable or {}).items())
        ],
    }


def release_notes(
    index: RepositoryIndex | None, component: ComponentView
) -> list[tuple[Version, bool, str, str]]:
    """The newer versions of ``component`` with (version, hot, summary, notes), newest first."""
    if index is None:
        return []
    out = []
    for version in reversed(component.newer):
        cv = index.get(component.name, version)
        if cv is not None:
            out.append((version, cv.hot, cv.summary, cv.notes))
    return out
