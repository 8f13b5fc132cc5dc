"""The release side: publish component versions and release recipes into a repository."""

from __future__ import annotations

from typing import TYPE_CHECKING

from steppatch._lazy import attach

if TYPE_CHECKING:
    from steppatch.repo._keys import KeyRing, check_outside, default_key_dir
    from steppatch.repo._repository import AddResult, Expiry, Repository, published_index
    from steppatch.repo._source import ComponentSource, read_source

__getattr__, __dir__ = attach(
    __name__,
    {
        "steppatch.repo._keys": ("KeyRing", "check_outside", "default_key_dir"),
        "steppatch.repo._repository": ("AddResult", "Expiry", "Repository", "published_index"),
        "steppatch.repo._source": ("ComponentSource", "read_source"),
    },
)

__all__ = [
    "AddResult",
    "ComponentSource",
    "Expiry",
    "KeyRing",
    "Repository",
    "check_outside",
    "default_key_dir",
    "published_index",
    "read_source",
]
