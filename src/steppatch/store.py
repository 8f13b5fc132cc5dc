"""The content-addressed object store: file content kept under its sha256.

Every object is verified as it is written (its hash and exact length) and again as it is used
(copied out), so a corrupted cache entry is detected, removed and fetched anew rather than
installed (invariant 1: nothing unverified is used).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from steppatch._fs import temp_path
from steppatch.errors import IntegrityError, LockedError, TooLarge

__all__ = ["ObjectStore", "PartialObject", "copy_verified", "hash_file"]

#: partial downloads live here, under the store's root; never a two-hex-digit name, so never an
#: object directory
PARTIAL_DIR = ".partial"

_CHUNK = 256 * 1024
#: never follow a link, never block on a fifo
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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
        #: objects stored by this process since :meth:`forget_added` (see :meth:`move_out`)
        self.added: set[str] = set()

    def forget_added(self) -> None:
        """Start a new run: objects stored so far no longer count as :attr:`added`."""
        self.added.clear()

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
        # A name of its own (not one per process): two threads may add the same object at once.
        tmp = temp_path(final)
        h = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "xb") as f:
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
            self.added.add(sha256)
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

    def partial_path(self, sha256: str) -> Path:
        """Where the partial download of object ``sha256`` lives (never used as an object)."""
        return self.root / PARTIAL_DIR / sha256

    def open_partial(self, sha256: str, length: int, what: str) -> PartialObject:
        """Continue (or start) the download of object ``sha256``; see :class:`PartialObject`.

        The bytes kept from an earlier, interrupted download are hashed again now (one read of
        the prefix), since a hash state cannot be saved. Raises :class:`LockedError` when another
        process is writing the same partial file, ``OSError`` from the filesystem.
        """
        return PartialObject(self, sha256, length, what)

    def copy_out(self, sha256: str, length: int, dest: Path, mode: int) -> None:
        """Write object ``sha256`` to the new file ``dest`` with ``mode``, verifying as it copies.

        A stored object whose bytes do not match is removed and :class:`IntegrityError` raised.
        """
        try:
            copy_verified(self.path(sha256), sha256, length, dest, mode, f"cached object {sha256}")
        except IntegrityError:
            self.remove(sha256)
            raise

    def move_out(self, sha256: str, length: int, dest: Path, mode: int) -> bool:
        """Move object ``sha256`` to the new file ``dest`` with ``mode``, verified: the bytes are
        not copied, and the object leaves the store.

        For an object stored for the tree being built and used once by it: writing it again
        would double the bytes an upgrade writes. ``dest`` then has an inode of its own (the
        store keeps no name for it), so nothing an operator does to the file reaches the store.
        Returns ``False``, doing nothing, when the object cannot be moved (not stored, linked
        elsewhere too, another filesystem): the caller copies it then. A damaged object is
        removed and :class:`IntegrityError` raised. Not flushed: the caller syncs the whole tree
        once. Raises ``OSError`` from the filesystem (``FileExistsError`` if ``dest`` exists).
        """
        source = self.path(sha256)
        try:
            fd = os.open(source, _OPEN_FILE)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size != length:
                return False  # copy_out then says what is wrong with it, if anything
            # link + unlink, not rename: rename would silently replace an existing dest.
            try:
                os.link(source, dest, follow_symlinks=False)
            except OSError as e:
                if e.errno == errno.EXDEV:
                    return False
                raise
            os.unlink(source)
            digest, size = _hash_fd(fd)
            if (digest, size) != (sha256, length):
                os.unlink(dest)
                raise IntegrityError(
                    f"cached object {sha256}", f"{length} bytes with sha256 {sha256}",
                    f"{size} bytes with sha256 {digest}",
                )
            os.fchmod(fd, mode)
            return True
        finally:
            os.close(fd)

    def adopt(self, source: Path, sha256: str | None = None, length: int | None = None) -> bool:
        """Move the file ``source`` into the store as the object it holds, if that is ``sha256``
        and ``length`` (when given; hashed now, either way) and no other name links to it.

        The reverse of :meth:`move_out`: a file a tree no longer needs becomes a cached object
        again, without copying. Returns whether it was taken; a file that differs, is linked
        elsewhere, is already stored or lies on another filesystem is left where it is.
        Raises ``OSError`` from the filesystem.
        """
        try:
            fd = os.open(source, _OPEN_FILE)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                return False
            if length is not None and st.st_size != length:
                return False
            if sha256 is not None and self.has(sha256):
                return False
            digest, _size = _hash_fd(fd)
            if sha256 is not None and digest != sha256:
                return False
            final = self.path(digest)
            if final.exists():
                return False
            final.parent.mkdir(parents=True, exist_ok=True)
            os.fchmod(fd, 0o444)
            try:
                os.link(source, final, follow_symlinks=False)
            except FileExistsError:
                return False
            except OSError as e:
                if e.errno == errno.EXDEV:
                    return False
                raise
            os.unlink(source)
            return True
        finally:
            os.close(fd)


def _hash_fd(fd: int) -> tuple[str, int]:
    """The sha256 hex digest and length of ``fd``'s content, from its start."""
    os.lseek(fd, 0, os.SEEK_SET)
    h = hashlib.sha256()
    size = 0
    while chunk := os.read(fd, _CHUNK):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


