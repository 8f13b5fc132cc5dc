"""How each object an apply needs gets to the home: the cheapest route its metadata offers.

Pure: from the objects missing, what the verified transfers documents offer for them, and the
objects the home holds (hashed), one :class:`Fetch` each. A delta needs its base held; any
route but ``whole`` falls back to the whole object when it fails (``pipeline``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from enum import StrEnum

import attrs

from steppatch.model import Encoded, ObjectTransfers

__all__ = ["Fetch", "Route", "RouteTotals", "choose_routes", "route_totals"]


class Route(StrEnum):
    """The ways to an object, cheapest first when it is on offer."""

    DELTA = "delta"
    COMPRESSED = "compressed"
    WHOLE = "whole"


@attrs.frozen
class Fetch:
    """One object to get: by ``route``, downloading ``encoded`` (a delta or compressed form)
    or, for ``whole``, the object itself."""

    sha256: str
    size: int
    route: Route = Route.WHOLE
    encoded: Encoded | None = None

    @property
    def bytes(self) -> int:
        """What the route downloads."""
        return self.encoded.length if self.encoded is not None else self.size


@attrs.frozen
class RouteTotals:
    """Objects and bytes of one route."""

    objects: int = 0
    bytes: int = 0


def choose_routes(
    missing: Iterable[tuple[str, int]],
    offers: Mapping[str, ObjectTransfers],
    held: Collection[str],
) -> tuple[Fetch, ...]:
    """For each ``(sha256, size)`` of ``missing``: the shortest delta from an object in
    ``held``, else the compressed form, else the whole object. An offer whose size is not the
    object's is ignored (the manifest is the authority)."""
    found = []
    for sha, size in missing:
        offer = offers.get(sha)
        best: Fetch = Fetch(sha, size)
        if offer is not None and offer.size == size:
            if offer.compressed is not None and offer.compressed.length < best.bytes:
                best = Fetch(sha, size, Route.COMPRESSED, offer.compressed)
            for delta in offer.deltas:
                if delta.base in held and delta.length < best.bytes:
                    best = Fetch(sha, size, Route.DELTA, delta)
        found.append(best)
    return tuple(found)


def route_totals(fetches: Iterable[Fetch]) -> dict[Route, RouteTotals]:
    """Objects and bytes per route (every route present, zero when unused)."""
    totals = {route: RouteTotals() for route in Route}
    for f in fetches:
        t = totals[f.route]
        totals[f.route] = RouteTotals(t.objects + 1, t.bytes + f.bytes)
    return totals
