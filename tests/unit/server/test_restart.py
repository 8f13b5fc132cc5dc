"""The restart helpers' pieces that need no server process: the admin port's health probe and
the store lock's holder (the restart itself: tests/integration/test_self_update.py)."""

from __future__ import annotations

import fcntl
import http.server
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from steppatch import selfupdate, server
from steppatch.server.config import Address


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/health" else 404
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/health")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def admin() -> Iterator[tuple[http.server.HTTPServer, type[_Health]]]:
    handler = type("Handler", (_Health,), {})
    httpd = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, handler
    httpd.shutdown()
    httpd.server_close()


def test_health_is_the_admin_port_answering_200(
    admin: tuple[http.server.HTTPServer, type[_Health]],
) -> None:
    httpd, handler = admin
    port = httpd.server_address[1]
    assert server.admin_health(Address("127.0.0.1", port))()
    assert server.admin_health(Address("0.0.0.0", port))()  # a wildcard is asked on loopback
    handler.status = 503
    assert not server.admin_health(Address("127.0.0.1", port))()
    handler.status = 302  # a redirect is not followed: not healthy
    assert not server.admin_health(Address("127.0.0.1", port))()


def test_health_of_a_closed_port_and_of_a_kernel_chosen_one() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert not server.admin_health(Address("127.0.0.1", closed), timeout=1.0)()
    assert server.admin_health(Address("127.0.0.1", 0))()  # nothing to ask


def test_the_restart_names_stay_importable_from_selfupdate() -> None:
    for name in ("RestartOnHangup", "ServerRestart", "RestartFailed", "lock_holder",
                 "restart_server", "GENERATION_VARIABLE"):
        assert getattr(selfupdate, name) is getattr(server, name), name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_restart_of_a_store_nobody_serves_is_none(tmp_path: Path) -> None:
    if signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN):
        pytest.skip("this process catches SIGHUP: it would be signalled")
    lock = tmp_path / ".lock"
    lock.touch()
    assert server.restart_server(lock, lambda: True, timeout=1.0) is None
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held by this process, which does not catch SIGHUP
        with pytest.raises(server.RestartFailed) as caught:
            server.restart_server(lock, lambda: True, timeout=1.0)
        assert caught.value.pid == os.getpid() and "cannot restart in place" in str(caught.value)
    finally:
        os.close(fd)
