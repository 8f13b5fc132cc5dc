"""Deltas and compressed forms of objects: zstd, the old content as a prefix (``--patch-from``).

A *delta* from a base object to a target object is one zstd frame of the target compressed with
the base as a raw-content prefix and long-distance matching, the window covering base and
target (``zstd --patch-from BASE TARGET`` makes the same kind of frame). A *compressed form* is
the same without a base. Both record the target's length in the frame header.

Memory: base, target, delta and output are memory-mapped files, never copied into this process
(``python-zstandard``'s dictionary API copies its dictionary, and its prefix use goes through a
dictionary, so the codec calls libzstd's ``ZSTD_CCtx_refPrefix``/``ZSTD_DCtx_refPrefix`` through
the ``zstandard`` package's cffi binding). Encoding and decoding outputs over
``STREAM_MAX_BYTES`` (64 MiB) are one-shot calls over the mapped buffers, so libzstd allocates no
window buffer of its own: what is not page cache is libzstd's match tables when encoding (a few
hundred MiB at most, ``docs/formats.md``) and a few hundred KiB when decoding. Shorter outputs
decode streamed through a 1 MiB buffer (faster: no page of the output is faulted in through a
mapping), libzstd's window buffer then as long as the output, at most 64 MiB. The page cache
the mappings use is the kernel's to reclaim.

Decoding never writes more than the length the signed metadata declares: the output mapping is
exactly that long (streamed: each chunk is counted before it is written), the frame must declare
that content size and be the whole input, and libzstd stops with an error rather than write past
the buffer or the declared size (no decompression bomb).
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from steppatch.errors import DeltaError

__all__ = [
    "MAX_WINDOW_LOG",
    "STREAM_MAX_BYTES",
    "decode",
    "encode",
    "encoded_length",
    "window_log_for",
]

#: libzstd's largest window on 64-bit systems: base plus target at most 2 GiB
MAX_WINDOW_LOG = 31
#: outputs up to this long decode streamed, through a chunk buffer written with write(2), rather
#: than into a mapping of the output file: libzstd then holds a window buffer as long as the
#: output (this much memory at most), but no page of the output is faulted in through the
#: mapping, which costs more than decoding here (a 12.5 MiB wheel's delta: 16 ms mapped, 7 ms
#: streamed, bench/README.md)
STREAM_MAX_BYTES = 64 * 1024 * 1024
_STREAM_CHUNK = 1024 * 1024
_MIN_WINDOW_LOG = 10


def _zstd() -> tuple[Any, Any]:
    from zstandard._cffi import ffi, lib  # type: ignore[import-not-found]

    return ffi, lib


def window_log_for(span: int) -> int:
    """The zstd window log that covers ``span`` bytes (base plus target)."""
    return max(_MIN_WINDOW_LOG, (max(span, 1) - 1).bit_length())


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[mmap.mmap | bytes]:
    """``path``'s bytes, mapped read-only (``b""`` for an empty file)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            yield b""
            return
        m = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
        try:
            yield m
        finally:
            m.close()


def _buffer(stack: contextlib.ExitStack, ffi: Any, data: mmap.mmap | bytes) -> Any:
    """A cffi view of ``data``, released when ``stack`` closes (before the mapping is)."""
    if not len(data):
        return ffi.NULL
    buf = ffi.from_buffer(data)
    stack.callback(ffi.release, buf)
    return buf


def _error(lib: Any, ffi: Any, code: int) -> str:
    return str(ffi.string(lib.ZSTD_getErrorName(code)).decode())


def _check(lib: Any, ffi: Any, code: int, what: str) -> int:
    if lib.ZSTD_isError(code):
        raise DeltaError(what, _error(lib, ffi, code))
    return int(code)


