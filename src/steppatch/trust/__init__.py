"""Signed repository metadata: roles, canonical form, signing and verification.

Bytes in, verified values or a typed error out; no file or network I/O. See ``docs/security.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from steppatch._lazy import attach

if TYPE_CHECKING:
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
    from steppatch.trust.trusted_set import (
        TrustedMetadataSet,
        load_trusted_root,
        verify_root_update,
    )

__getattr__, __dir__ = attach(
    __name__,
    {
        "steppatch.trust.canonical": ("canonical_bytes",),
        "steppatch.trust.errors": (
            "BadKeyFile",
            "BadMetadata",
            "BadSignature",
            "ExpiredMetadata",
            "HashMismatch",
            "LengthMismatch",
            "MetadataError",
            "MetadataTooLarge",
            "MixAndMatch",
            "RollbackAttack",
            "RotationLimitReached",
            "ThresholdNotMet",
            "UnexpectedVersion",
            "VersionConflict",
        ),
        "steppatch.trust.hashing": ("sha256_hex", "verify_length_and_hash"),
        "steppatch.trust.keys": ("PublicKey", "SigningKey"),
        "steppatch.trust.limits": ("TrustLimits",),
        "steppatch.trust.metadata": (
            "ROLES",
            "SPEC",
            "Index",
            "IndexPin",
            "RoleKeys",
            "Root",
            "Timestamp",
        ),
        "steppatch.trust.release": ("make_index", "make_root", "make_timestamp", "rotate", "sign"),
        "steppatch.trust.trusted_set": (
            "TrustedMetadataSet",
            "load_trusted_root",
            "verify_root_update",
        ),
    },
)

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
