"""The deltas and compressed forms ``repo add`` publishes beside a component version's objects.

For each object of the new version that none of the previous ``Limits.delta_history_versions``
versions of the component holds: a compressed form when it saves more than
``1 - Limits.compressed_keep_fraction`` of the object, and a delta from each distinct object
those versions held at the same path, kept when it is shorter than
``Limits.delta_keep_fraction`` of the object compressed (or whole, when compressing does not
pay). Both are stored under their own sha256 in ``deltas/``, so mirrors and homes check them as
they check objects; the transfers document (``steppatch-transfers/1``) names them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from steppatch.delta import decode, encode
from steppatch.limits import Limits
from steppatch.model import Encoded, Manifest, ObjectTransfers
from steppatch.store import ObjectStore, hash_file
from steppatch.zipdelta import apply_delta, is_zip, make_delta

__all__ = ["compute_transfers", "redeflate_budget", "zip_frame_levels"]


def _store(deltas: ObjectStore, tmp: Path, length: int) -> str:
    digest, size = hash_file(tmp)
    assert size == length
    if not deltas.adopt(tmp, digest, length):
        tmp.unlink(missing_ok=True)  # already stored: the same bytes
        if not deltas.has(digest):
            raise OSError(f"could not store {tmp} in {deltas.root}")
    return digest


def _encoded(
    deltas: ObjectStore,
    objects: ObjectStore,
    target: str,
    size: int,
    base: str | None,
    max_length: int,
    limits: Limits,
) -> Encoded | None:
    if base is not None and objects.path(base).stat().st_size + size > limits.max_delta_span_bytes:
        return None
    tmp = deltas.root / f".encode-{os.getpid()}-{target[:16]}"
    deltas.root.mkdir(parents=True, exist_ok=True)
    try:
        length = encode(
            objects.path(target),
            tmp,
            base=None if base is None else objects.path(base),
            max_length=max_length,
            level=limits.delta_level,
        )
        if length is None:
            return None
        # Decoded once before it is published: a delta that does not give its target back
        # (a libzstd fault) must never reach a home.
        check = tmp.with_name(tmp.name + ".check")
        try:
            decode(tmp, check, base=None if base is None else objects.path(base), length=size)
            if hash_file(check) != (target, size):
                return None
        finally:
            check.unlink(missing_ok=True)
        return Encoded(_store(deltas, tmp, length), length, base)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def redeflate_budget(size: int, limits: Limits) -> int:
    """How many deflated bytes a home may write deflating members again, rebuilding an archive
    of ``size``."""
    return max(int(size * limits.zip_redeflate_fraction), limits.zip_redeflate_min_bytes)


def zip_frame_levels(size: int, limits: Limits) -> tuple[int, int]:
    """The zstd levels of a zip delta's two frames for an archive of ``size`` bytes."""
    small = size <= limits.zip_delta_level_max_bytes
    level = limits.zip_delta_level if small else limits.delta_level
    return level, level


def _zip_delta(
    deltas: ObjectStore,
    objects: ObjectStore,
    target: str,
    size: int,
    base: str,
    max_length: int,
    limits: Limits,
) -> Encoded | None:
    """A version 2 zip delta between two zip archives (``steppatch.zipdelta``), checked by
    rebuilding the target from it as a home would."""
    if not (is_zip(objects.path(target)) and is_zip(objects.path(base))):
        return None
    if objects.path(base).stat().st_size + size > limits.max_delta_span_bytes:
        return None
    work = deltas.root / f".zip-{os.getpid()}-{target[:16]}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        made = make_delta(
            objects.path(base), objects.path(target), work / "delta",
            max_length=max_length, max_member_bytes=limits.max_zip_member_bytes,
            budget=redeflate_budget(size, limits), level=limits.delta_level,
            frame_levels=zip_frame_levels(size, limits),
        )  # fmt: skip
        if made is None:
            return None
        length, expanded = made
        if expanded > limits.max_zip_expanded_bytes:
            return None
        apply_delta(
            work / "delta", objects.path(base), work / "rebuilt", length=size,
            expanded=expanded, max_expanded=limits.max_zip_expanded_bytes,
            threads=limits.zip_rebuild_threads,
            max_pending_bytes=limits.zip_rebuild_pending_bytes,
        )  # fmt: skip
        if hash_file(work / "rebuilt") != (target, size):
            return None
        return Encoded(_store(deltas, work / "delta", length), length, base, expanded)
    finally:
        for p in work.iterdir():
            p.unlink(missing_ok=True)
        work.rmdir()


def compute_transfers(
    manifest: Manifest,
    previous: Sequence[Manifest],
    objects: ObjectStore,
    deltas: ObjectStore,
    limits: Limits,
    progress: Callable[[str, int, int], None] | None = None,
) -> Mapping[str, ObjectTransfers]:
    """The transfers of ``manifest``'s new objects (every object already in ``objects``), from
    the objects its ``previous`` manifests (newest first) held at the same paths.

    ``progress("deltas", done, total)``: the new objects' bytes done, after each object (an
    archive's zip delta can take seconds at level 19)."""
    held: set[str] = set()
    at_path: dict[str, list[str]] = {}
    for old in previous:
        for e in old.files():
            assert e.sha256 is not None
            held.add(e.sha256)
            bases = at_path.setdefault(e.path, [])
            if e.sha256 not in bases:
                bases.append(e.sha256)
    result: dict[str, ObjectTransfers] = {}
    todo: dict[str, int] = {}
    for entry in manifest.files():
        assert entry.sha256 is not None
        if entry.sha256 not in held and entry.size >= limits.delta_min_object_bytes:
            todo.setdefault(entry.sha256, entry.size)
    total, done = sum(todo.values()), 0
    for entry in manifest.files():
        sha, size = entry.sha256, entry.size
        assert sha is not None
        if todo.pop(sha, None) is None:
            continue  # held before, too small, or done (two paths, one object)
        if progress is not None:
            progress("deltas", done, total)
        done += size
        compressed = _encoded(
            deltas, objects, sha, size, None, int(size * limits.compressed_keep_fraction), limits
        )
        reference = compressed.length if compressed is not None else size
        found = []
        for base in at_path.get(entry.path, []):
            if base == sha or not objects.has(base):
                continue
            delta = _encoded(
                deltas,
                objects,
                sha,
                size,
                base,
                int(reference * limits.delta_keep_fraction),
                limits,
            )
            if delta is not None:
                found.append(delta)
            # An archive: a zip delta too, kept when shorter than the plain delta (the plain
            # one stays, for homes whose zlib deflates differently and older homes).
            best = min([d.length for d in found if d.base == base] or [reference])
            zipped = _zip_delta(
                deltas, objects, sha, size, base,
                min(best, int(reference * limits.delta_keep_fraction)), limits,
            )  # fmt: skip
            if zipped is not None:
                found.append(zipped)
        if compressed is not None or found:
            result[sha] = ObjectTransfers(size, compressed, tuple(found))
    if progress is not None and total:
        progress("deltas", total, total)
    return result
