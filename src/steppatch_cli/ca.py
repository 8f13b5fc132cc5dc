"""``steppatch ca ...`` (a private CA) and ``steppatch enroll`` (a home's client certificate).

The certificates themselves are made by :mod:`steppatch.pki`; this module reads and writes the
files. Private keys are created with mode 0600 and never overwritten; certificates with 0644.
See ``docs/pki.md``.

A CA directory holds ``ca.crt`` and ``ca.key``. A home keeps its TLS files in
``HOME/.steppatch/tls/``: ``request.key`` and ``request.csr`` while an enrollment is pending, then
``client.key`` and ``client.crt``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import attrs
import typer

from steppatch.errors import InputError
from steppatch.pki_defaults import CA_DAYS, CRL_DAYS, LEAF_DAYS
from steppatch_cli import render

if TYPE_CHECKING:
    from steppatch import pki

__all__ = [
    "TLS_DIR",
    "EnrollPaths",
    "ca_app",
    "enroll_cli",
    "enroll_command",
    "parse_enroll_alias",
    "rewrite_enroll_alias",
]

#: a home's TLS files, relative to the home
TLS_DIR = Path(".steppatch") / "tls"

ca_app = typer.Typer(
    help="A private certificate authority for mirrors and homes (docs/pki.md).",
    no_args_is_help=True,
)


# --- files -------------------------------------------------------------------------------------


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` (never replacing a file, never following a link).

    Raises :class:`InputError` if it exists, ``OSError`` from the filesystem.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise InputError(f"{path} exists already; steppatch does not overwrite it") from None
    try:
        # the umask may have removed bits we want (0644), never added any
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if fd != -1:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise


def _write_pair(prefix: Path, pair: pki.KeyAndCert) -> tuple[Path, Path]:
    crt, key = Path(f"{prefix}.crt"), Path(f"{prefix}.key")
    for p in (crt, key):
        if os.path.lexists(p):
            raise InputError(f"{p} exists already; steppatch does not overwrite it")
    _write_new(key, pair.key_pem, 0o600)
    _write_new(crt, pair.cert_pem, 0o644)
    return crt, key


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None


def _load_ca(directory: Path) -> pki.KeyAndCert:
    from steppatch import pki

    crt, key = directory / "ca.crt", directory / "ca.key"
    if not crt.is_file() or not key.is_file():
        raise InputError(f"{directory} is not a CA directory (no ca.crt and ca.key): 'ca init' it")
    return pki.KeyAndCert(_read(crt, "CA certificate"), _read(key, "CA key"))


def _describe(info: pki.CertificateInfo) -> str:
    names = [*info.hostnames, *info.ip_addresses]
    who = f"system {info.system_name}" if info.system_name else ", ".join(names) or info.subject
    return f"{info.usage or 'certificate'} for {who}, valid until {info.not_after:%Y-%m-%d}"


# --- ca ------------------------------------------------------------------------------------------


@ca_app.command("init")
def ca_init(
    directory: Annotated[Path, typer.Argument(help="Where to keep the CA (created).")],
    name: Annotated[str, typer.Option(help="The CA's name.")] = "steppatch private CA",
    days: Annotated[int, typer.Option(min=1, help="Lifetime in days.")] = CA_DAYS,
) -> None:
    """Make a private CA: DIR/ca.crt (give to homes and mirrors) and DIR/ca.key (mode 0600)."""
    from steppatch import pki

    directory.mkdir(parents=True, exist_ok=True)
    pair = pki.make_ca(name, days=days)
    crt, key = _write_pair(directory / "ca", pair)
    render.out.print(f"Made the CA {name!r}: {crt} (certificate), {key} (private key, 0600)")


@ca_app.command("issue")
def ca_issue(
    directory: Annotated[Path, typer.Argument(help="The CA directory.")],
    out: Annotated[Path, typer.Option("--out", help="Writes PREFIX.crt and PREFIX.key.")],
    server: Annotated[
        list[str] | None,
        typer.Option("--server", help="A mirror's host name or IP address; repeat for more."),
    ] = None,
    client: Annotated[
        str | None, typer.Option("--client", help="A home's system name.")
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Lifetime in days.")] = LEAF_DAYS,
) -> None:
    """Issue a mirror's server certificate (--server) or a home's client certificate (--client)."""
    from steppatch import pki

    if bool(server) == (client is not None):
        raise InputError("give either --server HOSTNAME (repeatable) or --client SYSTEM_NAME")
    ca = _load_ca(directory)
    if server:
        pair = pki.issue_server_cert(ca, server, days=days)
    else:
        assert client is not None
        pair = pki.issue_client_cert(ca, client, days=days)
    crt, key = _write_pair(out, pair)
    info = pki.read_certificate(pair.cert_pem, str(crt))
    render.out.print(f"Issued a {_describe(info)}: {crt}, {key} (0600)")


@ca_app.command("sign")
def ca_sign(
    directory: Annotated[Path, typer.Argument(help="The CA directory.")],
    request: Annotated[Path, typer.Argument(help="The .csr a home made with 'steppatch enroll'.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the certificate.")],
    system: Annotated[
        str | None,
        typer.Option("--system", help="Refuse unless the request is for this system name."),
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Lifetime in days.")] = LEAF_DAYS,
) -> None:
    """Sign an enrollment request: a client certificate for the system name it asks for."""
    from steppatch import pki

    ca = _load_ca(directory)
    cert = pki.sign_request(ca, _read(request, "request"), days=days, source=str(request))
    info = pki.read_certificate(cert, str(out))
    if system is not None and info.system_name != system:
        raise pki.CertificateError(
            str(request), f"asks for system {info.system_name!r}, not {system!r}"
        )
    _write_new(out, cert, 0o644)
    render.out.print(f"Signed a {_describe(info)}: {out}")
    render.out.print(f"On the home: steppatch enroll --install {out.name}")


@ca_app.command("show")
def ca_show(cert: Annotated[Path, typer.Argument(help="A certificate (.crt).")]) -> None:
    """What a certificate says: subject, issuer, names, validity, fingerprint."""
    from steppatch import pki

    info = pki.read_certificate(_read(cert, "certificate"), str(cert))
    rows = [
        ("subject", info.subject),
        ("issuer", info.issuer),
        ("usage", info.usage or "-"),
        ("system name", info.system_name or "-"),
        ("host names", ", ".join([*info.hostnames, *info.ip_addresses]) or "-"),
        ("valid", f"{info.not_before:%Y-%m-%d %H:%M} to {info.not_after:%Y-%m-%d %H:%M} UTC"),
        ("serial", f"{info.serial:x}"),
        ("sha256", info.fingerprint),
    ]
    for label, value in rows:
        render.out.print(f"{label:12} {value}", markup=False)


@ca_app.command("revoke")
def ca_revoke(
    directory: Annotated[Path, typer.Argument(help="The CA directory.")],
    cert: Annotated[Path, typer.Argument(help="The certificate (.crt) to revoke.")],
) -> None:
    """Revoke a certificate this CA issued (recorded in DIR/revoked.json); then 'ca crl'."""
    from steppatch import pki

    done = pki.revoke(directory, _read(cert, "certificate"), source=str(cert))
    serial = f"{done.entry.serial:x}"
    if done.added:
        render.out.print(
            f"Revoked {done.entry.subject} (serial {serial}); recorded in {done.record}",
            markup=False,
        )
    else:
        render.out.print(
            f"{done.entry.subject} (serial {serial}) was revoked already, on "
            f"{done.entry.revoked_at:%Y-%m-%d}; nothing changed",
            markup=False,
        )
    render.out.print(
        f"Now make the CRL and copy it to the servers: steppatch ca crl {directory} --out FILE",
        markup=False,
    )


@ca_app.command("crl")
def ca_crl(
    directory: Annotated[Path, typer.Argument(help="The CA directory.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the CRL (replaced).")],
    days: Annotated[
        int, typer.Option(min=1, help="Valid for this many days (make a new one before).")
    ] = CRL_DAYS,
) -> None:
    """Write the CA's signed certificate revocation list (PEM) for the servers' [tls] crl."""
    from steppatch import pki

    info = pki.write_crl(directory, out, days=days)
    render.out.print(
        f"Wrote {out}: {len(info.serials)} revoked certificate(s), valid until "
        f"{info.next_update:%Y-%m-%d %H:%M} UTC (make a new one before then: servers refuse "
        "every client once it expires)",
        markup=False,
    )


# --- enroll --------------------------------------------------------------------------------------


@attrs.frozen
class EnrollPaths:
    """A home's TLS files."""

    dir: Path

    @classmethod
    def of(cls, home: Path) -> EnrollPaths:
        return cls(home / TLS_DIR)

    @property
    def request_key(self) -> Path:
        return self.dir / "request.key"

    @property
    def request(self) -> Path:
        return self.dir / "request.csr"

    @property
    def key(self) -> Path:
        return self.dir / "client.key"

    @property
    def cert(self) -> Path:
        return self.dir / "client.crt"


