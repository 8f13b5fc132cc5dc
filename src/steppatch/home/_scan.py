"""Reading a tree on disk back into manifest entries (for drift checks and sync)."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from steppatch.model import EntryKind, FileEntry
from steppatch.store import hash_file

__all__ = ["scan_tree"]


def scan_tree(root: Path, *, hashes: bool, workers: int = 4) -> dict[str, FileEntry]:
    """Every entry below ``root`` (links not followed), as :class:`FileEntry` values.

    With ``hashes``, files carry their sha256 (hashed by ``workers`` threads: hashlib releases
    the GIL, so reading and hashing overlap); without, ``sha256`` is ``None``. Anything that is not
    a file, directory or symlink is reported as a file whose hash is ``"special"`` so that it
    always counts as drift. Raises ``OSError``.
    """
    entries: dict[str, FileEntry] = {}
    files: list[tuple[str, int, int]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in [*dirnames, *filenames]:
            full = here / name
            rel = full.relative_to(root).as_posix()
            st = full.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = FileEntry(rel, EntryKind.SYMLINK, 0o777, target=os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = FileEntry(rel, EntryKind.DIR, mode)
            elif stat.S_ISREG(st.st_mode):
                files.append((rel, mode, st.st_size))
            else:
                entries[rel] = FileEntry(rel, EntryKind.FILE, mode, 0, "special")
    if hashes:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            digests = pool.map(lambda item: hash_file(root / item[0]), files, chunksize=64)
            for (rel, mode, _size), (sha256, size) in zip(files, digests, strict=True):
                entries[rel] = FileEntry(rel, EntryKind.FILE, mode, size, sha256)
    else:
        for rel, mode, size in files:
            entries[rel] = FileEntry(rel, EntryKind.FILE, mode, size)
    return dict(sorted(entries.items()))
