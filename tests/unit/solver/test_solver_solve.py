"""solve(): answers, preferences, edge cases of the input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from steppatch.errors import InputError, ResolutionImpossible
from steppatch.solver import DictIndex, SolverLimitExceeded, solve
from steppatch.solver._solver import _Solver
from steppatch.testing import brute_force, check_solution


def V(s: str) -> Version:
    return Version(s)


def versions(solution: Mapping[str, Version]) -> dict[str, str]:
    return {name: str(v) for name, v in solution.items()}


ISSUE_INDEX = DictIndex(
    {
        "restapi": {"7.0.40": {"step-core": ">=9.0,<10"}},
        "step-core": {"9.0.0": {}, "9.0.5": {}},
    }
)


def test_issue_example_picks_newest() -> None:
    assert versions(solve(["restapi>=7.0"], ISSUE_INDEX)) == {
        "restapi": "7.0.40",
        "step-core": "9.0.5",
    }


def test_installed_component_keeps_its_version() -> None:
    solution = solve(["restapi"], ISSUE_INDEX, installed={"step-core": V("9.0.0")})
    assert versions(solution) == {"restapi": "7.0.40", "step-core": "9.0.0"}


def test_installed_component_moves_only_when_forced() -> None:
    index = DictIndex(
        {
            "restapi": {"7.0.39": {"step-core": ">=9.0,<9.1"}, "7.0.40": {"step-core": ">=9.1"}},
            "step-core": {"9.0.0": {}, "9.0.5": {}, "9.1.0": {}, "9.2.0": {}},
            "other": {"1.0": {}, "2.0": {}},
        }
    )
    installed = {"step-core": V("9.0.0"), "other": V("1.0"), "restapi": V("7.0.39")}
    # Nothing requested: nothing moves.
    assert versions(solve([], index, installed=installed)) == {
        "other": "1.0",
        "restapi": "7.0.39",
        "step-core": "9.0.0",
    }
    # restapi is requested: it goes to its newest, which forces step-core to move (to its
    # newest allowed version); "other" is untouched.
    assert versions(solve(["restapi"], index, installed=installed)) == {
        "other": "1.0",
        "restapi": "7.0.40",
        "step-core": "9.2.0",
    }
    # A requested component is not held back by being installed.
    assert versions(solve(["other"], index, installed=installed))["other"] == "2.0"


def test_requested_and_installed_at_once_prefers_newest() -> None:
    solution = solve(["step-core"], ISSUE_INDEX, installed={"step-core": V("9.0.0")})
    assert versions(solution) == {"step-core": "9.0.5"}


def test_installed_version_missing_from_index_moves_to_newest() -> None:
    solution = solve([], ISSUE_INDEX, installed={"step-core": V("8.0.0")})
    assert versions(solution) == {"step-core": "9.0.5"}


def test_installed_unknown_component_is_impossible() -> None:
    with pytest.raises(ResolutionImpossible) as info:
        solve([], ISSUE_INDEX, installed={"gone": V("1.0")})
    assert "depends on gone which doesn't exist" in str(info.value)


def test_result_holds_roots_and_transitive_dependencies_only() -> None:
    index = DictIndex(
        {
            "a": {"1": {"b": ">=1"}},
            "b": {"1": {"c": ""}},
            "c": {"1": {}},
            "unrelated": {"1": {}},
            "old-dep": {"1": {}},
        }
    )
    assert list(solve(["a"], index)) == ["a", "b", "c"]
    # A dependency of a version that was not chosen does not leak into the answer.
    index2 = DictIndex({"a": {"1": {"old-dep": ""}, "2": {}}, "old-dep": {"1": {}}})
    assert versions(solve(["a"], index2)) == {"a": "2"}


def test_dependency_only_components_prefer_newest() -> None:
    index = DictIndex({"a": {"1": {"b": "<3"}}, "b": {"1": {}, "2": {}, "3": {}}})
    assert versions(solve(["a"], index)) == {"a": "1", "b": "2"}


def test_empty_request_is_empty_solution() -> None:
    assert solve([], ISSUE_INDEX) == {}


def test_requirement_objects_and_duplicates() -> None:
    solution = solve(
        [Requirement("restapi"), "restapi", "step-core<9.0.5", "step-core>=9"], ISSUE_INDEX
    )
    assert versions(solution) == {"restapi": "7.0.40", "step-core": "9.0.0"}


@pytest.mark.parametrize("bad", ["restapi[extra]", "restapi; python_version>'3'", "not a req!"])
def test_unsupported_requirements_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        solve([bad], ISSUE_INDEX)


def test_prereleases_only_when_named() -> None:
    index = DictIndex({"a": {"1.0": {}, "2.0b1": {}}, "b": {"1.0": {"a": ">=1.0"}}})
    assert versions(solve(["a"], index)) == {"a": "1.0"}
    assert versions(solve(["a>=2.0b1"], index)) == {"a": "2.0b1"}
    assert versions(solve(["b"], index)) == {"a": "1.0", "b": "1.0"}
    # Only a pre-release exists and nothing names one: impossible, as packaging's specifier
    # policy says (no "fall back to pre-releases").
    only_pre = DictIndex({"a": {"2.0b1": {}}})
    with pytest.raises(ResolutionImpossible) as info:
        solve(["a"], only_pre)
    assert str(info.value) == (
        "Because the request depends on a and a has only pre-releases, version solving failed."
    )


def test_installed_prerelease_is_kept() -> None:
    index = DictIndex({"a": {"1.0": {}, "2.0rc1": {}}})
    assert versions(solve([], index, installed={"a": V("2.0rc1")})) == {"a": "2.0rc1"}


def test_installed_prerelease_meets_plain_ranges() -> None:
    # packaging's rule for installed versions: an installed pre-release in range is accepted.
    index = DictIndex({"a": {"2.0rc1": {}}, "b": {"1.0": {"a": ">=1"}}})
    installed = {"a": V("2.0rc1")}
    assert versions(solve(["a", "b"], index, installed=installed)) == {"a": "2.0rc1", "b": "1.0"}
    with pytest.raises(ResolutionImpossible):
        solve(["a", "b"], index)


def test_cycles_are_solved() -> None:
    index = DictIndex(
        {
            "a": {"1": {"b": ">=1"}, "2": {"b": "==2"}},
            "b": {"1": {"a": "==1"}, "2": {"a": "==1"}},
        }
    )
    # a 2 needs b 2, which needs a 1: a 2 is impossible.
    assert versions(solve(["a"], index)) == {"a": "1", "b": "2"}
    assert versions(solve(["b"], index)) == {"a": "1", "b": "2"}


def test_self_dependency() -> None:
    index = DictIndex({"a": {"1": {"a": ">=1"}, "2": {"a": "<2"}}})
    assert versions(solve(["a"], index)) == {"a": "1"}


def test_backtracking_across_components() -> None:
    # The newest of everything conflicts; the solver must find the older consistent pair.
    index = DictIndex(
        {
            "a": {str(i): {"b": f"=={i}"} for i in range(1, 6)},
            "b": {str(i): {"c": "==1" if i == 2 else "==2"} for i in range(1, 6)},
            "c": {"1": {}, "2": {}},
        }
    )
    assert versions(solve(["a", "c<2"], index)) == {"a": "2", "b": "2", "c": "1"}


def test_unknown_dependency_rules_out_its_depender() -> None:
    index = DictIndex({"a": {"1": {}, "2": {"ghost": ">=1"}}})
    assert versions(solve(["a"], index)) == {"a": "1"}


def test_empty_dependency_range_rules_out_its_depender() -> None:
    index = DictIndex({"a": {"1": {}, "2": {"b": ">=2,<1"}}, "b": {"1": {}}})
    assert versions(solve(["a"], index)) == {"a": "1"}


def test_max_rounds() -> None:
    index = DictIndex({f"p{i}": {"1": {f"p{i + 1}": ""} if i < 20 else {}} for i in range(21)})
    assert len(solve(["p0"], index)) == 21
    with pytest.raises(SolverLimitExceeded) as info:
        solve(["p0"], index, max_rounds=5)
    error = info.value
    assert isinstance(error, ResolutionImpossible)
    assert isinstance(error, InputError)
    assert error.rounds == 5
    assert error.derivation is None
    assert "limit" in str(error)


class _CountingIndex:
    """A PackageIndex that records calls, with versions in a scrambled order."""

    def __init__(self, inner: DictIndex) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    def versions(self, name: str) -> Sequence[Version]:
        self.calls.append(("versions", name))
        return list(reversed(self.inner.versions(name)))

    def dependencies(self, name: str, version: Version) -> Mapping[str, SpecifierSet]:
        self.calls.append(("dependencies", f"{name} {version}"))
        return self.inner.dependencies(name, version)


def test_index_protocol_any_order_and_caching() -> None:
    index = _CountingIndex(
        DictIndex({"a": {"1": {"b": ""}, "2": {"b": ""}}, "b": {"2": {}, "1": {}, "3": {}}})
    )
    assert versions(solve(["a"], index)) == {"a": "2", "b": "3"}
    assert len(index.calls) == len(set(index.calls)), "each question is asked once"


def test_merged_runs_make_many_versions_fail_at_once() -> None:
    # 500 versions of "a" all need a missing "b" range: one merged incompatibility, few rounds.
    index = DictIndex({"a": {f"1.{i}": {"b": ">=2"} for i in range(500)}, "b": {"1": {}}})
    with pytest.raises(ResolutionImpossible) as info:
        solve(["a"], index, max_rounds=10)
    assert "every version of a depends on b >=2" in str(info.value)


def _shifting(n: int, components: int = 5) -> DictIndex:
    """The benchmark's shifting ranges: version j of r<i> needs r<i+1> >=j,<j+2 (each version a
    range of its own, so no two merge), and every version of the last needs r0 <=1."""
    last = components - 1
    return DictIndex(
        {
            f"r{i}": {
                str(j): ({"r0": "<=1"} if i == last else {f"r{i + 1}": f">={j},<{j + 2}"})
                for j in range(1, n + 1)
            }
            for i in range(components)
        }
    )


@pytest.mark.parametrize("n", [50, 400])
def test_shifting_ranges_take_a_bounded_number_of_rounds(n: int) -> None:
    # Only r0 = 1 works. Each newest r0 used to fail on its own after walking the chain (rounds
    # linear in n); once r4 is ruled out, "every r3 needs r4" and so on rule out r0 >=2 at once.
    solution = solve(["r0"], _shifting(n), max_rounds=40)
    assert versions(solution) == {"r0": "1", "r1": "2", "r2": "3", "r3": "4", "r4": "5"}


def test_shifting_ranges_derive_at_most_linearly_many_facts() -> None:
    # After every backjump, each version of r1..r3 tried before used to be ruled out again by a
    # fact of its own: 10,499 derivations at 100 versions, 161,999 at 400 (quadratic).
    def derivations(n: int) -> int:
        solver = _Solver(_shifting(n), 100_000, {})
        solver.solve([("r0", SpecifierSet())])
        return solver.derivations

    small, large = derivations(100), derivations(400)
    assert large <= 4 * small, "derivations grow faster than the versions"
    assert large < 400, "more than one derivation per version of r0"


def test_dict_index() -> None:
    index = DictIndex({"a": {"1.0": {"b": ">=1"}, "2.0": {"b": SpecifierSet("<3")}}})
    assert list(index.versions("a")) == [V("1.0"), V("2.0")]
    assert index.versions("nope") == ()
    assert index.dependencies("a", V("1.0")) == {"b": SpecifierSet(">=1")}
    assert index.dependencies("a", V("2.0")) == {"b": SpecifierSet("<3")}
    assert index.names() == ("a",)
    with pytest.raises(KeyError):
        index.dependencies("a", V("3.0"))
    with pytest.raises(ValueError):
        DictIndex({"a": {"not-a-version": {}}})
    with pytest.raises(ValueError):
        DictIndex({"a": {"1": {"b": "~~1"}}})


def test_a_requested_installed_component_follows_its_request_pre_release_rule() -> None:
    # Found by hypothesis: the checker held a requested component to the installed one's rule.
    universe = {"a": {"2.0rc1": {}}}
    index = DictIndex(universe)
    solution = solve(["a>=2.0rc1"], index, installed={"a": Version("4.0")})
    assert solution == {"a": Version("2.0rc1")}
    assert check_solution(universe, ["a>=2.0rc1"], solution, {"a": Version("4.0")}) == []
    assert brute_force(universe, ["a>=2.0rc1"], {"a": Version("4.0")}) is not None
