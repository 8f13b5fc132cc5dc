"""Enrollment and the CA directory as library calls (``steppatch.enroll``, ``steppatch.pki``),
the home's TLS files (``HomeTls``) and the one create-new writer (``_fs.write_new``)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from steppatch import enroll, pki
from steppatch._fs import write_new
from steppatch.config import HomeConfig
from steppatch.errors import HomeError, InputError, WouldOverwrite
from steppatch.home import HomeDir, HomeTls
from steppatch.transport import make_ssl_context
from tests.builders import tree


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def home(tmp_path: Path) -> Path:
    HomeDir.create(tmp_path / "home", HomeConfig("file:///nowhere", system="test-env"))
    return tmp_path / "home"


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    pki.init_ca(tmp_path / "ca", "Test CA")
    return tmp_path / "ca"


# --- _fs.write_new --------------------------------------------------------------------------------


def test_write_new_creates_with_exactly_the_mode(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_new(tmp_path / "a.crt", b"cert", 0o644)
    finally:
        os.umask(old)
    assert (tmp_path / "a.crt").read_bytes() == b"cert"
    assert mode(tmp_path / "a.crt") == 0o644


@pytest.mark.parametrize("kind", ["file", "dangling link"])
def test_write_new_never_replaces_and_changes_nothing(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "a.key"
    if kind == "file":
        target.write_bytes(b"old")
    else:
        target.symlink_to(tmp_path / "elsewhere")
    before = tree(tmp_path)
    with pytest.raises(WouldOverwrite) as caught:
        write_new(target, b"new", 0o600)
    assert caught.value.path == str(target)
    assert isinstance(caught.value, InputError)
    assert tree(tmp_path) == before


# --- HomeTls --------------------------------------------------------------------------------------


def test_home_tls_names_and_config(home: Path, ca_dir: Path) -> None:
    tls = HomeDir.open(home).tls
    assert tls == HomeTls.of(home)
    assert tls.dir == home / ".steppatch" / "tls"
    assert (tls.ca.name, tls.cert.name, tls.key.name) == ("ca.crt", "client.crt", "client.key")
    assert tls.config() is None
    issued = pki.issue_files(ca_dir, home.parent / "c", client="test-env")
    assert issued.key is not None
    config = tls.write(
        (ca_dir / "ca.crt").read_bytes(), (issued.cert.read_bytes(), issued.key.read_bytes())
    )
    assert config is not None and config.cert_file == tls.cert
    assert mode(tls.key) == 0o600
    make_ssl_context(config)


def test_home_tls_refuses_a_client_certificate_without_a_ca(tmp_path: Path) -> None:
    tls = HomeTls(tmp_path / "tls")
    with pytest.raises(InputError, match="needs the private CA"):
        tls.write(None, (b"c", b"k"))
    assert not tls.dir.exists()


# --- the CA directory -----------------------------------------------------------------------------


def test_ca_files(ca_dir: Path, tmp_path: Path) -> None:
    assert mode(ca_dir / pki.CA_KEY_FILE) == 0o600
    assert mode(ca_dir / pki.CA_CERT_FILE) == 0o644
    before = tree(ca_dir)
    with pytest.raises(WouldOverwrite):
        pki.init_ca(ca_dir)
    assert tree(ca_dir) == before
    server = pki.issue_files(ca_dir, tmp_path / "srv", servers=["mirror.example.com"])
    assert server.info.usage == "server" and server.info.hostnames == ("mirror.example.com",)
    assert pki.read_certificate_file(server.cert) == server.info


@pytest.mark.parametrize(
    ("servers", "client"), [((), None), (("h",), "c")]
)
def test_issue_files_wants_one_kind(
    ca_dir: Path, tmp_path: Path, servers: tuple[str, ...], client: str | None
) -> None:
    with pytest.raises(InputError, match="either --server"):
        pki.issue_files(ca_dir, tmp_path / "x", servers=servers, client=client)
    assert not list(tmp_path.glob("x.*"))


def test_not_a_ca_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a CA directory"):
        pki.load_ca_dir(tmp_path)
    with pytest.raises(InputError, match="no such certificate"):
        pki.read_certificate_file(tmp_path / "missing.crt")


# --- enrollment -----------------------------------------------------------------------------------


def test_request_sign_install_renew(home: Path, ca_dir: Path, tmp_path: Path) -> None:
    made = enroll.request_certificate(home, "test-env")
    tls = HomeTls.of(home)
    assert (made.request, made.key) == (tls.request, tls.request_key)
    assert mode(tls.request_key) == 0o600 and mode(tls.dir) == 0o700
    before = tree(tls.dir)
    with pytest.raises(enroll.EnrollmentPending) as caught:
        enroll.request_certificate(home, "test-env")
    assert caught.value.request == str(tls.request)
    assert tree(tls.dir) == before

    kept = tmp_path / "kept.csr"
    kept.write_bytes(tls.request.read_bytes())
    with pytest.raises(pki.CertificateError, match="asks for system 'test-env'"):
        pki.sign_request_file(ca_dir, tls.request, tmp_path / "o.crt", system="other")
    assert not (tmp_path / "o.crt").exists()
    signed = pki.sign_request_file(ca_dir, tls.request, tmp_path / "test-env.crt")
    assert signed.key is None and signed.info.system_name == "test-env"

    installed = enroll.install_certificate(home, signed.cert, ca=ca_dir / "ca.crt")
    assert not installed.renewal and installed.info.system_name == "test-env"
    assert sorted(p.name for p in tls.dir.iterdir() if not p.name.startswith(".")) == [
        "client.crt", "client.key",
    ]
    key = tls.key.read_bytes()
    renewed = pki.sign_request_file(ca_dir, kept, tmp_path / "renewed.crt")
    again = enroll.install_certificate(home, renewed.cert)
    assert again.renewal
    assert tls.key.read_bytes() == key
    assert tls.cert.read_bytes() == renewed.cert.read_bytes()


def test_force_replaces_a_pending_request(home: Path) -> None:
    first = enroll.request_certificate(home, "test-env").key.read_bytes()
    enroll.request_certificate(home, "test-env", force=True)
    assert HomeTls.of(home).request_key.read_bytes() != first


def test_install_refuses_what_does_not_fit_and_changes_nothing(
    home: Path, ca_dir: Path, tmp_path: Path
) -> None:
    enroll.request_certificate(home, "test-env")
    tls = HomeTls.of(home)
    before = tree(tls.dir)
    foreign = pki.issue_files(ca_dir, tmp_path / "foreign", client="test-env").cert
    other = pki.issue_files(ca_dir, tmp_path / "other", client="other-env").cert
    server = pki.issue_files(ca_dir, tmp_path / "srv", servers=["h.example"]).cert
    pki.init_ca(tmp_path / "ca2", "Other CA")
    by_other_ca = pki.sign_request_file(tmp_path / "ca2", tls.request, tmp_path / "o.crt").cert
    cases: list[tuple[Path, dict[str, object], str]] = [
        (foreign, {}, "key is not this home's"),
        (other, {}, "is for system 'other-env'"),
        (server, {}, "not a steppatch client certificate"),
        (by_other_ca, {"ca": ca_dir / "ca.crt"}, "not issued by the CA CN=Test CA"),
        (by_other_ca, {"clock": lambda: dt.datetime(2000, 1, 1, tzinfo=dt.UTC)}, "expired"),
    ]
    for cert, options, words in cases:
        with pytest.raises(pki.CertificateError, match=words):
            enroll.install_certificate(home, cert, **options)  # type: ignore[arg-type]
        assert tree(tls.dir) == before
    with pytest.raises(InputError, match="no such certificate"):
        enroll.install_certificate(home, tmp_path / "missing.crt")
    assert tree(tls.dir) == before


def test_enroll_refuses_another_name_and_a_bad_one(home: Path) -> None:
    with pytest.raises(InputError, match="system name is 'test-env'"):
        enroll.request_certificate(home, "someone-else")
    with pytest.raises(pki.InvalidSystemName):
        enroll.request_certificate(home, "bad name")
    assert not HomeTls.of(home).dir.exists()


def test_enroll_outside_a_home(tmp_path: Path) -> None:
    with pytest.raises(HomeError):
        enroll.request_certificate(tmp_path, "test-env")
    assert list(tmp_path.iterdir()) == []


def test_an_install_interrupted_between_key_and_certificate_is_repaired(
    home: Path, ca_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enroll.request_certificate(home, "test-env")
    tls = HomeTls.of(home)
    signed = pki.sign_request_file(ca_dir, tls.request, tmp_path / "c.crt").cert
    real_replace = os.replace

    def crash_after_the_key(src: str | Path, dst: str | Path) -> None:
        real_replace(src, dst)
        if Path(dst) == tls.key:
            raise KeyboardInterrupt  # the process stops between the two renames

    monkeypatch.setattr(os, "replace", crash_after_the_key)
    with pytest.raises(KeyboardInterrupt):
        enroll.install_certificate(home, signed)
    monkeypatch.undo()
    # the key moved, the certificate did not: installing again finds the key and repairs
    assert tls.key.exists() and not tls.cert.exists()
    again = enroll.install_certificate(home, signed)
    assert again.renewal
    assert tls.cert.read_bytes() == signed.read_bytes()
    assert not tls.new_cert.exists()
