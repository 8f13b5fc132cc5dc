"""``steppatch ca ...`` and ``steppatch enroll``, driven as an operator drives them
(``python -m steppatch_cli``, so errors map to exit codes as for every other command)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from steppatch import pki
from steppatch.transport import TlsConfig, make_ssl_context
from tests.e2e.conftest import Run


@pytest.fixture
def cli(run: Run) -> Run:
    return run


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def ca_dir(tmp_path: Path, cli: Run) -> Path:
    cli("ca", "init", tmp_path / "ca", "--name", "Test CA")
    return tmp_path / "ca"


@pytest.fixture
def made_home(tmp_path: Path, home: Path, cli: Run) -> Path:
    repo = tmp_path / "repo"
    cli("repo", "init", repo)
    cli("init", "--updates", repo.as_uri(), "--root", repo / "root.json", "--system", "test-env")
    return home


def test_ca_init_makes_a_ca_with_a_private_key(ca_dir: Path, cli: Run) -> None:
    info = pki.read_certificate((ca_dir / "ca.crt").read_bytes())
    assert (info.usage, info.subject) == ("ca", "CN=Test CA")
    assert mode(ca_dir / "ca.key") == 0o600
    assert mode(ca_dir / "ca.crt") == 0o644
    before = files_under(ca_dir)
    again = cli("ca", "init", ca_dir, expect=2)
    assert "exists already" in again.err
    assert files_under(ca_dir) == before


def test_issue_server_and_client(ca_dir: Path, tmp_path: Path, cli: Run) -> None:
    out = cli("ca", "issue", ca_dir, "--server", "mirror.example.com", "--server", "127.0.0.1",
              "--out", tmp_path / "mirror")
    assert "server for mirror.example.com, 127.0.0.1" in out.out
    server = pki.read_certificate((tmp_path / "mirror.crt").read_bytes())
    assert server.hostnames == ("mirror.example.com",) and server.ip_addresses == ("127.0.0.1",)
    assert mode(tmp_path / "mirror.key") == 0o600
    pki.check_issued_by((tmp_path / "mirror.crt").read_bytes(), (ca_dir / "ca.crt").read_bytes())

    cli("ca", "issue", ca_dir, "--client", "prod-eu-1", "--out", tmp_path / "prod")
    client = pki.read_certificate((tmp_path / "prod.crt").read_bytes())
    assert (client.usage, client.system_name) == ("client", "prod-eu-1")
    assert mode(tmp_path / "prod.key") == 0o600
    shown = cli("ca", "show", tmp_path / "prod.crt")
    assert "prod-eu-1" in shown.out and client.fingerprint in shown.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "either --server"),
        (["--server", "h", "--client", "c"], "either --server"),
        (["--client", "bad name"], "invalid system name"),
        (["--server", "bad_host!"], "invalid server host name"),
    ],
)
def test_issue_refuses_bad_arguments(ca_dir: Path, tmp_path: Path, cli: Run, args: list[str],
                                     message: str) -> None:
    result = cli("ca", "issue", ca_dir, *args, "--out", tmp_path / "x", expect=2)
    assert message in result.err
    assert not (tmp_path / "x.crt").exists() and not (tmp_path / "x.key").exists()


def test_not_a_ca_directory(tmp_path: Path, cli: Run) -> None:
    result = cli("ca", "issue", tmp_path, "--client", "x", "--out", tmp_path / "x", expect=2)
    assert "not a CA directory" in result.err


def test_enroll_sign_install(made_home: Path, ca_dir: Path, tmp_path: Path, cli: Run) -> None:
    tls = made_home / ".steppatch" / "tls"
    out = cli("enroll", "test-env")
    request = tls / "request.csr"
    assert str(request) in out.out
    assert mode(tls / "request.key") == 0o600
    assert mode(tls) == 0o700

    # a second request while one is pending is refused, and changes nothing
    before = files_under(tls)
    assert "pending" in cli("enroll", "test-env", expect=2).err
    assert files_under(tls) == before

    # the CA operator signs it (refusing it for another system name first)
    refused = cli("ca", "sign", ca_dir, request, "--system", "other", "--out", tmp_path / "o.crt",
                  expect=2)
    assert "asks for system 'test-env'" in refused.err
    assert not (tmp_path / "o.crt").exists()
    (tmp_path / "kept.csr").write_bytes(request.read_bytes())
    signed = cli("ca", "sign", ca_dir, request, "--out", tmp_path / "test-env.crt")
    assert "client for system test-env" in signed.out

    cli("enroll", "--install", tmp_path / "test-env.crt", "--ca", ca_dir / "ca.crt")
    assert sorted(p.name for p in tls.iterdir() if not p.name.startswith(".")) == [
        "client.crt", "client.key"
    ]
    assert mode(tls / "client.key") == 0o600
    assert (tls / "client.crt").read_bytes() == (tmp_path / "test-env.crt").read_bytes()
    # the pair is what the transport accepts
    make_ssl_context(TlsConfig(ca_dir / "ca.crt", tls / "client.crt", tls / "client.key"))

    # a renewal for the same key (the operator kept the request) replaces the certificate only
    key = (tls / "client.key").read_bytes()
    cli("ca", "sign", ca_dir, tmp_path / "kept.csr", "--out", tmp_path / "renewed.crt")
    cli("enroll", "--install", tmp_path / "renewed.crt")
    assert (tls / "client.key").read_bytes() == key
    assert (tls / "client.crt").read_bytes() == (tmp_path / "renewed.crt").read_bytes()


def test_install_refuses_what_does_not_fit(made_home: Path, ca_dir: Path, tmp_path: Path,
                                           cli: Run) -> None:
    tls = made_home / ".steppatch" / "tls"
    cli("enroll", "test-env")
    before = files_under(tls)
    # a certificate for a key the home does not have
    cli("ca", "issue", ca_dir, "--client", "test-env", "--out", tmp_path / "foreign")
    bad = cli("enroll", "--install", tmp_path / "foreign.crt", expect=2)
    assert "key is not this home's" in bad.err
    # the home's request, signed by another CA, checked with --ca
    cli("ca", "init", tmp_path / "other")
    cli("ca", "sign", tmp_path / "other", tls / "request.csr", "--out", tmp_path / "o.crt")
    other = cli("enroll", "--install", tmp_path / "o.crt", "--ca", ca_dir / "ca.crt", expect=2)
    assert "not issued by the CA CN=Test CA" in other.err
    # a server certificate
    bad = cli("enroll", "--install", ca_dir / "ca.crt", expect=2)
    assert "not a steppatch client certificate" in bad.err
    assert files_under(tls) == before


def test_enroll_with_another_name_than_the_home(made_home: Path, cli: Run) -> None:
    result = cli("enroll", "someone-else", expect=2)
    assert "system name is 'test-env'" in result.err
    assert not (made_home / ".steppatch" / "tls" / "request.key").exists()


def test_manuals_alias(made_home: Path, cli: Run) -> None:
    out = cli("--enroll=mirror:test-env:mirror.example.com:8443")
    assert "mirror.example.com:8443" in out.out
    csr = x509.load_pem_x509_csr((made_home / ".steppatch/tls/request.csr").read_bytes())
    assert csr.subject.rfc4514_string() == "CN=test-env"
    assert "mirror:SYSTEM_NAME:HOST" in cli("enroll", "--enroll=bogus", expect=2).err


def test_enroll_outside_a_home(tmp_path: Path, cli: Run) -> None:
    result = cli("enroll", "test-env", expect=5)
    assert "not a steppatch home" in result.err
