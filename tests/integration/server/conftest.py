"""Real processes on 127.0.0.1: origins and mirrors (``steppatch mirror serve``), nginx, homes.

Every server gets ports chosen by the kernel (``listen = "127.0.0.1:0"``) and reports them on its
first stdout line; every process is stopped at teardown (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import requests

from steppatch import Home, Repository, pki
from steppatch.transport import HttpsFetcher, TlsConfig
from tests.integration.tls.servers import install_nginx

START_TIMEOUT = 20.0


@attrs.frozen
class Pki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path

    def client(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"


def _write(path: Path, kc: pki.KeyAndCert) -> tuple[Path, Path]:
    cert, key = path.with_suffix(".crt"), path.with_suffix(".key")
    cert.write_bytes(kc.cert_pem)
    key.write_bytes(kc.key_pem)
    key.chmod(0o600)
    return cert, key


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA; a server certificate for 127.0.0.1; clients ``prod-eu``, ``test-eu``,
    ``your-mirror``; ``stranger`` from another CA; ``expired`` (expired yesterday)."""
    d = tmp_path_factory.mktemp("pki")
    ca = pki.make_ca()
    (d / "ca.crt").write_bytes(ca.cert_pem)
    server_cert, server_key = _write(d / "server", pki.issue_server_cert(ca, ["127.0.0.1"]))
    for name in ("prod-eu", "test-eu", "your-mirror"):
        _write(d / name, pki.issue_client_cert(ca, name))
    other = pki.make_ca("another CA")
    _write(d / "stranger", pki.issue_client_cert(other, "prod-eu"))
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    _write(d / "expired", pki.issue_client_cert(ca, "prod-eu", days=1, now=past))
    return Pki(d, d / "ca.crt", server_cert, server_key)


def make_component(dest: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A component source directory with ``files``."""
    src = dest / f"{name}-{version}"
    (src / "files").mkdir(parents=True)
    (src / "component.toml").write_text(f'name = "{name}"\nversion = "{version}"\n')
    for rel, data in files.items():
        target = src / "files" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return src


def blob(size: int, seed: int) -> bytes:
    """``size`` pseudo-random bytes (incompressible, reproducible)."""
    import random

    return random.Random(seed).randbytes(size)


@pytest.fixture
def repo(examples_repo: Repository) -> Repository:
    """The example components, published."""
    return examples_repo


def object_path(sha256: str) -> str:
    return f"objects/{sha256[:2]}/{sha256}"


def sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


class Server:
    """One ``steppatch mirror serve`` process."""

    def __init__(self, config: Path, proc: subprocess.Popen[str], ready: dict[str, str]) -> None:
        self.config = config
        self.proc = proc
        self.listen = ready["listen"]
        self.admin_listen = ready["admin_listen"]

    @property
    def url(self) -> str:
        return f"https://{self.listen}"

    def admin(self, path: str, method: str = "GET", token: str | None = None) -> Any:
        """Ask the admin port; a POST sends ``{}`` as JSON (what ``POST /sync`` takes)."""
        data = b"{}" if method == "POST" else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            f"http://{self.admin_listen}{path}", data, headers, method=method
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            body = r.read()
        return json.loads(body) if path != "/metrics" else body.decode()

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("/health")
        return result

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the series of ``steppatch_server_NAME`` whose labels include ``labels``."""
        total = 0.0
        for line in self.admin("/metrics").splitlines():
            if line.startswith("#") or not line.startswith(f"steppatch_server_{name}"):
                continue
            series, value = line.rsplit(" ", 1)
            if series.split("{")[0] != f"steppatch_server_{name}":
                continue
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def mirror_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "steppatch_cli", "mirror", *args]


class Servers:
    """Starts servers from config dicts; stops them all at teardown."""

    def __init__(self, tmp: Path, certs: Pki) -> None:
        self.tmp = tmp
        self.certs = certs
        self.started: list[Server] = []
        self.count = 0

    def write_config(self, name: str, **fields: Any) -> Path:
        self.count += 1
        d = self.tmp / f"{name}-{self.count}"
        d.mkdir()
        base: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "admin_listen": "127.0.0.1:0",
            "store": str(d / "store"),
            "access_log": str(d / "access.log"),
            "tls": {
                "cert": str(self.certs.server_cert),
                "key": str(self.certs.server_key),
                "client_ca": str(self.certs.ca),
            },
        }
        base.update(fields)
        config = d / "mirror.toml"
        config.write_text(_toml(base))
        return config

    def start(self, config: Path) -> Server:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # stderr to a file: a pipe nobody drains would block the server once full.
        with open(config.parent / "stderr.log", "a") as stderr:
            proc = subprocess.Popen(
                mirror_cli("serve", "--config", str(config)),
                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
            )
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line or proc.poll() is not None:
                break
        if not line.startswith("{"):
            proc.kill()
            proc.communicate(timeout=5)
            err = (config.parent / "stderr.log").read_text()
            raise AssertionError(f"server did not start: {line!r} {err}")
        server = Server(config, proc, json.loads(line))
        self.started.append(server)
        return server

    def origin(self, repository: Path, **fields: Any) -> Server:
        return self.start(self.write_config("origin", origin={"repository": str(repository)},
                                            **fields))

    def mirror(self, upstreams: list[Server] | list[str], trusted_root: Path,
               **fields: Any) -> Server:
        ups = []
        for i, u in enumerate(upstreams):
            url = u.url if isinstance(u, Server) else u
            ups.append({"id": f"up{i}", "url": url, "priority": 100 - i})
        mirror_cert, mirror_key = self.certs.client("your-mirror")
        fields.setdefault("download", "ON_DEMAND")
        fields.setdefault("metadata_max_age_s", 0)
        fields.setdefault("upstream_retry_s", 2)
        fields.setdefault("upstream_connect_timeout_s", 2)
        config = self.write_config(
            "mirror",
            trusted_root=str(trusted_root),
            upstreams=ups,
            upstream_tls={"cert": str(mirror_cert), "key": str(mirror_key),
                          "ca": str(self.certs.ca)},
            **fields,
        )
        return self.start(config)

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()
            if server.proc.stdout is not None:
                server.proc.stdout.close()


