"""A private certificate authority and the certificates of mirrors and homes (``docs/pki.md``).

Pure functions: PEM bytes in, PEM bytes out; and the CA directory's files (``ca.crt``,
``ca.key``, ``revoked.json``): :func:`init_ca`, :func:`issue_files`, :func:`sign_request_file`,
:func:`revoke` and :func:`write_crl` read and write them (keys created with mode 0600 and never
overwritten, certificates 0644, through :func:`steppatch._fs.write_new`); the home's side of
enrollment is :mod:`steppatch.enroll`. Keys are ECDSA P-256: small, fast
to make, and accepted by every TLS stack steppatch meets (OpenSSL, nginx, Python's ``ssl``) for
TLS 1.2 and 1.3 alike.

A client certificate carries the environment's *system name* twice: as the subject's common name
(what nginx's ``$ssl_client_s_dn`` and most logs show) and as a subject-alternative-name URI
``urn:steppatch:system:NAME`` (what steppatch reads, since a SAN is typed and a CN is free text).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from steppatch import _record as record
from steppatch._fs import atomic_write, file_lock, write_new
from steppatch.errors import InputError, LocalEnvironmentError, WouldOverwrite
from steppatch.pki_defaults import CA_DAYS, CRL_DAYS, LEAF_DAYS

__all__ = [
    "CA_CERT_FILE",
    "CA_DAYS",
    "CA_KEY_FILE",
    "CRL_DAYS",
    "LEAF_DAYS",
    "REVOKED_FILE",
    "SYSTEM_URI_PREFIX",
    "CertificateError",
    "CertificateInfo",
    "CrlError",
    "CrlInfo",
    "InvalidSystemName",
    "IssuedFiles",
    "KeyAndCert",
    "KeyAndRequest",
    "NotIssuedByCA",
    "Revocation",
    "RevokedCert",
    "RevokedFileError",
    "check_issued_by",
    "check_key_matches",
    "init_ca",
    "issue_client_cert",
    "issue_files",
    "issue_server_cert",
    "load_ca_dir",
    "make_ca",
    "make_crl",
    "make_request",
    "read_certificate",
    "read_certificate_file",
    "read_crl",
    "read_input",
    "read_revoked",
    "revoke",
    "revoke_file",
    "sign_request",
    "sign_request_file",
    "validate_system_name",
    "write_crl",
    "write_key_and_cert",
]

# default lifetimes, in days

#: a CA directory's certificate (give it to homes and mirrors) and private key (0600)
CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
#: the CA directory's record of revoked certificates
REVOKED_FILE = "revoked.json"
#: the SAN URI of a client certificate is this prefix followed by the system name
SYSTEM_URI_PREFIX = "urn:steppatch:system:"

# A CN holds at most 64 characters (RFC 5280 ub-common-name); the name also appears in a URI,
# file names and logs, so keep it to characters that need no quoting anywhere.
_SYSTEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Certificates are back-dated a little so that a machine whose clock is a few minutes behind the
# CA's still accepts a certificate issued just now.
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")
_CLOCK_SKEW = dt.timedelta(minutes=5)


#: what cryptography raises for bytes it cannot read, beyond ValueError: a wrong version, a
#: repeated extension, a key type or a general name it does not know (some only on access)
_UNREADABLE = (
    ValueError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


class CertificateError(InputError):
    """A certificate, key or request cannot be used; ``source`` names it, ``problem`` says why."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class NotIssuedByCA(CertificateError):
    """A certificate the CA ``ca_subject`` did not issue (``source`` names it)."""

    def __init__(self, source: str, ca_subject: str, detail: str = "") -> None:
        super().__init__(source, f"not issued by the CA {ca_subject}{detail}")
        self.ca_subject = ca_subject


class CrlError(CertificateError):
    """A certificate revocation list that cannot be used; ``source`` names it."""


class RevokedFileError(LocalEnvironmentError):
    """The CA directory's ``revoked.json`` is unreadable or not one (``path``, ``problem``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class InvalidSystemName(InputError):
    """A system name that cannot go into a certificate."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"invalid system name {name!r}: expected 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
        self.name = name


@record.frozen
class KeyAndCert:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes = record.field(repr=False)


