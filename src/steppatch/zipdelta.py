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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import attrs

from steppatch._json import JsonProblem, parse_json
from steppatch.errors import DeltaError

__all__ = [
    "DELTA_MAGIC",
    "MAGIC",
    "MAGIC2",
    "Candidate",
    "apply_delta",
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


def _segments(
    f: BinaryIO, what: str, length: int, body: int, *, magic: bytes = MAGIC, old_size: int = 0
) -> list[list[Any]]:
    """The segments of an expanded form (``magic``: its version; ``old_size``: the length of
    the archive its ``c`` segments copy from, version 2 only)."""
    if f.read(len(magic)) != magic:
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
        elif ok and s[0] == "c" and len(s) == 3 and magic == MAGIC2 and s[1] + s[2] <= old_size:
            total_out += s[2]
        else:
            raise DeltaError(what, f"bad segment {str(s)[:80]}")
    if total_out != length or total_in != body - len(magic) - 8 - n:
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


# --- zip deltas, version 2: a member re-deflated only where it pays -------------------------------
#
# Delta (``steppatch-zipdelta/2``)::
#
#     b"SPZD2\n", header length (8 bytes, big-endian), header (one zstd frame of JSON), frame
#
# The header is ``{"pieces": [[OFFSET, LENGTH] | [OFFSET, LENGTH, SIZE], ...]}``: the *prefix*
# of the delta is those pieces of the base archive one after the other, a two-number piece as
# its LENGTH bytes are, a three-number one (a deflated member) inflated to exactly SIZE bytes.
# The frame decodes, with that prefix, to the target's form (``steppatch-zipx/2``): as
# ``steppatch-zipx/1`` with ``["c", OFFSET, LENGTH]`` segments more, LENGTH bytes copied from
# the base archive (members both archives hold byte for byte). So a home inflates only the old
# members that changed members are re-deflated from, and re-deflates only the members chosen
# when the delta was made (:func:`choose_redeflate`); every other changed member travels as
# its deflated bytes, delta-compressed against the old member's.

DELTA_MAGIC = b"SPZD2\n"
MAGIC2 = b"SPZX2\n"
_MAX_PIECES = 1_000_000


@attrs.frozen
class Candidate:
    """A changed member that could be re-deflated: ``saving`` bytes of delta less than shipping
    its deflated bytes, for ``cost`` bytes to deflate again at the home (its inflated size)."""

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


def _remove(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def is_delta2(path: Path) -> bool:
    """Whether ``path`` starts as a version 2 zip delta does."""
    with open(path, "rb") as f:
        return f.read(len(DELTA_MAGIC)) == DELTA_MAGIC


def _zip_members(f: BinaryIO, data: mmap.mmap) -> list[tuple[zipfile.ZipInfo, int, int]] | None:
    """The members of the zip in ``data``, by offset: (info, start and end of its data)."""
    try:
        infos = sorted(zipfile.ZipFile(f).infolist(), key=lambda i: i.header_offset)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
    found, pos = [], 0
    for info in infos:
        off = info.header_offset
        if off < pos or data[off : off + 4] != b"PK\x03\x04":
            return None
        n, m = struct.unpack("<HH", data[off + 26 : off + 30])
        start = off + 30 + n + m
        pos = end = start + info.compress_size
        if end > len(data):
            return None
        found.append((info, start, end))
    return found


def _zstd_length(data: bytes, prefix: bytes, level: int) -> int:
    """The length of ``data`` compressed by zstd with ``prefix``: an estimate of a delta."""
    import zstandard

    from steppatch.delta import window_log_for

    params = zstandard.ZstdCompressionParameters.from_level(
        level, window_log=window_log_for(len(prefix) + len(data)), enable_ldm=bool(prefix)
    )
    d = (
        zstandard.ZstdCompressionDict(prefix, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        if prefix
        else None
    )
    return len(zstandard.ZstdCompressor(compression_params=params, dict_data=d).compress(data))


def _header_frame(obj: object) -> bytes:
    import zstandard

    return bytes(zstandard.ZstdCompressor(level=19).compress(
        json.dumps(obj, separators=(",", ":")).encode()
    ))  # fmt: skip


def make_delta(
    base: Path,
    target: Path,
    out: Path,
    *,
    max_length: int,
    max_member_bytes: int,
    budget: int,
    level: int,
) -> tuple[int, int] | None:
    """Write the version 2 zip delta from the archive ``base`` to the archive ``target`` to
    ``out``: its length and the length its frame decodes to, or ``None`` (nothing left) when
    either is not a zip this reads or the delta would not be shorter than ``max_length``.

    Members re-deflated at the home: those :func:`choose_redeflate` picks within ``budget``
    bytes inflated in all, among the changed members that inflate (to at most
    ``max_member_bytes``) and that some zlib level deflates back to their exact bytes. Work
    files beside ``out``, removed. The caller checks the delta by applying it."""
    from steppatch.delta import encode

    body, prefix, frame = (out.with_name(out.name + s) for s in (".body", ".prefix", ".frame"))
    with contextlib.ExitStack() as stack:
        stack.callback(_remove, body, prefix, frame)
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
        by_bytes = {(i.CRC, i.compress_size): (s, e) for i, s, e in old_members}
        # Per member of the target: ("c", start in base) | ("r",) | ("z", plain, level, old)
        plan: list[tuple[Any, ...]] = []
        candidates: list[Candidate] = []
        where: list[int] = []  # the plan index of each candidate
        for info, start, end in new_members:
            raw = new[start:end]
            same = by_bytes.get((info.CRC, info.compress_size))
            if same is not None and old[same[0] : same[1]] == raw:
                plan.append(("c", same[0]))
                continue
            plan.append(("r",))
            if info.compress_type != zipfile.ZIP_DEFLATED or info.file_size > max_member_bytes:
                continue
            plain = _inflated(raw, info.file_size)
            if plain is None or not plain:
                continue
            lv = next((lv for lv in _LEVELS if _deflated(plain, lv) == raw), 0)
            if not lv:
                continue
            was = by_name.get(info.filename)
            old_raw, old_plain = b"", b""
            if was is not None and was[0].compress_type == zipfile.ZIP_DEFLATED:
                old_raw = old[was[1] : was[2]]
                if was[0].file_size <= max_member_bytes:
                    old_plain = _inflated(old_raw, was[0].file_size) or b""
            saving = _zstd_length(raw, old_raw, level) - _zstd_length(plain, old_plain, level)
            candidates.append(Candidate(saving, len(plain)))
            where.append(len(plan) - 1)
            base_piece = None
            if was is not None and old_plain:
                base_piece = (was[1], was[2] - was[1], len(old_plain))
            plan[-1] = ("r", lv, base_piece)
        chosen = {where[i] for i in choose_redeflate(candidates, budget)}
        # The prefix: what a changed member's delta draws on, in the target's order, then the
        # old central directory (the new local headers and central directory draw on it).
        pieces: list[list[int]] = []
        segments: list[list[Any]] = []
        with open(body, "wb") as bw, open(prefix, "wb") as pw:
            pos = 0

            def raw_upto(stop: int) -> None:
                if stop > pos:
                    if segments and segments[-1][0] == "r":
                        segments[-1][1] += stop - pos
                    else:
                        segments.append(["r", stop - pos])
                    bw.write(new[pos:stop])

            for k, ((info, start, end), step) in enumerate(zip(new_members, plan, strict=True)):
                if step[0] == "c":
                    raw_upto(start)
                    segments.append(["c", step[1], end - start])
                    pos = end
                elif k in chosen:
                    _, lv, was = step
                    plain = _inflated(new[start:end], info.file_size) or b""
                    raw_upto(start)
                    segments.append(["z", len(plain), lv, end - start])
                    bw.write(plain)
                    pos = end
                    if was is not None:
                        pieces.append(list(was))
                        pw.write(_inflated(old[was[0] : was[0] + was[1]], was[2]) or b"")
                else:
                    was = by_name.get(info.filename)
                    if was is not None:
                        pieces.append([was[1], was[2] - was[1]])
                        pw.write(old[was[1] : was[2]])
            raw_upto(len(new))
            tail = old_members[-1][2] if old_members else 0
            if tail < len(old):
                pieces.append([tail, len(old) - tail])
                pw.write(old[tail:])
            header = json.dumps({"size": len(new), "segments": segments}, separators=(",", ":"))
        with open(frame, "wb") as fw:
            fw.write(MAGIC2 + struct.pack(">Q", len(header)) + header.encode())
            with open(body, "rb") as src:
                while chunk := src.read(_CHUNK):
                    fw.write(chunk)
        body.unlink()
        expanded = frame.stat().st_size
        head = _header_frame({"pieces": pieces})
        room = max_length - len(DELTA_MAGIC) - 8 - len(head)
        length = encode(frame, body, base=prefix, max_length=room, level=level)
        if length is None:
            return None
        with open(out, "wb") as o, open(body, "rb") as src:
            o.write(DELTA_MAGIC + struct.pack(">Q", len(head)) + head)
            while chunk := src.read(_CHUNK):
                o.write(chunk)
        return out.stat().st_size, expanded


def _pieces(f: BinaryIO, what: str, base_size: int, max_prefix: int) -> tuple[list[Any], int]:
    """A version 2 delta's prefix pieces, checked against the base's length; and where its
    frame starts."""
    import zstandard

    if f.read(len(DELTA_MAGIC)) != DELTA_MAGIC:
        raise DeltaError(what, "not a version 2 zip delta")
    raw = f.read(8)
    if len(raw) != 8:
        raise DeltaError(what, "truncated header")
    (n,) = struct.unpack(">Q", raw)
    if n > _MAX_HEADER:
        raise DeltaError(what, f"a header of {n} bytes")
    head = f.read(n)
    try:
        text = zstandard.ZstdDecompressor().decompress(head, max_output_size=_MAX_HEADER)
        header = parse_json(text)
    except (zstandard.ZstdError, JsonProblem) as e:
        raise DeltaError(what, f"header: {e}") from None
    pieces = header.get("pieces") if isinstance(header, dict) else None
    if not isinstance(pieces, list) or len(pieces) > _MAX_PIECES:
        raise DeltaError(what, "no pieces")
    total = 0
    for p in pieces:
        ok = isinstance(p, list) and len(p) in (2, 3) and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in p
        )
        if not ok or p[0] + p[1] > base_size or (len(p) == 3 and not p[2]):
            raise DeltaError(what, f"bad piece {str(p)[:80]}")
        total += p[2] if len(p) == 3 else p[1]
    if total > max_prefix:
        raise DeltaError(what, f"a prefix of {total} bytes, over {max_prefix}")
    return pieces, len(DELTA_MAGIC) + 8 + n


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
    """Write the archive of ``length`` bytes that the version 2 zip ``delta`` (whose frame
    decodes to ``expanded`` bytes) makes from the archive ``base`` to ``out``. Raises
    :class:`DeltaError` when the delta is malformed, does not fit the base or does not give
    exactly ``length`` bytes (checked while writing), ``OSError``. The caller checks the sha256.

    Work files beside ``out``, removed. Memory: one old member inflated at a time while the
    prefix is written; members are deflated again by ``threads`` threads, at most
    ``max_pending_bytes`` of inflated input (or one member) waiting to be written."""
    from steppatch.delta import decode

    what = f"zip delta {delta.name}"
    if expanded > max_expanded:
        raise DeltaError(what, f"a form of {expanded} bytes, over {max_expanded}")
    prefix, body = (out.with_name(out.name + s) for s in (".prefix", ".body"))
    with contextlib.ExitStack() as stack:
        stack.callback(_remove, prefix, body)
        fb = stack.enter_context(open(base, "rb"))
        base_size = os.fstat(fb.fileno()).st_size
        if base_size == 0:
            raise DeltaError(what, "an empty base")
        old = stack.enter_context(mmap.mmap(fb.fileno(), 0, access=mmap.ACCESS_READ))
        with open(delta, "rb") as fd:
            pieces, start = _pieces(fd, what, base_size, max_expanded)
        with open(prefix, "wb") as pw:
            for p in pieces:
                if len(p) == 2:
                    pw.write(old[p[0] : p[0] + p[1]])
                    continue
                plain = _inflated(old[p[0] : p[0] + p[1]], p[2])
                if plain is None or len(plain) != p[2]:
                    raise DeltaError(what, f"a piece at {p[0]} does not inflate to {p[2]} bytes")
                pw.write(plain)
        decode(delta, body, base=prefix, length=expanded, offset=start)
        prefix.unlink()
        _rebuild2(body, out, length, old, threads, max_pending_bytes)


def _rebuild2(
    body: Path, out: Path, length: int, old: mmap.mmap, threads: int, max_pending: int
) -> None:
    from concurrent.futures import Future, ThreadPoolExecutor

    what = f"expanded archive {body.name}"
    size = body.stat().st_size
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(open(body, "rb"))
        segments = _segments(f, what, length, size, magic=MAGIC2, old_size=len(old))
        data = stack.enter_context(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        view = memoryview(data)
        stack.callback(view.release)
        o = stack.enter_context(open(out, "wb"))
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=max(1, threads)))
        pos = f.tell()
        batch: list[tuple[list[Any], int]] = []
        waiting = 0

        def flush() -> None:
            # The batch's members deflated largest first (the threads end together), written
            # in order.
            futures: dict[int, Future[bytes]] = {}
            for k, (s, at) in sorted(
                enumerate(batch), key=lambda e: -e[1][0][1] if e[1][0][0] == "z" else 0
            ):
                if s[0] == "z":
                    futures[k] = pool.submit(_deflated_view, view[at : at + s[1]], s[2])
            for k, (s, at) in enumerate(batch):
                if s[0] == "r":
                    o.write(view[at : at + s[1]])
                elif s[0] == "c":
                    o.write(old[s[1] : s[1] + s[2]])
                else:
                    deflated = futures.pop(k).result()
                    if len(deflated) != s[3]:
                        raise DeltaError(what, "a member deflates to another length here")
                    o.write(deflated)
            batch.clear()

        for s in segments:
            batch.append((s, pos))
            if s[0] != "c":
                pos += s[1]
            if s[0] == "z":
                waiting += s[1]
                if waiting >= max_pending:
                    flush()
                    waiting = 0
        flush()
        if o.tell() != length:
            raise DeltaError(what, f"rebuilt {o.tell()} bytes, expected {length}")


def _deflated_view(data: memoryview, level: int) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()
