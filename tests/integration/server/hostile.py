"""A hostile upstream on 127.0.0.1: a small real HTTPS server the test starts in a thread.

It serves the files of a directory (a real repository), except the paths told to stream
without end, and records what it sent and the headers each request carried.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

#: one write of an endless answer
CHUNK = 64 * 1024


@attrs.define
class Hostile:
    """What the server did: bytes sent for each path (summed over requests), the requests."""

    port: int = 0
    sent: dict[str, int] = attrs.field(factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = attrs.field(factory=list)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def count(self, path: str, n: int) -> None:
        with self.lock:
            self.sent[path] = self.sent.get(path, 0) + n


@contextmanager
def hostile_upstream(
    cert: Path,
    key: Path,
    root: Path | None = None,
    endless: frozenset[str] = frozenset(),
    *,
    limit: int = 1 << 40,
    status: int = 201,
) -> Iterator[Hostile]:
    """Serve ``root`` over HTTPS, streaming zeros without end (until ``limit`` bytes, or the
    client hangs up) for each path in ``endless``; answer a PUT with ``status``."""
    state = Hostile()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _record(self) -> str:
            path = self.path.lstrip("/")
            with state.lock:
                state.requests.append((self.command, path, dict(self.headers.items())))
            return path

        def do_GET(self) -> None:
            path = self._record()
            if path in endless:
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                zeros = b"0" * CHUNK
                sent = 0
                try:
                    while sent < limit:
                        self.wfile.write(zeros)
                        sent += len(zeros)
                        state.count(path, len(zeros))
                except OSError:
                    pass  # the client hung up: what the test wants
                self.close_connection = True
                return
            file = None if root is None else root / path
            if file is None or not file.is_file():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            state.count(path, len(data))

        def do_PUT(self) -> None:
            self._record()
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
