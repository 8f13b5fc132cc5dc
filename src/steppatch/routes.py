"""How each object an apply needs gets to the home: the cheapest route its metadata offers.

Pure: from the objects missing, what the verified transfers documents offer for them, and the
objects the home holds (hashed), one :class:`Fetch` each. A delta needs its base held; any
route but ``whole`` falls back to the whole object when it fails (``pipeline``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from enum import StrEnum

from steppatch import _record as record
from steppatch.model import Encoded, ObjectTransfers

__all__ = ["Fetch", "Route", "RouteTotals", "choose_routes", "route_of", "route_totals"]


class Route(StrEnum):
    """The ways to an object, cheapest first when it is on offer."""

    DELTA = "delta"
    COMPRESSED = "compressed"
    WHOLE = "whole"


@record.frozen
class Fetch:
    """One object to get: by ``route``, downloading ``encoded`` (a delta or compressed form)
    or, for ``whole``, the object itself."""

    sha256: str
    size: int
    route: Route = Route.WHOLE
    encoded: Encoded | None = None
    #: the other routes on offer, best first, tried when this one fails (then the whole object)
    others: tuple[Encoded, ...] = ()

    @property
    def bytes(self) -> int:
        """What the route downloads."""
        return self.encoded.length if self.encoded is not None else self.size


@record.frozen
class RouteTotals:
    """Objects and bytes of one route."""

    objects: int = 0
    bytes: int = 0


def route_of(encoded: Encoded) -> Route:
    """The route an encoded form is."""
    return Route.DELTA if encoded.base is not None else Route.COMPRESSED


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
        usable: list[Encoded] = []
        if offer is not None and offer.size == size:
            usable = [d for d in offer.deltas if d.base in held and d.length < size]
            if offer.compressed is not None and offer.compressed.length < size:
                usable.append(offer.compressed)
        if not usable:
            found.append(Fetch(sha, size))
            continue
        # Shortest first; on a tie a delta before the compressed form (stable sort).
        best, *rest = sorted(usable, key=lambda e: e.length)
        found.append(Fetch(sha, size, route_of(best), best, tuple(rest)))
    return tuple(found)


def route_totals(fetches: Iterable[Fetch]) -> dict[Route, RouteTotals]:
    """Objects and bytes per route (every route present, zero when unused)."""
    totals = {route: RouteTotals() for route in Route}
    for f in fetches:
        t = totals[f.route]
        totals[f.route] = RouteTotals(t.objects + 1, t.bytes + f.bytes)
    return totals
