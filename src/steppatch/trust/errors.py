"""Errors of signed metadata: every one is a :class:`steppatch.errors.RepositoryError`.

A metadata error means the repository, or a mirror or cache between it and the home, handed over
bytes that must not be trusted. Each class carries what the CLI needs to explain it as attributes;
tests assert on those, not on the message text.

:class:`BadKeyFile` is the exception: a private key file is the release engineer's own input, so it
is an :class:`steppatch.errors.InputError`.
"""

from __future__ import annotations

from datetime import datetime

from steppatch.errors import InputError, IntegrityError, RepositoryError, TooLarge
from steppatch.trust._time import format_time

__all__ = [
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
]


class MetadataError(RepositoryError):
    """Signed metadata was refused. ``role`` is ``"root"``, ``"timestamp"``, ``"index"`` or None."""

    def __init__(self, role: str | None, message: str) -> None:
        super().__init__(message)
        self.role = role


class BadMetadata(MetadataError):
    """A document is not well-formed metadata: bad JSON, a wrong ``_type``, a missing field.

    ``field`` is a dotted path into the document (``"signed.roles.index.threshold"``), or None when
    the document as a whole is at fault.
    """

    def __init__(self, role: str | None, field: str | None, problem: str) -> None:
        what = f"{role} metadata" if role else "metadata"
        where = f"{what}: field {field!r}" if field else what
        super().__init__(role, f"{where}: {problem}")
        self.field = field
        self.problem = problem


class BadSignature(MetadataError):
    """The signatures on a document do not prove that its role's keys signed it."""


class ThresholdNotMet(BadSignature):
    """Fewer distinct keys of the role signed the document than the role's threshold.

    ``keyring`` names whose keys were counted, e.g. ``"root version 3"``: a new root must meet the
    threshold of the old root's keys and of its own. ``counted`` is the number of distinct keys of
    that role with a valid signature; ``keyids`` are those keys.
    """

    def __init__(
        self, role: str, keyring: str, threshold: int, counted: int, keyids: frozenset[str]
    ) -> None:
        super().__init__(
            role,
            f"{role} metadata: {counted} valid signature(s) from the {role} keys of {keyring},"
            f" {threshold} required",
        )
        self.keyring = keyring
        self.threshold = threshold
        self.counted = counted
        self.keyids = keyids


class RollbackAttack(MetadataError):
    """A document's version is lower than the version already trusted.

    ``role`` may be ``"index"`` when a new timestamp pins an index older than the trusted one.
    """

    def __init__(self, role: str, trusted_version: int, new_version: int) -> None:
        super().__init__(
            role,
            f"{role} metadata version {new_version} is older than the trusted version"
            f" {trusted_version} (rollback)",
        )
        self.trusted_version = trusted_version
        self.new_version = new_version


class VersionConflict(MetadataError):
    """A document has the same version as a trusted one but different content."""

    def __init__(self, role: str, version: int) -> None:
        super().__init__(
            role,
            f"{role} metadata version {version} differs from the trusted document of the same"
            " version",
        )
        self.version = version


class UnexpectedVersion(MetadataError):
    """A root is not the one version after the trusted root (a jump, N -> N+2, is refused)."""

    def __init__(self, role: str, expected: int, actual: int) -> None:
        super().__init__(
            role, f"{role} metadata: expected version {expected}, got version {actual}"
        )
        self.expected = expected
        self.actual = actual


class ExpiredMetadata(MetadataError):
    """A document's ``expires`` is not after the clock reading of this update."""

    def __init__(self, role: str, version: int, expires: datetime, now: datetime) -> None:
        super().__init__(
            role,
            f"{role} metadata version {version} expired since {format_time(expires)}"
            f" (now {format_time(now)})",
        )
        self.version = version
        self.expires = expires
        self.now = now


class MixAndMatch(MetadataError):
    """The index is not the one the trusted timestamp pins (``field``: version, length, sha256)."""

    def __init__(self, role: str, field: str, expected: str, actual: str) -> None:
        super().__init__(
            role,
            f"{role} metadata does not match the trusted timestamp: {field} expected {expected},"
            f" got {actual}",
        )
        self.field = field
        self.expected = expected
        self.actual = actual


class RotationLimitReached(MetadataError):
    """More root versions arrived in one update than ``TrustLimits.max_root_rotations`` allows."""

    def __init__(self, limit: int) -> None:
        super().__init__("root", f"more than {limit} root rotations in one update")
        self.limit = limit


class MetadataTooLarge(TooLarge):
    """A metadata document is larger than its cap in ``TrustLimits``."""

    def __init__(self, role: str, size: int, limit: int) -> None:
        super().__init__(f"{role} metadata ({size} bytes)", limit)
        self.role = role
        self.size = size


class LengthMismatch(IntegrityError):
    """Bytes are not the length that trusted metadata gave for them. ``what`` names them."""

    def __init__(self, what: str, expected: int, actual: int) -> None:
        super().__init__(what, f"{expected} bytes", f"{actual} bytes")
        self.expected_length = expected
        self.actual_length = actual


class HashMismatch(IntegrityError):
    """Bytes do not have the sha256 that trusted metadata gave for them. ``what`` names them."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(what, f"sha256 {expected}", f"sha256 {actual}")
        self.expected_sha256 = expected
        self.actual_sha256 = actual


class BadKeyFile(InputError):
    """A private or public key cannot be read. ``problem`` says why."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"not a usable Ed25519 key: {problem}")
        self.problem = problem
