"""Revocation on the service port: ``[tls] crl``, checked for the client's certificate in the
handshake, reloaded when the file changes and on SIGHUP (an in-place restart).

Each test has its own CA directory (revocation writes to it), made with the project's CA code.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steppatch import Repository, pki
from steppatch.transport import HttpsFetcher, TlsConfig
from steppatch.transport.errors import TlsError
from tests.integration.server.conftest import (
    START_TIMEOUT,
    Pki,
    Server,
    Servers,
    mirror_cli,
    wait_for,
)

CLIENTS = ("alice", "bob", "carol")


@pytest.fixture
def ca(tmp_path: Path) -> Pki:
    """A CA directory (``ca.crt``, ``ca.key``), a server certificate, three clients."""
    d = tmp_path / "ca"
    d.mkdir()
    pair = pki.make_ca("revoking CA")
    (d / "ca.crt").write_bytes(pair.cert_pem)
    (d / "ca.key").write_bytes(pair.key_pem)
    server = pki.issue_server_cert(pair, ["127.0.0.1"])
    (d / "server.crt").write_bytes(server.cert_pem)
    (d / "server.key").write_bytes(server.key_pem)
    for name in CLIENTS:
        kc = pki.issue_client_cert(pair, name)
        (d / f"{name}.crt").write_bytes(kc.cert_pem)
        (d / f"{name}.key").write_bytes(kc.key_pem)
    return Pki(d, d / "ca.crt", d / "server.crt", d / "server.key")


@pytest.fixture
def servers(tmp_path: Path, ca: Pki) -> Iterator[Servers]:
    s = Servers(tmp_path, ca)
    try:
        yield s
    finally:
        s.stop_all()


def revoke(ca: Pki, name: str) -> None:
    assert pki.revoke(ca.dir, (ca.dir / f"{name}.crt").read_bytes()).added


def handshake(server: Server, ca: Pki, name: str) -> int:
    """One request with ``name``'s certificate: the HTTP status, or the TLS error raised."""
    host, port = server.listen.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(ca.ca))
    ctx.load_cert_chain(*ca.client(name))
    with socket.create_connection((host, int(port)), timeout=10) as sock, ctx.wrap_socket(
        sock, server_hostname=host
    ) as tls:
        tls.sendall(b"GET /root.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = tls.recv(100)
    if not data:
        raise ConnectionResetError("closed without an answer")
    return int(data.split()[1])


def refused(server: Server, ca: Pki, name: str) -> bool:
    """Whether the handshake fails. asyncio closes the connection without sending the alert,
    so the client sees an EOF (or a reset), not "certificate revoked"."""
    try:
        handshake(server, ca, name)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    return False


def with_crl(servers: Servers, repo: Repository, crl: Path, **tls: Any) -> Path:
    """An origin's mirror.toml with ``[tls] crl`` (and more ``[tls]`` keys)."""
    config = servers.write_config("origin", origin={"repository": str(repo.root)})
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in {"crl": str(crl), **tls}.items())
    # The [tls] table comes just before [origin].
    config.write_text(config.read_text().replace("[origin]", extra + "[origin]"))
    return config


def start_with_crl(servers: Servers, repo: Repository, crl: Path, **tls: Any) -> Server:
    return servers.start(with_crl(servers, repo, crl, **tls))


def test_a_revoked_certificate_fails_the_handshake_others_are_served(
    tmp_path: Path, repo: Repository, servers: Servers, ca: Pki
) -> None:
    revoke(ca, "bob")
    crl = tmp_path / "crl.pem"
    pki.write_crl(ca.dir, crl)
    # Without the CRL, bob's certificate is as good as any.
    plain = servers.origin(repo.root)
    assert handshake(plain, ca, "bob") == 200
    origin = start_with_crl(servers, repo, crl)
    assert refused(origin, ca, "bob")
    assert handshake(origin, ca, "alice") == 200
    assert handshake(origin, ca, "carol") == 200
    # The library's transport says what happened.
    cert, key = ca.client("bob")
    with pytest.raises(TlsError) as info:
        b"".join(HttpsFetcher(origin.url, TlsConfig(ca.ca, cert, key)).fetch("root.json"))
    assert info.value.kind.value == "client-cert-rejected"
    # Nothing was served to bob: only alice's and carol's requests were counted.
    assert origin.metric("requests_total") == 2


