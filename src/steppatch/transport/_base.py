from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from steppatch.errors import ConfigError, TooLarge
from steppatch.transport._limits import DEFAULT_TRANSPORT_LIMITS, TransportLimits

if TYPE_CHECKING:
    from steppatch.transport._https import TlsConfig

__all__ = ["Fetcher", "fetch_bytes", "fetch_capped", "fetcher_for"]


class Fetcher(Protocol):
    """One repository location (a directory, a server)."""

    @property
    def url(self) -> str:
        """Where this fetcher reads from, for messages."""
        ...

    def fetch(self, path: str, offset: int = 0) -> Iterator[bytes]:
        """Yield the bytes of the file at ``path`` (a safe relative path) in chunks, starting
        ``offset`` bytes in (to resume an interrupted download).

        Raises :class:`~steppatch.errors.MissingFile` when there is no such file and
        :class:`~steppatch.errors.NetworkError` when the location cannot be read.
        """
        ...


def fetch_capped(
    fetcher: Fetcher, path: str, max_length: int, what: str, offset: int = 0
) -> Iterator[bytes]:
    """The chunks of the file at ``path`` from ``offset`` on, stopping as soon as the file
    (counted from its start, so ``offset`` included) passes ``max_length`` bytes.

    The one cap every read of a remote file goes through: the chunk that would pass the cap is
    not yielded, and the fetcher's generator is closed (its connection with it), so no more
    than one chunk beyond the cap is ever received. Raises :class:`TooLarge` (``what``,
    ``max_length``), and what ``fetcher.fetch`` raises.
    """
    size = offset
    chunks = fetcher.fetch(path, offset)
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > max_length:
                raise TooLarge(what, max_length)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def fetch_bytes(fetcher: Fetcher, path: str, max_length: int, what: str) -> bytes:
    """The whole file at ``path``, refusing (:class:`TooLarge`) past ``max_length`` bytes,
    while reading (:func:`fetch_capped`)."""
    return b"".join(fetch_capped(fetcher, path, max_length, what))


def fetcher_for(
    url: str,
    tls: TlsConfig | None = None,
    limits: TransportLimits = DEFAULT_TRANSPORT_LIMITS,
) -> Fetcher:
    """The default fetcher for a repository URL: ``file://`` or ``https://`` (which needs ``tls``,
    the private CA it is pinned to and the client certificate).

    Raises :class:`ConfigError` for a URL steppatch cannot read from, and what
    :class:`~steppatch.transport.HttpsFetcher` raises for unusable certificates.
    """
    from steppatch.transport._file import FileFetcher
    from steppatch.transport._https import HttpsFetcher

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsed on access: raises ValueError for a bad port
    except ValueError as e:  # "https://[": Invalid IPv6 URL
        raise ConfigError(url, f"not a URL steppatch can read from ({e})") from e
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(url, "a file:// URL must name a local directory")
        return FileFetcher(unquote(parts.path))
    if parts.scheme == "https":
        if tls is None:
            raise ConfigError(url, "an https:// mirror needs the private CA it is pinned to (--ca)")
        return HttpsFetcher(url, tls, limits)
    if parts.scheme == "http":
        raise ConfigError(url, "plain http is not supported: use https:// with a private CA")
    raise ConfigError(url, "unsupported URL: expected file:// or https://")
