"""Real servers for the TLS tests: nginx serving a repository, and a fault-injecting TLS proxy.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import requests

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")


def find_nginx() -> str | None:
    for name in NGINX_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def install_nginx() -> str | None:
    """Debian's nginx, installed if missing and we may (root, apt-get). ``None`` if impossible."""
    found = find_nginx()
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nginx"]):
        try:
            subprocess.run(cmd, env=env, capture_output=True, timeout=600, check=True)
        except (subprocess.SubprocessError, OSError):
            return None
    return find_nginx()


def free_ports(count: int) -> list[int]:
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_listening(port: int, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@attrs.frozen
class Site:
    """One nginx ``server`` block: a port, its certificate, and the CA it takes clients from."""

    name: str
    cert: Path
    key: Path
    client_ca: Path
    root: Path
    extra: str = ""


@attrs.define
class Nginx:
    """A running nginx; ``ports`` by site name; ``log`` counts bytes per request."""

    process: subprocess.Popen[bytes]
    directory: Path
    ports: dict[str, int]

    def url(self, site: str) -> str:
        return f"https://127.0.0.1:{self.ports[site]}"

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    def requests_for(self, site: str, uri: str) -> list[tuple[int, str, int]]:
        """``(status, range header, body bytes sent)`` of each logged request for ``uri``."""
        found = []
        port = str(self.ports[site])
        for line in self.access_log.read_text().splitlines():
            p, u, status, rng, sent = line.split(" ")
            if p == port and u == uri:
                found.append((int(status), rng.strip('"'), int(sent)))
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nginx(binary: str, directory: Path, sites: list[Site]) -> Nginx | str:
    """Start nginx with one TLS server block per site. Returns the server, or why it failed."""
    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    ports = dict(zip([s.name for s in sites], free_ports(len(sites)), strict=True))
    blocks = []
    for site in sites:
        blocks.append(f"""
    server {{
        listen 127.0.0.1:{ports[site.name]} ssl;
        ssl_certificate {site.cert};
        ssl_certificate_key {site.key};
        ssl_client_certificate {site.client_ca};
        ssl_verify_client on;
        root {site.root};
        location / {{ {site.extra} }}
    }}""")
    user = "user root;" if os.geteuid() == 0 else ""
    conf = f"""
{user}
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format counted '$server_port $uri $status "$http_range" $body_bytes_sent';
    access_log {directory}/access.log counted;
    client_body_temp_path {directory}/tmp/body;
    proxy_temp_path {directory}/tmp/proxy;
    fastcgi_temp_path {directory}/tmp/fastcgi;
    uwsgi_temp_path {directory}/tmp/uwsgi;
    scgi_temp_path {directory}/tmp/scgi;
    default_type application/octet-stream;
    keepalive_requests 100000;
    ssl_protocols TLSv1.2 TLSv1.3;
    {"".join(blocks)}
}}
"""
    (directory / "nginx.conf").write_text(conf)
    process = subprocess.Popen(
        [binary, "-p", str(directory), "-c", str(directory / "nginx.conf"),
         "-e", str(directory / "error.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    server = Nginx(process, directory, ports)
    for port in ports.values():
        if not wait_listening(port):
            server.stop()
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            log = directory / "error.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            return f"nginx did not start: {err.strip()} {tail.strip()}"
    return server


class FaultProxy:
    """A TLS server (client certificates required, from ``client_ca``) relaying to an upstream
    nginx, with a fault chosen by ``mode``:

    ``pass``; ``503`` (answers 503); ``404``; ``trickle`` (the body at one byte per 0.2 s);
    ``cut`` (half the body, then the connection closes); ``corrupt`` (every byte of the body
    flipped, same length); ``stall`` (accepts, never answers, not even the TLS handshake).
    ``sent`` counts body bytes sent per path.
    """

    def __init__(
        self,
        cert: Path,
        key: Path,
        client_ca: Path,
        upstream: str,
        upstream_tls: tuple[Path, Path, Path],
        mode: str = "pass",
    ) -> None:
        self.mode = mode
        self.upstream = upstream
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx = ctx
        ca, ucert, ukey = upstream_tls
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(ca)
        self.session.cert = (str(ucert), str(ukey))
        self.sent: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._closing = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closing = True
        self.sock.close()

    def _serve(self) -> None:
        while not self._closing:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        if self.mode == "stall":
            time.sleep(10)
            raw.close()
            return
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as tls:
                self._exchange(tls)
        except (OSError, ssl.SSLError, requests.RequestException):
            pass
        finally:
            raw.close()

    def _exchange(self, tls: ssl.SSLSocket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = tls.recv(4096)
            if not data:
                return
            head += data
        lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        _method, path, _version = lines[0].split(" ")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        rng = headers.get("Range", "")
        with self._lock:
            self.requests.append((path, rng))
        mode = self.mode
        if mode in ("503", "404"):
            reason = "Service Unavailable" if mode == "503" else "Not Found"
            tls.sendall(
                f"HTTP/1.1 {mode} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .encode()
            )
            return
        up = self.session.get(
            self.upstream + path, headers={"Range": rng} if rng else {}, stream=True, timeout=10
        )
        with up:
            out = [f"HTTP/1.1 {up.status_code} {up.reason}"]
            for name in ("Content-Length", "Content-Range", "Content-Type"):
                if name in up.headers:
                    out.append(f"{name}: {up.headers[name]}")
            out.append("Connection: close")
            tls.sendall(("\r\n".join(out) + "\r\n\r\n").encode())
            body = up.raw.stream(65536, decode_content=False)
            total = int(up.headers.get("Content-Length", "0"))
            self._send_body(tls, path, body, total, mode)

    def _send_body(
        self, tls: ssl.SSLSocket, path: str, body: Iterator[bytes], total: int, mode: str
    ) -> None:
        sent = 0
        for chunk in body:
            if mode == "corrupt":
                chunk = bytes(b ^ 0xFF for b in chunk)
            if mode == "cut" and sent + len(chunk) > total // 2:
                chunk = chunk[: total // 2 - sent]
                tls.sendall(chunk)
                self._count(path, len(chunk))
                return
            if mode == "trickle":
                for i in range(len(chunk)):
                    tls.sendall(chunk[i : i + 1])
                    self._count(path, 1)
                    time.sleep(0.2)
                continue
            tls.sendall(chunk)
            self._count(path, len(chunk))
            sent += len(chunk)

    def _count(self, path: str, n: int) -> None:
        with self._lock:
            self.sent[path] = self.sent.get(path, 0) + n
