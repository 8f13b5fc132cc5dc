"""Deltas of zip archives (jars, wheels) through their inflated content.

Two versions. Version 2 (``make_delta``, ``apply_delta``, below; what ``repo add`` publishes
since 2026-12-06) re-deflates at the home only the changed members worth it within a budget,
so that rebuilding stays near the speed of a plain delta; version 1 (``expand``, ``rebuild``,
this docstring) re-deflates every changed member. :func:`apply_zip_delta` applies either.

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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from steppatch import _record as record
from steppatch._fs import checkpoint
from steppatch._json import JsonProblem, parse_json
from steppatch.errors import DeltaError

__all__ = [
    "DELTA_MAGIC",
    "MAGIC",
    "Candidate",
    "apply_delta",
    "apply_zip_delta",
    "choose_redeflate",
    "expand",
    "is_delta2",
    "is_zip",
    "make_delta",
    "rebuild",
]

MAGIC = b"SPZX1\n"
_LEVELS = (6, 9, 1, 5, 7, 8, 4, 3, 2)
_CHUNK = 1 << 20
_MAX_HEADER = 64 << 20


def is_zip(path: Path) -> bool:
    """Whether ``path`` starts as a zip archive does."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _deflated(data: bytes | memoryview, level: int) -> bytes:
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


def _member_span(data: Any, info: zipfile.ZipInfo, pos: int) -> tuple[int, int] | None:
    """Where member ``info``'s data lies in the archive ``data`` (start, end), from its local
    header; ``None`` when that header is not where the central directory says, lies before
    ``pos`` (members overlap), or the data runs past the end."""
    off = info.header_offset
    if off < pos or data[off : off + 4] != b"PK\x03\x04":
        return None
    n, m = struct.unpack("<HH", data[off + 26 : off + 30])
    start = off + 30 + n + m
    end = start + info.compress_size
    if end > len(data):
        return None
    return start, end


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
                span = _member_span(data, info, pos)
                if span is None:
                    return None
                start, end = span
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


def _header_length(f: BinaryIO, what: str, magic: bytes, not_one: str, size: int) -> int:
    """After ``magic``, the 8-byte length of the header that follows, checked against the
    bounds. Raises :class:`DeltaError` (``not_one`` when the magic is not there)."""
    if f.read(len(magic)) != magic:
        raise DeltaError(what, not_one)
    raw = f.read(8)
    if len(raw) != 8:
        raise DeltaError(what, "truncated header")
    (n,) = struct.unpack(">Q", raw)
    if n > min(_MAX_HEADER, size):
        raise DeltaError(what, f"a header of {n} bytes")
    return int(n)


def _segments(f: BinaryIO, what: str, length: int, body: int) -> list[list[Any]]:
    n = _header_length(f, what, MAGIC, "not an expanded archive", body)
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


# --- zip deltas, version 2: members re-deflated only where it pays ------------------------------
#
# A version 1 zip delta is rebuilt by deflating every changed member again: the fewest bytes,
# but tens of MB/s of archive. A version 2 delta (``steppatch-zipdelta/2``) re-deflates only
# the changed members chosen when it is made (:func:`choose_redeflate`, within a budget of
# deflated bytes); every other changed member travels as its deflated bytes, delta-compressed
# against the old archive as a plain delta is:
#
#     b"SPZD2\n", header length (8 bytes, big-endian), header (one zstd frame of JSON),
#     frame 1, frame 2 (absent when no member is re-deflated)
#
# The header is ``{"frames": [F1, F2], "members": [[OFFSET, SIZE, LEVEL, DEFLATED], ...],
# "pieces": [[OFFSET, LENGTH, SIZE], ...]}``. Frame 1 (F1 bytes) decodes, with the base archive
# as its prefix, to the new archive except that each re-deflated member's DEFLATED bytes at
# OFFSET are zeros. Frame 2 (F2 bytes) decodes to the re-deflated members' inflated contents one
# after the other (SIZE bytes each), with as its prefix the base archive's deflated bytes at
# each piece's OFFSET (LENGTH bytes) inflated to exactly SIZE bytes, one after the other (the
# old versions of those members). Each member's content deflated at LEVEL (raw deflate) must be
# exactly DEFLATED bytes; it is written at OFFSET. So a home inflates only the old members the
# re-deflated ones are made from, and the rest of the archive is decoded in one pass.

