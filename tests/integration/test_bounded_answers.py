"""Answers that are not repository files are bounded too (issue 14, item 4): a cluster node's
answer over ssh (its stdout), and the JSON of a mirror's admin port."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from steppatch.cluster import SshNode
from steppatch.cluster._core import Location
from steppatch.errors import NodeError, TooLarge
from steppatch.limits import Limits
from steppatch.server import parse_config
from steppatch.server._ops import _admin
from steppatch.transport import DEFAULT_TRANSPORT_LIMITS

# What a hostile node (or a broken remote shell) writes: far beyond the limit.
FLOOD = 200 * 1024 * 1024


def node(tmp_path: Path, script: str, limit: int) -> SshNode:
    """A node whose "ssh" client is a local shell script: it ignores the ssh arguments and
    plays the node."""
    fake_ssh = tmp_path / "fake-ssh.sh"
    fake_ssh.write_text(script)
    return SshNode("n1", Location(str(tmp_path), "127.0.0.1"), ssh=f"sh {fake_ssh}",
                   limits=Limits(max_node_answer_bytes=limit))


def test_node_answer_over_the_limit_is_cut_off(tmp_path: Path) -> None:
    limit = 64 * 1024
    flood = node(tmp_path, f"head -c {FLOOD} /dev/zero\n", limit)
    started = time.monotonic()
    with pytest.raises(NodeError) as caught:
        flood.status()
    assert caught.value.node == "n1"
    assert caught.value.exit_code == NodeError.exit_code
    assert caught.value.problem == f"answered more than {limit} bytes (max_node_answer_bytes)"
    # Killed at the limit, not read to the end (200 MiB through a pipe takes far longer).
    assert time.monotonic() - started < 10


def test_node_stderr_flood_keeps_its_last_error_line(tmp_path: Path) -> None:
    script = (f"head -c {FLOOD // 20} /dev/zero | tr '\\0' x >&2\n"
              "echo >&2\necho 'error: the real reason' >&2\nexit 5\n")
    flood = node(tmp_path, script, 64 * 1024)
    with pytest.raises(NodeError) as caught:
        flood.status()
    assert (caught.value.problem, caught.value.exit_code) == ("the real reason", 5)


def test_node_answer_within_the_limit_is_read(tmp_path: Path) -> None:
    answer = ('{"format": "steppatch-node/1", "versions": {"app": "1.0"}, '
              '"environment": "e", "fingerprint": "f"}')
    ok = node(tmp_path, f"cat >/dev/null\necho '{answer}'\n", 64 * 1024)
    status = ok.status()
    assert {n: str(v) for n, v in status.versions.items()} == {"app": "1.0"}


@pytest.fixture
def endless_admin() -> Iterator[tuple[int, list[int]]]:
    """A plain HTTP server on 127.0.0.1 answering every request with an endless body."""
    sent = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            try:
                while sent[0] < FLOOD:
                    self.wfile.write(b" " * 65536)
                    sent[0] += 65536
            except OSError:
                pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], sent
    finally:
        server.shutdown()
        server.server_close()


def test_admin_answer_over_the_limit_is_refused(
    tmp_path: Path, endless_admin: tuple[int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, sent = endless_admin
    # A proxy in the environment must not carry a request for the local admin port elsewhere.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    text = ('store = "s"\ntrusted_root = "r.json"\n'
            f'admin_listen = "127.0.0.1:{port}"\n'
            '[tls]\ncert = "a"\nkey = "b"\nclient_ca = "c"\n'
            '[[upstreams]]\nid = "u0"\nurl = "file:///nowhere"\n')
    config = parse_config(text.encode(), "m.toml", tmp_path)
    limit = DEFAULT_TRANSPORT_LIMITS.max_answer_bytes
    with pytest.raises(TooLarge) as caught:
        _admin(config, "GET", "/health", 5.0)
    assert caught.value.limit == limit
    assert caught.value.what == f"the answer of http://127.0.0.1:{port}/health"
    time.sleep(0.5)
    assert sent[0] < limit + 16 * 1024 * 1024  # the reader stopped; the server was not read
