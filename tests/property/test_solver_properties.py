"""Properties of solve() on tiny universes, against brute force and an independent checker."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from steppatch.errors import ResolutionImpossible
from steppatch.solver import (
    ROOT,
    ComponentDependency,
    Dependency,
    Derived,
    DictIndex,
    Incompatibility,
    NoVersions,
    Term,
    UnknownComponent,
    solve,
)
from steppatch.testing import (
    Problem,
    UniverseData,
    allows,
    brute_force,
    check_solution,
    problems,
    specifiers,
    universes,
)
from steppatch.testing.strategies import PRERELEASES, RELEASES

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(problem: Problem) -> dict[str, Version] | ResolutionImpossible:
    try:
        return solve(problem.requirements, DictIndex(problem.universe), installed=problem.installed)
    except ResolutionImpossible as error:
        return error


@st.composite
def chains(draw: st.DrawFn) -> Problem:
    """Components c0, c1, ... where every version of each depends on the next, each with a range
    of its own: when one is ruled out, the solver learns that its depender's runs of versions
    need it (ComponentDependency facts), which the small universes of ``problems`` rarely show.
    """
    pool = (*RELEASES, *PRERELEASES)
    names = [f"c{i}" for i in range(draw(st.integers(2, 4)))]
    universe: dict[str, dict[str, dict[str, str]]] = {}
    for i, name in enumerate(names):
        versions = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5, unique=True))
        universe[name] = {}
        for version in versions:
            deps = {names[i + 1]: draw(specifiers(pool))} if i + 1 < len(names) else {}
            if draw(st.booleans()):
                deps[draw(st.sampled_from(names))] = draw(specifiers(pool))
            universe[name][version] = deps
    request = draw(st.sampled_from(["c0", "c0>=1.1", "c0<3.0"]))
    return Problem(universe, (request,))


def _agrees_with_brute_force(problem: Problem) -> None:
    result = run(problem)
    expected = brute_force(problem.universe, problem.requirements, problem.installed)
    if isinstance(result, ResolutionImpossible):
        assert expected is None, f"solver says impossible, but {expected} works:\n{result}"
    else:
        assert expected is not None
        problems_found = check_solution(
            problem.universe, problem.requirements, result, problem.installed
        )
        assert problems_found == []


@FAST
@given(problems(prereleases=True))
def test_solvable_exactly_when_brute_force_finds_a_solution(problem: Problem) -> None:
    _agrees_with_brute_force(problem)


@FAST
@given(chains())
def test_chains_solvable_exactly_when_brute_force_finds_a_solution(problem: Problem) -> None:
    _agrees_with_brute_force(problem)


# --- explanations: leaves are facts, inner nodes follow from them ------------------------------


def _allowed(problem: Problem, name: str, spec: SpecifierSet) -> set[Version]:
    kept = problem.installed.get(name)
    return {
        Version(v)
        for v in problem.universe.get(name, {})
        if allows(spec, Version(v), installed=Version(v) == kept)
    }


def _raw(universe: UniverseData, name: str, version: Version) -> str:
    return next(raw for raw in universe[name] if Version(raw) == version)


def _check_leaf(problem: Problem, leaf: Incompatibility) -> None:
    universe = problem.universe
    cause = leaf.cause
    if isinstance(cause, UnknownComponent):
        assert not universe.get(cause.name), f"{cause.name} does exist"
    elif isinstance(cause, NoVersions):
        name = cause.term.name
        if cause.specifier:
            assert not _allowed(problem, name, SpecifierSet(cause.specifier))
        else:  # "any version": there are only pre-releases (and not the installed one)
            assert universe.get(name)
            assert not _allowed(problem, name, SpecifierSet())
    elif isinstance(cause, Dependency):
        dependee = cause.dependee
        target = set(dependee.versions)
        if cause.depender.name == ROOT:
            requested = {
                (req.name, req.specifier) for req in map(Requirement, problem.requirements)
            }
            if (dependee.name, SpecifierSet(cause.specifier)) in requested:
                assert target == _allowed(problem, dependee.name, SpecifierSet(cause.specifier))
            else:
                kept = problem.installed[dependee.name]
                published = set(map(Version, universe.get(dependee.name, {})))
                releases = {v for v in published if not v.is_prerelease}
                assert cause.specifier == ""
                assert target == releases | ({kept} & published)
        else:
            assert cause.depender.versions, "a dependency of no version"
            for version in cause.depender.versions:
                deps = universe[cause.depender.name][_raw(universe, cause.depender.name, version)]
                assert dependee.name in deps
                spec = SpecifierSet(deps[dependee.name])
                assert spec == SpecifierSet(cause.specifier)
                assert target == _allowed(problem, dependee.name, spec)
    elif isinstance(cause, ComponentDependency):
        # Every version of the run depends on the component, whatever its range.
        assert cause.dependee.is_any and cause.dependee.positive
        assert cause.depender.name not in (ROOT, cause.dependee.name)
        assert cause.depender.versions, "a dependency of no version"
        assert leaf.terms == (cause.depender, cause.dependee.negate())
        for version in cause.depender.versions:
            deps = universe[cause.depender.name][_raw(universe, cause.depender.name, version)]
            assert cause.dependee.name in deps
    else:
        raise AssertionError(f"unexpected leaf {leaf!r}")


def _holds(term: Term, selection: Mapping[str, Version | None]) -> bool:
    chosen = selection.get(term.name)
    inside = chosen is not None and chosen in term.versions
    return inside if term.positive else not inside


def _violated(inc: Incompatibility, selection: Mapping[str, Version | None]) -> bool:
    return all(_holds(t, selection) for t in inc.terms)


def _check_sound(node: Incompatibility) -> None:
    """No selection obeys every leaf of ``node`` yet makes all of ``node``'s terms true."""
    leaves = list(node.leaves())
    spaces: dict[str, tuple[Version, ...]] = {}
    for inc in [node, *leaves]:
        for term in inc.terms:
            spaces[term.name] = term.space.versions
    names = sorted(spaces)
    options = [
        [Version("0")] if name == ROOT else [None, *spaces[name]] for name in names
    ]  # the request is always "selected"
    for combo in itertools.product(*options):
        selection = dict(zip(names, combo, strict=True))
        if any(_violated(leaf, selection) for leaf in leaves):
            continue
        assert not _violated(node, selection), f"{node!r} does not follow from its leaves"