@record.frozen
class KeyAndRequest:
    """A certificate signing request and its private key, both PEM."""

    csr_pem: bytes
    key_pem: bytes = record.field(repr=False)


@record.frozen
class CertificateInfo:
    """What steppatch reads from a certificate.

    ``usage`` is ``"ca"``, ``"server"``, ``"client"`` or ``""`` (none of these);
    ``system_name`` is set for client certificates; ``fingerprint`` is the SHA-256 of the DER form.
    """

    subject: str
    issuer: str
    common_name: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    usage: str
    system_name: str | None
    hostnames: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    fingerprint: str

    def expired(self, now: dt.datetime) -> bool:
        """Whether ``now`` (timezone-aware) lies outside the validity period."""
        return not self.not_before <= now <= self.not_after


def validate_system_name(name: str) -> str:
    """``name`` if it can be a system name. Raises :class:`InvalidSystemName`."""
    if not _SYSTEM_NAME.fullmatch(name):
        raise InvalidSystemName(name)
    return name


def _now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _load_cert(pem: bytes, source: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except _UNREADABLE as e:
        raise CertificateError(source, f"not a PEM certificate ({e})") from e


def _load_key(pem: bytes, source: str) -> CertificateIssuerPrivateKeyTypes:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (TypeError, *_UNREADABLE) as e:
        raise CertificateError(source, f"not an unencrypted PEM private key ({e})") from e
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise CertificateError(source, "unsupported key type (expected EC, RSA or Ed25519)")
    return key


def _load_ca(
    ca: KeyAndCert, source: str
) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    cert = _load_cert(ca.cert_pem, f"{source} certificate")
    key = _load_key(ca.key_pem, f"{source} key")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except _UNREADABLE as e:
        raise CertificateError(source, f"not a readable CA certificate ({e})") from e
    if constraints is None or not constraints.ca:
        raise CertificateError(source, "the certificate is not a CA certificate")
    check_key_matches(ca.cert_pem, ca.key_pem, source)
    return cert, key


def _signature_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    # Ed25519 signs without a separate hash; every other key type here uses SHA-256.
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _check_public_key(key: CertificatePublicKeyTypes, source: str) -> None:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CertificateError(source, f"an RSA key of {key.key_size} bits is too weak")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise CertificateError(source, f"unsupported elliptic curve {key.curve.name}")
        return
    if isinstance(key, ed25519.Ed25519PublicKey):
        return
    raise CertificateError(source, "unsupported key type (expected EC, RSA or Ed25519)")


def _build(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer_cert: x509.Certificate | None,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    *,
    days: int,
    now: dt.datetime,
    ca: bool,
    usage: x509.ObjectIdentifier | None,
    san: Sequence[x509.GeneralName],
) -> x509.Certificate:
    if days < 1:
        raise ValueError("a certificate must be valid for at least one day")
    issuer = subject if issuer_cert is None else issuer_cert.subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                # RSA key exchange (TLS 1.2 without ECDHE) needs key encipherment
                key_encipherment=not ca and isinstance(public_key, rsa.RSAPublicKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    signer_public = issuer_key.public_key()
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_public),
        critical=False,
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    return builder.sign(issuer_key, _signature_hash(issuer_key))


def make_ca(
    name: str = "steppatch private CA", *, days: int = CA_DAYS, now: dt.datetime | None = None
) -> KeyAndCert:
    """A new self-signed CA that may sign leaf certificates only (path length 0)."""
    key = _new_key()
    cert = _build(
        _name(name), key.public_key(), None, key,
        days=days, now=_now(now), ca=True, usage=None, san=(),
    )
    return KeyAndCert(_cert_pem(cert), _key_pem(key))


def _host_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    if not hostnames:
        raise InputError("a server certificate needs at least one host name or IP address")
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        label = host.lower().rstrip(".")
        if not _HOST_NAME.fullmatch(label):
            raise InputError(f"invalid server host name {host!r}")
        names.append(x509.DNSName(label))
    return names


def issue_server_cert(
    ca: KeyAndCert,
    hostnames: Sequence[str],
    *,
    days: int = LEAF_DAYS,
    now: dt.datetime | None = None,
) -> KeyAndCert:
    """A mirror's certificate for ``hostnames`` (DNS names or IP addresses), signed by ``ca``.

    Raises :class:`CertificateError` for an unusable CA and :class:`InputError` for a bad name.
    """
    ca_cert, ca_key = _load_ca(ca, "CA")
    san = _host_names(hostnames)
    key = _new_key()
    cert = _build(
        _name(hostnames[0]), key.public_key(), ca_cert, ca_key,
        days=days, now=_now(now), ca=False, usage=ExtendedKeyUsageOID.SERVER_AUTH, san=san,
    )
    return KeyAndCert(_cert_pem(cert), _key_pem(key))


def _client_cert(
    ca: KeyAndCert,
    system_name: str,
    public_key: CertificatePublicKeyTypes,
    days: int,
    now: dt.datetime | None,
) -> x509.Certificate:
    ca_cert, ca_key = _load_ca(ca, "CA")
    validate_system_name(system_name)
    return _build(
        _name(system_name), public_key, ca_cert, ca_key,
        days=days, now=_now(now), ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        san=[x509.UniformResourceIdentifier(SYSTEM_URI_PREFIX + system_name)],
    )


def issue_client_cert(
    ca: KeyAndCert,
    system_name: str,
    *,
    days: int = LEAF_DAYS,
    now: dt.datetime | None = None,
) -> KeyAndCert:
    """A home's client certificate carrying ``system_name``, with a new key, signed by ``ca``.

    Raises :class:`InvalidSystemName` and :class:`CertificateError` for an unusable CA.
    """
    key = _new_key()
    cert = _client_cert(ca, system_name, key.public_key(), days, now)
    return KeyAndCert(_cert_pem(cert), _key_pem(key))


def make_request(system_name: str) -> KeyAndRequest:
    """A new key and a certificate request for ``system_name`` (enrollment).

    Raises :class:`InvalidSystemName`.
    """
    validate_system_name(system_name)
    key = _new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(system_name))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(SYSTEM_URI_PREFIX + system_name)]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return KeyAndRequest(csr.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _system_name_from(
    subject: x509.Name, extensions: x509.Extensions, source: str
) -> str | None:
    uris: list[str] = []
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
                if u.startswith(SYSTEM_URI_PREFIX)]
    except x509.ExtensionNotFound:
        pass
    cns = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(uris) > 1:
        raise CertificateError(source, "more than one system name")
    if uris:
        name = uris[0][len(SYSTEM_URI_PREFIX):]
        if cns and cns != [name]:
            raise CertificateError(
                source, f"the common name {cns[0]!r} differs from the system name {name!r}"
            )
        return name
    return cns[0] if len(cns) == 1 else None


