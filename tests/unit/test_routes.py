"""The route to each object: the shortest usable offer, the others kept in order for fallback."""

from __future__ import annotations

from steppatch.model import Encoded, ObjectTransfers
from steppatch.routes import Fetch, Route, choose_routes, route_totals

T, A, B = "aa" * 32, "bb" * 32, "cc" * 32
C1, D1, D2 = Encoded("11" * 32, 400), Encoded("22" * 32, 50, A), Encoded("33" * 32, 20, B)


def test_the_shortest_delta_whose_base_is_held_then_the_others() -> None:
    offers = {T: ObjectTransfers(1000, C1, (D1, D2))}
    (f,) = choose_routes([(T, 1000)], offers, {A, B})
    assert (f.route, f.encoded, f.others) == (Route.DELTA, D2, (D1, C1))
    (f,) = choose_routes([(T, 1000)], offers, {A})
    assert (f.route, f.encoded, f.others) == (Route.DELTA, D1, (C1,))
    (f,) = choose_routes([(T, 1000)], offers, set())
    assert (f.route, f.encoded, f.others) == (Route.COMPRESSED, C1, ())


def test_no_offer_or_a_wrong_size_means_the_whole_object() -> None:
    offers = {T: ObjectTransfers(999, C1, (D1,))}
    assert choose_routes([(T, 1000)], offers, {A}) == (Fetch(T, 1000),)
    assert choose_routes([(T, 1000)], {}, {A}) == (Fetch(T, 1000),)


def test_totals_per_route() -> None:
    fetches = choose_routes(
        [(T, 1000), (A, 10)], {T: ObjectTransfers(1000, C1, (D1,))}, {A}
    )
    totals = route_totals(fetches)
    assert (totals[Route.DELTA].objects, totals[Route.DELTA].bytes) == (1, 50)
    assert (totals[Route.WHOLE].objects, totals[Route.WHOLE].bytes) == (1, 10)
    assert totals[Route.COMPRESSED].objects == 0
