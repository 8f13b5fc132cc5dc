"""The transport's bounds; defined with every other bound in :mod:`steppatch.limits` (the core)."""

from __future__ import annotations

from steppatch.limits import DEFAULT_TRANSPORT_LIMITS, TransportLimits

__all__ = ["DEFAULT_TRANSPORT_LIMITS", "TransportLimits"]
