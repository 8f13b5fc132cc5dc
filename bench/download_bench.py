"""Downloads against curl, from the same local nginx over TLS with client certificates.

Run: ``.venv/bin/python bench/download_bench.py [--large-mib N] [--small N] [--small-kib K]
[--runs R] [--parallel P]``.

Two tasks, each timed R times (median reported), all clients side by side in one run, every one
writing the files to disk in a fresh directory:

- one large object;
- many small objects (default 1,000 of 1-32 KiB).

steppatch (``download_objects`` through ``HttpsFetcher``) does what curl does not: it hashes
every byte and checks it against the expected sha256 and length before the object counts as
stored, and writes through a partial file that a later run could resume from. nginx is Debian's
package, installed if missing (root); the CA and certificates are made with ``steppatch.pki``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from steppatch import pki  # noqa: E402
from steppatch.store import ObjectStore  # noqa: E402
from steppatch.transport import (  # noqa: E402
    HttpsFetcher,
    ObjectRequest,
    TlsConfig,
    TransportLimits,
    download_objects,
)
from tests.integration.tls.servers import Site, install_nginx, start_nginx  # noqa: E402


def publish(root: Path, data: bytes) -> ObjectRequest:
    sha = hashlib.sha256(data).hexdigest()
    ObjectStore(root / "objects").add([data], sha, len(data), "bench object")
    return ObjectRequest(f"objects/{sha[:2]}/{sha}", sha, len(data))


def timed(fn: Callable[[], object], runs: int, setup: Callable[[], None]) -> float:
    times = []
    for _ in range(runs):
        setup()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--large-mib", type=int, default=512)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--small-kib", type=int, default=32, help="small sizes: 1 KiB to this")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()

    binary = install_nginx()
    curl = shutil.which("curl")
    if binary is None or curl is None:
        sys.exit("needs nginx (installed automatically as root) and curl")
    work = Path(tempfile.mkdtemp(prefix="steppatch-dl-bench-"))
    server = None
    try:
        d = work / "pki"
        d.mkdir()
        ca = pki.make_ca("bench CA")
        server_pair = pki.issue_server_cert(ca, ["127.0.0.1"])
        client = pki.issue_client_cert(ca, "bench")
        files = {
            "ca.crt": ca.cert_pem,
            "server.crt": server_pair.cert_pem,
            "server.key": server_pair.key_pem,
            "client.crt": client.cert_pem,
            "client.key": client.key_pem,
        }
        for name, data in files.items():
            (d / name).write_bytes(data)
        tls = TlsConfig(d / "ca.crt", d / "client.crt", d / "client.key")

        repo = work / "repo"
        rnd = random.Random(1)
        large = publish(repo, b"".join(rnd.randbytes(1 << 20) for _ in range(args.large_mib)))
        small = [
            publish(repo, rnd.randbytes(rnd.randint(1024, args.small_kib * 1024)))
            for _ in range(args.small)
        ]
        small_bytes = sum(r.length for r in small)
        started = start_nginx(
            binary, work / "nginx",
            [Site("main", d / "server.crt", d / "server.key", d / "ca.crt", repo)],
        )
        if isinstance(started, str):
            sys.exit(started)
        server = started
        url = server.url("main")
        out = work / "out"
        tls_args = ["--cacert", str(tls.ca_file), "--cert", str(tls.cert_file),
                    "--key", str(tls.key_file)]

        def fresh() -> None:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()

        def curl_one(req: ObjectRequest) -> None:
            subprocess.run([curl, "-sS", "--fail", *tls_args, "-o", str(out / req.sha256),
                            f"{url}/{req.path}"], check=True)

        def curl_list(reqs: list[ObjectRequest], parallel: int = 0) -> None:
            config = out / ".curlrc"
            config.write_text("".join(
                f'url = "{url}/{r.path}"\noutput = "{out / r.sha256}"\n' for r in reqs
            ))
            extra = ["--parallel", "--parallel-max", str(parallel)] if parallel else []
            subprocess.run([curl, "-sS", "--fail", *tls_args, *extra, "-K", str(config)],
                           check=True)

        limits = TransportLimits(parallel_downloads=args.parallel)

        def steppatch(reqs: list[ObjectRequest]) -> None:
            fetcher = HttpsFetcher(url, tls, limits)
            result = download_objects(fetcher, reqs, ObjectStore(out / "store"), limits=limits)
            fetcher.close()
            assert result.downloaded == len(reqs)

        # warm the page cache on the server side, and check every client works
        fresh()
        curl_list([large, *small])
        fresh()
        steppatch([large, *small])

        large_rows = [
            ("curl", timed(lambda: curl_one(large), args.runs, fresh)),
            ("steppatch", timed(lambda: steppatch([large]), args.runs, fresh)),
        ]
        small_rows = [
            ("curl, a process per file (loop)",
             timed(lambda: [curl_one(r) for r in small], max(1, args.runs // 2), fresh)),
            ("curl -K list (one process, sequential)",
             timed(lambda: curl_list(small), args.runs, fresh)),
            (f"curl --parallel --parallel-max {args.parallel}",
             timed(lambda: curl_list(small, args.parallel), args.runs, fresh)),
            (f"steppatch ({args.parallel} threads)",
             timed(lambda: steppatch(small), args.runs, fresh)),
        ]
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    def table(title: str, size: int, rows: list[tuple[str, float]]) -> None:
        base = dict(rows)[next(n for n, _ in rows if n.startswith("steppatch"))]
        print(f"\n{title} ({size / 1e6:.1f} MB)")
        print(f"{'client':44} {'seconds':>8} {'MB/s':>8} {'time / steppatch':>17}")
        for name, seconds in rows:
            print(f"{name:44} {seconds:8.3f} {size / seconds / 1e6:8.1f} {seconds / base:17.2f}")

    print(f"medians of {args.runs} runs (the per-file curl loop: {max(1, args.runs // 2)})")
    table(f"one large object, {args.large_mib} MiB", large.length, large_rows)
    table(f"{args.small} small objects, 1-{args.small_kib} KiB", small_bytes, small_rows)


if __name__ == "__main__":
    main()
