"""SHA-256 of bytes, and the check of bytes against the length and hash trusted metadata gives."""

from __future__ import annotations

import hashlib

from steppatch.trust.errors import HashMismatch, LengthMismatch

__all__ = ["sha256_hex", "verify_length_and_hash"]


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def verify_length_and_hash(data: bytes, length: int, sha256: str, what: str) -> None:
    """Check that ``data`` is exactly ``length`` bytes with SHA-256 ``sha256`` (hex).

    The length is compared first, so an over-long download is refused without hashing it.
    Raises :class:`LengthMismatch` or :class:`HashMismatch`, both naming ``what``.
    """
    if len(data) != length:
        raise LengthMismatch(what, length, len(data))
    actual = sha256_hex(data)
    if actual != sha256.lower():  # hashes are public: no constant-time compare needed
        raise HashMismatch(what, sha256, actual)
