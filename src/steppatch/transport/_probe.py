"""The connection checks of ``steppatch ping``: is the mirror reachable, and who answers TLS."""

from __future__ import annotations

from steppatch import _record as record
from steppatch.errors import SteppatchError
from steppatch.transport._base import Fetcher
from steppatch.transport.errors import TlsError

__all__ = ["PingCheck", "probe_connection"]


@record.frozen
class PingCheck:
    """One check of ``ping``: ``name`` (reachable, tls, signed metadata), passed, and detail."""

    name: str
    ok: bool
    detail: str


def probe_connection(fetcher: Fetcher, url: str) -> list[PingCheck]:
    """For an HTTPS mirror (``url``, for the report), connect and complete a TLS handshake: a
    ``reachable`` check and a ``tls`` check (protocol, cipher, the names in the server's
    certificate). The list ends at the first failed check. Other fetchers have no connection
    to probe: ``[]``. Never raises :class:`SteppatchError`.
    """
    from steppatch.transport._https import HttpsFetcher  # requests: only when probing

    if not isinstance(fetcher, HttpsFetcher):
        return []
    try:
        identity = fetcher.probe()
    except TlsError as e:
        return [PingCheck("reachable", True, url), PingCheck("tls", False, str(e))]
    except SteppatchError as e:
        return [PingCheck("reachable", False, str(e))]
    cert = identity.certificate
    names = ", ".join((*cert.hostnames, *cert.ip_addresses)) or cert.subject
    return [
        PingCheck("reachable", True, f"{identity.host}:{identity.port}"),
        PingCheck("tls", True, f"{identity.tls_version} {identity.cipher}, server {names}"),
    ]
