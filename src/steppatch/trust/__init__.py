"""Signed repository metadata: roles, canonical form, signing and verification.

Bytes in, verified values or a typed error out; no file or network I/O. See ``docs/security.md``.
"""

from __future__ import annotations

from steppatch.trust.canonical import canonical_bytes
from steppatch.trust.errors import (
    BadKeyFile,
    BadMetadata,
    BadSignature,
    ExpiredMetadata,
    HashMismatch,
    LengthMismatch,
    MetadataError,
    MetadataTooLarge,
    MixAndMatch,
    RollbackAttack,
    RotationLimitReached,
    ThresholdNotMet,
    UnexpectedVersion,
    VersionConflict,
)
from steppatch.trust.hashing import sha256_hex, verify_length_and_hash
from steppatch.trust.keys import PublicKey, SigningKey
from steppatch.trust.limits import TrustLimits
from steppatch.trust.metadata import (
    ROLES,
    SPEC,
    Index,
    IndexPin,
    RoleKeys,
    Root,
    Timestamp,
)
from steppatch.trust.release import make_index, make_root, make_timestamp, rotate, sign
from steppatch.trust.trusted_set import TrustedMetadataSet, load_trusted_root, verify_root_update

__all__ = [
    "ROLES",
    "SPEC",
    "BadKeyFile",
    "BadMetadata",
    "BadSignature",
    "ExpiredMetadata",
    "HashMismatch",
    "Index",
    "IndexPin",
    "LengthMismatch",
    "MetadataError",
    "MetadataTooLarge",
    "MixAndMatch",
    "PublicKey",
    "RoleKeys",
    "RollbackAttack",
    "Root",
    "RotationLimitReached",
    "SigningKey",
    "ThresholdNotMet",
    "Timestamp",
    "TrustLimits",
    "TrustedMetadataSet",
    "UnexpectedVersion",
    "VersionConflict",
    "canonical_bytes",
    "load_trusted_root",
    "make_index",
    "make_root",
    "make_timestamp",
    "rotate",
    "sha256_hex",
    "sign",
    "verify_length_and_hash",
    "verify_root_update",
]
