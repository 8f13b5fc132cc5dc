"""Reading a tree on disk back into manifest entries (for drift checks and sync)."""

from __future__ import annotations

import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from steppatch.model import EntryKind, FileEntry

__all__ = ["scan_tree"]

_CHUNK = 1024 * 1024


def _hash(path: str) -> str:
    # Plain os.read on a descriptor: for small files the per-file cost of file objects and
    # hashlib.file_digest dominates (measured 2-4x slower on 4 KiB files).
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        h = hashlib.sha256()
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def _hash_all(paths: list[str]) -> list[str]:
    return [_hash(path) for path in paths]


def scan_tree(root: Path, *, hashes: bool, workers: int = 2) -> dict[str, FileEntry]:
    """Every entry below ``root`` (links not followed), as :class:`FileEntry` values, by path.

    With ``hashes``, files carry their sha256, hashed by ``workers`` threads, each taking an
    equal share of the files (hashlib releases the GIL, so reading and hashing overlap); without,
    ``sha256`` is ``None``. Anything that is not a file, directory or symlink is reported as a
    file whose hash is ``"special"``, so that it always counts as drift. Raises ``OSError``.
    Cost: one ``lstat`` per entry, plus one read of every file with ``hashes``.
    """
    entries: dict[str, FileEntry] = {}
    files: list[tuple[str, int, int]] = []
    base = str(root)
    stack = [""]
    while stack:
        prefix = stack.pop()
        with os.scandir(os.path.join(base, prefix) if prefix else base) as it:
            for item in it:
                rel = f"{prefix}/{item.name}" if prefix else item.name
                st = item.stat(follow_symlinks=False)
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISLNK(st.st_mode):
                    target = os.readlink(item.path)
                    entries[rel] = FileEntry(rel, EntryKind.SYMLINK, 0o777, target=target)
                elif stat.S_ISDIR(st.st_mode):
                    entries[rel] = FileEntry(rel, EntryKind.DIR, mode)
                    stack.append(rel)
                elif stat.S_ISREG(st.st_mode):
                    files.append((rel, mode, st.st_size))
                else:
                    entries[rel] = FileEntry(rel, EntryKind.FILE, mode, 0, "special")
    if hashes and files:
        share = -(-len(files) // workers)
        paths = [f"{base}/{rel}" for rel, _mode, _size in files]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = pool.map(_hash_all, [paths[i : i + share] for i in range(0, len(paths), share)])
            digests = [digest for part in parts for digest in part]
        for (rel, mode, size), sha256 in zip(files, digests, strict=True):
            entries[rel] = FileEntry(rel, EntryKind.FILE, mode, size, sha256)
    else:
        for rel, mode, size in files:
            entries[rel] = FileEntry(rel, EntryKind.FILE, mode, size)
    return dict(sorted(entries.items()))
