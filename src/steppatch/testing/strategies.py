"""Hypothesis strategies for component universes, requests and installed sets.

>>> from hypothesis import given
>>> from steppatch.solver import DictIndex, solve
>>> from steppatch.testing import problems
>>> @given(problems())
... def test_answers_are_valid(problem):
...     ...  # solve(problem.requirements, DictIndex(problem.universe), installed=problem.installed)

Universes are small on purpose (a few components and versions) so that answers can be checked
by brute force (:func:`steppatch.testing.brute_force`). They include what breaks solvers: cycles,
self-dependencies, dependency ranges that match nothing, and names no index knows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hypothesis import strategies as st
from packaging.version import Version

from .checks import UniverseData

__all__ = [
    "Problem",
    "component_names",
    "installed_sets",
    "problems",
    "requirement_lists",
    "specifiers",
    "universes",
]

#: Versions universes draw from; "4.0" is never published, so specifiers can name a version
#: that does not exist.
RELEASES = ("1.0", "1.1", "2.0", "3.0")
PRERELEASES = ("2.0rc1",)
UNPUBLISHED = "4.0"
#: A name no universe contains, for dependencies and requests on unknown components.
GHOST = "ghost"
NAMES = ("a", "b", "c", "d", "e", "f", "g", "h")


@dataclass(frozen=True)
class Problem:
    """A universe, a request and an installed set: one input of ``solve``."""

    universe: UniverseData
    requirements: tuple[str, ...]
    installed: Mapping[str, Version] = field(default_factory=dict)


def component_names(max_size: int = 4) -> st.SearchStrategy[list[str]]:
    """Distinct component names (lowercase letters), at least one."""
    return st.lists(
        st.sampled_from(NAMES[: max(max_size, 1)]), min_size=1, max_size=max_size, unique=True
    )


def specifiers(versions: Sequence[str] = RELEASES) -> st.SearchStrategy[str]:
    """Specifier strings over ``versions`` (plus an unpublished one): any, bounds, pins,
    exclusions, two-sided ranges, and empty ranges such as ``>=3.0,<1.0``."""
    pool = st.sampled_from((*versions, UNPUBLISHED))
    op = st.sampled_from((">=", ">", "<", "<=", "==", "!="))
    single = st.builds(lambda o, v: f"{o}{v}", op, pool)
    pair = st.builds(lambda lo, hi: f">={lo},<{hi}", pool, pool)
    return st.one_of(st.just(""), single, pair)


@st.composite
def universes(
    draw: st.DrawFn,
    *,
    max_components: int = 4,
    max_versions: int = 3,
    max_dependencies: int = 2,
    prereleases: bool = False,
    unknown_names: bool = True,
) -> dict[str, dict[str, dict[str, str]]]:
    """A universe as plain data (name -> version -> dependency -> specifier).

    Components may have no versions at all; dependencies may form cycles, point at their own
    component, or (with ``unknown_names``) at a component that does not exist.
    """
    names = draw(component_names(max_components))
    pool = RELEASES + PRERELEASES if prereleases else RELEASES
    targets = [*names, GHOST] if unknown_names else list(names)
    spec = specifiers(pool)
    universe: dict[str, dict[str, dict[str, str]]] = {}
    for name in names:
        versions = draw(st.lists(st.sampled_from(pool), max_size=max_versions, unique=True))
        universe[name] = {}
        for version in versions:
            deps = draw(st.dictionaries(st.sampled_from(targets), spec, max_size=max_dependencies))
            universe[name][version] = deps
    return universe


def requirement_lists(
    universe: UniverseData, *, max_size: int = 3, unknown_names: bool = True
) -> st.SearchStrategy[list[str]]:
    """Requests (``NAME[SPECIFIER]`` strings) over the universe's names."""
    names = sorted(universe) + ([GHOST] if unknown_names else [])
    versions = sorted({v for vs in universe.values() for v in vs}) or list(RELEASES)
    return st.lists(
        st.builds(lambda n, s: f"{n}{s}", st.sampled_from(names), specifiers(versions)),
        max_size=max_size,
    )


def installed_sets(universe: UniverseData) -> st.SearchStrategy[dict[str, Version]]:
    """Installed components: some of the universe's names, each at one of its versions or at a
    version the index no longer has."""
    entries = [
        (name, version) for name, versions in sorted(universe.items()) for version in versions
    ] + [(name, UNPUBLISHED) for name in sorted(universe)]
    if not entries:
        return st.just({})
    return st.lists(st.sampled_from(entries), max_size=3, unique_by=lambda e: e[0]).map(
        lambda chosen: {name: Version(version) for name, version in chosen}
    )


@st.composite
def problems(
    draw: st.DrawFn,
    *,
    max_components: int = 4,
    max_versions: int = 3,
    prereleases: bool = False,
    unknown_names: bool = True,
    installed: bool = True,
) -> Problem:
    """A whole ``solve`` input: universe, request and (optionally) installed components."""
    universe = draw(
        universes(
            max_components=max_components,
            max_versions=max_versions,
            prereleases=prereleases,
            unknown_names=unknown_names,
        )
    )
    requirements = draw(requirement_lists(universe, unknown_names=unknown_names))
    kept = draw(installed_sets(universe)) if installed else {}
    return Problem(universe, tuple(requirements), kept)