def test_revocation_after_start_takes_effect_when_the_file_changes(
    tmp_path: Path, repo: Repository, servers: Servers, ca: Pki
) -> None:
    crl = tmp_path / "crl.pem"
    pki.write_crl(ca.dir, crl)
    origin = start_with_crl(servers, repo, crl, crl_poll_s=0.2)
    assert handshake(origin, ca, "bob") == 200
    revoke(ca, "bob")
    pki.write_crl(ca.dir, crl)
    wait_for(lambda: refused(origin, ca, "bob"), timeout=10, interval=0.1)
    assert handshake(origin, ca, "alice") == 200
    assert origin.proc.poll() is None  # no restart
    events = stderr_events(origin)
    assert {"event": "tls-reloaded", "crl": str(crl)} in events


def stderr_events(server: Server) -> list[dict[str, Any]]:
    lines = (server.config.parent / "stderr.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_a_bad_crl_on_reload_keeps_the_old_one(
    tmp_path: Path, repo: Repository, servers: Servers, ca: Pki
) -> None:
    revoke(ca, "bob")
    crl = tmp_path / "crl.pem"
    pki.write_crl(ca.dir, crl)
    good = crl.read_bytes()
    origin = start_with_crl(servers, repo, crl, crl_poll_s=0.2)
    crl.write_bytes(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")

    def reported() -> bool:
        return any(e.get("event") == "tls-reload-failed" for e in stderr_events(origin))

    wait_for(reported, timeout=10, interval=0.1)
    failed = next(e for e in stderr_events(origin) if e["event"] == "tls-reload-failed")
    assert failed["field"] == "tls.crl"
    # The old CRL is still the one in force: bob refused, alice served.
    assert refused(origin, ca, "bob")
    assert handshake(origin, ca, "alice") == 200
    # A good file again (carol revoked too) is taken.
    revoke(ca, "carol")
    pki.write_crl(ca.dir, crl)
    assert crl.read_bytes() != good
    wait_for(lambda: refused(origin, ca, "carol"), timeout=10, interval=0.1)
    assert refused(origin, ca, "bob")
    assert handshake(origin, ca, "alice") == 200


def test_sighup_restarts_in_place_with_the_new_crl(
    tmp_path: Path, repo: Repository, servers: Servers, ca: Pki
) -> None:
    crl = tmp_path / "crl.pem"
    pki.write_crl(ca.dir, crl)
    # Polling so rarely that only the restart can pick up the change.
    origin = start_with_crl(servers, repo, crl, crl_poll_s=3600)
    revoke(ca, "bob")
    pki.write_crl(ca.dir, crl)
    time.sleep(0.5)
    assert handshake(origin, ca, "bob") == 200
    origin.proc.send_signal(signal.SIGHUP)
    assert origin.proc.stdout is not None
    line = origin.proc.stdout.readline()  # the restarted process's ready line (same pid)
    ready = json.loads(line)
    assert ready["event"] == "ready" and origin.proc.poll() is None
    origin.listen = ready["listen"]
    assert refused(origin, ca, "bob")
    assert handshake(origin, ca, "alice") == 200


def _expired_crl(ca: Pki) -> bytes:
    pair = pki.KeyAndCert((ca.dir / "ca.crt").read_bytes(), (ca.dir / "ca.key").read_bytes())
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    return pki.make_crl(pair, (), days=1, now=past)


def _foreign_crl() -> bytes:
    return pki.make_crl(pki.make_ca("another CA"), ())


@pytest.mark.parametrize(
    "content",
    [
        None,  # no such file
        b"not a CRL\n",
        b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
        "expired",
        "foreign",
        "with-a-certificate",
    ],
)
def test_a_bad_crl_at_start_is_a_config_error(
    tmp_path: Path, repo: Repository, servers: Servers, ca: Pki, content: bytes | str | None
) -> None:
    crl = tmp_path / "crl.pem"
    if content == "expired":
        crl.write_bytes(_expired_crl(ca))
    elif content == "foreign":
        crl.write_bytes(_foreign_crl())
    elif content == "with-a-certificate":
        pki.write_crl(ca.dir, crl)
        crl.write_bytes(crl.read_bytes() + (ca.dir / "alice.crt").read_bytes())
    elif isinstance(content, bytes):
        crl.write_bytes(content)
    config = with_crl(servers, repo, crl)
    done = subprocess.run(
        mirror_cli("serve", "--config", str(config)),
        capture_output=True, text=True, timeout=START_TIMEOUT, check=False,
    )
    assert done.returncode == 2, done
    assert "'tls.crl'" in done.stderr
    assert done.stdout == ""  # never ready
    assert not (config.parent / "store" / "snapshots").exists()
