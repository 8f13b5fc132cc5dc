"""The private CA: certificates carry what they must; bad input is refused with a typed error."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from steppatch import pki
from steppatch.errors import InputError
from steppatch.pki import CertificateError, InvalidSystemName

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca() -> pki.KeyAndCert:
    return pki.make_ca("test CA", now=NOW)


def test_ca_is_a_ca_for_leaves_only(ca: pki.KeyAndCert) -> None:
    info = pki.read_certificate(ca.cert_pem)
    assert info.usage == "ca"
    assert info.subject == info.issuer == "CN=test CA"
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    assert info.not_after - NOW == dt.timedelta(days=pki.CA_DAYS)
    pki.check_key_matches(ca.cert_pem, ca.key_pem)


def test_server_cert_names_hosts_and_ips(ca: pki.KeyAndCert) -> None:
    server = pki.issue_server_cert(ca, ["mirror.example.com", "127.0.0.1", "::1"], now=NOW)
    info = pki.read_certificate(server.cert_pem)
    assert info.usage == "server"
    assert info.hostnames == ("mirror.example.com",)
    assert info.ip_addresses == ("127.0.0.1", "::1")
    assert info.system_name is None
    assert info.issuer == "CN=test CA"
    pki.check_issued_by(server.cert_pem, ca.cert_pem)
    pki.check_key_matches(server.cert_pem, server.key_pem)


def test_client_cert_carries_the_system_name_in_cn_and_san(ca: pki.KeyAndCert) -> None:
    client = pki.issue_client_cert(ca, "prod-eu-1", now=NOW)
    info = pki.read_certificate(client.cert_pem)
    assert info.usage == "client"
    assert info.system_name == info.common_name == "prod-eu-1"
    cert = x509.load_pem_x509_certificate(client.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:steppatch:system:prod-eu-1"
    ]


def test_request_signed_into_a_client_cert_with_the_same_key(ca: pki.KeyAndCert) -> None:
    req = pki.make_request("test-env")
    cert_pem = pki.sign_request(ca, req.csr_pem, now=NOW, days=30)
    info = pki.read_certificate(cert_pem)
    assert (info.usage, info.system_name) == ("client", "test-env")
    assert info.not_after - NOW == dt.timedelta(days=30)
    pki.check_key_matches(cert_pem, req.key_pem)
    pki.check_issued_by(cert_pem, ca.cert_pem)


def _csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cn: str | None) -> bytes:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    return csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_request_only_name_and_key_are_taken(ca: pki.KeyAndCert) -> None:
    # A request asking to be a CA gets a client leaf certificate all the same.
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sneaky")]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    info = pki.read_certificate(pki.sign_request(ca, csr, now=NOW))
    assert (info.usage, info.system_name) == ("client", "sneaky")


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: b"garbage", "not a PEM certificate request"),
        (lambda: _csr(ec.generate_private_key(ec.SECP256R1()), None), "names no system"),
        (lambda: _csr(rsa.generate_private_key(65537, 1024), "x"), "too weak"),
    ],
)
def test_bad_requests_are_refused(ca: pki.KeyAndCert, make: object, problem: str) -> None:
    with pytest.raises(CertificateError) as e:
        pki.sign_request(ca, make(), source="req.csr")  # type: ignore[operator]
    assert e.value.source == "req.csr"
    assert problem in e.value.problem


def test_tampered_request_is_refused(ca: pki.KeyAndCert) -> None:
    req = pki.make_request("aaaa")
    der = x509.load_pem_x509_csr(req.csr_pem).public_bytes(serialization.Encoding.DER)
    # Rename the subject inside the signed part: the self-signature no longer verifies.
    tampered_der = der.replace(b"aaaa", b"bbbb")
    tampered = x509.load_der_x509_csr(tampered_der).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CertificateError) as e:
        pki.sign_request(ca, tampered)
    assert "signature" in e.value.problem


@pytest.mark.parametrize("name", ["", "-lead", "a b", "x" * 65, "ünï", "a/b", "a:b"])
def test_invalid_system_names(ca: pki.KeyAndCert, name: str) -> None:
    with pytest.raises(InvalidSystemName) as e:
        pki.issue_client_cert(ca, name)
    assert e.value.name == name
    with pytest.raises(InvalidSystemName):
        pki.make_request(name)


def test_bad_server_names(ca: pki.KeyAndCert) -> None:
    with pytest.raises(InputError):
        pki.issue_server_cert(ca, [])
    with pytest.raises(InputError):
        pki.issue_server_cert(ca, ["bad_name!"])


def test_leaf_cannot_act_as_ca(ca: pki.KeyAndCert) -> None:
    leaf = pki.issue_client_cert(ca, "x", now=NOW)
    with pytest.raises(CertificateError) as e:
        pki.issue_client_cert(leaf, "y")
    assert "not a CA" in e.value.problem


def test_key_mismatch_and_foreign_issuer(ca: pki.KeyAndCert) -> None:
    a = pki.issue_client_cert(ca, "a", now=NOW)
    b = pki.issue_client_cert(ca, "b", now=NOW)
    with pytest.raises(CertificateError) as e:
        pki.check_key_matches(a.cert_pem, b.key_pem, "a.crt")
    assert e.value.source == "a.crt"
    other = pki.make_ca("other CA")
    with pytest.raises(CertificateError) as e:
        pki.check_issued_by(a.cert_pem, other.cert_pem, "a.crt")
    assert "not issued by the CA CN=other CA" in e.value.problem


def test_validity_window() -> None:
    ca = pki.make_ca(now=NOW)
    cert = pki.issue_client_cert(ca, "old", days=1, now=NOW - dt.timedelta(days=10))
    info = pki.read_certificate(cert.cert_pem)
    assert info.expired(NOW)
    assert not info.expired(NOW - dt.timedelta(days=10))
    with pytest.raises(CertificateError):
        pki.read_certificate(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_certificates_work_for_mutual_tls_in_openssl(tmp_path: Path) -> None:
    """A real TLS 1.3 handshake with these certificates, both ways verified."""
    ca = pki.make_ca()
    server = pki.issue_server_cert(ca, ["127.0.0.1"])
    client = pki.issue_client_cert(ca, "test-env")
    for name, data in {
        "ca.crt": ca.cert_pem, "s.crt": server.cert_pem, "s.key": server.key_pem,
        "c.crt": client.cert_pem, "c.key": client.key_pem,
    }.items():
        (tmp_path / name).write_bytes(data)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")
    sctx.load_verify_locations(tmp_path / "ca.crt")
    sctx.verify_mode = ssl.CERT_REQUIRED
    cctx = ssl.create_default_context(cafile=tmp_path / "ca.crt")
    cctx.load_cert_chain(tmp_path / "c.crt", tmp_path / "c.key")
    a, b = socket.socketpair()
    seen: dict[str, object] = {}

    def serve() -> None:
        with sctx.wrap_socket(a, server_side=True) as s:
            seen["peer"] = s.getpeercert()
            s.sendall(b"ok")

    t = threading.Thread(target=serve)
    t.start()
    with cctx.wrap_socket(b, server_hostname="127.0.0.1") as c:
        assert c.recv(2) == b"ok"
    t.join(5)
    peer = seen["peer"]
    assert isinstance(peer, dict)
    assert ("URI", "urn:steppatch:system:test-env") in peer["subjectAltName"]
