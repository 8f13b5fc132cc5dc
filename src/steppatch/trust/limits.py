"""Bounds on metadata, in one value."""

from __future__ import annotations

from steppatch import _record as record

__all__ = ["TrustLimits"]


def _positive(_instance: object, attribute: record.Field, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


@record.frozen
class TrustLimits:
    """Caps on metadata documents and on root rotations per update session.

    The fetching edge stops a download at the cap; the verification core checks it again on the
    bytes it is given. The defaults follow python-tuf's ``UpdaterConfig`` where it has one.
    """

    max_root_bytes: int = record.field(default=512_000, validator=_positive)
    max_timestamp_bytes: int = record.field(default=16_384, validator=_positive)
    max_index_bytes: int = record.field(default=32_000_000, validator=_positive)
    max_root_rotations: int = record.field(default=32, validator=_positive)

    def max_bytes(self, role: str) -> int:
        """The cap for ``role`` (root, timestamp, index). Raises KeyError for another role."""
        return {
            "root": self.max_root_bytes,
            "timestamp": self.max_timestamp_bytes,
            "index": self.max_index_bytes,
        }[role]
