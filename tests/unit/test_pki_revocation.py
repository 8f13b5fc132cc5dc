"""Revocation in the CA directory (``pki.revoke``, ``revoked.json``) and CRLs
(``pki.make_crl``, ``pki.write_crl``, ``pki.read_crl``)."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from cryptography import x509

from steppatch import pki
from steppatch.errors import InputError

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ca"
    d.mkdir()
    pair = pki.make_ca("Test CA", now=NOW)
    (d / "ca.crt").write_bytes(pair.cert_pem)
    (d / "ca.key").write_bytes(pair.key_pem)
    return d


def ca_of(d: Path) -> pki.KeyAndCert:
    return pki.KeyAndCert((d / "ca.crt").read_bytes(), (d / "ca.key").read_bytes())


def client(d: Path, name: str = "prod-eu") -> bytes:
    return pki.issue_client_cert(ca_of(d), name, now=NOW).cert_pem


def test_revoke_records_the_serial_once(ca_dir: Path) -> None:
    cert = client(ca_dir)
    serial = x509.load_pem_x509_certificate(cert).serial_number
    done = pki.revoke(ca_dir, cert, now=NOW)
    assert done.added and done.entry.serial == serial and done.entry.subject == "CN=prod-eu"
    assert done.record == ca_dir / pki.REVOKED_FILE
    before = files(ca_dir)
    again = pki.revoke(ca_dir, cert, now=NOW + dt.timedelta(days=1))
    assert not again.added and again.entry == done.entry
    assert files(ca_dir) == before  # idempotent: nothing rewritten
    assert [e.serial for e in pki.read_revoked(ca_dir)] == [serial]
    assert not [p for p in ca_dir.iterdir() if ".tmp" in p.name]


def test_concurrent_revokes_all_land(ca_dir: Path) -> None:
    certs = [client(ca_dir, f"sys-{i}") for i in range(8)]
    threads = [threading.Thread(target=pki.revoke, args=(ca_dir, c)) for c in certs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    want = {x509.load_pem_x509_certificate(c).serial_number for c in certs}
    assert {e.serial for e in pki.read_revoked(ca_dir)} == want


def test_a_foreign_certificate_is_refused_and_nothing_changes(ca_dir: Path) -> None:
    pki.revoke(ca_dir, client(ca_dir), now=NOW)
    before = files(ca_dir)
    other = pki.make_ca("Other CA", now=NOW)
    foreign = pki.issue_client_cert(other, "prod-eu", now=NOW).cert_pem
    with pytest.raises(pki.NotIssuedByCA) as info:
        pki.revoke(ca_dir, foreign, source="stolen.crt")
    assert info.value.source == "stolen.crt" and info.value.ca_subject == "CN=Test CA"
    assert isinstance(info.value, pki.CertificateError)
    assert files(ca_dir) == before


@pytest.mark.parametrize("what", ["the CA itself", "not PEM"])
def test_unusable_certificates_are_refused(ca_dir: Path, what: str) -> None:
    cert = (ca_dir / "ca.crt").read_bytes() if what == "the CA itself" else b"hello"
    before = files(ca_dir)
    with pytest.raises(pki.CertificateError) as info:
        pki.revoke(ca_dir, cert, source="x.crt")
    assert info.value.source == "x.crt" and not isinstance(info.value, pki.NotIssuedByCA)
    assert files(ca_dir) == before


def test_not_a_ca_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        pki.revoke(tmp_path, b"")
    with pytest.raises(InputError):
        pki.write_crl(tmp_path, tmp_path / "crl.pem")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content",
    [b"{", b"[]", b'{"revoked": 1}', b'{"revoked": [1]}', b'{"revoked": [{"serial": "zz"}]}',
     b'{"revoked": [{"serial": "1f", "revoked_at": "2030-01-01", "subject": "",'
     b' "not_after": "2030-01-01T00:00:00+00:00"}]}',
     b"[" * 100_000],
)
def test_a_corrupt_record_is_a_typed_error_and_is_left_alone(ca_dir: Path, content: bytes) -> None:
    (ca_dir / pki.REVOKED_FILE).write_bytes(content)
    before = files(ca_dir)
    with pytest.raises(pki.RevokedFileError) as info:
        pki.revoke(ca_dir, client(ca_dir))
    assert info.value.path == str(ca_dir / pki.REVOKED_FILE)
    with pytest.raises(pki.RevokedFileError):
        pki.write_crl(ca_dir, ca_dir.parent / "crl.pem")
    assert files(ca_dir) == before
    assert not (ca_dir.parent / "crl.pem").exists()


def test_write_crl_names_the_revoked_serials(ca_dir: Path, tmp_path: Path) -> None:
    revoked = client(ca_dir, "bad")
    pki.revoke(ca_dir, revoked, now=NOW)
    out = tmp_path / "crl.pem"
    info = pki.write_crl(ca_dir, out, days=7, now=NOW)
    serial = x509.load_pem_x509_certificate(revoked).serial_number
    assert info.serials == {serial}
    assert info.next_update == NOW + dt.timedelta(days=7)
    assert info.last_update < NOW  # back-dated against clock skew
    crl = x509.load_pem_x509_crl(out.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert out.stat().st_mode & 0o777 == 0o644
    later = pki.write_crl(ca_dir, out, days=7, now=NOW + dt.timedelta(seconds=1))
    assert later.number is not None and info.number is not None and later.number > info.number


def test_read_crl_accepts_one_crl_per_ca(ca_dir: Path) -> None:
    other = pki.make_ca("Other CA", now=NOW)
    ca_pem = ca_of(ca_dir).cert_pem + other.cert_pem
    both = pki.make_crl(ca_of(ca_dir), (), now=NOW) + pki.make_crl(other, (), now=NOW)
    infos = pki.read_crl(both, ca_pem, now=NOW)
    assert {i.issuer for i in infos} == {"CN=Test CA", "CN=Other CA"}


def _bad_crls(ca_dir: Path) -> dict[str, tuple[bytes, bytes]]:
    ca = ca_of(ca_dir)
    other = pki.make_ca("Other CA", now=NOW)
    good = pki.make_crl(ca, (), now=NOW)
    # same name as our CA, another key: the signature must be checked, not the name
    impostor = pki.make_ca("Test CA", now=NOW)
    return {
        "empty": (b"", ca.cert_pem),
        "garbage": (b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", ca.cert_pem),
        "a certificate too": (good + other.cert_pem, ca.cert_pem),
        "a key": (good + ca.key_pem, ca.cert_pem),
        "another CA's": (pki.make_crl(other, (), now=NOW), ca.cert_pem),
        "an impostor's": (pki.make_crl(impostor, (), now=NOW), ca.cert_pem),
        "expired": (pki.make_crl(ca, (), days=1, now=NOW - dt.timedelta(days=2)), ca.cert_pem),
        "not yet valid": (pki.make_crl(ca, (), now=NOW + dt.timedelta(days=1)), ca.cert_pem),
        "two of one CA": (good + good, ca.cert_pem),
        "a CA without": (good, ca.cert_pem + other.cert_pem),
        "a bad CA file": (good, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    }


@pytest.mark.parametrize(
    "case",
    ["empty", "garbage", "a certificate too", "a key", "another CA's", "an impostor's",
     "expired", "not yet valid", "two of one CA", "a CA without", "a bad CA file"],
)
def test_read_crl_refuses(ca_dir: Path, case: str) -> None:
    crl, ca_pem = _bad_crls(ca_dir)[case]
    with pytest.raises(pki.CrlError) as info:
        pki.read_crl(crl, ca_pem, "crl.pem", now=NOW)
    assert info.value.source == "crl.pem"


def test_make_crl_needs_a_usable_ca(ca_dir: Path) -> None:
    leaf = pki.issue_client_cert(ca_of(ca_dir), "prod-eu", now=NOW)
    with pytest.raises(pki.CertificateError):
        pki.make_crl(leaf, (), now=NOW)
    with pytest.raises(ValueError):
        pki.make_crl(ca_of(ca_dir), (), days=0, now=NOW)
