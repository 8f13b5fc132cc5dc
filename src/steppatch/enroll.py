"""Enrollment: a home's key and certificate request, then its signed client certificate
(``steppatch enroll``, ``docs/pki.md``).

:func:`request_certificate` makes a key (``request.key``, 0600) and a request (``request.csr``)
in the home's TLS directory (:class:`~steppatch.home.HomeTls`); the CA's operator signs the
request (``steppatch ca sign``, :func:`steppatch.pki.sign_request_file`);
:func:`install_certificate` checks the certificate (a steppatch client certificate, valid now,
for this home's system name, optionally issued by a given CA, and for the pending request's key
or the installed key, which is a renewal) and installs it as ``client.crt`` beside ``client.key``.

Both take the TLS directory's lock, so two enrollments of one home take turns. The install moves
the key first, then the certificate: an interruption in between leaves a pair that does not match,
which the transport reports by name and enrolling again repairs.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from steppatch import _record as record
from steppatch import pki
from steppatch._fs import file_lock, fsync_dir, write_new
from steppatch.clock import Clock, utcnow
from steppatch.errors import InputError
from steppatch.home import HomeDir, HomeTls
from steppatch.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "EnrollmentPending",
    "InstalledCertificate",
    "PendingRequest",
    "install_certificate",
    "key_matches",
    "replace_certificate",
    "request_certificate",
]


class EnrollmentPending(InputError):
    """A request is pending already (``request``): install its certificate, or start again with
    ``force``."""

    def __init__(self, request: str) -> None:
        super().__init__(
            f"an enrollment is pending ({request}): install its certificate with "
            "'steppatch enroll --install CERT', or start again with --force"
        )
        self.request = request


@record.frozen
class PendingRequest:
    """What :func:`request_certificate` made: the request to give to the CA's operator."""

    system_name: str
    request: Path
    key: Path


@record.frozen
class InstalledCertificate:
    """What :func:`install_certificate` installed; ``renewal`` when the key was the installed
    one."""

    info: pki.CertificateInfo
    cert: Path
    key: Path
    renewal: bool


def request_certificate(
    home: Path,
    system_name: str,
    *,
    force: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> PendingRequest:
    """Make the home's key and certificate request for ``system_name``.

    Raises :class:`~steppatch.errors.HomeError` when ``home`` is not a home,
    :class:`~steppatch.pki.InvalidSystemName`, :class:`InputError` when the home's configured
    system name differs, :class:`EnrollmentPending` (without ``force``),
    :class:`~steppatch.errors.LockedError`, ``OSError``.
    """
    pki.validate_system_name(system_name)
    files = HomeDir.open(home)
    configured = files.config.system
    if configured and configured != system_name:
        raise InputError(
            f"this home's system name is {configured!r} (steppatch.toml); enroll it under that name"
        )
    tls = files.tls
    with _locked(tls, limits):
        if os.path.lexists(tls.request_key):
            if not force:
                raise EnrollmentPending(str(tls.request))
            tls.request_key.unlink()
            tls.request.unlink(missing_ok=True)
        made = pki.make_request(system_name)
        write_new(tls.request_key, made.key_pem, 0o600)
        write_new(tls.request, made.csr_pem, 0o644)
        fsync_dir(tls.dir)
    return PendingRequest(system_name, tls.request, tls.request_key)


def install_certificate(
    home: Path,
    cert_file: Path,
    *,
    ca: Path | None = None,
    clock: Clock = utcnow,
    limits: Limits = DEFAULT_LIMITS,
) -> InstalledCertificate:
    """Install the signed client certificate in ``cert_file`` as the home's ``client.crt``.

    Raises :class:`~steppatch.errors.HomeError`, :class:`InputError` for a missing file,
    :class:`~steppatch.pki.CertificateError` for a certificate that does not fit (not a client
    certificate, expired, another system, another CA, a key that is not this home's),
    :class:`~steppatch.errors.LockedError`, ``OSError``. Nothing is changed then.
    """
    files = HomeDir.open(home)
    configured = files.config.system
    source = str(cert_file)
    cert = pki.read_input(cert_file, "certificate")
    info = pki.read_certificate(cert, source)
    if info.usage != "client" or not info.system_name:
        raise pki.CertificateError(source, "not a steppatch client certificate")
    if info.expired(clock()):
        raise pki.CertificateError(
            source, f"expired or not yet valid (valid until {info.not_after:%Y-%m-%d})"
        )
    if configured and info.system_name != configured:
        raise pki.CertificateError(
            source, f"is for system {info.system_name!r}; this home is {configured!r}"
        )
    if ca is not None:
        pki.check_issued_by(cert, pki.read_input(ca, "CA certificate"), source)
    tls = files.tls
    with _locked(tls, limits):
        # The pending request's key, or (a renewal of the same key) the installed one.
        candidates = [k for k in (tls.request_key, tls.key) if k.exists()]
        match = next((k for k in candidates if key_matches(cert, k)), None)
        if match is None:
            raise pki.CertificateError(
                source,
                "its key is not this home's (make a request with 'steppatch enroll SYSTEM_NAME')",
            )
        renewal = match == tls.key
        replace_certificate(tls, cert, new_key=None if renewal else match)
    return InstalledCertificate(info, tls.cert, tls.key, renewal)


def key_matches(cert: bytes, key: Path) -> bool:
    """Whether the private key in the file ``key`` is the key of ``cert`` (PEM)."""
    try:
        pki.check_key_matches(cert, key.read_bytes())
    except pki.CertificateError:
        return False
    return True


def replace_certificate(tls: HomeTls, cert: bytes, new_key: Path | None) -> None:
    """Make ``cert`` the home's ``client.crt``, and ``new_key`` (the request's key) its
    ``client.key``; the caller holds the lock.

    The key moves first, then the certificate: an interruption in between leaves a pair that does
    not match, which the transport reports by name, and enrolling again repairs.
    """
    tmp = tls.new_cert
    tmp.unlink(missing_ok=True)
    write_new(tmp, cert, 0o644)
    if new_key is not None:
        os.replace(new_key, tls.key)
        tls.request.unlink(missing_ok=True)
    os.replace(tmp, tls.cert)
    fsync_dir(tls.dir)


def _locked(tls: HomeTls, limits: Limits) -> contextlib.AbstractContextManager[None]:
    tls.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return file_lock(tls.lock, timeout=limits.lock_timeout_seconds)
