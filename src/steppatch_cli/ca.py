"""``steppatch ca ...`` (a private CA) and ``steppatch enroll`` (a home's client certificate).

Thin: each command parses, calls one library function and renders what it returned. The CA
directory's files are :mod:`steppatch.pki`'s (``init_ca``, ``issue_files``, ``sign_request_file``,
``revoke_file``, ``write_crl``); enrollment is :mod:`steppatch.enroll`, and the home's TLS file
names are :class:`steppatch.home.HomeTls`'s. See ``docs/pki.md``.
"""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from steppatch.pki_defaults import CA_DAYS, CRL_DAYS, LEAF_DAYS
from steppatch_cli import render
from steppatch_cli.context import home_path as run_home_path
from steppatch_cli.parsing import rewrite_enroll_alias

if TYPE_CHECKING:
    from typer._click import Context

    from steppatch import pki
    from steppatch.home import HomeTls as EnrollPaths
    from steppatch.home._layout import TLS_DIR

__all__ = [
    "TLS_DIR",
    "EnrollPaths",
    "ca_app",
    "enroll_cli",
    "enroll_command",
    "parse_enroll_alias",
    "rewrite_enroll_alias",
]


def __getattr__(name: str) -> object:
    # Kept for callers of this module; the library owns them (steppatch.home), and they load
    # only when asked for (start-up).
    if name == "TLS_DIR":  # a home's TLS files, relative to the home
        from steppatch.home._layout import TLS_DIR

        return TLS_DIR
    if name == "EnrollPaths":  # a home's TLS files
        from steppatch.home import HomeTls

        return HomeTls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ca_app = typer.Typer(
    help="A private certificate authority for mirrors and homes (docs/pki.md).",
    no_args_is_help=True,
)


def _describe(info: "pki.CertificateInfo") -> str:
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

    made = pki.init_ca(directory, name, days=days)
    render.out.print(
        f"Made the CA {name!r}: {made.cert} (certificate), {made.key} (private key, 0600)"
    )


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

    made = pki.issue_files(directory, out, servers=server or (), client=client, days=days)
    render.out.print(f"Issued a {_describe(made.info)}: {made.cert}, {made.key} (0600)")


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

    made = pki.sign_request_file(directory, request, out, system=system, days=days)
    render.out.print(f"Signed a {_describe(made.info)}: {out}")
    render.out.print(f"On the home: steppatch enroll --install {out.name}")


@ca_app.command("show")
def ca_show(cert: Annotated[Path, typer.Argument(help="A certificate (.crt).")]) -> None:
    """What a certificate says: subject, issuer, names, validity, fingerprint."""
    from steppatch import pki

    info = pki.read_certificate_file(cert)
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

    done = pki.revoke_file(directory, cert)
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


def parse_enroll_alias(value: str) -> tuple[str, str]:
    """``mirror:NAME:HOST`` (the manuals' form) -> ``(NAME, HOST)``. Raises :class:`InputError`.

    :func:`steppatch.commands.parse_enroll_alias`, kept here for its callers."""
    from steppatch.commands import parse_enroll_alias

    return parse_enroll_alias(value)


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
    from steppatch.commands import enroll

    installed, made, host = enroll(
        home, system_name, install=install, alias=alias, ca=ca, force=force
    )
    if installed is not None:
        render.out.print(
            f"Installed the client certificate of system {installed.info.system_name!r}:"
        )
        render.out.print(f"{installed.cert}, {installed.key} (0600)", markup=False)
        return
    assert made is not None
    render.out.print(f"Made a key and a certificate request for system {made.system_name!r}:")
    render.out.print(str(made.request), markup=False)
    where = f"the operator of the CA that {host} trusts" if host else "your CA's operator"
    render.out.print(
        f"Give the request to {where}: steppatch ca sign CA_DIR {made.request.name} --out "
        f"{made.system_name}.crt; then here: steppatch enroll --install {made.system_name}.crt",
        markup=False,
    )


def enroll_cli(home_path: Callable[["Context"], Path] = run_home_path) -> Callable[..., None]:
    """The ``enroll`` command for Typer, reading the home from ``home_path(ctx)`` when it runs
    (default: the run's ``--home``, else ``$STEPPATCH_HOME``, else the current directory)."""

    def enroll(
        ctx: typer.Context,
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
        enroll_command(
            home_path(ctx), system_name, install=install, alias=alias, ca=ca, force=force
        )

    return enroll
