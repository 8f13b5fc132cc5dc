"""Which changed members a version 2 zip delta re-deflates (``choose_redeflate``)."""

from __future__ import annotations

import random

from steppatch.limits import Limits
from steppatch.repo._deltas import redeflate_budget
from steppatch.zipdelta import Candidate, choose_redeflate


def test_the_best_bytes_saved_per_byte_deflated_come_first() -> None:
    cands = [Candidate(100, 1000), Candidate(300, 1000), Candidate(50, 100), Candidate(10, 10)]
    # ratios 0.1, 0.3, 0.5, 1.0: with room for 1110 bytes, the last three
    assert choose_redeflate(cands, 1110) == [1, 2, 3]
    # room for 200 bytes: the two small ones only (1.0 and 0.5), not the 0.3 that does not fit
    assert choose_redeflate(cands, 200) == [2, 3]


def test_a_candidate_that_does_not_fit_is_skipped_for_a_smaller_one() -> None:
    cands = [Candidate(900, 1000), Candidate(30, 100)]  # 0.9 first, but it does not fit
    assert choose_redeflate(cands, 500) == [1]


def test_nothing_that_saves_nothing_and_nothing_without_a_budget() -> None:
    cands = [Candidate(0, 10), Candidate(-5, 10), Candidate(5, 10)]
    assert choose_redeflate(cands, 1000) == [2]
    assert choose_redeflate(cands, 0) == []
    assert choose_redeflate([], 1000) == []


def test_ties_go_to_the_earlier_member() -> None:
    cands = [Candidate(10, 100), Candidate(10, 100), Candidate(10, 100)]
    assert choose_redeflate(cands, 200) == [0, 1]


def test_the_budget_is_never_exceeded_and_what_is_left_out_is_worse_or_too_big() -> None:
    rng = random.Random(7)
    for _ in range(200):
        cands = [Candidate(rng.randrange(-50, 500), rng.randrange(1, 400)) for _ in range(8)]
        budget = rng.randrange(0, 1500)
        chosen = choose_redeflate(cands, budget)
        assert chosen == sorted(set(chosen))
        assert sum(cands[i].cost for i in chosen) <= budget
        assert all(cands[i].saving > 0 for i in chosen)
        # Greedy: every positive candidate left out either does not fit in what is left, or
        # saves less per byte than every chosen one.
        left = budget - sum(cands[i].cost for i in chosen)
        for j, c in enumerate(cands):
            if j in chosen or c.saving <= 0:
                continue
            ratio = c.saving / c.cost
            assert c.cost > left or all(cands[i].saving / cands[i].cost >= ratio for i in chosen)


def test_the_budget_is_a_fraction_of_the_archive_with_a_floor() -> None:
    limits = Limits()
    assert redeflate_budget(100 * 1024 * 1024, limits) == int(
        100 * 1024 * 1024 * limits.zip_redeflate_fraction
    )
    assert redeflate_budget(1000, limits) == limits.zip_redeflate_min_bytes