def encode(
    target: Path, out: Path, *, base: Path | None, max_length: int, level: int = 9
) -> int | None:
    """Write ``target`` compressed (with ``base`` as its prefix, if given) to ``out``; return
    its length, or ``None`` (``out`` removed) when it would not be shorter than ``max_length``
    (libzstd stops when its output buffer, ``max_length - 1`` bytes, is full).

    The caller bounds the sizes (``Limits.max_delta_span_bytes``). Raises ``OSError``.
    """
    ffi, lib = _zstd()
    capacity = max_length - 1
    if capacity <= 0:
        return None
    base_size = base.stat().st_size if base is not None else 0
    target_size = target.stat().st_size
    wlog = window_log_for(base_size + target_size)
    if wlog > MAX_WINDOW_LOG:
        raise ValueError(f"base plus target is {base_size + target_size} bytes: over 2 GiB")
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(_mapped(target))
        pre = stack.enter_context(_mapped(base)) if base is not None else b""
        src_buf = _buffer(stack, ffi, src)
        cctx = _compressor(stack, ffi, lib, level, wlog, pre)
        fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, capacity)
            with mmap.mmap(fd, capacity) as dst, contextlib.ExitStack() as views:
                dst_buf = _buffer(views, ffi, dst)
                code = lib.ZSTD_compress2(cctx, dst_buf, capacity, src_buf, len(src))
            if lib.ZSTD_isError(code):
                os.close(fd)
                fd = -1
                out.unlink(missing_ok=True)
                name = _error(lib, ffi, code)
                if "too small" in name.lower():
                    return None
                raise DeltaError(f"encoding {target}", name)
            os.ftruncate(fd, int(code))
            return int(code)
        finally:
            if fd >= 0:
                os.close(fd)


def _compressor(
    stack: contextlib.ExitStack, ffi: Any, lib: Any, level: int, wlog: int, prefix: Any
) -> Any:
    """A libzstd compression context set up as deltas are made, ``prefix`` (a buffer, empty for
    none) referenced as the base; freed with ``stack``."""
    cctx = lib.ZSTD_createCCtx()
    stack.callback(lib.ZSTD_freeCCtx, cctx)
    for param, value in (
        (lib.ZSTD_c_compressionLevel, level),
        (lib.ZSTD_c_windowLog, wlog),
        (lib.ZSTD_c_enableLongDistanceMatching, 1 if len(prefix) or wlog > 27 else 0),
        (lib.ZSTD_c_contentSizeFlag, 1),
        (lib.ZSTD_c_checksumFlag, 0),  # the target's sha256 is checked after decoding
    ):
        _check(lib, ffi, lib.ZSTD_CCtx_setParameter(cctx, param, value), "zstd parameter")
    if len(prefix):
        pre_buf = _buffer(stack, ffi, prefix)
        _check(lib, ffi, lib.ZSTD_CCtx_refPrefix(cctx, pre_buf, len(prefix)), "zstd prefix")
    return cctx


def encoded_length(data: bytes, prefix: bytes, *, level: int = 9) -> int:
    """How long ``data`` is as a delta from ``prefix`` (both in memory: the caller bounds
    them), the way :func:`encode` makes deltas: an estimate for choosing, nothing written."""
    ffi, lib = _zstd()
    wlog = window_log_for(len(prefix) + len(data))
    if wlog > MAX_WINDOW_LOG:
        raise ValueError(f"prefix plus data is {len(prefix) + len(data)} bytes: over 2 GiB")
    with contextlib.ExitStack() as stack:
        src_buf = _buffer(stack, ffi, data)
        cctx = _compressor(stack, ffi, lib, level, wlog, prefix)
        capacity = lib.ZSTD_compressBound(len(data))
        dst = ffi.new("char[]", capacity)
        code = lib.ZSTD_compress2(cctx, dst, capacity, src_buf, len(data))
        return _check(lib, ffi, code, "estimating a delta")


