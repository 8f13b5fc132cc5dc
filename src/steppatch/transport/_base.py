from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol
from urllib.parse import unquote, urlsplit

from steppatch.errors import ConfigError, TooLarge

__all__ = ["Fetcher", "fetch_bytes", "fetcher_for"]


class Fetcher(Protocol):
    """One repository location (a directory, a server)."""

    @property
    def url(self) -> str:
        """Where this fetcher reads from, for messages."""
        ...

    def fetch(self, path: str) -> Iterator[bytes]:
        """Yield the bytes of the file at ``path`` (a safe relative path) in chunks.

        Raises :class:`~steppatch.errors.MissingFile` when there is no such file and
        :class:`~steppatch.errors.NetworkError` when the location cannot be read.
        """
        ...


def fetch_bytes(fetcher: Fetcher, path: str, max_length: int, what: str) -> bytes:
    """The whole file at ``path``, refusing (:class:`TooLarge`) past ``max_length`` bytes."""
    parts: list[bytes] = []
    size = 0
    for chunk in fetcher.fetch(path):
        size += len(chunk)
        if size > max_length:
            raise TooLarge(what, max_length)
        parts.append(chunk)
    return b"".join(parts)


def fetcher_for(url: str) -> Fetcher:
    """The default fetcher for a repository URL.

    Raises :class:`ConfigError` for a URL steppatch cannot read from.
    """
    from steppatch.transport._file import FileFetcher

    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(url, "a file:// URL must name a local directory")
        return FileFetcher(unquote(parts.path))
    raise ConfigError(url, "unsupported URL: this version reads repositories from file:// URLs")