def sign_request(
    ca: KeyAndCert,
    csr_pem: bytes,
    *,
    days: int = LEAF_DAYS,
    now: dt.datetime | None = None,
    source: str = "certificate request",
) -> bytes:
    """Sign an enrollment request: a client certificate for the system name it asks for.

    Only the name and the public key are taken from the request; the CA decides every other
    field. Raises :class:`CertificateError` for an unreadable request, a bad self-signature, a
    weak key, or a request without a system name; :class:`InvalidSystemName`.
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except _UNREADABLE as e:
        raise CertificateError(source, f"not a PEM certificate request ({e})") from e
    try:
        valid = csr.is_signature_valid
    except (InvalidSignature, TypeError, *_UNREADABLE):
        valid = False
    if not valid:
        raise CertificateError(source, "the request's signature does not verify")
    try:
        # Parsed on access: an unknown key type or a malformed extension raises only here.
        public_key = csr.public_key()
        extensions = csr.extensions
        subject = csr.subject
    except _UNREADABLE as e:
        raise CertificateError(source, f"not a readable certificate request ({e})") from e
    _check_public_key(public_key, source)
    try:
        name = _system_name_from(subject, extensions, source)
    except _UNREADABLE as e:
        raise CertificateError(source, f"not a readable certificate request ({e})") from e
    if name is None:
        raise CertificateError(source, "the request names no system (no common name)")
    validate_system_name(name)
    return _cert_pem(_client_cert(ca, name, public_key, days, now))


def read_certificate(pem: bytes, source: str = "certificate") -> CertificateInfo:
    """Read a PEM certificate. Raises :class:`CertificateError`."""
    cert = _load_cert(pem, source)
    try:
        return _certificate_info(cert, source)
    except _UNREADABLE as e:
        # cryptography parses extensions on access: a malformed one raises only here
        raise CertificateError(source, f"not a readable certificate ({e})") from e


def _certificate_info(cert: x509.Certificate, source: str) -> CertificateInfo:
    usage = ""
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            usage = "ca"
    except x509.ExtensionNotFound:
        pass
    hostnames: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hostnames = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        pass
    if not usage:
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if ExtendedKeyUsageOID.CLIENT_AUTH in eku:
                usage = "client"
            elif ExtendedKeyUsageOID.SERVER_AUTH in eku:
                usage = "server"
        except x509.ExtensionNotFound:
            pass
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        common_name=str(cns[0].value) if cns else "",
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        usage=usage,
        system_name=(
            _system_name_from(cert.subject, cert.extensions, source) if usage == "client" else None
        ),
        hostnames=hostnames,
        ip_addresses=ips,
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
    )


def check_key_matches(cert_pem: bytes, key_pem: bytes, source: str = "certificate") -> None:
    """Raise :class:`CertificateError` unless ``key_pem`` is the private key of ``cert_pem``."""
    cert = _load_cert(cert_pem, source)
    key = _load_key(key_pem, f"{source} key")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    try:
        cert_key = cert.public_key().public_bytes(der, spki)
    except _UNREADABLE as e:
        raise CertificateError(source, f"not a readable certificate ({e})") from e
    if cert_key != key.public_key().public_bytes(der, spki):
        raise CertificateError(source, "the private key does not belong to this certificate")


def check_issued_by(cert_pem: bytes, ca_cert_pem: bytes, source: str = "certificate") -> None:
    """Raise :class:`NotIssuedByCA` (a :class:`CertificateError`) unless ``ca_cert_pem`` signed
    ``cert_pem``."""
    cert = _load_cert(cert_pem, source)
    ca = _load_cert(ca_cert_pem, "CA certificate")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, *_UNREADABLE) as e:
        raise NotIssuedByCA(
            source, ca.subject.rfc4514_string(), f" ({e or 'bad signature'})"
        ) from e


# --- revocation ----------------------------------------------------------------------------------
#
# The CA directory records what it revoked in ``revoked.json``; ``write_crl`` turns that record
# into a signed X.509 CRL that the updates server checks every client certificate against
# (``[tls] crl`` in mirror.toml). The record, not the CRL, is the source of truth: a CRL expires
# and is made anew from it.

_CRL_PEM = re.compile(rb"-----BEGIN X509 CRL-----\r?\n.+?-----END X509 CRL-----", re.DOTALL)
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
# a CA directory is the operator's own; a second revoke waits this long for the first
_LOCK_SECONDS = 30.0


@record.frozen
class RevokedCert:
    """One entry of ``revoked.json``: the serial (what a CRL names) and, for people, the subject
    and the end of the certificate's validity."""

    serial: int
    revoked_at: dt.datetime
    subject: str
    not_after: dt.datetime