def parse_enroll_alias(value: str) -> tuple[str, str]:
    """``mirror:NAME:HOST`` (the manuals' form) -> ``(NAME, HOST)``. Raises :class:`InputError`."""
    kind, _, rest = value.partition(":")
    name, _, host = rest.partition(":")
    if kind != "mirror" or not name or not host:
        raise InputError(f"--enroll={value}: expected mirror:SYSTEM_NAME:HOST")
    return name, host


def rewrite_enroll_alias(argv: Sequence[str]) -> list[str]:
    """Turn the manuals' top-level ``--enroll=mirror:NAME:HOST`` into ``enroll --enroll=...``.

    For ``main()``: global options before it (``--home``, ``-v``) stay in front.
    """
    args = list(argv)
    for i, arg in enumerate(args):
        if arg.startswith("--enroll="):
            return [*args[:i], "enroll", arg, *args[i + 1 :]]
        if arg == "--enroll" and i + 1 < len(args):
            return [*args[:i], "enroll", f"--enroll={args[i + 1]}", *args[i + 2 :]]
        if not arg.startswith("-"):
            break  # a command: its options are its own
    return args


def enroll_command(
    home: Path,
    system_name: str | None = None,
    *,
    install: Path | None = None,
    alias: str | None = None,
    ca: Path | None = None,
    force: bool = False,
) -> None:
    """``steppatch enroll SYSTEM_NAME`` / ``--install CERT`` / ``--enroll=mirror:NAME:HOST``.

    Raises :class:`~steppatch.errors.HomeError` if ``home`` is not a home, :class:`InputError`
    for conflicting arguments or a pending enrollment, :class:`~steppatch.pki.CertificateError`
    for a certificate that does not fit.
    """
    from steppatch._fs import file_lock
    from steppatch.home import HomeDir

    host = None
    if alias is not None:
        if system_name is not None and not system_name.startswith("mirror:"):
            raise InputError("give SYSTEM_NAME or --enroll=mirror:NAME:HOST, not both")
        system_name, host = parse_enroll_alias(alias)
    elif system_name is not None and system_name.startswith("mirror:"):
        system_name, host = parse_enroll_alias(system_name)
    if (system_name is None) == (install is None):
        raise InputError("give SYSTEM_NAME (make a request) or --install CERT (install it)")
    files = HomeDir.open(home)
    paths = EnrollPaths.of(files.root)
    paths.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with file_lock(paths.dir / ".lock", timeout=10):
        if install is not None:
            _install(paths, install, files.config.system, ca)
        else:
            assert system_name is not None
            _request(paths, system_name, files.config.system, host, force)


