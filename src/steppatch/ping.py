"""``steppatch ping``: check one mirror from a home, read-only.

The connection checks are the transport's (:func:`~steppatch.transport.probe_connection`); the
signed metadata is verified against the home's trust in a scratch copy, so nothing is stored.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from steppatch.clock import Clock
from steppatch.errors import LocalEnvironmentError, NetworkError, SteppatchError
from steppatch.limits import Limits
from steppatch.remote import MetadataStore, RepositoryClient
from steppatch.transport import Fetcher, PingCheck, probe_connection

__all__ = ["PingCheck", "ping_mirror"]


def ping_mirror(
    fetcher: Fetcher, url: str, metadata_dir: Path, limits: Limits, clock: Clock
) -> list[PingCheck]:
    """Check the mirror ``fetcher`` reads (``url``): reachable, its TLS identity, and that its
    signed metadata verifies against the trusted metadata in ``metadata_dir``. Each check says
    whether it passed and why; a check after a failed one is skipped. Never raises
    :class:`SteppatchError`.
    """
    checks = probe_connection(fetcher, url)
    if checks and not checks[-1].ok:
        return checks
    with tempfile.TemporaryDirectory(prefix=".steppatch-ping-") as scratch:
        store = MetadataStore(Path(scratch))
        trusted = MetadataStore(metadata_dir)
        for role in ("root", "timestamp", "index"):
            data = trusted.read(role)
            if data is not None:
                store.write(role, data)
        client = RepositoryClient(fetcher, store, limits, clock)
        try:
            index = client.index()
        except (NetworkError, LocalEnvironmentError) as e:
            checks.append(PingCheck("reachable", False, str(e)))
            return checks
        except SteppatchError as e:
            checks.append(PingCheck("signed metadata", False, str(e)))
            return checks
    if not checks:
        checks.append(PingCheck("reachable", True, url))
    versions = sum(len(v) for v in index.components.values())
    checks.append(PingCheck("signed metadata", True, f"verified: {versions} component version(s)"))
    return checks
