"""Assertions shared by the trust tests."""

from __future__ import annotations

from steppatch.trust import Index, Root, Timestamp, TrustedMetadataSet


def state(trusted: TrustedMetadataSet) -> tuple[Root, Timestamp | None, Index | None]:
    """What the set trusts, to compare before and after a refused update."""
    return (trusted.root, trusted.timestamp, trusted.index)