def _stream(
    ffi: Any, lib: Any, dctx: Any, src_buf: Any, size: int, fd: int, length: int, what: str
) -> None:
    """Decode the frame at ``src_buf`` through a chunk buffer, written to ``fd``: never more
    than ``length`` bytes."""
    chunk = ffi.new("char[]", _STREAM_CHUNK)
    inb = ffi.new("ZSTD_inBuffer *")
    inb.src, inb.size, inb.pos = src_buf, size, 0
    outb = ffi.new("ZSTD_outBuffer *")
    outb.dst, outb.size = chunk, _STREAM_CHUNK
    written = 0
    while True:
        outb.pos = 0
        before = inb.pos
        left = _check(lib, ffi, lib.ZSTD_decompressStream(dctx, outb, inb), what)
        if written + outb.pos > length:
            raise DeltaError(what, f"decodes to more than the metadata's {length} bytes")
        view = ffi.buffer(chunk, outb.pos)
        while len(view):
            n = os.write(fd, view)
            view = view[n:]
        written += outb.pos
        if left == 0:
            break
        if outb.pos == 0 and inb.pos == before:
            raise DeltaError(what, "truncated")
    if written != length:
        raise DeltaError(what, f"decoded {written} bytes, the metadata says {length}")


def decode(
    data: Path,
    out: Path,
    *,
    base: Path | None,
    length: int,
    offset: int = 0,
    size: int | None = None,
) -> None:
    """Decode ``data`` (a delta from ``base``, or a compressed form) into ``out``, which ends
    exactly ``length`` bytes long. ``offset`` and ``size``: where the frame lies in ``data``
    (by default all of it; a zip delta's frames follow its header, ``steppatch.zipdelta``).

    Raises :class:`DeltaError` when ``data`` is not one zstd frame declaring ``length`` bytes of
    content, needs a window over ``MAX_WINDOW_LOG``, or does not decode (a wrong base, damaged
    bytes): never writes more than ``length`` bytes. Raises ``OSError``. The caller checks the
    output's sha256.
    """
    ffi, lib = _zstd()
    what = f"delta {data.name}"
    with contextlib.ExitStack() as stack:
        mapped = stack.enter_context(_mapped(data))
        if size is None:
            size = len(mapped) - offset
        if offset < 0 or size <= 0 or offset + size > len(mapped):
            raise DeltaError(what, "empty")
        src_buf = _buffer(stack, ffi, mapped) + offset
        declared = lib.ZSTD_getFrameContentSize(src_buf, size)
        if declared != length:
            shown = "no or a bad" if declared >= lib.ZSTD_CONTENTSIZE_ERROR - 1 else declared
            raise DeltaError(what, f"declares {shown} bytes of content, the metadata {length}")
        frame = lib.ZSTD_findFrameCompressedSize(src_buf, size)
        if lib.ZSTD_isError(frame) or frame != size:
            raise DeltaError(what, "not exactly one zstd frame")
        pre = stack.enter_context(_mapped(base)) if base is not None else b""
        pre_buf = _buffer(stack, ffi, pre)
        dctx = lib.ZSTD_createDCtx()
        stack.callback(lib.ZSTD_freeDCtx, dctx)
        _check(
            lib,
            ffi,
            lib.ZSTD_DCtx_setParameter(dctx, lib.ZSTD_d_windowLogMax, MAX_WINDOW_LOG),
            what,
        )
        if len(pre):
            _check(lib, ffi, lib.ZSTD_DCtx_refPrefix(dctx, pre_buf, len(pre)), what)
        fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if 0 < length <= STREAM_MAX_BYTES:
                _stream(ffi, lib, dctx, src_buf, size, fd, length, what)
                return
            if length == 0:
                code = lib.ZSTD_decompressDCtx(dctx, ffi.NULL, 0, src_buf, size)
            else:
                os.ftruncate(fd, length)
                with mmap.mmap(fd, length) as dst, contextlib.ExitStack() as views:
                    dst_buf = _buffer(views, ffi, dst)
                    code = lib.ZSTD_decompressDCtx(dctx, dst_buf, length, src_buf, size)
            _check(lib, ffi, code, what)
            if code != length:
                raise DeltaError(what, f"decoded {code} bytes, the metadata says {length}")
        finally:
            os.close(fd)