def _nodes(root: Incompatibility) -> list[Incompatibility]:
    seen: dict[int, Incompatibility] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        if isinstance(node.cause, Derived):
            stack.extend((node.cause.conflict, node.cause.other))
    return list(seen.values())


def _explanation_rests_on_true_facts(problem: Problem) -> None:
    result = run(problem)
    assume(isinstance(result, ResolutionImpossible))
    assert isinstance(result, ResolutionImpossible)
    root = result.derivation
    assert isinstance(root, Incompatibility)
    assert root.is_failure
    for leaf in root.leaves():
        _check_leaf(problem, leaf)
    for node in _nodes(root):
        if isinstance(node.cause, Derived):
            _check_sound(node)
    text = str(result)
    assert text.endswith("version solving failed.")
    assert text == result.explanation


@FAST
@given(problems(prereleases=True))
def test_explanations_rest_on_true_facts(problem: Problem) -> None:
    _explanation_rests_on_true_facts(problem)


@FAST
@given(chains())
def test_chain_explanations_rest_on_true_facts(problem: Problem) -> None:
    _explanation_rests_on_true_facts(problem)


# --- monotonicity --------------------------------------------------------------------------------


def _widened(spec: str, drop: int) -> str:
    clauses = [c for c in spec.split(",") if c]
    if not clauses:
        return ""
    del clauses[drop % len(clauses)]
    return ",".join(clauses)


@settings(max_examples=200, deadline=None)
@given(problems(prereleases=False), st.data())
def test_widening_or_removing_dependencies_keeps_solvability(
    problem: Problem, data: st.DataObject
) -> None:
    # Without pre-releases, dropping a clause of a specifier only ever allows more versions.
    assume(not isinstance(run(problem), ResolutionImpossible))
    edges = [
        (name, version, dep)
        for name, versions in sorted(problem.universe.items())
        for version, deps in versions.items()
        for dep in sorted(deps)
    ]
    universe = {n: {v: dict(d) for v, d in vs.items()} for n, vs in problem.universe.items()}
    requirements = list(problem.requirements)
    choice = data.draw(st.sampled_from(["remove", "widen", "widen-request"]))
    if choice == "widen-request" and requirements:
        i = data.draw(st.integers(0, len(requirements) - 1))
        req = Requirement(requirements[i])
        requirements[i] = req.name + _widened(str(req.specifier), data.draw(st.integers(0, 3)))
    elif edges:
        name, version, dep = data.draw(st.sampled_from(edges))
        if choice == "remove":
            del universe[name][version][dep]
        else:
            spec = universe[name][version][dep]
            universe[name][version][dep] = _widened(spec, data.draw(st.integers(0, 3)))
    wider = Problem(universe, tuple(requirements), problem.installed)
    result = run(wider)
    assert not isinstance(result, ResolutionImpossible), str(result)


# --- installed components ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(universes(prereleases=True), st.data())
def test_a_consistent_installation_does_not_move(
    universe: dict[str, dict[str, dict[str, str]]], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(universe)))
    environment = brute_force(universe, [name])
    assume(environment is not None)
    assert environment is not None
    assert solve([], DictIndex(universe), installed=environment) == environment


@FAST
@given(problems(prereleases=True))
def test_answers_are_deterministic_and_ordered(problem: Problem) -> None:
    first = run(problem)
    second = run(problem)
    if isinstance(first, ResolutionImpossible):
        assert isinstance(second, ResolutionImpossible)
        assert str(first) == str(second)
    else:
        assert first == second
        assert list(first) == sorted(first)
