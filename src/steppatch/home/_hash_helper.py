"""Hashing the files of a tree, in this process or in a helper process.

Why a process: hashing a small file is a few system calls and a 4 KiB sha256, each of which
releases the GIL for about a microsecond, so threads hand the GIL back and forth at every call
and run no faster than one thread (measured: 100,000 files of 4 KiB, 0.69 s with one thread,
0.73 s with two). A second process hashes on the second core for real.

This module imports the standard library only, so that the helper can run it without importing
steppatch: ``python -I -S -c BOOTSTRAP DIR`` (see :data:`BOOTSTRAP`) reads a work list (what
:func:`encode_work` makes) on stdin and writes one :data:`RECORD` per file on stdout.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import sys
from collections.abc import Sequence

__all__ = ["BOOTSTRAP", "NOT_A_FILE", "RECORD", "encode_work", "hash_dirs", "hash_file"]

#: per file: ``st_mode`` (or :data:`NOT_A_FILE`), the bytes read, the sha256 digest
RECORD = struct.Struct("<IQ32s")
#: the mode reported for a name that is no longer a regular file (replaced since the walk)
NOT_A_FILE = 0xFFFFFFFF
#: what the helper runs: this directory first on the path, then :func:`main`
BOOTSTRAP = "import sys; sys.path.insert(0, sys.argv[1]); import _hash_helper; _hash_helper.main()"

_CHUNK = 1024 * 1024
#: never follow a link swapped in after the walk; never block on a fifo swapped in
OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def hash_file(name: str, dfd: int) -> tuple[int, int, bytes]:
    """``(st_mode, length, sha256 digest)`` of the file ``name`` in directory ``dfd``.

    ``(NOT_A_FILE, 0, b"")`` when it cannot be opened as a regular file (a link or something
    else put there since the walk, or removed). A file below 1 MiB is read with one ``os.read``
    of its size plus one byte (a shorter answer means the end); one that shrank or grew meanwhile
    is read again to its end. What is reported is always the bytes read.
    """
    try:
        fd = os.open(name, OPEN_FILE, dir_fd=dfd)
    except OSError:
        return NOT_A_FILE, 0, b""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return NOT_A_FILE, 0, b""
        size = st.st_size
        if size < _CHUNK:
            data = os.read(fd, size + 1)
            if len(data) == size:
                return st.st_mode, size, hashlib.sha256(data).digest()
        os.lseek(fd, 0, os.SEEK_SET)
        h = hashlib.sha256()
        size = 0
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
            size += len(chunk)
        return st.st_mode, size, h.digest()
    finally:
        os.close(fd)


def hash_dirs(
    base: str, dirs: Sequence[tuple[str, Sequence[str]]]
) -> list[tuple[int, int, bytes]]:
    """:func:`hash_file` of every name of ``dirs`` (a path relative to ``base``, ``""`` for
    ``base`` itself, and names in it), in order. Raises ``OSError`` if a directory cannot be
    opened. The loop every file goes through: the common case (a small regular file, whole in
    one read) inline, with names bound locally; anything else through :func:`hash_file`."""
    out: list[tuple[int, int, bytes]] = []
    append = out.append
    open_, fstat, read, close, sha256 = os.open, os.fstat, os.read, os.close, hashlib.sha256
    is_reg = stat.S_ISREG
    for prefix, names in dirs:
        dfd = open_(f"{base}/{prefix}" if prefix else base, OPEN_DIR)
        try:
            for name in names:
                try:
                    fd = open_(name, OPEN_FILE, dir_fd=dfd)
                except OSError:
                    append((NOT_A_FILE, 0, b""))
                    continue
                try:
                    st = fstat(fd)
                    size = st.st_size
                    if is_reg(st.st_mode) and size < _CHUNK:
                        data = read(fd, size + 1)
                        if len(data) == size:
                            append((st.st_mode, size, sha256(data).digest()))
                            continue
                finally:
                    close(fd)
                append(hash_file(name, dfd))
        finally:
            close(dfd)
    return out


def encode_work(base: str, dirs: Sequence[tuple[str, Sequence[str]]]) -> bytes:
    """The helper's input: ``base``, then each directory as ``/PREFIX`` and its names, each item
    ended by a NUL (which no name holds; no name starts with ``/``)."""
    items = [os.fsencode(base)]
    for prefix, names in dirs:
        items.append(b"/" + os.fsencode(prefix))
        items.extend(os.fsencode(name) for name in names)
    return b"\0".join(items) + b"\0"


def _decode_work(data: bytes) -> tuple[str, list[tuple[str, list[str]]]]:
    items = data.split(b"\0")[:-1]
    dirs: list[tuple[str, list[str]]] = []
    for item in items[1:]:
        if item.startswith(b"/"):
            dirs.append((os.fsdecode(item[1:]), []))
        else:
            dirs[-1][1].append(os.fsdecode(item))
    return os.fsdecode(items[0]), dirs


def main() -> None:
    """The helper: work list on stdin, records on stdout (written at the end, all at once)."""
    base, dirs = _decode_work(sys.stdin.buffer.read())
    pack = RECORD.pack
    out = b"".join(pack(*record) for record in hash_dirs(base, dirs))
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
