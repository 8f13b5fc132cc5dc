"""Placing one entry of a new managed tree (:meth:`~steppatch.home.HomeDir.build_tree`): a module
of its own, loaded by the first build, so that opening a home does not load plans and the object
store (start-up)."""

from __future__ import annotations

import os
import shutil
import stat
from collections import Counter
from pathlib import Path

from steppatch.model import EntryKind
from steppatch.plan import StepKind, TreeStep
from steppatch.store import ObjectStore, copy_verified

__all__ = ["make_entry"]


def make_entry(
    cache: ObjectStore,
    step: TreeStep,
    live: Path,
    target: Path,
    dirs: list[tuple[Path, int]],
    uses: Counter[str | None],
) -> None:
    """Place ``step``'s entry at ``target``: a directory (its mode set later, from ``dirs``), a
    symlink, the operator's own file carried over, a hard link to the unchanged live file, or an
    object out of ``cache`` (moved out on the last use of one downloaded for this run)."""
    e = step.entry
    source = live / step.path
    if e.kind is EntryKind.DIR:
        target.mkdir(exist_ok=True)
        dirs.append((target, e.mode))
    elif e.kind is EntryKind.SYMLINK:
        assert e.target is not None
        os.symlink(e.target, target)
    elif step.kind in (StepKind.CARRY, StepKind.DISPLACE):
        # The operator's own file: keep it as it is, by link when possible.
        if not _link(source, target):
            shutil.copy2(source, target, follow_symlinks=False)
    elif step.kind is StepKind.LINK and _link(source, target):
        pass
    else:
        assert e.sha256 is not None
        if step.kind is StepKind.LINK and not cache.has(e.sha256):
            # Not downloaded because the live tree has it: copy that, checked.
            copy_verified(source, e.sha256, e.size, target, e.mode, f"live file {step.path}")
            return
        if step.kind is StepKind.FETCH:
            uses[e.sha256] -= 1
            # Moved only if stored for this run: what the cache held before (prepared ahead,
            # kept for a rollback) may be wanted again, and stays.
            if (
                uses[e.sha256] == 0
                and e.sha256 in cache.added
                and cache.move_out(e.sha256, e.size, target, e.mode)
            ):
                return
        cache.copy_out(e.sha256, e.size, target, e.mode)


def _link(source: Path, target: Path) -> bool:
    """Hard-link an unchanged file from the live tree; false if it cannot (then it is copied)."""
    try:
        st = source.lstat()
        if not stat.S_ISREG(st.st_mode):
            return False
        os.link(source, target, follow_symlinks=False)
        return True
    except OSError:
        return False