@record.frozen
class Revocation:
    """What :func:`revoke` did: ``added`` is false when the certificate was revoked already."""

    entry: RevokedCert
    added: bool
    record: Path


@record.frozen
class CrlInfo:
    """What a CRL says: its issuer, number, validity and the revoked serials."""

    issuer: str
    number: int | None
    last_update: dt.datetime
    next_update: dt.datetime
    serials: frozenset[int]


def _entry_json(e: RevokedCert) -> dict[str, str]:
    return {
        "serial": f"{e.serial:x}",
        "revoked_at": e.revoked_at.isoformat(),
        "subject": e.subject,
        "not_after": e.not_after.isoformat(),
    }


def _entry_from(item: object, path: str) -> RevokedCert:
    if not isinstance(item, dict):
        raise RevokedFileError(path, "an entry of 'revoked' is not an object")
    try:
        serial = int(str(item["serial"]), 16)
        revoked_at = dt.datetime.fromisoformat(str(item["revoked_at"]))
        not_after = dt.datetime.fromisoformat(str(item["not_after"]))
        subject = str(item["subject"])
    except (KeyError, ValueError) as e:
        raise RevokedFileError(path, f"a bad entry ({e!r})") from None
    if revoked_at.tzinfo is None or not_after.tzinfo is None or serial <= 0:
        raise RevokedFileError(path, f"a bad entry (serial {serial:x})")
    return RevokedCert(serial, revoked_at, subject, not_after)