DELTA_MAGIC = b"SPZD2\n"
_MAX_ENTRIES = 1_000_000


@record.frozen
class Candidate:
    """A changed member that could be re-deflated: ``saving`` bytes of delta less than shipping
    its deflated bytes, for ``cost`` bytes to deflate again at the home (its deflated length:
    zlib's time goes with what it writes, about the same per deflated byte for binaries and
    text, while per inflated byte text deflates twice as fast)."""

    saving: int
    cost: int


def choose_redeflate(candidates: Sequence[Candidate], budget: int) -> list[int]:
    """The indices of the ``candidates`` to re-deflate: greedily by bytes saved per byte
    deflated, best first, each one that still fits in ``budget`` bytes deflated in all (one
    that does not fit is skipped, a smaller one after it may fit); none that saves nothing.
    Ties: the earlier candidate first. Returned in the candidates' order."""
    order = sorted(
        (i for i, c in enumerate(candidates) if c.saving > 0),
        key=lambda i: (-candidates[i].saving / max(candidates[i].cost, 1), i),
    )
    chosen, spent = [], 0
    for i in order:
        if spent + candidates[i].cost <= budget:
            chosen.append(i)
            spent += candidates[i].cost
    return sorted(chosen)


def is_delta2(path: Path) -> bool:
    """Whether ``path`` starts as a version 2 zip delta does."""
    with open(path, "rb") as f:
        return f.read(len(DELTA_MAGIC)) == DELTA_MAGIC