def _toml(value: dict[str, Any]) -> str:
    """Just enough TOML for these configs: scalars, tables, arrays of tables."""
    lines: list[str] = []
    tables: list[str] = []
    for key, v in value.items():
        if isinstance(v, dict):
            tables.append(f"[{key}]")
            tables += [f"{k} = {json.dumps(x)}" for k, x in v.items()]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                tables.append(f"[[{key}]]")
                tables += [f"{k} = {json.dumps(x)}" for k, x in item.items()]
        else:
            lines.append(f"{key} = {json.dumps(v)}")
    return "\n".join(lines + tables) + "\n"


@pytest.fixture
def servers(tmp_path: Path, certs: Pki) -> Iterator[Servers]:
    s = Servers(tmp_path, certs)
    try:
        yield s
    finally:
        s.stop_all()


def client(certs: Pki, name: str = "prod-eu") -> requests.Session:
    """A requests session with a client certificate, pinned to the test CA."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(certs.ca)
    session.cert = tuple(str(p) for p in certs.client(name))  # type: ignore[assignment]
    session.headers["Accept-Encoding"] = "identity"
    return session


def https_home(path: Path, server: Server, repo: Repository, certs: Pki,
               name: str = "prod-eu") -> Home:
    """A home that reads ``server`` over HTTPS with the library's own fetcher."""
    cert, key = certs.client(name)
    fetcher = HttpsFetcher(server.url, TlsConfig(certs.ca, cert, key))
    return Home.init(path, updates=server.url, root=(repo.root / "root.json").read_bytes(),
                     system=name, fetcher=fetcher)


def access_log(server: Server) -> list[dict[str, Any]]:
    log = server.config.parent / "access.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def store_objects(store: Path) -> dict[str, bytes]:
    """Every file in a mirror's content store (not partial fills)."""
    objects = store / "objects"
    return {
        f.name: f.read_bytes()
        for sub in objects.iterdir() if len(sub.name) == 2
        for f in sub.iterdir() if not f.name.startswith(".")
    } if objects.is_dir() else {}


def copy_repo(repo: Repository, dest: Path) -> Path:
    shutil.copytree(repo.root, dest)
    return dest


def changed(result: Any) -> set[str]:
    """The names of components an apply changed (from a Plan or an ApplyReport)."""
    plan = getattr(result, "plan", result)
    return {c.name for c in plan.changes}


def tree(root: Path) -> dict[str, bytes]:
    """The managed tree of a home: relative path -> content (b"" for directories)."""
    base = root / "current"
    return {
        str(p.relative_to(base)): (p.read_bytes() if p.is_file() else b"")
        for p in sorted(base.rglob("*"))
    }


def raw_get(server: Server, certs: Pki, path: str, name: str = "prod-eu",
            headers: str = "") -> tuple[int, bytes]:
    """One request with the path exactly as given (no client-side normalisation)."""
    import socket
    import ssl

    host, port = server.listen.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ctx.load_cert_chain(*certs.client(name))
    with socket.create_connection((host, int(port)), timeout=10) as sock, ctx.wrap_socket(
        sock, server_hostname=host
    ) as tls:
        tls.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
            .encode()
        )
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        root {root};
        location ~ /\\. {{ return 404; }}
        location / {{ try_files $uri =404; }}
    }}
}}
"""


class Nginx:
    """nginx serving a directory over HTTPS with client certificates required."""

    def __init__(self, d: Path, root: Path, certs: Pki) -> None:
        self.d = d
        self.port = free_port()
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "nginx.conf"
        conf.write_text(NGINX_CONF.format(
            user="user root;" if os.geteuid() == 0 else "", d=d, port=self.port,
            cert=certs.server_cert, key=certs.server_key, ca=certs.ca, root=root,
        ))
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(d)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import socket

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(up, timeout=10)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def requests_for(self, path: str) -> int:
        log = self.d / "access.log"
        return sum(f"GET /{path} " in line for line in log.read_text().splitlines())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def nginx_factory(tmp_path: Path, certs: Pki) -> Iterator[Any]:
    if install_nginx() is None:
        pytest.skip("nginx is not installed and cannot be installed here (needs root, apt-get)")
    started: list[Nginx] = []

    def start(root: Path) -> Nginx:
        n = Nginx(tmp_path / f"nginx-{len(started)}", root, certs)
        started.append(n)
        return n

    try:
        yield start
    finally:
        for n in started:
            n.stop()
