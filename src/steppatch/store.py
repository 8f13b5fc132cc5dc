"""The content-addressed object store: file content kept under its sha256.

Every object is verified as it is written (its hash and exact length) and again as it is used
(copied out), so a corrupted cache entry is detected, removed and fetched anew rather than
installed (invariant 1: nothing unverified is used).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from steppatch.errors import IntegrityError, TooLarge

__all__ = ["ObjectStore", "copy_verified", "hash_file"]

_CHUNK = 256 * 1024


def hash_file(path: Path) -> tuple[str, int]:
    """The sha256 hex digest and size of a file. Raises ``OSError``."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class ObjectStore:
    """Objects under ``root/ab/abcdef...``, written atomically, verified on write and on use."""

    def __init__(self, root: Path, durable: bool = False) -> None:
        self.root = root
        # A cache need not survive a power cut: every use re-verifies, and a damaged entry is
        # fetched again. A repository's objects must, since its index will name them.
        self.durable = durable

    def path(self, sha256: str) -> Path:
        """Where the object with this hash lives (whether or not it is there)."""
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        """Whether an object with this name is stored (its content is checked on use)."""
        return self.path(sha256).is_file()

    def remove(self, sha256: str) -> None:
        """Remove an object if present."""
        with contextlib.suppress(FileNotFoundError):
            self.path(sha256).unlink()

    def add(self, chunks: Iterable[bytes], sha256: str, length: int, what: str) -> Path:
        """Store the bytes of ``chunks`` as object ``sha256``, which must be ``length`` bytes.

        Reading stops as soon as more than ``length`` bytes arrive. Raises :class:`TooLarge`
        when the data is longer, :class:`IntegrityError` when it is shorter or hashes otherwise;
        nothing is stored then. Raises ``OSError`` from the filesystem.
        """
        final = self.path(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{sha256}.tmp-{os.getpid()}")
        h = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    size += len(chunk)
                    if size > length:
                        raise TooLarge(what, length)
                    h.update(chunk)
                    f.write(chunk)
                if self.durable:
                    f.flush()
                    os.fsync(f.fileno())
            if size != length:
                raise IntegrityError(what, f"{length} bytes", f"{size} bytes")
            if h.hexdigest() != sha256:
                raise IntegrityError(what, f"sha256 {sha256}", f"sha256 {h.hexdigest()}")
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return final

    def add_file(self, source: Path, sha256: str, length: int) -> Path:
        """Store a local file that must hash to ``sha256``; a no-op when already stored intact."""
        if self.has(sha256) and hash_file(self.path(sha256)) == (sha256, length):
            return self.path(sha256)
        with open(source, "rb") as f:
            return self.add(iter(lambda: f.read(_CHUNK), b""), sha256, length, str(source))

    def copy_out(self, sha256: str, length: int, dest: Path, mode: int) -> None:
        """Write object ``sha256`` to the new file ``dest`` with ``mode``, verifying as it copies.

        A stored object whose bytes do not match is removed and :class:`IntegrityError` raised.
        """
        try:
            copy_verified(self.path(sha256), sha256, length, dest, mode, f"cached object {sha256}")
        except IntegrityError:
            self.remove(sha256)
            raise


def copy_verified(
    source: Path, sha256: str, length: int, dest: Path, mode: int, what: str
) -> None:
    """Copy ``source`` to the new file ``dest`` (mode ``mode``) only if it hashes to ``sha256``.

    ``dest`` must not exist and is never followed if it is a symlink; on any failure it is
    removed. Not flushed to disk: the caller syncs the whole tree once. Raises :class:`IntegrityError` on a mismatch, ``OSError`` from the filesystem.
    """
    h = hashlib.sha256()
    size = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as out:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
                if size > length:
                    break
                out.write(chunk)
        if size != length or h.hexdigest() != sha256:
            raise IntegrityError(
                what, f"{length} bytes with sha256 {sha256}",
                f"{size}{'+' if size > length else ''} bytes with sha256 {h.hexdigest()}",
            )
        os.chmod(dest, mode)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        raise
