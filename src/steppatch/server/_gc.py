"""A mirror's garbage collection (``steppatch mirror gc`` and the server's periodic one) and
what its store holds on disk.

What is kept is decided by :func:`steppatch.collect.mirror_keeps` (pure): the recipes and
manifests the last ``keep_indexes`` verified indexes name (every index held, in HISTORIC mode),
and the objects those manifests name. Everything else under ``objects/`` goes, with its link in
the takeout view, and so do partial fills older than ``Limits.partial_max_age_seconds`` that no
fill holds.

Coordination with a running server goes through the store's lock (``MirrorStore._lock``): the
decision is made under it, and each removal checks again under it that the file is not being
filled (:attr:`MirrorStore.busy`) or sent (a send pins its file the same way) and that no newer
index was adopted meanwhile (then the collection stops; the next one decides again). Crash
safety: nothing a kept index names is ever removed, so a crash at any moment leaves a store that
serves every one of them; the next collection finishes the work.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from steppatch import _record as record
from steppatch._fs import (
    checkpoint,
    remove_unless_locked,
    scan_dir,
    size_of,
    sorted_entries,
    stale_files,
)
from steppatch.collect import Collection, mirror_keeps
from steppatch.errors import RepositoryError, TooLarge
from steppatch.formats import index_from_json
from steppatch.model import RepositoryIndex
from steppatch.server._store import MirrorStore, manifest_objects
from steppatch.store import PARTIAL_DIR
from steppatch.trust.metadata import index_from, read_envelope

__all__ = ["StoreSizes", "collect_store", "held_indexes", "store_sizes"]


@record.frozen
class StoreSizes:
    """Bytes a mirror's store holds: verified content (``store``: recipes, manifests, objects),
    partial fills, signed metadata and uploaded snapshots. The takeout view links the same
    files, so it adds nothing."""

    store: int
    partial: int
    metadata: int
    snapshots: int

    @property
    def total(self) -> int:
        return self.store + self.partial + self.metadata + self.snapshots

    def to_json(self) -> dict[str, int]:
        return {
            "store": self.store,
            "partial": self.partial,
            "metadata": self.metadata,
            "snapshots": self.snapshots,
            "total": self.total,
        }


def store_sizes(root: Path) -> StoreSizes:
    """What the store at ``root`` holds, in bytes (walks it: O(files))."""
    objects = root / "objects"
    store = partial = 0
    for sub in sorted_entries(objects):
        for f in sorted_entries(sub):
            size = size_of(f)
            if sub.name == PARTIAL_DIR:
                partial += size
            elif len(sub.name) == 2 and not f.name.startswith("."):
                store += size
    metadata, snapshots = _tree_bytes(root / "metadata"), _tree_bytes(root / "snapshots")
    return StoreSizes(store, partial, metadata, snapshots)


def held_indexes(store: MirrorStore) -> tuple[dict[int, RepositoryIndex], list[int]]:
    """Every index version the store verified and keeps under ``metadata/indexes/``, parsed;
    and the versions that could not be read."""
    found: dict[int, RepositoryIndex] = {}
    unreadable: list[int] = []
    for path in (store.metadata_dir / "indexes").glob("*.index.json"):
        head = path.name.split(".")[0]
        if not head.isdigit():
            continue
        try:
            index = index_from(
                read_envelope(path.read_bytes(), "index", store.limits.max_index_bytes)
            )
            found[int(head)] = index_from_json(index.payload, f"index {head}")
        except (OSError, RepositoryError, TooLarge):
            unreadable.append(int(head))
    return found, sorted(unreadable)


def collect_store(
    store: MirrorStore,
    *,
    keep_indexes: int,
    historic: bool,
    dry_run: bool,
    now: float,
    partial_max_age: float,
) -> Collection:
    """Collect ``store`` (see the module docstring); with ``dry_run`` only say what would go.

    Raises :class:`~steppatch.errors.InputError` for ``keep_indexes`` under 1 and ``OSError``
    from the filesystem (what was removed until then stays removed; nothing kept is touched).
    """
    with store._lock:
        decided_version = store.meta.index_version
        current = store.meta.index
    # Index files never change once written: read without holding the lock.
    indexes, unreadable = held_indexes(store)
    if current is not None:
        indexes.setdefault(decided_version, current)
    keeps = mirror_keeps(indexes, keep_indexes, historic=historic)
    all_recipes = {r.sha256 for i in indexes.values() for r in i.recipes.values()}
    all_manifests = {
        cv.manifest.sha256
        for i in indexes.values()
        for cvs in i.components.values()
        for cv in cvs.values()
    }
    keep: set[str] = set(keeps.recipes | keeps.manifests)
    if current is not None:  # the index served now, whatever the files say
        keep |= {r.sha256 for r in current.recipes.values()}
        keep |= {cv.manifest.sha256 for cvs in current.components.values() for cv in cvs.values()}
    unknown = 0
    for sha in sorted(keeps.manifests):
        path = store.objects.path(sha)
        try:
            keep |= set(manifest_objects(path.read_bytes(), f"manifest {sha}", store.limits))
        except FileNotFoundError:
            continue  # not held: nothing of it can be served before it is filled
        except (OSError, RepositoryError):
            unknown += 1  # damaged: what it names is unknown, so no object is removed
    held = _held(store.objects.root)
    # An index that cannot be read, or a kept manifest that is damaged, names what is unknown:
    # then no content is removed at all (partial fills still are).
    # In the order the directories list them: see steppatch.home._gc._unlink_objects.
    gone = [] if unknown or unreadable else [sha for sha in held if sha not in keep]
    partials = stale_files(store.objects.root / PARTIAL_DIR, now, partial_max_age)
    recipes = sum(1 for sha in gone if sha in all_recipes)
    manifests = sum(1 for sha in gone if sha in all_manifests and sha not in all_recipes)
    objects_bytes = sum(held[sha][0] for sha in gone)
    report = Collection(
        dry_run=dry_run,
        recipes=recipes,
        manifests=manifests,
        objects=len(gone) - recipes - manifests,
        objects_bytes=objects_bytes,
        partial=len(partials),
        bytes=objects_bytes + sum(size_of(p) for p in partials),
        kept_indexes=keeps.indexes,
        unknown_history=unknown + len(unreadable),
    )
    if dry_run:
        return report
    checkpoint("mirror-gc-decided")
    inodes: set[tuple[int, int]] = set()
    removed = 0
    freed = 0
    for i, sha in enumerate(gone):
        size, path = held[sha]
        with store._lock:
            if store.meta.index_version != decided_version:
                break  # a newer index may name it: the next collection decides again
            if store.busy[sha]:
                continue  # being filled or sent
            try:
                st = path.lstat()
                path.unlink()
            except FileNotFoundError:
                continue
            inodes.add((st.st_dev, st.st_ino))
            store.forget(sha)
        removed += 1
        freed += size
        if i == len(gone) // 2:
            checkpoint("mirror-gc-objects")
    _unlink_takeout(store.takeout, inodes)
    for path in partials:
        remove_unless_locked(path)
    checkpoint("mirror-gc-done")
    if removed != len(gone):
        report = record.evolve(
            report,
            objects=max(report.objects - (len(gone) - removed), 0),
            objects_bytes=freed,
            bytes=freed + sum(size_of(p) for p in partials),
        )
    return report


def _unlink_takeout(takeout: Path, inodes: set[tuple[int, int]]) -> None:
    """Remove the takeout view's links to removed files (its other files stay)."""
    if not inodes:
        return
    for dirpath, _dirs, files in os.walk(takeout):
        for name in files:
            path = Path(dirpath) / name
            with contextlib.suppress(OSError):
                st = path.lstat()
                if (st.st_dev, st.st_ino) in inodes:
                    path.unlink()


def _held(root: Path) -> dict[str, tuple[int, Path]]:
    """Every stored file: sha256 -> (size, path), in the order the directories list them."""
    held: dict[str, tuple[int, Path]] = {}
    for sub in scan_dir(root):
        if len(sub.name) != 2 or not sub.is_dir(follow_symlinks=False):
            continue
        for f in scan_dir(Path(sub.path)):
            if not f.name.startswith("."):
                with contextlib.suppress(OSError):
                    held[f.name] = (f.stat(follow_symlinks=False).st_size, Path(f.path))
    return held


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            total += size_of(Path(dirpath) / name)
    return total