def read_revoked(ca_dir: Path) -> tuple[RevokedCert, ...]:
    """The certificates revoked by the CA in ``ca_dir`` (none when it has no record yet).

    Raises :class:`RevokedFileError` for an unreadable or malformed ``revoked.json``.
    """
    path = ca_dir / REVOKED_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ()
    except OSError as e:
        raise RevokedFileError(str(path), f"cannot read: {e.strerror or e}") from e
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise RevokedFileError(str(path), f"not JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("revoked"), list):
        raise RevokedFileError(str(path), "expected an object with a list 'revoked'")
    return tuple(_entry_from(item, str(path)) for item in doc["revoked"])


def _ca_file(ca_dir: Path, name: str) -> bytes:
    try:
        return (ca_dir / name).read_bytes()
    except OSError as e:
        raise InputError(
            f"{ca_dir} is not a CA directory (cannot read {name}: {e.strerror or e})"
        ) from None


def revoke(
    ca_dir: Path, cert_pem: bytes, *, source: str = "certificate", now: dt.datetime | None = None
) -> Revocation:
    """Record ``cert_pem`` as revoked in ``ca_dir/revoked.json``.

    Idempotent (a second call changes nothing and says ``added=False``) and crash-safe (the record
    is replaced atomically, under a lock). Raises :class:`NotIssuedByCA` for a certificate of
    another CA, :class:`CertificateError` for an unreadable one or the CA's own,
    :class:`RevokedFileError`, :class:`InputError` when ``ca_dir`` holds no ``ca.crt``,
    :class:`~steppatch.errors.LockedError`, ``OSError`` from writing.
    """
    ca_pem = _ca_file(ca_dir, CA_CERT_FILE)
    cert = _load_cert(cert_pem, source)
    check_issued_by(cert_pem, ca_pem, source)
    if cert.fingerprint(hashes.SHA256()) == _load_cert(ca_pem, "CA").fingerprint(hashes.SHA256()):
        raise CertificateError(source, "is the CA certificate itself (make a new CA instead)")
    path = ca_dir / REVOKED_FILE
    with file_lock(ca_dir / f".{REVOKED_FILE}.lock", timeout=_LOCK_SECONDS):
        entries = read_revoked(ca_dir)
        for e in entries:
            if e.serial == cert.serial_number:
                return Revocation(e, added=False, record=path)
        entry = RevokedCert(
            cert.serial_number,
            _now(now).replace(microsecond=0),
            cert.subject.rfc4514_string(),
            cert.not_valid_after_utc,
        )
        doc = {"revoked": [_entry_json(e) for e in (*entries, entry)]}
        atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode(), 0o644)
    return Revocation(entry, added=True, record=path)