class PartialObject:
    """An object being downloaded: bytes appended to a partial file, verified as a whole.

    ``offset`` is how many bytes are held already (from an interrupted run), so a download
    resumes with an HTTP Range from there. The partial file is never an object: :meth:`finish`
    checks the length and the hash of the whole and only then moves it into place (invariant 1).
    Bytes are written without user-space buffering, so a process killed with SIGKILL leaves
    every byte it accepted in the partial file. Use as a context manager; leaving it without
    :meth:`finish` keeps the partial file for the next run.
    """

    def __init__(self, store: ObjectStore, sha256: str, length: int, what: str) -> None:
        self.store = store
        self.sha256 = sha256
        self.length = length
        self.what = what
        self.path = store.partial_path(sha256)
        self._hash = hashlib.sha256()
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
        try:
            fd = os.open(self.path, flags, 0o600)
        except FileNotFoundError:
            # the first partial file: make the directory (one syscall less for every later one)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, flags, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise LockedError(str(self.path)) from None
                raise
            self._file = os.fdopen(fd, "r+b", buffering=0)
        except BaseException:
            os.close(fd)
            raise
        try:
            self.offset = self._rehash_prefix()
        except BaseException:
            self._file.close()
            raise

    def _rehash_prefix(self) -> int:
        size = os.fstat(self._file.fileno()).st_size
        if size > self.length:
            # Longer than the object can be: not a prefix of it. Start again.
            self._file.truncate(0)
            size = 0
        done = 0
        while done < size:
            chunk = self._file.read(min(_CHUNK, size - done))
            if not chunk:
                break
            self._hash.update(chunk)
            done += len(chunk)
        self._file.seek(done)
        if done < size:
            # Only when needed: on ext4 a truncate makes the next close() allocate (and start
            # writing) every block of the file, which costs a large download ~15%.
            self._file.truncate(done)
        return done

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``. Raises :class:`TooLarge` (the partial file is then removed)."""
        if self.offset + len(chunk) > self.length:
            self.discard()
            raise TooLarge(self.what, self.length)
        self._file.write(chunk)
        self._hash.update(chunk)
        self.offset += len(chunk)

    @property
    def complete(self) -> bool:
        """Whether all ``length`` bytes are held (not yet whether they are right)."""
        return self.offset == self.length

    def finish(self) -> Path:
        """Verify the whole object and store it. The partial file is gone afterwards either way.

        Raises :class:`IntegrityError` (nothing stored) when the bytes are short or hash
        otherwise.
        """
        digest = self._hash.hexdigest()
        if self.offset != self.length or digest != self.sha256:
            self.discard()
            raise IntegrityError(
                self.what,
                f"{self.length} bytes with sha256 {self.sha256}",
                f"{self.offset} bytes with sha256 {digest}",
            )
        final = self.store.path(self.sha256)
        if self.store.durable:
            os.fsync(self._file.fileno())
        os.fchmod(self._file.fileno(), 0o444)
        try:
            os.replace(self.path, final)
        except FileNotFoundError:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, final)
        self.store.added.add(self.sha256)
        self._file.close()
        return final

    def discard(self) -> None:
        """Drop the bytes held (they failed verification or will be fetched again)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._file.close()
        self._hash = hashlib.sha256()
        self.offset = 0

    def close(self) -> None:
        """Stop writing, keeping the partial file for a later resume (if it holds anything)."""
        if self._file.closed:
            return
        if self.offset == 0:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._file.close()

    def __enter__(self) -> PartialObject:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def copy_verified(
    source: Path, sha256: str, length: int, dest: Path, mode: int, what: str
) -> None:
    """Copy ``source`` to the new file ``dest`` (mode ``mode``) only if it hashes to ``sha256``.

    ``dest`` must not exist and is never followed if it is a symlink; on any failure it is
    removed. Not flushed to disk: the caller syncs the whole tree once. Raises
    :class:`IntegrityError` on a mismatch, ``OSError`` from the filesystem.
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
