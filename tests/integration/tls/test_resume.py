"""Kill the client (SIGKILL) during a large download, run again: it resumes with a Range request
from the bytes it kept, and nginx sends no byte of the object twice to a completed run."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

from steppatch.store import ObjectStore
from steppatch.transport import HttpsFetcher, download_objects
from tests.integration.tls.conftest import FAST, Pki, Published
from tests.integration.tls.servers import Nginx

CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from steppatch.store import ObjectStore
    from steppatch.transport import HttpsFetcher, ObjectRequest, TlsConfig, download_objects

    url, ca, crt, key, cache, path, sha, length = sys.argv[1:]
    length = int(length)
    inner = HttpsFetcher(url, TlsConfig(Path(ca), Path(crt), Path(key)))

    class KillMidway:
        url = inner.url

        def fetch(self, path, offset=0):
            got = 0
            for chunk in inner.fetch(path, offset):
                if got > length // 3:
                    # every chunk handed out so far has been written to the partial file
                    os.kill(os.getpid(), signal.SIGKILL)
                got += len(chunk)
                yield chunk

    download_objects(KillMidway(), [ObjectRequest(path, sha, length)], ObjectStore(Path(cache)))
""")


def test_killed_download_resumes_without_fetching_a_byte_twice(
    test_pki: Pki, nginx: Nginx, published: Published, tmp_path: Path
) -> None:
    big = published.large
    cache = tmp_path / "cache"
    tls = test_pki.client()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, nginx.url("main"), str(tls.ca_file), str(tls.cert_file),
         str(tls.key_file), str(cache), big.path, big.sha256, str(big.length)],
        capture_output=True, timeout=60, check=False,
    )
    assert child.returncode == -9, child.stderr.decode()
    store = ObjectStore(cache)
    assert not store.has(big.sha256)
    kept = store.partial_path(big.sha256).stat().st_size
    assert big.length // 3 < kept < big.length
    assert [p for p in cache.glob("??/*")] == []  # nothing unverified among the objects

    result = download_objects(HttpsFetcher(nginx.url("main"), tls, FAST), [big], store)
    assert (result.resumed_bytes, result.received_bytes) == (kept, big.length - kept)
    data = store.path(big.sha256).read_bytes()
    assert hashlib.sha256(data).hexdigest() == big.sha256
    assert not store.partial_path(big.sha256).exists()
    # at the server: the second request asked for the rest only, and got exactly that
    uri = "/" + big.path
    first, last = nginx.requests_for("main", uri)
    assert last == (206, f"bytes={kept}-", big.length - kept)
    # the killed run: what it kept, plus what was in flight (socket buffers) when it died
    assert first[:2] == (200, "-") and first[2] >= kept
