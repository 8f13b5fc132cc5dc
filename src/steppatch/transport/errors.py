"""The network errors of the transport: each carries its data, so the CLI and tests need no text.

All are :class:`~steppatch.errors.NetworkError` (exit code 4): the fault lies between the home
and a mirror. A 404 stays :class:`~steppatch.errors.MissingFile` (a repository error), as from
every fetcher.
"""

from __future__ import annotations

import enum

from steppatch.errors import NetworkError, RepositoryError, SteppatchError

__all__ = [
    "ConnectionFailed",
    "HttpStatusError",
    "NoMirrorLeft",
    "TimedOut",
    "TlsError",
    "TlsProblem",
]


class ConnectionFailed(NetworkError):
    """The connection was refused, could not be made, or broke off (``cause`` says how)."""

    def __init__(self, url: str, cause: str) -> None:
        super().__init__(url, f"connection failed: {cause}")
        self.cause = cause


class TimedOut(NetworkError):
    """No answer in time. ``phase`` is ``"connect"``, ``"read"`` or ``"deadline"`` (the whole
    download took longer than its deadline), ``seconds`` the limit that was exceeded."""

    def __init__(self, url: str, phase: str, seconds: float) -> None:
        what = {
            "connect": "no connection within",
            "read": "no data for",
            "deadline": "the download did not finish within",
        }[phase]
        super().__init__(url, f"timed out: {what} {seconds:g} s")
        self.phase = phase
        self.seconds = seconds


class HttpStatusError(NetworkError):
    """The server answered with an HTTP error status other than 404."""

    def __init__(self, url: str, status: int, reason: str = "") -> None:
        super().__init__(url, f"HTTP {status}{' ' + reason if reason else ''}")
        self.status = status
        self.reason = reason


class TlsProblem(enum.Enum):
    """Why a TLS connection failed, as far as the client can tell."""

    #: the server's certificate is not signed by the CA the home trusts
    SERVER_UNTRUSTED = "server-untrusted"
    #: the server's certificate does not name the host in the URL
    SERVER_HOSTNAME = "server-hostname"
    #: the server's certificate is expired or not yet valid
    SERVER_EXPIRED = "server-expired"
    #: the server requires a client certificate and the home has none configured
    CLIENT_CERT_MISSING = "client-cert-missing"
    #: the server refused the home's client certificate (another CA, expired, revoked)
    CLIENT_CERT_REJECTED = "client-cert-rejected"
    #: anything else in the handshake (no common protocol version or cipher, a broken peer)
    HANDSHAKE = "handshake"


_HINTS = {
    TlsProblem.SERVER_UNTRUSTED: "the server's certificate is not signed by the trusted CA",
    TlsProblem.SERVER_HOSTNAME: "the server's certificate does not name this host",
    TlsProblem.SERVER_EXPIRED: "the server's certificate has expired or is not yet valid",
    TlsProblem.CLIENT_CERT_MISSING: (
        "the server requires a client certificate and none is configured "
        "(see 'steppatch enroll')"
    ),
    TlsProblem.CLIENT_CERT_REJECTED: (
        "the server refused our client certificate: it is probably signed by another CA, "
        "expired, or revoked"
    ),
    TlsProblem.HANDSHAKE: "the TLS handshake failed",
}


class TlsError(NetworkError):
    """A TLS connection failed. ``problem`` classifies it; ``detail`` is what the TLS library
    or the server said; ``probable`` is true when the classification is a best guess (TLS 1.3
    servers report a refused client certificate only by closing the connection)."""

    def __init__(
        self, url: str, problem: TlsProblem, detail: str, *, probable: bool = False
    ) -> None:
        hint = _HINTS[problem]
        if probable:
            hint = f"the server closed the connection after the TLS handshake; probably {hint}"
        super().__init__(url, f"{hint} ({detail})" if detail else hint)
        self.kind = problem
        self.detail = detail
        self.probable = probable


class NoMirrorLeft(NetworkError):
    """Every mirror failed. ``reasons`` maps each mirror's id to why it failed (in the order they
    were tried); ``errors`` holds the errors themselves."""

    def __init__(self, what: str, errors: dict[str, SteppatchError]) -> None:
        self.reasons = {mirror: str(error) for mirror, error in errors.items()}
        self.errors = dict(errors)
        if errors:
            listed = "; ".join(f"{m}: {r}" for m, r in self.reasons.items())
            problem = f"no mirror could serve it ({listed})"
        else:
            problem = "no mirror is configured"
        super().__init__(what, problem)
        # Whose fault: when every mirror served bad or missing data, the repository's.
        if errors and all(isinstance(e, RepositoryError) for e in errors.values()):
            self.exit_code = RepositoryError.exit_code
