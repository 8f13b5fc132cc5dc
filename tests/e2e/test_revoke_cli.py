"""``steppatch ca revoke`` and ``steppatch ca crl`` as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509

from steppatch import pki
from tests.e2e.conftest import Run


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


@pytest.fixture
def ca_dir(tmp_path: Path, run: Run) -> Path:
    run("ca", "init", tmp_path / "ca", "--name", "Test CA")
    run("ca", "issue", tmp_path / "ca", "--client", "prod-eu", "--out", tmp_path / "prod-eu")
    run("ca", "issue", tmp_path / "ca", "--client", "test-eu", "--out", tmp_path / "test-eu")
    return tmp_path / "ca"


def serial(cert: Path) -> int:
    return x509.load_pem_x509_certificate(cert.read_bytes()).serial_number


def test_revoke_then_crl(ca_dir: Path, tmp_path: Path, run: Run) -> None:
    cert = tmp_path / "prod-eu.crt"
    first = run("ca", "revoke", ca_dir, cert)
    assert "Revoked CN=prod-eu" in first.out and "ca crl" in first.out
    record = json.loads((ca_dir / "revoked.json").read_text())
    assert [int(e["serial"], 16) for e in record["revoked"]] == [serial(cert)]
    before = files_under(ca_dir)
    again = run("ca", "revoke", ca_dir, cert)  # idempotent, exit 0
    assert "revoked already" in again.out
    assert files_under(ca_dir) == before

    crl = tmp_path / "crl.pem"
    made = run("ca", "crl", ca_dir, "--out", crl, "--days", "7")
    assert "1 revoked certificate(s)" in made.out
    infos = pki.read_crl(crl.read_bytes(), (ca_dir / "ca.crt").read_bytes())
    assert infos[0].serials == {serial(cert)}
    assert serial(tmp_path / "test-eu.crt") not in infos[0].serials
    # A CRL is made anew (replaced) whenever the operator wants, e.g. from cron.
    run("ca", "revoke", ca_dir, tmp_path / "test-eu.crt")
    run("ca", "crl", ca_dir, "--out", crl)
    infos = pki.read_crl(crl.read_bytes(), (ca_dir / "ca.crt").read_bytes())
    assert infos[0].serials == {serial(cert), serial(tmp_path / "test-eu.crt")}


def test_show_prints_the_serial(ca_dir: Path, tmp_path: Path, run: Run) -> None:
    shown = run("ca", "show", tmp_path / "prod-eu.crt")
    assert f"serial       {serial(tmp_path / 'prod-eu.crt'):x}" in shown.out


def test_a_foreign_certificate_is_refused_and_nothing_changes(
    ca_dir: Path, tmp_path: Path, run: Run
) -> None:
    run("ca", "init", tmp_path / "other")
    run("ca", "issue", tmp_path / "other", "--client", "prod-eu", "--out", tmp_path / "foreign")
    run("ca", "revoke", ca_dir, tmp_path / "test-eu.crt")
    before = files_under(ca_dir)
    refused = run("ca", "revoke", ca_dir, tmp_path / "foreign.crt", expect=2)
    assert "not issued by the CA CN=Test CA" in refused.err
    assert files_under(ca_dir) == before


@pytest.mark.parametrize("what", ["missing", "not a certificate", "the CA"])
def test_unusable_input(ca_dir: Path, tmp_path: Path, run: Run, what: str) -> None:
    target = {"missing": tmp_path / "nope.crt", "not a certificate": tmp_path / "prod-eu.key",
              "the CA": ca_dir / "ca.crt"}[what]
    before = files_under(ca_dir)
    refused = run("ca", "revoke", ca_dir, target, expect=2)
    assert str(target) in refused.err
    assert files_under(ca_dir) == before


def test_not_a_ca_directory(tmp_path: Path, run: Run) -> None:
    (tmp_path / "empty").mkdir()
    run("ca", "issue", tmp_path / "empty2", "--client", "x", "--out", tmp_path / "x", expect=2)
    run("ca", "init", tmp_path / "ca")
    run("ca", "issue", tmp_path / "ca", "--client", "x", "--out", tmp_path / "x")
    assert "not a CA directory" in run("ca", "revoke", tmp_path / "empty", tmp_path / "x.crt",
                                       expect=2).err
    crl = tmp_path / "crl.pem"
    assert "not a CA directory" in run("ca", "crl", tmp_path / "empty", "--out", crl,
                                       expect=2).err
    assert not crl.exists()
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_corrupt_record_is_reported(ca_dir: Path, tmp_path: Path, run: Run) -> None:
    (ca_dir / "revoked.json").write_text("{")
    before = files_under(ca_dir)
    failed = run("ca", "crl", ca_dir, "--out", tmp_path / "crl.pem", expect=5)
    assert "revoked.json" in failed.err
    failed = run("ca", "revoke", ca_dir, tmp_path / "prod-eu.crt", expect=5)
    assert "revoked.json" in failed.err
    assert files_under(ca_dir) == before
    assert not (tmp_path / "crl.pem").exists()
