"""The release side: publish component versions and release recipes into a repository."""

from __future__ import annotations

from steppatch.repo._repository import AddResult, Repository
from steppatch.repo._source import ComponentSource, read_source

__all__ = ["AddResult", "ComponentSource", "Repository", "read_source"]
