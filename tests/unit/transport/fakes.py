"""An in-memory mirror implementing the Fetcher protocol, with the faults the real ones have."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from steppatch.errors import MissingFile
from steppatch.transport import (
    ConnectionFailed,
    HttpStatusError,
    ObjectRequest,
    TimedOut,
    TlsError,
    TlsProblem,
)

CHUNK = 1000


def objects(count: int, size: int, seed: int = 0) -> dict[str, bytes]:
    """``count`` distinct objects of ``size`` bytes, by repository path."""
    files = {}
    for i in range(count):
        data = hashlib.sha256(f"{seed}-{i}".encode()).digest() * (size // 32 + 1)
        data = data[:size]
        sha = hashlib.sha256(data).hexdigest()
        files[f"objects/{sha[:2]}/{sha}"] = data
    return files


def requests_for(files: dict[str, bytes]) -> list[ObjectRequest]:
    return [
        ObjectRequest(path, hashlib.sha256(data).hexdigest(), len(data))
        for path, data in sorted(files.items())
    ]


class FakeMirror:
    """Serves ``files``; ``fault`` makes it fail the way a real mirror does.

    Faults: ``refuse``, ``timeout``, ``503``, ``404`` (every file), ``tls``, ``corrupt`` (same
    length, one byte flipped), ``long`` (one byte too many), ``cut`` (half, then the connection
    breaks; ``cut_once`` only the first time).
    """

    def __init__(self, name: str, files: dict[str, bytes], fault: str = "") -> None:
        self.name = name
        self.files = files
        self.fault = fault
        self.calls: list[tuple[str, int]] = []
        self.sent = 0

    @property
    def url(self) -> str:
        return f"https://{self.name}.test"

    def fetch(self, path: str, offset: int = 0) -> Iterator[bytes]:
        self.calls.append((path, offset))
        url = f"{self.url}/{path}"
        if self.fault == "refuse":
            raise ConnectionFailed(url, "refused")
        if self.fault == "timeout":
            raise TimedOut(url, "read", 1.0)
        if self.fault == "503":
            raise HttpStatusError(url, 503, "Service Unavailable")
        if self.fault == "tls":
            raise TlsError(url, TlsProblem.SERVER_UNTRUSTED, "test")
        if self.fault == "404" or path not in self.files:
            raise MissingFile(url)
        data = self.files[path][offset:]
        if self.fault == "corrupt" and data:
            data = bytes([data[0] ^ 1]) + data[1:]
        if self.fault == "long":
            data += b"!"
        cut = self.fault in ("cut", "cut_once")
        end = len(data) // 2 if cut else len(data)
        for i in range(0, end, CHUNK):
            chunk = data[i : min(i + CHUNK, end)]
            self.sent += len(chunk)
            yield chunk
        if cut:
            if self.fault == "cut_once":
                self.fault = ""
            raise ConnectionFailed(url, f"broke off after {end} bytes")
