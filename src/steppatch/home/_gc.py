"""A home's garbage collection (``steppatch gc``) and what its parts hold on disk.

What is kept is decided by :mod:`steppatch.collect` (pure); this module lists the home's files,
then deletes in an order that a crash (SIGKILL at any moment) never makes unsafe:

1. decide: the history entries kept, the objects and stored manifests the live state and those
   entries need (nothing is deleted yet);
2. record, durably, the newest pruned entry number (so ``rollback`` past it says "pruned");
3. remove the pruned history entries, oldest first, each entry before the record of its files;
4. remove the stored manifests that neither the live state nor a kept entry names;
5. remove the cached objects none of them needs (and no prepare stored for a plan not applied),
   then partial downloads older than ``Limits.partial_max_age_seconds``.

Nothing a kept state needs is ever removed, so a crash between any two steps leaves a home whose
kept history is whole; the next collection finishes the work. The caller holds the home's lock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
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
from steppatch.collect import Collection, manifest_objects, objects_to_remove, split_history
from steppatch.home._layout import STORED_SUFFIX, HomeDir, history_state_path
from steppatch.model import HomeState
from steppatch.store import PARTIAL_DIR

__all__ = ["HomeSizes", "collect_home", "home_sizes"]


@record.frozen
class HomeSizes:
    """Bytes held by a home's parts: managed trees (the live one, staged ones, displaced files),
    the object cache (with partial downloads), the history entries and the stored manifests.
    A file linked from several places counts once, in the first part listed."""

    trees: int
    cache: int
    history: int
    manifests: int

    @property
    def total(self) -> int:
        return self.trees + self.cache + self.history + self.manifests

    def to_json(self) -> dict[str, int]:
        return {
            "trees": self.trees,
            "cache": self.cache,
            "history": self.history,
            "manifests": self.manifests,
            "total": self.total,
        }


def home_sizes(files: HomeDir) -> HomeSizes:
    """What each part of ``files`` holds, in bytes (walks them: O(files))."""
    seen: set[tuple[int, int]] = set()
    state = files.state_dir
    trees = sum(_bytes(d, seen) for d in (files.trees, state / "staged", state / "displaced"))
    cache = _bytes(files.cache.root.parent, seen)
    history = _bytes(files.history, seen)
    manifests = _bytes(files.manifests, seen)
    return HomeSizes(trees, cache, history, manifests)


def _bytes(root: Path, seen: set[tuple[int, int]]) -> int:
    total = 0
    for entry in _walk(root):
        with contextlib.suppress(OSError):
            st = entry.stat(follow_symlinks=False)
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                total += st.st_size
    return total


def _walk(root: Path) -> Iterator[os.DirEntry[str]]:
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        yield entry
        except OSError:
            continue


def collect_home(
    files: HomeDir,
    *,
    keep: int,
    older_than: float | None,
    dry_run: bool,
    now: float,
    partial_max_age: float,
) -> Collection:
    """Collect ``files`` (see the module docstring); with ``dry_run`` only say what would go.

    ``keep``: history entries kept; ``older_than``: seconds after which a prepare's downloads
    no longer count as wanted; ``now``: the time (seconds since the epoch). Raises
    :class:`~steppatch.errors.HomeError` (before anything is removed) if the live state cannot be
    read, ``OSError`` from the filesystem.
    """
    entries = files.history_entries()
    kept, pruned = split_history((p.name for p in entries), keep)
    live_id = files.current_tree_id()
    state = files.state()  # HomeError: nothing is removed
    needed = manifest_objects(c.manifest for c in state.components.values())
    stored_keep = files.stored_names(live_id)
    unknown = 0
    for h in kept:
        parsed = files.history_stored(files.history / h.name)
        if parsed is None:
            unknown += 1
        elif isinstance(parsed, HomeState):
            needed |= manifest_objects(c.manifest for c in parsed.components.values())
        else:
            for record in parsed.values():
                stored_keep.add(record.stored)
                manifest = files.load_stored(record, h.name)
                if manifest is None:
                    unknown += 1
                    break
                needed |= manifest_objects([manifest])
    pruned_paths = [files.history / h.name for h in pruned]
    entry_names = {p.name for p in entries}
    # A state file whose entry is gone (a crash between the two removals) goes as well.
    orphans = [
        p for p in files.history.glob("*.state.json")
        if p.name.removesuffix(".state.json") + ".spr" not in entry_names
    ]
    history_bytes = sum(
        size_of(p) + size_of(history_state_path(p)) for p in pruned_paths
    ) + sum(size_of(p) for p in orphans)

    wanted_stored = {f"{name}{STORED_SUFFIX}" for name in stored_keep}
    stored_gone = [p for p in sorted_entries(files.manifests) if p.name not in wanted_stored]

    held = _held_objects(files)
    gone: list[str] = []
    if not unknown:
        live_state_file = files.trees / f"{live_id}.state.json"
        committed = live_state_file.stat().st_mtime
        gone = objects_to_remove(
            held,
            needed,
            prepared_after=committed,
            older_than=None if older_than is None else now - older_than,
        )
    objects_bytes = sum(held[sha][0] for sha in gone)
    partials = stale_files(files.cache.root / PARTIAL_DIR, now, partial_max_age)
    report = Collection(
        dry_run=dry_run,
        history=len(pruned_paths),
        manifests=len(stored_gone),
        objects=len(gone),
        objects_bytes=objects_bytes,
        partial=len(partials),
        bytes=history_bytes
        + sum(size_of(p) for p in stored_gone)
        + objects_bytes
        + sum(size_of(p) for p in partials),
        kept_history=len(kept),
        unknown_history=unknown,
    )
    if dry_run:
        return report
    checkpoint("gc-decided")
    if pruned:
        files.mark_pruned(pruned[-1].number)
        checkpoint("gc-marked")
    for path in pruned_paths:
        files.drop_history(path)
        checkpoint("gc-history")
    for path in orphans:
        path.unlink(missing_ok=True)
    for path in stored_gone:
        path.unlink(missing_ok=True)
    checkpoint("gc-manifests")
    _unlink_objects(files.cache.root, set(gone))
    for path in partials:
        remove_unless_locked(path)
    checkpoint("gc-done")
    return report


def _held_objects(files: HomeDir) -> dict[str, tuple[int, float]]:
    """Every cached object: sha256 -> (size, modification time)."""
    held: dict[str, tuple[int, float]] = {}
    root = files.cache.root
    for sub in scan_dir(str(root)):
        if len(sub.name) != 2 or not sub.is_dir(follow_symlinks=False):
            continue
        for entry in scan_dir(sub.path):
            if entry.name.startswith("."):
                continue
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                held[entry.name] = (st.st_size, st.st_mtime)
    return held


def _unlink_objects(root: Path, gone: set[str]) -> None:
    """Unlink the objects ``gone``, directory by directory in the order the directory lists
    them (``unlinkat``, as ``rm -rf`` does): in another order each unlink touches another block
    of a large directory, and removing 90,000 objects took four times as long."""
    half = len(gone) // 2
    done = 0
    for sub in scan_dir(str(root)):
        if len(sub.name) != 2 or not sub.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(sub.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            for entry in scan_dir(sub.path):
                if entry.name in gone:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.name, dir_fd=fd)
                    done += 1
                    if done == max(half, 1):
                        checkpoint("gc-objects")
        finally:
            os.close(fd)
