"""A test CA made with steppatch.pki, a published repository, and a real nginx serving it.

nginx (Debian's package) is installed if missing and we are root; the tests are skipped, with the
reason, only if it cannot be installed or started.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from steppatch import pki
from steppatch.store import ObjectStore
from steppatch.transport import ObjectRequest, TlsConfig, TransportLimits
from tests.integration.tls.servers import FaultProxy, Nginx, Site, install_nginx, start_nginx

LARGE = 24 * 1024 * 1024


@attrs.frozen
class Pki:
    """Files of the test CA and the certificates the tests use."""

    dir: Path

    def p(self, name: str) -> Path:
        return self.dir / name

    @property
    def ca(self) -> Path:
        return self.p("ca.crt")

    def client(self, name: str = "client") -> TlsConfig:
        return TlsConfig(self.ca, self.p(f"{name}.crt"), self.p(f"{name}.key"))

    @property
    def no_cert(self) -> TlsConfig:
        return TlsConfig(self.ca)


def _write(dir: Path, prefix: str, pair: pki.KeyAndCert) -> None:
    (dir / f"{prefix}.crt").write_bytes(pair.cert_pem)
    (dir / f"{prefix}.key").write_bytes(pair.key_pem)
    (dir / f"{prefix}.key").chmod(0o600)


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    long_ago = now - dt.timedelta(days=30)
    ca = pki.make_ca("steppatch test CA")
    other = pki.make_ca("some other CA")
    _write(d, "ca", ca)
    _write(d, "other-ca", other)
    _write(d, "server", pki.issue_server_cert(ca, ["127.0.0.1", "localhost"]))
    _write(d, "server-wrong-host", pki.issue_server_cert(ca, ["mirror.example.com"]))
    _write(d, "server-expired", pki.issue_server_cert(ca, ["127.0.0.1"], days=1, now=long_ago))
    _write(d, "server-other-ca", pki.issue_server_cert(other, ["127.0.0.1"]))
    _write(d, "client", pki.issue_client_cert(ca, "test-env"))
    _write(d, "client-other-ca", pki.issue_client_cert(other, "test-env"))
    _write(d, "client-expired", pki.issue_client_cert(ca, "test-env", days=1, now=long_ago))
    _write(d, "proxy", pki.issue_client_cert(ca, "fault-proxy"))
    return Pki(d)


@attrs.frozen
class Published:
    """A repository directory: ``index.json`` and objects, with the requests to fetch them."""

    root: Path
    large: ObjectRequest
    small: tuple[ObjectRequest, ...]

    @property
    def all(self) -> list[ObjectRequest]:
        return [self.large, *self.small]


def _publish(root: Path, data: bytes) -> ObjectRequest:
    sha = hashlib.sha256(data).hexdigest()
    ObjectStore(root / "objects").add([data], sha, len(data), "test object")
    return ObjectRequest(f"objects/{sha[:2]}/{sha}", sha, len(data))


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    root = tmp_path_factory.mktemp("published")
    rnd = random.Random(5)
    large = _publish(root, rnd.randbytes(LARGE))
    small = tuple(_publish(root, rnd.randbytes(rnd.randrange(1, 64 * 1024))) for _ in range(24))
    (root / "index.json").write_text('{"format": "steppatch-index/1"}\n')
    return Published(root, large, small)


@pytest.fixture(scope="session")
def nginx(
    tmp_path_factory: pytest.TempPathFactory, test_pki: Pki, published: Published
) -> Iterator[Nginx]:
    """nginx with one site per server certificate, each requiring clients of the test CA."""
    binary = install_nginx()
    if binary is None:
        pytest.skip("nginx is not installed and cannot be installed here (needs root and apt-get)")
    p = test_pki.p
    sites = [
        Site(name, p(f"{cert}.crt"), p(f"{cert}.key"), test_pki.ca, published.root)
        for name, cert in [
            ("main", "server"),
            ("wrong-host", "server-wrong-host"),
            ("expired", "server-expired"),
            ("other-ca", "server-other-ca"),
        ]
    ]
    started = start_nginx(binary, tmp_path_factory.mktemp("nginx"), sites)
    if isinstance(started, str):
        pytest.skip(started)
    yield started
    started.stop()


@pytest.fixture
def proxy(test_pki: Pki, nginx: Nginx) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of nginx's main site; set ``.mode``."""
    p = test_pki.p
    fp = FaultProxy(
        p("server.crt"), p("server.key"), test_pki.ca, nginx.url("main"),
        (test_pki.ca, p("proxy.crt"), p("proxy.key")),
    )
    yield fp
    fp.close()


#: small limits so that fault tests end quickly
FAST = TransportLimits(
    connect_timeout_seconds=2.0,
    read_timeout_seconds=1.0,
    deadline_seconds=1.5,
    min_bytes_per_second=50 * 1024 * 1024,
    parallel_downloads=4,
    retries=0,
)