def _request(paths: EnrollPaths, name: str, configured: str, host: str | None, force: bool) -> None:
    from steppatch import pki

    pki.validate_system_name(name)
    if configured and configured != name:
        raise InputError(
            f"this home's system name is {configured!r} (steppatch.toml); enroll it under that name"
        )
    if os.path.lexists(paths.request_key):
        if not force:
            raise InputError(
                f"an enrollment is pending ({paths.request}): install its certificate with "
                "'steppatch enroll --install CERT', or start again with --force"
            )
        paths.request_key.unlink()
        paths.request.unlink(missing_ok=True)
    req = pki.make_request(name)
    _write_new(paths.request_key, req.key_pem, 0o600)
    _write_new(paths.request, req.csr_pem, 0o644)
    render.out.print(f"Made a key and a certificate request for system {name!r}:")
    render.out.print(str(paths.request), markup=False)
    where = f"the operator of the CA that {host} trusts" if host else "your CA's operator"
    render.out.print(
        f"Give the request to {where}: steppatch ca sign CA_DIR {paths.request.name} --out "
        f"{name}.crt; then here: steppatch enroll --install {name}.crt",
        markup=False,
    )


def _install(paths: EnrollPaths, cert_file: Path, configured: str, ca: Path | None) -> None:
    from steppatch import pki

    cert = _read(cert_file, "certificate")
    info = pki.read_certificate(cert, str(cert_file))
    if info.usage != "client" or not info.system_name:
        raise pki.CertificateError(str(cert_file), "not a steppatch client certificate")
    if info.expired(dt.datetime.now(dt.UTC)):
        raise pki.CertificateError(
            str(cert_file), f"expired or not yet valid (valid until {info.not_after:%Y-%m-%d})"
        )
    if configured and info.system_name != configured:
        raise pki.CertificateError(
            str(cert_file),
            f"is for system {info.system_name!r}; this home is {configured!r}",
        )
    if ca is not None:
        pki.check_issued_by(cert, _read(ca, "CA certificate"), str(cert_file))
    # The pending request's key, or (a renewal of the same key) the installed one.
    candidates = [k for k in (paths.request_key, paths.key) if k.exists()]
    match = next((k for k in candidates if _matches(cert, k)), None)
    if match is None:
        raise pki.CertificateError(
            str(cert_file),
            "its key is not this home's (make a request with 'steppatch enroll SYSTEM_NAME')",
        )
    _replace_cert(paths, cert, new_key=match if match == paths.request_key else None)
    render.out.print(f"Installed the client certificate of system {info.system_name!r}:")
    render.out.print(f"{paths.cert}, {paths.key} (0600)", markup=False)


