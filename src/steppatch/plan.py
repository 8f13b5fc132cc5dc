"""From a solution to a plan: which components move, and which files the new tree holds.

Pure functions: the updater hands in what is installed, what the solver chose and the manifests;
the result says what apply will do, before anything is done.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum

import attrs
from packaging.version import Version

from steppatch.errors import PathConflict
from steppatch.model import EntryKind, FileEntry, Manifest

__all__ = [
    "ChangeReason",
    "ComponentChange",
    "Plan",
    "TreeEntry",
    "component_changes",
    "merge_manifests",
]


class ChangeReason(StrEnum):
    """Why a component is in the plan."""

    REQUESTED = "requested"
    DEPENDENCY = "dependency"
    REMOVED = "removed"


@attrs.frozen
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


@attrs.frozen
class Plan:
    """What an apply will do.

    ``target`` is every component version the home will have; ``changes`` the ones that move;
    ``download_objects``/``download_bytes`` what is not yet in the cache; ``hot`` whether every
    changed component may be applied without a restart.
    """

    target: Mapping[str, Version]
    changes: tuple[ComponentChange, ...]
    hot: bool
    download_objects: int = 0
    download_bytes: int = 0

    @property
    def empty(self) -> bool:
        """Whether the home is already at the target."""
        return not self.changes


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


@attrs.frozen
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


def _check_dirs(tree: dict[str, TreeEntry]) -> None:
    # One component's file may not sit where another expects a directory.
    for path, held in tree.items():
        parent = path.rpartition("/")[0]
        while parent:
            above = tree.get(parent)
            if above is not None and above.entry.kind is not EntryKind.DIR:
                raise PathConflict(parent, above.owner, held.owner)
            parent = parent.rpartition("/")[0]
