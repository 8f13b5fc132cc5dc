"""The release side: publish component versions and release recipes into a repository."""

from __future__ import annotations

from typing import TYPE_CHECKING

from steppatch._lazy import attach

if TYPE_CHECKING:
    from steppatch.repo._keys import KeyRing, default_key_dir
    from steppatch.repo._repository import AddResult, Expiry, Repository
    from steppatch.repo._source import ComponentSource, read_source

__getattr__, __dir__ = attach(
    __name__,
    {
        "steppatch.repo._keys": ("KeyRing", "default_key_dir"),
        "steppatch.repo._repository": ("AddResult", "Expiry", "Repository"),
        "steppatch.repo._source": ("ComponentSource", "read_source"),
    },
)

__all__ = [
    "AddResult",
    "ComponentSource",
    "Expiry",
    "KeyRing",
    "Repository",
    "default_key_dir",
    "read_source",
]
