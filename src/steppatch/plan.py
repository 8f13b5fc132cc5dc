"""From a solution to a plan: which components move, and which files the new tree holds.

Pure functions: the updater hands in what is installed, what the solver chose and the manifests;
the result says what apply will do, before anything is done.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from enum import StrEnum

from packaging.version import Version

from steppatch import _record as record
from steppatch.errors import PathConflict, UnsafeSymlink
from steppatch.model import EntryKind, FileEntry, Manifest

__all__ = [
    "ChangeReason",
    "ComponentChange",
    "Drift",
    "Plan",
    "StepKind",
    "SyncMode",
    "TreeEntry",
    "TreeStep",
    "check_symlinks",
    "component_changes",
    "diff_tree",
    "drift_from",
    "merge_manifests",
    "same_entry",
    "tree_steps",
]


class ChangeReason(StrEnum):
    """Why a component is in the plan."""

    REQUESTED = "requested"
    DEPENDENCY = "dependency"
    REMOVED = "removed"


@record.frozen
class ComponentChange:
    """One component moving from ``old`` to ``new`` (``None``: not installed / removed)."""

    name: str
    old: Version | None
    new: Version | None
    reason: ChangeReason

    def __str__(self) -> str:
        old = str(self.old) if self.old is not None else "(none)"
        new = str(self.new) if self.new is not None else "(removed)"
        return f"{self.name}: {old} -> {new}"


@record.frozen
class Plan:
    """What an apply will do.

    ``target`` is every component version the home will have; ``changes`` the ones that move;
    ``download_objects``/``download_bytes`` what is not yet in the cache; ``hot`` whether every
    changed component may be applied without a restart; ``repairs`` how many drifted paths a
    sync apply restores or removes.
    """

    target: Mapping[str, Version]
    changes: tuple[ComponentChange, ...]
    hot: bool
    download_objects: int = 0
    download_bytes: int = 0
    repairs: int = 0
    #: how the missing objects come: route (``delta``, ``compressed``, ``whole``) to (objects,
    #: bytes downloaded); after a download, what was done, fallbacks counted as ``whole``
    routes: Mapping[str, tuple[int, int]] = record.field(factory=dict)
    #: deltas or compressed forms that failed (downloaded whole instead)
    fallbacks: int = 0

    @property
    def empty(self) -> bool:
        """Whether the home is already at the target, with nothing to repair."""
        return not self.changes and not self.repairs


def component_changes(
    installed: Mapping[str, Version],
    target: Mapping[str, Version],
    requested: Collection[str],
) -> tuple[ComponentChange, ...]:
    """The components whose version differs between ``installed`` and ``target``, by name."""
    changes = []
    for name in sorted(set(installed) | set(target)):
        old, new = installed.get(name), target.get(name)
        if old == new:
            continue
        if new is None:
            reason = ChangeReason.REMOVED
        elif name in requested:
            reason = ChangeReason.REQUESTED
        else:
            reason = ChangeReason.DEPENDENCY
        changes.append(ComponentChange(name, old, new, reason))
    return tuple(changes)


@record.frozen
class TreeEntry:
    """A manifest entry placed in the merged managed tree, with the component that owns it."""

    owner: str
    entry: FileEntry


def merge_manifests(manifests: Mapping[str, Manifest]) -> dict[str, TreeEntry]:
    """The managed tree of a set of component versions: path to entry.

    Directories may be shared (the mode of the first owner by name wins); any other path claimed
    twice raises :class:`PathConflict` before anything is installed. Cost: O(total entries).
    """
    tree: dict[str, TreeEntry] = {}
    for name in sorted(manifests):
        for entry in manifests[name].entries:
            held = tree.get(entry.path)
            if held is None:
                tree[entry.path] = TreeEntry(name, entry)
            elif not (held.entry.kind is EntryKind.DIR and entry.kind is EntryKind.DIR):
                raise PathConflict(entry.path, held.owner, name)
    _check_dirs(tree)
    return dict(sorted(tree.items()))


def check_symlinks(
    tree: Mapping[str, TreeEntry], versions: Mapping[str, Version], max_hops: int
) -> None:
    """Refuse a merged tree in which a symlink, resolved through every component's symlinks,
    leads outside the tree, loops, or follows more than ``max_hops`` symlinks.

    Raises :class:`UnsafeSymlink` naming the first such symlink by path, its component and
    version (from ``versions``). Cost: O(total segments of the symlinks' targets).
    """
    # the link resolver loads with the first merge, not with every reader of plans (start-up)
    from steppatch.links import unsafe_links

    links = {
        path: held.entry.target
        for path, held in tree.items()
        if held.entry.kind is EntryKind.SYMLINK and held.entry.target is not None
    }
    problems = unsafe_links(links, max_hops)
    if problems:
        first = problems[0]
        owner = tree[first.path].owner
        raise UnsafeSymlink(
            owner,
            str(versions[owner]) if owner in versions else "?",
            first.path,
            first.target,
            first.kind.value,
            first.via,
            first.describe(),
            len(problems),
        )


def _check_dirs(tree: dict[str, TreeEntry]) -> None:
    # One component's file may not sit where another expects a directory.
    for path, held in tree.items():
        parent = path.rpartition("/")[0]
        while parent:
            above = tree.get(parent)
            if above is not None and above.entry.kind is not EntryKind.DIR:
                raise PathConflict(parent, above.owner, held.owner)
            parent = parent.rpartition("/")[0]


@record.frozen
class Drift:
    """How a tree on disk differs from what it should hold (paths, sorted)."""

    changed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changed or self.missing or self.extra)


def same_entry(expected: FileEntry, actual: FileEntry) -> bool:
    """Whether ``actual`` (found on disk) is what ``expected`` says: the kind, and for a file its
    sha256, size and mode, for a directory its mode, for a symlink its target."""
    if expected.kind is not actual.kind:
        return False
    if expected.kind is EntryKind.SYMLINK:
        return expected.target == actual.target
    if expected.kind is EntryKind.DIR:
        return expected.mode == actual.mode
    return (expected.sha256, expected.size, expected.mode) == (
        actual.sha256,
        actual.size,
        actual.mode,
    )


def diff_tree(expected: Mapping[str, FileEntry], actual: Mapping[str, FileEntry]) -> Drift:
    """Compare a tree's expected entries with the ones found on disk, by content hash.

    An entry below an extra or missing directory is reported once, at the topmost path.
    Cost: O(entries).
    """
    changed = []
    for path, e in expected.items():
        found = actual.get(path)
        # Equal values are the same entry; only unequal ones need the kind-wise comparison.
        if found is not None and found != e and not same_entry(e, found):
            changed.append(path)
    missing = (p for p in expected if p not in actual)
    extra = (p for p in actual if p not in expected)
    return drift_from(changed, missing, extra)


def drift_from(changed: Iterable[str], missing: Iterable[str], extra: Iterable[str]) -> Drift:
    """A :class:`Drift` from paths in any order: ``missing`` and ``extra`` are reduced to their
    topmost paths (an entry below a missing or extra directory is not listed again)."""
    return Drift(tuple(sorted(changed)), _topmost(missing), _topmost(extra))


def _topmost(paths: Iterable[str]) -> tuple[str, ...]:
    chosen = set(paths)
    result = []
    for path in sorted(chosen):
        parent = path.rpartition("/")[0]
        while parent and parent not in chosen:
            parent = parent.rpartition("/")[0]
        if not parent:
            result.append(path)
    return tuple(result)


class SyncMode(StrEnum):
    """``--syncmode``: what a sync apply does with files the manifests do not list."""

    KEEP = "keep"
    DELETE = "delete"


class StepKind(StrEnum):
    """How one path of a new managed tree is made."""

    MKDIR = "mkdir"  # a directory of the manifests
    SYMLINK = "symlink"  # a link of the manifests
    LINK = "link"  # an unchanged file, hard-linked from the live tree
    FETCH = "fetch"  # a file copied out of the verified cache
    CARRY = "carry"  # a file the operator added to the live tree, kept
    DISPLACE = "displace"  # an added file in the way of a new entry: kept aside, reported


@record.frozen
class TreeStep:
    """One step of building a new managed tree: ``entry`` says what the path must become."""

    path: str
    kind: StepKind
    entry: FileEntry


def tree_steps(
    new: Mapping[str, TreeEntry],
    old: Mapping[str, TreeEntry],
    live: Mapping[str, FileEntry],
    sync: SyncMode | None,
) -> list[TreeStep]:
    """How to build the tree ``new`` beside the live one, given what is on disk (``live``).

    Without ``sync``, a file of an unchanged entry is linked from the live tree as it is, and
    files the operator added (not in ``old``) are carried over, or displaced when a new entry
    needs their path: nothing the operator put there is lost. With ``sync`` (``live`` must then
    carry hashes), a live file is linked only if it matches its manifest entry, else restored
    from the cache; ``SyncMode.DELETE`` drops added files, so the tree equals the manifests.
    Cost: O(entries).
    """
    steps: list[TreeStep] = []
    for path, held in new.items():
        e = held.entry
        if e.kind is EntryKind.DIR:
            steps.append(TreeStep(path, StepKind.MKDIR, e))
        elif e.kind is EntryKind.SYMLINK:
            steps.append(TreeStep(path, StepKind.SYMLINK, e))
        else:
            before, now = old.get(path), live.get(path)
            reusable = (
                before is not None
                and before.entry == e
                and now is not None
                and now.kind is EntryKind.FILE
                and (sync is None or (now.sha256, now.mode) == (e.sha256, e.mode))
            )
            steps.append(TreeStep(path, StepKind.LINK if reusable else StepKind.FETCH, e))
    if sync is not SyncMode.DELETE:
        for path, found in live.items():
            if path in old:
                continue
            kind = StepKind.DISPLACE if _blocked(path, new) else StepKind.CARRY
            steps.append(TreeStep(path, kind, found))
    return steps


def _blocked(path: str, new: Mapping[str, TreeEntry]) -> bool:
    # An added path collides with a new entry, or lies under a new file or link.
    if path in new:
        return True
    parent = path.rpartition("/")[0]
    while parent:
        held = new.get(parent)
        if held is not None and held.entry.kind is not EntryKind.DIR:
            return True
        parent = parent.rpartition("/")[0]
    return False
