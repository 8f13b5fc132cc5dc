"""The release side: publish component versions and release recipes into a repository."""

from __future__ import annotations

from steppatch.repo._keys import KeyRing, default_key_dir
from steppatch.repo._repository import AddResult, Expiry, Repository
from steppatch.repo._source import ComponentSource, read_source

__all__ = [
    "AddResult",
    "ComponentSource",
    "Expiry",
    "KeyRing",
    "Repository",
    "default_key_dir",
    "read_source",
]
