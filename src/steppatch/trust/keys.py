"""Ed25519 keys: a private :class:`SigningKey` for the release side, a :class:`PublicKey` in root.

A key id is the SHA-256 (hex) of the canonical form (see :mod:`steppatch.trust.canonical`) of the
public key's JSON form ``{"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": HEX}}``.
Because the id is derived from the key, one key cannot be listed under two ids to be counted twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from steppatch import _record as record
from steppatch.trust.canonical import canonical_bytes
from steppatch.trust.errors import BadKeyFile, BadMetadata
from steppatch.trust.hashing import sha256_hex

__all__ = ["KEYTYPE", "PublicKey", "SigningKey"]

#: the only key type and signature scheme
KEYTYPE = "ed25519"

_HEX64 = re.compile(r"[0-9a-f]{64}")


def _public_json(raw: bytes) -> dict[str, Any]:
    return {"keytype": KEYTYPE, "scheme": KEYTYPE, "keyval": {"public": raw.hex()}}


def _check_raw(_key: object, _field: record.Field, value: bytes) -> None:
    if len(value) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(value)}")


def _keyid(key: PublicKey) -> str:
    return sha256_hex(canonical_bytes(_public_json(key.raw)))


@record.frozen
class PublicKey:
    """An Ed25519 public key (32 raw bytes) and its key id."""

    raw: bytes = record.field(repr=False, validator=_check_raw)
    keyid: str = record.field(init=False, eq=False, derive=_keyid)

    def to_json(self) -> dict[str, Any]:
        """The JSON form that root lists under its key id."""
        return _public_json(self.raw)

    @classmethod
    def from_json(cls, value: object, field: str = "key") -> PublicKey:
        """Read the JSON form. Raises :class:`BadMetadata` naming ``field`` if it is not one."""
        if not isinstance(value, Mapping):
            raise BadMetadata("root", field, "expected an object")
        if set(value) != {"keytype", "scheme", "keyval"}:
            raise BadMetadata(
                "root", field, f"expected fields keytype, scheme, keyval, got {sorted(value)}"
            )
        for name in ("keytype", "scheme"):
            if value[name] != KEYTYPE:
                raise BadMetadata("root", f"{field}.{name}", f"expected {KEYTYPE!r}")
        keyval = value["keyval"]
        if not isinstance(keyval, Mapping) or set(keyval) != {"public"}:
            raise BadMetadata("root", f"{field}.keyval", "expected an object with field 'public'")
        public = keyval["public"]
        if not isinstance(public, str) or not _HEX64.fullmatch(public):
            raise BadMetadata("root", f"{field}.keyval.public", "expected 64 lowercase hex digits")
        return cls(bytes.fromhex(public))

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``data``. Never raises."""
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True


class SigningKey:
    """An Ed25519 private key. It belongs to the release side and never to the published tree."""

    __slots__ = ("_key", "public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = PublicKey(
            key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        )

    def __repr__(self) -> str:
        return f"SigningKey(keyid={self.public.keyid!r})"

    @property
    def keyid(self) -> str:
        """The key id of the public half."""
        return self.public.keyid

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key."""
        return cls(Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        """The 64-byte signature of ``data``."""
        return self._key.sign(data)

    def to_pem(self, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM, encrypted with ``password`` if one is given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    @classmethod
    def from_pem(cls, data: bytes, password: bytes | None = None) -> SigningKey:
        """Read a PKCS#8 PEM private key.

        Raises :class:`BadKeyFile` if it is not PEM, not Ed25519, or the password is wrong/missing.
        """
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise BadKeyFile(str(e)) from e
        if not isinstance(key, Ed25519PrivateKey):
            raise BadKeyFile(f"expected an Ed25519 key, got {type(key).__name__}")
        return cls(key)