def _remove(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _zip_members(f: BinaryIO, data: mmap.mmap) -> list[tuple[zipfile.ZipInfo, int, int]] | None:
    """The members of the zip in ``data`` by offset, each with where its data starts and ends;
    ``None`` when it is not a zip this reads."""
    try:
        infos = sorted(zipfile.ZipFile(f).infolist(), key=lambda i: i.header_offset)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
    found, pos = [], 0
    for info in infos:
        span = _member_span(data, info, pos)
        if span is None:
            return None
        start, pos = span
        found.append((info, start, pos))
    return found


def make_delta(
    base: Path,
    target: Path,
    out: Path,
    *,
    max_length: int,
    max_member_bytes: int,
    budget: int,
    level: int,
    frame_levels: tuple[int, int] | None = None,
) -> tuple[int, int] | None:
    """Write the version 2 zip delta from the archive ``base`` to the archive ``target`` to
    ``out``: its length and how many bytes its frames decode to, or ``None`` (nothing left)
    when either is not a zip this reads or the delta would not be shorter than ``max_length``.

    Re-deflated at the home: the members :func:`choose_redeflate` picks within ``budget``
    deflated bytes in all, among the changed members that inflate (to at most
    ``max_member_bytes``) and that a zlib level deflates back to their exact bytes. ``level``:
    the zstd level of the estimates that choose them, and of the two frames unless
    ``frame_levels`` gives theirs. Work files beside ``out``, removed. The caller checks the
    delta by applying it."""
    import zstandard

    from steppatch.delta import MAX_WINDOW_LOG, encoded_length

    layout, plains, prefix, f1, f2 = (
        out.with_name(out.name + s) for s in (".layout", ".plain", ".prefix", ".f1", ".f2")
    )
    with contextlib.ExitStack() as stack:
        stack.callback(_remove, layout, plains, prefix, f1, f2)
        fb = stack.enter_context(open(base, "rb"))
        ft = stack.enter_context(open(target, "rb"))
        if os.fstat(fb.fileno()).st_size == 0 or os.fstat(ft.fileno()).st_size == 0:
            return None
        old = stack.enter_context(mmap.mmap(fb.fileno(), 0, access=mmap.ACCESS_READ))
        new = stack.enter_context(mmap.mmap(ft.fileno(), 0, access=mmap.ACCESS_READ))
        old_members, new_members = _zip_members(fb, old), _zip_members(ft, new)
        if old_members is None or new_members is None:
            return None
        by_name = {i.filename: (i, s, e) for i, s, e in old_members}
        # Where the old members' deflated bytes lie, by crc32 and length (compared when used:
        # memory stays one member's)
        old_at: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for i, s, e in old_members:
            old_at.setdefault((i.CRC, i.compress_size), []).append((s, e))
        # The changed members that could be re-deflated: (start, end, level, size, old piece)
        found: list[tuple[int, int, int, int, list[int] | None]] = []
        candidates: list[Candidate] = []
        for info, start, end in new_members:
            if info.compress_type != zipfile.ZIP_DEFLATED or info.file_size > max_member_bytes:
                continue
            raw = new[start:end]
            if any(old[s:e] == raw for s, e in old_at.get((info.CRC, info.compress_size), ())):
                continue  # unchanged: frame 1 copies it from the old archive
            plain = _inflated(raw, info.file_size)
            if not plain:
                continue
            lv = next((lv for lv in _LEVELS if _deflated(plain, lv) == raw), 0)
            if not lv:
                continue
            was = by_name.get(info.filename)
            old_raw, old_plain, piece = b"", b"", None
            if was is not None and was[0].compress_type == zipfile.ZIP_DEFLATED:
                old_raw = old[was[1] : was[2]]
                if was[0].file_size <= max_member_bytes:
                    old_plain = _inflated(old_raw, was[0].file_size) or b""
                    if old_plain:
                        piece = [was[1], was[2] - was[1], len(old_plain)]
            saving = encoded_length(raw, old_raw, level=level) - encoded_length(
                plain, old_plain, level=level
            )
            candidates.append(Candidate(saving, len(raw)))
            found.append((start, end, lv, len(plain), piece))
        chosen = [found[i] for i in choose_redeflate(candidates, budget)]
        members = [[start, size, lv, end - start] for start, end, lv, size, _ in chosen]
        pieces = [piece for *_, piece in chosen if piece is not None]
        with open(layout, "wb") as lw, open(plains, "wb") as plw, open(prefix, "wb") as pw:
            pos = 0
            for start, end, _lv, size, _piece in chosen:
                lw.write(new[pos:start])
                lw.write(bytes(end - start))
                pos = end
                plw.write(_inflated(new[start:end], size) or b"")
            lw.write(new[pos:])
            for off, n, size in pieces:
                pw.write(_inflated(old[off : off + n], size) or b"")
        expanded = len(new) + sum(m[1] for m in members)
        if sum(p[2] for p in pieces) + expanded - len(new) > 1 << MAX_WINDOW_LOG:
            return None  # frame 2's window could not cover its prefix and content
        level1, level2 = frame_levels or (level, level)
        len1 = _encode_shortest(layout, f1, prefix=base, max_length=max_length,
                                levels=(level1, level))  # fmt: skip
        if len1 is None:
            return None
        len2 = 0
        if members:
            len2 = _encode_shortest(plains, f2, prefix=prefix, max_length=max_length,
                                    levels=(level2, level)) or 0  # fmt: skip
            if not len2:
                return None
        header = {"frames": [len1, len2], "members": members, "pieces": pieces}
        text = json.dumps(header, separators=(",", ":")).encode()
        head = zstandard.ZstdCompressor(level=19).compress(text)
        if len(DELTA_MAGIC) + 8 + len(head) + len1 + len2 >= max_length:
            return None
        with open(out, "wb") as o:
            o.write(DELTA_MAGIC + struct.pack(">Q", len(head)) + head)
            for frame in (f1, f2) if members else (f1,):
                with open(frame, "rb") as src:
                    while chunk := src.read(_CHUNK):
                        o.write(chunk)
        return out.stat().st_size, expanded


def _encode_shortest(
    data: Path, out: Path, *, prefix: Path, max_length: int, levels: tuple[int, ...]
) -> int | None:
    """``data`` encoded against ``prefix`` into ``out`` at each of the zstd ``levels``, the
    shortest kept: its length, or ``None`` when none is shorter than ``max_length``.

    Level 19's optimal parser finds matches only within its chain (8 MiB back) and through
    long-distance matching: better than level 9 on a 13 MB wheel, four times worse on a 60 MiB
    archive. Level 9 costs a few percent of level 19's time, so both are tried."""
    from steppatch.delta import encode

    best: int | None = None
    other = out.with_name(out.name + ".other")
    try:
        for lv in dict.fromkeys(levels):
            n = encode(data, other, base=prefix, max_length=best or max_length, level=lv)
            if n is not None and (best is None or n < best):
                os.replace(other, out)
                best = n
        return best
    finally:
        other.unlink(missing_ok=True)


def _entries(value: object, width: int, what: str, name: str) -> list[list[int]]:
    if not isinstance(value, list) or len(value) > _MAX_ENTRIES:
        raise DeltaError(what, f"no {name}")
    for e in value:
        ok = (
            isinstance(e, list)
            and len(e) == width
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in e)
        )
        if not ok:
            raise DeltaError(what, f"bad {name} entry {str(e)[:80]}")
    return value


