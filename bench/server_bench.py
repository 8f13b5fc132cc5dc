"""The updates server against nginx, serving the same repository files over mutual TLS, in one run.

    .venv/bin/python bench/server_bench.py [--size-mib 512] [--runs 3]

Measures (medians of ``--runs``): one large object by curl (MB/s); 64 parallel downloads of
16 MiB objects by ``curl --parallel`` (total MB/s); the latency of a small request (a fresh
connection each, TLS handshake included) while 40 slow clients (``--limit-rate 256k``) download;
and 100 simultaneous misses of one object on a mirror -> how many upstream fetches. Needs
``nginx`` and ``curl``. Talks to 127.0.0.1 only; everything runs under a temporary directory.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from steppatch import Repository, pki

NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
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
        location / {{ try_files $uri =404; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


class Setup:
    def __init__(self, d: Path, size_mib: int) -> None:
        self.d = d
        ca = pki.make_ca()
        (d / "ca.crt").write_bytes(ca.cert_pem)
        server = pki.issue_server_cert(ca, ["127.0.0.1"])
        (d / "server.crt").write_bytes(server.cert_pem)
        (d / "server.key").write_bytes(server.key_pem)
        for name in ("bench", "mirror"):
            c = pki.issue_client_cert(ca, name)
            (d / f"{name}.crt").write_bytes(c.cert_pem)
            (d / f"{name}.key").write_bytes(c.key_pem)
        src = d / "src/bench-1.0"
        (src / "files").mkdir(parents=True)
        (src / "component.toml").write_text('name = "bench"\nversion = "1.0"\n')
        rng = random.Random(1)
        self.large = self._write(src / "files/large.bin", size_mib * 2**20, rng)
        self.parallel = [self._write(src / f"files/p{i}.bin", 16 * 2**20, rng) for i in range(64)]
        self.miss = self._write(src / "files/miss.bin", 64 * 2**20, rng)
        self.repo = Repository.init(d / "repo")
        self.repo.add(src)
        self.procs: list[subprocess.Popen[bytes]] = []

    @staticmethod
    def _write(path: Path, size: int, rng: random.Random) -> str:
        import hashlib

        h = hashlib.sha256()
        block = rng.randbytes(2**20)
        with open(path, "wb") as f:
            left = size
            i = 0
            while left:
                chunk = block[: min(left, len(block))]
                chunk = i.to_bytes(8, "big") + chunk[8:]  # no two blocks alike
                f.write(chunk)
                h.update(chunk)
                left -= len(chunk)
                i += 1
        return f"objects/{h.hexdigest()[:2]}/{h.hexdigest()}"

    def curl(self, *args: str) -> list[str]:
        d = self.d
        return ["curl", "-sS", "--fail", "--cacert", str(d / "ca.crt"), "--cert",
                str(d / "bench.crt"), "--key", str(d / "bench.key"), *args]

    def start_nginx(self) -> str:
        n = self.d / "nginx"
        n.mkdir()
        port = free_port()
        (n / "nginx.conf").write_text(NGINX_CONF.format(
            user="user root;" if os.geteuid() == 0 else "", d=n, port=port,
            cert=self.d / "server.crt", key=self.d / "server.key", ca=self.d / "ca.crt",
            root=self.repo.root))
        self.procs.append(subprocess.Popen(["nginx", "-c", str(n / "nginx.conf"), "-p", str(n)]))
        wait_port(port)
        return f"https://127.0.0.1:{port}"

    def start_steppatch(self, name: str, body: str) -> tuple[str, str, Path]:
        d = self.d / name
        d.mkdir()
        port, admin = free_port(), free_port()
        # top-level keys (in ``body``) come before the first table
        (d / "mirror.toml").write_text(
            f'listen = "127.0.0.1:{port}"\nadmin_listen = "127.0.0.1:{admin}"\n'
            f'store = "{d / "store"}"\naccess_log = "{d / "access.log"}"\n' + body
            + f'[tls]\ncert = "{self.d / "server.crt"}"\nkey = "{self.d / "server.key"}"\n'
            f'client_ca = "{self.d / "ca.crt"}"\n')
        proc = subprocess.Popen(
            [sys.executable, "-m", "steppatch_cli", "mirror", "serve", "--config",
             str(d / "mirror.toml")], stdout=subprocess.DEVNULL)
        self.procs.append(proc)  # type: ignore[arg-type]
        wait_port(port)
        wait_port(admin)
        return f"https://127.0.0.1:{port}", f"http://127.0.0.1:{admin}", d

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM if p.args[0] != "nginx" else signal.SIGQUIT)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def large_mb_s(s: Setup, base: str) -> float:
    out = subprocess.run(s.curl("-o", "/dev/null", "-w", "%{speed_download}",
                                f"{base}/{s.large}"), capture_output=True, text=True, check=True)
    return float(out.stdout) / 1e6


def parallel_mb_s(s: Setup, base: str) -> float:
    args = ["--parallel", "--parallel-max", "64", "--no-progress-meter"]
    for path in s.parallel:
        args += ["-o", "/dev/null", f"{base}/{path}"]
    started = time.monotonic()
    subprocess.run(s.curl(*args), check=True)
    return 64 * 16 * 2**20 / (time.monotonic() - started) / 1e6


def small_latency_ms(s: Setup, base: str) -> float:
    slow = [subprocess.Popen(s.curl("--limit-rate", "256k", "-o", "/dev/null",
                                    f"{base}/{s.large}"), stderr=subprocess.DEVNULL)
            for _ in range(40)]
    time.sleep(1.0)
    ctx = ssl.create_default_context(cafile=str(s.d / "ca.crt"))
    ctx.load_cert_chain(s.d / "bench.crt", s.d / "bench.key")
    host, port = base.removeprefix("https://").split(":")
    times = []
    for _ in range(30):
        started = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=10) as sock, ctx.wrap_socket(
            sock, server_hostname=host
        ) as tls:
            tls.sendall(b"GET /root.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while tls.recv(65536):
                pass
        times.append((time.monotonic() - started) * 1000)
        time.sleep(0.02)
    for p in slow:
        p.kill()
        p.wait()
    return statistics.median(times)


def misses(s: Setup, origin: str, origin_dir: Path, run: int) -> tuple[int, int]:
    mirror, admin, _d = s.start_steppatch(
        f"mirror{run}",
        f'trusted_root = "{s.repo.root / "root.json"}"\ndownload = "ON_DEMAND"\n'
        f'metadata_max_age_s = 0\n[[upstreams]]\nid = "origin"\nurl = "{origin}"\n'
        f'[upstream_tls]\ncert = "{s.d / "mirror.crt"}"\nkey = "{s.d / "mirror.key"}"\n'
        f'ca = "{s.d / "ca.crt"}"\n')
    cv = next(iter(s.repo.index.components["bench"].values()))
    for path in ("timestamp.json", cv.manifest.path):
        subprocess.run(s.curl("-o", "/dev/null", f"{mirror}/{path}"), check=True)
    ctx = ssl.create_default_context(cafile=str(s.d / "ca.crt"))
    ctx.load_cert_chain(s.d / "bench.crt", s.d / "bench.key")
    host, port = mirror.removeprefix("https://").split(":")
    conns = [ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=60),
                             server_hostname=host) for _ in range(100)]
    before = _count(origin_dir, s.miss)
    for c in conns:
        c.sendall(f"GET /{s.miss} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())

    def drain(c: ssl.SSLSocket) -> int:
        n = 0
        while chunk := c.recv(2**20):
            n += len(chunk)
        c.close()
        return n

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        got = list(pool.map(drain, conns))
    ok = sum(1 for n in got if n > 64 * 2**20)
    with urllib.request.urlopen(f"{admin}/metrics") as r:
        metrics = r.read().decode()
    fetched = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                  if line.startswith("steppatch_server_upstream_fetches_total{")
                  and 'kind="object"' in line)
    assert fetched == _count(origin_dir, s.miss) - before
    return int(fetched), ok


def _count(origin_dir: Path, path: str) -> int:
    log = origin_dir / "access.log"
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines()
               if json.loads(line)["path"] == f"/{path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="server-bench-") as tmp:
        s = Setup(Path(tmp), args.size_mib)
        try:
            nginx = s.start_nginx()
            origin, _admin, origin_dir = s.start_steppatch(
                "origin", f'[origin]\nrepository = "{s.repo.root}"\n')
            for base in (nginx, origin):  # warm the page cache and both servers
                large_mb_s(s, base)
            rows: dict[str, dict[str, list[float]]] = {}
            for _ in range(args.runs):
                for label, base in (("nginx", nginx), ("steppatch", origin)):
                    r = rows.setdefault(label, {"large": [], "parallel": [], "latency": []})
                    r["large"].append(large_mb_s(s, base))
                    r["parallel"].append(parallel_mb_s(s, base))
                    r["latency"].append(small_latency_ms(s, base))
            miss_runs = [misses(s, origin, origin_dir, i) for i in range(args.runs)]
        finally:
            s.stop()
    med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in rows.items()}
    n, sp = med["nginx"], med["steppatch"]
    print(f"server benchmark: {args.size_mib} MiB object, medians of {args.runs} runs, "
          "mutual TLS, 127.0.0.1")
    print(f"{'measure':44}{'nginx':>10}{'steppatch':>12}{'ratio':>8}")
    print(f"{'one large object (MB/s)':44}{n['large']:10.0f}{sp['large']:12.0f}"
          f"{sp['large'] / n['large']:8.2f}")
    print(f"{'64 parallel downloads, total (MB/s)':44}{n['parallel']:10.0f}"
          f"{sp['parallel']:12.0f}{sp['parallel'] / n['parallel']:8.2f}")
    print(f"{'small request under 40 slow clients (ms)':44}{n['latency']:10.1f}"
          f"{sp['latency']:12.1f}{sp['latency'] / n['latency']:8.2f}")
    fetches = [f for f, _ in miss_runs]
    served = [ok for _, ok in miss_runs]
    print(f"100 simultaneous misses on a mirror: upstream fetches per run {fetches}, "
          f"clients served per run {served}")


if __name__ == "__main__":
    main()
