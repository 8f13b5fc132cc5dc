"""The release side: publish component versions and release recipes into a repository."""

from __future__ import annotations

from steppatch.repo._keys import KeyRing, check_outside, default_key_dir
from steppatch.repo._repository import AddResult, Expiry, Repository, published_index
from steppatch.repo._source import ComponentSource, read_source

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