def _header(
    f: BinaryIO, what: str, delta_size: int, base_size: int, length: int, expanded: int,
    max_expanded: int,
) -> tuple[list[int], list[list[int]], list[list[int]], int]:  # fmt: skip
    """A version 2 delta's frames, members and pieces, checked; and where frame 1 starts."""
    import zstandard

    n = _header_length(f, what, DELTA_MAGIC, "not a version 2 zip delta", delta_size)
    head = f.read(n)
    try:
        # the declared size first: python-zstandard allocates what a frame declares
        declared = zstandard.frame_content_size(head)
        if not 0 <= declared <= _MAX_HEADER:
            raise DeltaError(what, f"a header declaring {declared} bytes")
        header = parse_json(zstandard.ZstdDecompressor().decompress(head))
    except (zstandard.ZstdError, JsonProblem) as e:
        raise DeltaError(what, f"header: {e}") from None
    if not isinstance(header, dict):
        raise DeltaError(what, "header is not an object")
    (frames,) = _entries([header.get("frames")], 2, what, "frames")
    members = _entries(header.get("members"), 4, what, "members")
    pieces = _entries(header.get("pieces"), 3, what, "pieces")
    start = len(DELTA_MAGIC) + 8 + n
    if not frames[0] or start + frames[0] + frames[1] != delta_size or (
        bool(frames[1]) != bool(members)
    ):
        raise DeltaError(what, "frames do not add up")
    pos = 0
    for off, size, lv, deflated in members:
        if off < pos or off + deflated > length or not 1 <= lv <= 9 or not size:
            raise DeltaError(what, f"bad member at {off}")
        pos = off + deflated
    if length + sum(m[1] for m in members) != expanded or expanded > max_expanded:
        raise DeltaError(what, f"members do not add up to {expanded} bytes")
    total = 0
    for off, n_, size in pieces:
        if off + n_ > base_size or not size:
            raise DeltaError(what, f"bad piece at {off}")
        total += size
    if total > max_expanded:
        raise DeltaError(what, f"a prefix of {total} bytes, over {max_expanded}")
    return frames, members, pieces, start


