from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from steppatch.errors import MissingFile, NetworkError
from steppatch.paths import safe_relpath

__all__ = ["FileFetcher"]

_CHUNK = 256 * 1024


class FileFetcher:
    """Reads a repository from a local directory (a ``file://`` URL, a mounted share)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def url(self) -> str:
        return self.root.as_uri() if self.root.is_absolute() else str(self.root)

    def fetch(self, path: str, offset: int = 0) -> Iterator[bytes]:
        """Yield the file's bytes from ``offset`` on. Raises :class:`MissingFile` or
        :class:`NetworkError`."""
        target = self.root / safe_relpath(path)
        try:
            # O_NOFOLLOW on the last component: a repository file is never a symlink
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            raise MissingFile(f"{self.url}/{path}") from None
        except OSError as e:
            raise NetworkError(f"{self.url}/{path}", e.strerror or str(e)) from e
        with os.fdopen(fd, "rb") as f:
            try:
                if offset:
                    f.seek(offset)
                while chunk := f.read(_CHUNK):
                    yield chunk
            except OSError as e:
                raise NetworkError(f"{self.url}/{path}", e.strerror or str(e)) from e
