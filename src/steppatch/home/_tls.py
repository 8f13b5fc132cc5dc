"""A home's TLS files: the one place their names are spelled.

``HOME/.steppatch/tls/`` holds ``ca.crt`` (the private CA the home's https mirrors are pinned
to), ``client.crt`` and ``client.key`` (0600, the home's client certificate), and, while an
enrollment is pending (``steppatch enroll``, :mod:`steppatch.enroll`), ``request.key`` (0600) and
``request.csr``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from steppatch import _record as record
from steppatch._fs import atomic_write
from steppatch.errors import InputError

if TYPE_CHECKING:
    from steppatch.transport import TlsConfig

__all__ = ["TLS_SUBDIR", "HomeTls"]

#: the TLS directory's name inside the home's state directory (``_layout.TLS_DIR``)
TLS_SUBDIR = "tls"


@record.frozen
class HomeTls:
    """The paths of a home's TLS files (``dir`` is ``HOME/.steppatch/tls``), and reading and
    writing them as the transport uses them."""

    dir: Path

    @classmethod
    def of(cls, home: Path) -> HomeTls:
        """The TLS files of the home at ``home`` (its root directory)."""
        from steppatch.home._layout import TLS_DIR

        return cls(home / TLS_DIR)

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.dir / "client.crt"

    @property
    def key(self) -> Path:
        return self.dir / "client.key"

    @property
    def request_key(self) -> Path:
        return self.dir / "request.key"

    @property
    def request(self) -> Path:
        return self.dir / "request.csr"

    @property
    def lock(self) -> Path:
        """Enrollments of one home take turns on this file."""
        return self.dir / ".lock"

    @property
    def new_cert(self) -> Path:
        """Where an installed certificate is written before it is renamed to :attr:`cert`."""
        return self.dir / ".client.crt.new"

    def config(self) -> TlsConfig | None:
        """The transport's view: the CA, and the client pair when both files are there;
        ``None`` without a CA."""
        from steppatch.transport import TlsConfig

        if not self.ca.is_file():
            return None
        if self.cert.is_file() and self.key.is_file():
            return TlsConfig(self.ca, self.cert, self.key)
        return TlsConfig(self.ca)

    def write(self, ca: bytes | None, client_cert: tuple[bytes, bytes] | None) -> TlsConfig | None:
        """Write the CA and the client certificate and key (PEM) as a home keeps them (each
        replaced atomically; the key 0600); ``None`` without a CA.

        Raises :class:`InputError` for a client certificate without a CA, ``OSError``.
        """
        if ca is None:
            if client_cert is not None:
                raise InputError("a client certificate needs the private CA too (--ca)")
            return None
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(self.ca, ca)
        if client_cert is not None:
            atomic_write(self.cert, client_cert[0])
            atomic_write(self.key, client_cert[1], mode=0o600)
        return self.config()