def make_crl(
    ca: KeyAndCert,
    revoked: Sequence[RevokedCert],
    *,
    days: int = CRL_DAYS,
    now: dt.datetime | None = None,
) -> bytes:
    """A CRL (PEM) signed by ``ca`` naming ``revoked``, valid from now (less the clock skew) for
    ``days`` days. Its CRL number is the time of signing in microseconds, so a later CRL always
    has a larger one. Raises :class:`CertificateError` for an unusable CA."""
    if days < 1:
        raise ValueError("a CRL must be valid for at least one day")
    ca_cert, ca_key = _load_ca(ca, "CA")
    when = _now(now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(when - _CLOCK_SKEW)
        .next_update(when + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(int(when.timestamp() * 1_000_000)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
            .build()
        )
    crl = builder.sign(ca_key, _signature_hash(ca_key))
    return crl.public_bytes(serialization.Encoding.PEM)


def write_crl(
    ca_dir: Path, out: Path, *, days: int = CRL_DAYS, now: dt.datetime | None = None
) -> CrlInfo:
    """Write the CRL of the CA in ``ca_dir`` to ``out`` (replaced atomically, mode 0644).

    Raises :class:`InputError` (not a CA directory), :class:`CertificateError`,
    :class:`RevokedFileError`, ``OSError`` from writing.
    """
    ca = KeyAndCert(_ca_file(ca_dir, CA_CERT_FILE), _ca_file(ca_dir, CA_KEY_FILE))
    pem = make_crl(ca, read_revoked(ca_dir), days=days, now=now)
    atomic_write(out, pem, 0o644)
    (info,) = read_crl(pem, ca.cert_pem, str(out), now=now)
    return info


def read_crl(
    pem: bytes, ca_pem: bytes, source: str = "CRL", *, now: dt.datetime | None = None
) -> tuple[CrlInfo, ...]:
    """Check a PEM file of one or more CRLs against the CA certificates in ``ca_pem``.

    Every CA needs exactly one CRL, signed by it and valid at ``now``: a TLS server that checks
    revocation refuses every client whose CA has no valid CRL. Only CRLs may be in the file (a
    certificate there would become trusted). Raises :class:`CrlError`.
    """
    when = _now(now)
    kinds = {m.group(1) for m in _PEM_BEGIN.finditer(pem)}
    if kinds - {b"X509 CRL"}:
        other = sorted(k.decode() for k in kinds - {b"X509 CRL"})
        raise CrlError(source, f"holds something other than CRLs ({', '.join(other)})")
    blocks = _CRL_PEM.findall(pem)
    if not blocks:
        raise CrlError(source, "no PEM CRL (-----BEGIN X509 CRL-----)")
    try:
        cas = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as e:
        raise CrlError(source, f"the CA file is unreadable ({e})") from None
    result: list[CrlInfo] = []
    covered: set[bytes] = set()
    for block in blocks:
        try:
            crl = x509.load_pem_x509_crl(block)
        except ValueError as e:
            raise CrlError(source, f"not a readable CRL ({e})") from None
        issuer = crl.issuer.rfc4514_string()
        signer = next(
            (c for c in cas if c.subject == crl.issuer and _crl_signed_by(crl, c)), None
        )
        if signer is None:
            raise CrlError(source, f"the CRL of {issuer} is not signed by a client CA")
        key = signer.public_bytes(serialization.Encoding.DER)
        if key in covered:
            raise CrlError(source, f"more than one CRL of {issuer}")
        covered.add(key)
        next_update = crl.next_update_utc
        if next_update is None or next_update <= when:
            ended = f"on {next_update:%Y-%m-%d %H:%M} UTC" if next_update else "(no next update)"
            raise CrlError(
                source, f"the CRL of {issuer} expired {ended}: make a new one (steppatch ca crl)"
            )
        if crl.last_update_utc > when + _CLOCK_SKEW:
            raise CrlError(source, f"the CRL of {issuer} is not valid yet")
        try:
            number: int | None = (
                crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            )
        except x509.ExtensionNotFound:
            number = None
        result.append(CrlInfo(
            issuer, number, crl.last_update_utc, next_update,
            frozenset(r.serial_number for r in crl),
        ))
    for c in cas:
        if c.public_bytes(serialization.Encoding.DER) not in covered:
            raise CrlError(
                source,
                f"no CRL of the client CA {c.subject.rfc4514_string()}: every certificate it "
                "issued would be refused",
            )
    return tuple(result)


def _crl_signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    key = ca.public_key()
    if not isinstance(
        key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
    ):
        return False
    try:
        return crl.is_signature_valid(key)
    except (ValueError, TypeError, InvalidSignature):
        return False


# --- the CA directory's files --------------------------------------------------------------------
#
# What ``steppatch ca init|issue|sign|show|revoke`` do on disk. Keys are created with mode 0600 and
# certificates with 0644; neither ever replaces a file (``_fs.write_new``).


@record.frozen
class IssuedFiles:
    """Files a CA operation wrote: the certificate, its key (``None`` for a signed request, whose
    key stays with the home) and what the certificate says."""

    cert: Path
    key: Path | None
    info: CertificateInfo


def read_input(path: Path, what: str) -> bytes:
    """The bytes of an operator's file. Raises :class:`InputError` (``PATH: no such WHAT``) when
    it does not exist, ``OSError`` otherwise."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None


def write_key_and_cert(prefix: Path, pair: KeyAndCert) -> tuple[Path, Path]:
    """Create ``PREFIX.crt`` (0644) and ``PREFIX.key`` (0600): the key first, neither when
    either exists. Raises :class:`~steppatch.errors.WouldOverwrite`, ``OSError``."""
    crt, key = Path(f"{prefix}.crt"), Path(f"{prefix}.key")
    for p in (crt, key):
        if p.is_symlink() or p.exists():
            raise WouldOverwrite(str(p))
    write_new(key, pair.key_pem, 0o600)
    write_new(crt, pair.cert_pem, 0o644)
    return crt, key


def load_ca_dir(directory: Path) -> KeyAndCert:
    """The CA kept in ``directory``. Raises :class:`InputError` when it is not a CA directory."""
    crt, key = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if not crt.is_file() or not key.is_file():
        raise InputError(
            f"{directory} is not a CA directory (no {CA_CERT_FILE} and {CA_KEY_FILE}): "
            "'ca init' it"
        )
    return KeyAndCert(read_input(crt, "CA certificate"), read_input(key, "CA key"))


def init_ca(
    directory: Path, name: str = "steppatch private CA", *, days: int = CA_DAYS,
    now: dt.datetime | None = None,
) -> IssuedFiles:
    """Make a private CA in ``directory`` (created): ``ca.crt`` and ``ca.key`` (0600).

    Raises :class:`~steppatch.errors.WouldOverwrite` when it holds a CA already (nothing is
    changed), ``OSError``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pair = make_ca(name, days=days, now=now)
    crt, key = write_key_and_cert(directory / Path(CA_CERT_FILE).stem, pair)
    return IssuedFiles(crt, key, read_certificate(pair.cert_pem, str(crt)))


def issue_files(
    ca_dir: Path,
    out: Path,
    *,
    servers: Sequence[str] = (),
    client: str | None = None,
    days: int = LEAF_DAYS,
    now: dt.datetime | None = None,
) -> IssuedFiles:
    """Issue a mirror's server certificate (``servers``: host names and addresses) or a home's
    client certificate (``client``: its system name) and write ``OUT.crt`` and ``OUT.key``.

    Raises :class:`InputError` unless exactly one of them is given or when ``ca_dir`` is not a
    CA directory, :class:`~steppatch.errors.WouldOverwrite`, :class:`CertificateError`,
    :class:`InvalidSystemName`, ``OSError``.
    """
    if bool(servers) == (client is not None):
        raise InputError("give either --server HOSTNAME (repeatable) or --client SYSTEM_NAME")
    ca = load_ca_dir(ca_dir)
    if servers:
        pair = issue_server_cert(ca, servers, days=days, now=now)
    else:
        assert client is not None
        pair = issue_client_cert(ca, client, days=days, now=now)
    crt, key = write_key_and_cert(out, pair)
    return IssuedFiles(crt, key, read_certificate(pair.cert_pem, str(crt)))


def sign_request_file(
    ca_dir: Path,
    request: Path,
    out: Path,
    *,
    system: str | None = None,
    days: int = LEAF_DAYS,
    now: dt.datetime | None = None,
) -> IssuedFiles:
    """Sign the enrollment request in ``request`` and create ``out`` (the certificate, 0644).

    With ``system``, refuse (writing nothing) a request for another system name. Raises
    :class:`InputError`, :class:`CertificateError`, :class:`~steppatch.errors.WouldOverwrite`,
    ``OSError``.
    """
    ca = load_ca_dir(ca_dir)
    cert = sign_request(
        ca, read_input(request, "request"), days=days, now=now, source=str(request)
    )
    info = read_certificate(cert, str(out))
    if system is not None and info.system_name != system:
        raise CertificateError(
            str(request), f"asks for system {info.system_name!r}, not {system!r}"
        )
    write_new(out, cert, 0o644)
    return IssuedFiles(out, None, info)


def read_certificate_file(path: Path) -> CertificateInfo:
    """What the certificate in ``path`` says. Raises :class:`InputError`,
    :class:`CertificateError`."""
    return read_certificate(read_input(path, "certificate"), str(path))


def revoke_file(ca_dir: Path, cert: Path, *, now: dt.datetime | None = None) -> Revocation:
    """:func:`revoke` the certificate in the file ``cert``. Raises what :func:`revoke` raises,
    and :class:`InputError` when ``cert`` does not exist."""
    return revoke(ca_dir, read_input(cert, "certificate"), source=str(cert), now=now)