def _matches(cert: bytes, key: Path) -> bool:
    from steppatch import pki

    try:
        pki.check_key_matches(cert, key.read_bytes())
    except pki.CertificateError:
        return False
    return True


def _replace_cert(paths: EnrollPaths, cert: bytes, new_key: Path | None) -> None:
    # The key moves first, then the certificate: an interruption in between leaves a pair that
    # does not match, which the transport reports by name, and enrolling again repairs.
    tmp = paths.dir / ".client.crt.new"
    tmp.unlink(missing_ok=True)
    _write_new(tmp, cert, 0o644)
    if new_key is not None:
        os.replace(new_key, paths.key)
        paths.request.unlink(missing_ok=True)
    os.replace(tmp, paths.cert)


def enroll_cli(home_path: Callable[[], Path]) -> Callable[..., None]:
    """The ``enroll`` command for Typer, reading the home from ``home_path()`` when it runs."""

    def enroll(
        system_name: Annotated[
            str | None,
            typer.Argument(help="This environment's system name (or mirror:NAME:HOST)."),
        ] = None,
        install: Annotated[
            Path | None, typer.Option("--install", help="Install the signed certificate.")
        ] = None,
        alias: Annotated[
            str | None,
            typer.Option("--enroll", help="The manuals' form: mirror:SYSTEM_NAME:HOST."),
        ] = None,
        ca: Annotated[
            Path | None,
            typer.Option("--ca", help="With --install: check it was issued by this CA."),
        ] = None,
        force: Annotated[
            bool, typer.Option("--force", help="Replace a pending request.")
        ] = False,
    ) -> None:
        """Make this home's key and certificate request, or install the signed certificate."""
        enroll_command(home_path(), system_name, install=install, alias=alias, ca=ca, force=force)

    return enroll
