"""Deltas of zip archives (jars, wheels) through their inflated content.

A changed member of a zip is deflated afresh, so its compressed bytes differ from the first
changed byte on and no byte-level delta finds matches in them. The *expanded form* of an archive
holds each deflated member inflated, when deflating it again with :mod:`zlib` at some level gives
exactly its bytes (the usual case: archives made by zlib), and every other byte as it is; a
delta between the expanded forms is small, and the archive is rebuilt from the expanded form by
deflating those members again. The rebuilt archive's sha256 is checked by the caller: a zlib that
deflates differently (another build) makes the route fail and the home fall back.

Expanded form (``steppatch-zipx/1``)::

    b"SPZX1\\n", header length (8 bytes, big-endian), header (JSON), body

The header is ``{"size": N, "segments": [["r", LENGTH] | ["z", LENGTH, LEVEL, DEFLATED], ...]}``:
``r`` copies LENGTH bytes of the body; ``z`` deflates LENGTH bytes of the body at LEVEL (raw
deflate, ``wbits=-15``) into exactly DEFLATED bytes. ``size`` is the archive's length. Rebuilding
checks every length as it writes and never writes more than the declared size. The form of a
delta's base is only its prefix, never rebuilt: every member that inflates is inflated, LEVEL 0,
so a home makes it by inflating alone.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from steppatch._json import JsonProblem, parse_json
from steppatch.errors import DeltaError

__all__ = ["MAGIC", "expand", "is_zip", "rebuild"]

MAGIC = b"SPZX1\n"
_LEVELS = (6, 9, 1, 5, 7, 8, 4, 3, 2)
_CHUNK = 1 << 20
_MAX_HEADER = 64 << 20


def is_zip(path: Path) -> bool:
    """Whether ``path`` starts as a zip archive does."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _deflated(data: bytes, level: int) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _inflated(data: bytes, limit: int) -> bytes | None:
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error:
        return None
    if len(out) > limit or not d.eof or d.unconsumed_tail or d.unused_data:
        return None
    return out


def expand(
    archive: Path, out: Path, *, max_member_bytes: int, levels: bool = True
) -> int | None:
    """Write the expanded form of ``archive`` to ``out``; its length, or ``None`` when the file
    is not a zip this can read (then nothing is written). Members inflating to more than
    ``max_member_bytes`` stay deflated (memory: one member at a time).

    ``levels``: find the zlib level that deflates each member back to its bytes (members for
    which none does stay deflated): the form of a delta's *target*, which :func:`rebuild`
    needs. Without, every member that inflates is inflated and its level recorded as 0: the
    form of a delta's *base* (a prefix only), made by inflating alone, much faster."""
    with open(archive, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return None
        # Mapped, not read: an archive of a GiB costs page cache, not this process's memory.
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _expand(f, data, out, max_member_bytes, levels)


def _expand(
    f: BinaryIO, data: mmap.mmap, out: Path, max_member_bytes: int, levels: bool
) -> int | None:
    try:
        infos = sorted(zipfile.ZipFile(f).infolist(), key=lambda i: i.header_offset)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
    segments: list[list[Any]] = []
    body = out.with_name(out.name + ".body")
    pos = 0
    try:
        with open(body, "wb") as b:
            for info in infos:
                off = info.header_offset
                if off < pos or data[off : off + 4] != b"PK\x03\x04":
                    return None
                n, m = struct.unpack("<HH", data[off + 26 : off + 30])
                start = off + 30 + n + m
                end = start + info.compress_size
                if end > len(data):
                    return None
                plain = None
                level = 0
                deflated = info.compress_type == zipfile.ZIP_DEFLATED
                if deflated and info.file_size <= max_member_bytes:
                    plain = _inflated(data[start:end], info.file_size)
                    if plain is not None and levels:
                        level = next(
                            (lv for lv in _LEVELS if _deflated(plain, lv) == data[start:end]), 0
                        )
                if plain is None or (levels and not level):
                    continue  # kept raw with what follows
                if start > pos:
                    segments.append(["r", start - pos])
                    b.write(data[pos:start])
                segments.append(["z", len(plain), level, end - start])
                b.write(plain)
                pos = end
            if pos < len(data):
                segments.append(["r", len(data) - pos])
                b.write(data[pos:])
        if not any(s[0] == "z" for s in segments):
            return None
        header = json.dumps({"size": len(data), "segments": segments}, separators=(",", ":"))
        head = MAGIC + struct.pack(">Q", len(header)) + header.encode()
        with open(out, "wb") as f, open(body, "rb") as src:
            f.write(head)
            while chunk := src.read(_CHUNK):
                f.write(chunk)
        return out.stat().st_size
    finally:
        body.unlink(missing_ok=True)


def _segments(f: BinaryIO, what: str, length: int, body: int) -> list[list[Any]]:
    if f.read(len(MAGIC)) != MAGIC:
        raise DeltaError(what, "not an expanded archive")
    raw = f.read(8)
    if len(raw) != 8:
        raise DeltaError(what, "truncated header")
    (n,) = struct.unpack(">Q", raw)
    if n > min(_MAX_HEADER, body):
        raise DeltaError(what, f"a header of {n} bytes")
    try:
        header = parse_json(f.read(n))
    except JsonProblem as e:
        raise DeltaError(what, f"header: {e}") from None
    segments = header.get("segments") if isinstance(header, dict) else None
    if not isinstance(header, dict) or header.get("size") != length or not isinstance(
        segments, list
    ):
        raise DeltaError(what, f"header does not describe {length} bytes")
    total_in = total_out = 0
    for s in segments:
        ok = isinstance(s, list) and s and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in s[1:]
        )
        if ok and s[0] == "r" and len(s) == 2:
            total_in += s[1]
            total_out += s[1]
        elif ok and s[0] == "z" and len(s) == 4 and 1 <= s[2] <= 9:
            total_in += s[1]
            total_out += s[3]
        else:
            raise DeltaError(what, f"bad segment {str(s)[:80]}")
    if total_out != length or total_in != body - len(MAGIC) - 8 - n:
        raise DeltaError(what, "segments do not add up")
    return segments