def apply_delta(
    delta: Path,
    base: Path,
    out: Path,
    *,
    length: int,
    expanded: int,
    max_expanded: int,
    threads: int,
    max_pending_bytes: int,
) -> None:
    """Write the archive of ``length`` bytes that the version 2 zip ``delta`` (whose frames
    decode to ``expanded`` bytes) makes from the archive ``base`` to ``out``. Raises
    :class:`DeltaError` when the delta is malformed, does not fit the base or does not give
    exactly ``length`` bytes, ``OSError``. The caller checks the sha256.

    Work files beside ``out``, removed. Memory: one old member inflated at a time while the
    prefix of frame 2 is written; the re-deflated members are deflated by ``threads`` threads
    while frame 1 decodes, at most ``max_pending_bytes`` of their deflated bytes (or one
    member's) held until they are written; the two frames' decoders, each a window buffer as
    long as its output when that is at most ``delta.STREAM_MAX_BYTES`` (64 MiB), else none."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from steppatch.delta import decode

    what = f"zip delta {delta.name}"
    prefix, plains = (out.with_name(out.name + s) for s in (".prefix", ".plain"))
    with contextlib.ExitStack() as stack:
        stack.callback(_remove, prefix, plains)
        fb = stack.enter_context(open(base, "rb"))
        base_size = os.fstat(fb.fileno()).st_size
        if base_size == 0:
            raise DeltaError(what, "an empty base")
        with open(delta, "rb") as fd:
            size = os.fstat(fd.fileno()).st_size
            frames, members, pieces, start = _header(
                fd, what, size, base_size, length, expanded, max_expanded
            )
        # Frame 1 (the archive, most of the work that is not deflating) decodes in one of the
        # threads from the start; the members deflate in the others as soon as frame 2 is in,
        # and in that one too once frame 1 is done. No more threads than `threads` (the cores):
        # a third busy thread on 2 cores made numpy's rebuild 15% slower, not faster.
        pool = ThreadPoolExecutor(max_workers=max(2, threads))
        stack.callback(pool.shutdown)
        whole = pool.submit(
            decode, delta, out, base=base, length=length, offset=start, size=frames[0]
        )
        if not members:
            whole.result()
            return
        old = stack.enter_context(mmap.mmap(fb.fileno(), 0, access=mmap.ACCESS_READ))
        with open(prefix, "wb") as pw:
            for off, n, want in pieces:
                plain = _inflated(old[off : off + n], want)
                if plain is None or len(plain) != want:
                    raise DeltaError(what, f"a piece at {off} does not inflate to {want}")
                pw.write(plain)
        decode(delta, plains, base=prefix, length=expanded - length,
               offset=start + frames[0], size=frames[1])  # fmt: skip
        fp = stack.enter_context(open(plains, "rb"))
        data = stack.enter_context(mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ))
        view = memoryview(data)
        stack.callback(view.release)
        stack.callback(pool.shutdown)  # before the view is released
        # Largest first, so that the threads end together; in batches of at most
        # max_pending_bytes deflated (or one member), written once frame 1 is.
        at, spans = 0, []
        for m in members:
            spans.append((m, at))
            at += m[1]
        queue = sorted(spans, key=lambda e: e[0][1])  # the largest last, popped first
        fo: BinaryIO | None = None
        while queue:
            pending: list[tuple[list[int], Future[bytes]]] = []
            held = 0
            while queue and (not pending or held + queue[-1][0][3] <= max_pending_bytes):
                m, at = queue.pop()
                pending.append((m, pool.submit(_deflated, view[at : at + m[1]], m[2])))
                held += m[3]
            checkpoint("zip-rebuilding")  # the crash tests: work files and threads busy
            whole.result()
            if fo is None:
                fo = stack.enter_context(open(out, "r+b"))
            for m, fut in pending:
                deflated = fut.result()
                if len(deflated) != m[3]:
                    raise DeltaError(what, "a member deflates to another length here")
                os.pwrite(fo.fileno(), deflated, m[0])


def apply_zip_delta(
    delta: Path,
    base: Path,
    out: Path,
    *,
    length: int,
    expanded: int,
    max_member_bytes: int,
    max_expanded: int,
    threads: int,
    max_pending_bytes: int,
) -> None:
    """Write the archive of ``length`` bytes that the zip ``delta`` of either version makes
    from the archive ``base`` to ``out`` (``expanded``: what its frames decode to). Raises
    :class:`DeltaError`, ``OSError``; the caller checks the sha256. Work files beside ``out``,
    removed."""
    from steppatch.delta import decode

    if is_delta2(delta):
        apply_delta(
            delta, base, out, length=length, expanded=expanded, max_expanded=max_expanded,
            threads=threads, max_pending_bytes=max_pending_bytes,
        )  # fmt: skip
        return
    # Version 1: the base expanded, the target's expanded form decoded, rebuilt.
    if expanded > max_expanded:
        raise DeltaError(f"zip delta {delta.name}", f"{expanded} bytes, over {max_expanded}")
    form, target = (out.with_name(out.name + s) for s in (".base", ".target"))
    try:
        if expand(base, form, max_member_bytes=max_member_bytes, levels=False) is None:
            raise DeltaError(f"base {base}", "not an archive this can expand")
        decode(delta, target, base=form, length=expanded)
        form.unlink()
        rebuild(target, out, length, base)
    finally:
        _remove(form, target)
