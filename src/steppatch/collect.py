"""Garbage collection, the pure part: what a home or a mirror keeps, given its states.

No I/O here. The edges (``steppatch.home._gc`` for a home, ``steppatch.server._gc`` for a
mirror's store) list what is on disk, ask these functions what to keep, and delete the rest in
an order that a crash never makes unsafe (``docs/architecture.md``).

- A home keeps the history entries of the last ``keep`` states an apply replaced, the objects
  the live state and those states name, and what a ``prepare`` stored for a plan not applied yet
  (objects stored after the live state was committed), unless older than ``--older-than``.
- A mirror keeps the recipes, manifests and objects named by its last ``keep_indexes`` verified
  indexes (every index it holds in HISTORIC mode).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from steppatch import _record as record
from steppatch.errors import InputError

if TYPE_CHECKING:
    # the model only where manifests are read: opening a home (history_number) loads none of it
    from steppatch.model import Manifest, RepositoryIndex

__all__ = [
    "Collection",
    "HistoryName",
    "history_number",
    "mirror_keeps",
    "objects_to_remove",
    "parse_age",
    "split_history",
]

_HISTORY = re.compile(r"([0-9]{6,})-.+\.spr")
_AGE = re.compile(r"([0-9]{1,9})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> int:
    """``30d`` -> seconds (units ``s m h d w``). Raises :class:`InputError`."""
    m = _AGE.fullmatch(text.strip())
    if m is None:
        raise InputError(f"age {text!r}: expected a number and a unit, such as 30d, 12h or 2w")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


@record.frozen(order=True)
class HistoryName:
    """A history entry's file name ``NNNNNN-STAMP.spr`` and its number."""

    number: int
    name: str


def history_number(name: str) -> int | None:
    """The number of the history entry named ``name`` (``None``: not a history entry)."""
    m = _HISTORY.fullmatch(name)
    return int(m.group(1)) if m else None


def split_history(names: Iterable[str], keep: int) -> tuple[list[HistoryName], list[HistoryName]]:
    """The history entries among ``names``, newest ``keep`` first list (oldest first in each):
    ``(kept, pruned)``. Names that are not history entries are in neither."""
    if keep < 0:
        raise InputError(f"keep {keep}: must be 0 or more")
    entries = sorted(
        HistoryName(n, name) for name in names if (n := history_number(name)) is not None
    )
    cut = max(len(entries) - keep, 0)
    return entries[cut:], entries[:cut]


def manifest_objects(manifests: Iterable[Manifest]) -> set[str]:
    """The objects (sha256) the files of ``manifests`` hold."""
    from steppatch.model import EntryKind

    return {
        e.sha256
        for m in manifests
        for e in m.entries
        if e.kind is EntryKind.FILE and e.sha256 is not None
    }


def objects_to_remove(
    held: Mapping[str, tuple[int, float]],
    needed: set[str],
    *,
    prepared_after: float | None,
    older_than: float | None,
) -> list[str]:
    """Which of the ``held`` objects (sha256 -> (size, modification time)) go, oldest first.

    Those in ``needed`` stay. So do those stored after ``prepared_after`` (a prepare's download
    for a plan not applied yet, the live state's commit time), unless stored before
    ``older_than`` (a time).
    """
    gone = []
    for sha, (_size, mtime) in held.items():
        if sha in needed:
            continue
        if prepared_after is not None and mtime > prepared_after and (
            older_than is None or mtime >= older_than
        ):
            continue
        gone.append((mtime, sha))
    return [sha for _mtime, sha in sorted(gone)]


@record.frozen
class Collection:
    """What one collection removed (or, with ``dry_run``, would remove).

    ``history``: history entries; ``manifests``: stored manifests (home) or manifests (mirror);
    ``recipes`` (mirror only); ``objects`` and ``objects_bytes``: cached or stored objects;
    ``partial``: unfinished downloads older than their bound; ``bytes``: everything freed.
    ``kept_history``: history entries kept; ``unknown_history``: kept entries whose files are
    not recorded (made before this version): while there are any, no object is removed.
    ``kept_indexes``: the index versions a mirror kept content for.
    """

    dry_run: bool = False
    history: int = 0
    manifests: int = 0
    recipes: int = 0
    objects: int = 0
    objects_bytes: int = 0
    partial: int = 0
    bytes: int = 0
    kept_history: int = 0
    unknown_history: int = 0
    kept_indexes: tuple[int, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "removed": {
                "history": self.history,
                "manifests": self.manifests,
                "recipes": self.recipes,
                "objects": self.objects,
                "partial": self.partial,
            },
            "objects_bytes": self.objects_bytes,
            "freed_bytes": self.bytes,
            "kept_history": self.kept_history,
            "unknown_history": self.unknown_history,
            "kept_indexes": list(self.kept_indexes),
        }

    def summary(self) -> str:
        """One line for a person."""
        verb = "would free" if self.dry_run else "freed"
        parts = [f"{self.objects} object(s)"]
        if self.history or self.kept_history:
            parts.append(f"{self.history} history entr{'y' if self.history == 1 else 'ies'}")
        if self.recipes:
            parts.append(f"{self.recipes} recipe(s)")
        if self.manifests:
            parts.append(f"{self.manifests} manifest(s)")
        if self.partial:
            parts.append(f"{self.partial} partial download(s)")
        line = f"gc: {verb} {self.bytes} bytes: {', '.join(parts)}"
        if self.unknown_history:
            line += (
                f"; {self.unknown_history} kept history entr"
                f"{'y' if self.unknown_history == 1 else 'ies'} predate the record of their "
                "files, so every cached object was kept"
            )
        return line


@record.frozen
class MirrorKeeps:
    """What a mirror's collection keeps: index versions, recipe and manifest sha256s."""

    indexes: tuple[int, ...]
    recipes: frozenset[str]
    manifests: frozenset[str]


def mirror_keeps(
    indexes: Mapping[int, RepositoryIndex], keep: int, *, historic: bool
) -> MirrorKeeps:
    """The newest ``keep`` of ``indexes`` (all of them when ``historic``), and the recipes and
    manifests they name. Raises :class:`InputError` for ``keep`` under 1."""
    if keep < 1:
        raise InputError(f"keep_indexes {keep}: must be 1 or more")
    versions: Sequence[int] = sorted(indexes)
    if not historic:
        versions = versions[-keep:]
    recipes: set[str] = set()
    manifests: set[str] = set()
    for v in versions:
        index = indexes[v]
        recipes.update(ref.sha256 for ref in index.recipes.values())
        manifests.update(
            cv.manifest.sha256 for cvs in index.components.values() for cv in cvs.values()
        )
    return MirrorKeeps(tuple(versions), frozenset(recipes), frozenset(manifests))
