"""The home's edge: its files on disk, its lock, staging, the one commit point, recovery."""

from __future__ import annotations

from steppatch.home._layout import HomeDir

__all__ = ["HomeDir"]