def _members(archive: Path) -> dict[tuple[int, int, int], tuple[int, int]]:
    """The deflated members of ``archive``: (crc32, size, deflated length) -> where their
    deflated bytes lie. Empty when it is not a readable zip."""
    found: dict[tuple[int, int, int], tuple[int, int]] = {}
    try:
        with open(archive, "rb") as f:
            for info in zipfile.ZipFile(f).infolist():
                if info.compress_type != zipfile.ZIP_DEFLATED:
                    continue
                f.seek(info.header_offset + 26)
                n, m = struct.unpack("<HH", f.read(4))
                start = info.header_offset + 30 + n + m
                found[(info.CRC, info.file_size, info.compress_size)] = (
                    start, start + info.compress_size
                )
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error):
        return {}
    return found


def rebuild(expanded: Path, out: Path, length: int, base: Path | None = None) -> None:
    """Write the archive of ``length`` bytes that ``expanded`` describes to ``out``. Raises
    :class:`DeltaError` when the expanded form is malformed or does not give exactly
    ``length`` bytes (checked while writing), ``OSError``. The caller checks the sha256.

    A member whose content (crc32, size) and deflated length match a member of the archive
    ``base`` is copied from it rather than deflated again: only changed members cost deflate
    time. (A wrong copy is caught by the caller's sha256 check.)"""
    what = f"expanded archive {expanded.name}"
    size = expanded.stat().st_size
    members = _members(base) if base is not None else {}
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(open(expanded, "rb"))
        o = stack.enter_context(open(out, "wb"))
        b = stack.enter_context(open(base, "rb")) if members and base is not None else None
        for s in _segments(f, what, length, size):
            if s[0] == "r":
                left = s[1]
                while left:
                    chunk = f.read(min(left, _CHUNK))
                    if not chunk:
                        raise DeltaError(what, "truncated body")
                    o.write(chunk)
                    left -= len(chunk)
            else:
                plain = f.read(s[1])
                if len(plain) != s[1]:
                    raise DeltaError(what, "truncated body")
                where = members.get((zlib.crc32(plain), len(plain), s[3]))
                if where is not None and b is not None:
                    b.seek(where[0])
                    o.write(b.read(where[1] - where[0]))
                    continue
                deflated = _deflated(plain, s[2])
                if len(deflated) != s[3]:
                    raise DeltaError(what, "a member deflates to another length here")
                o.write(deflated)
        if o.tell() != length:
            raise DeltaError(what, f"rebuilt {o.tell()} bytes, expected {length}")


@contextlib.contextmanager
def expanded_pair(base: Path, work: Path, max_member_bytes: int) -> Iterator[Path | None]:
    """The expanded form of ``base`` in ``work`` (removed afterwards), or ``None``."""
    out = work / f".zipx-{base.name[:16]}"
    try:
        yield out if expand(base, out, max_member_bytes=max_member_bytes) is not None else None
    finally:
        out.unlink(missing_ok=True)
