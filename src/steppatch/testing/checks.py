"""Independent checks of solver answers, for property tests (no code shared with the solver).

A *universe* is plain data: component name -> version string -> dependency name -> specifier
string, the shape :class:`~steppatch.solver.DictIndex` takes. Everything here is a direct reading
of the rules, so it is slow (brute force is exponential) and meant for tiny universes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

__all__ = ["UniverseData", "allows", "brute_force", "check_solution"]

UniverseData = Mapping[str, Mapping[str, Mapping[str, str]]]


def allows(spec: str | SpecifierSet, version: Version, *, installed: bool = False) -> bool:
    """Whether ``spec`` admits ``version``: pre-releases only when the specifier names one, or
    when ``version`` is the installed one (packaging's ``installed=True``)."""
    specifier = spec if isinstance(spec, SpecifierSet) else SpecifierSet(spec)
    if installed:
        return specifier.contains(version, installed=True)
    return specifier.contains(version, prereleases=specifier.prereleases is True)


def _is_kept(
    installed: Mapping[str, Version] | None, name: str, selection: Mapping[str, Version]
) -> bool:
    """Whether ``name`` is selected at its installed version."""
    return installed is not None and name in installed and selection[name] == installed[name]


def _keeps(installed: Version, version: Version) -> bool:
    """An installed component stays: at any release, or at its own (pre-release) version."""
    return version == installed or not version.is_prerelease


def _requirements(requirements: Iterable[str]) -> list[tuple[str, SpecifierSet]]:
    out = []
    for text in requirements:
        req = Requirement(text)
        out.append((req.name, req.specifier))
    return out


def _deps(universe: UniverseData, name: str, version: Version) -> Mapping[str, str] | None:
    for raw, deps in universe.get(name, {}).items():
        if Version(raw) == version:
            return deps
    return None


def check_solution(
    universe: UniverseData,
    requirements: Iterable[str],
    solution: Mapping[str, Version],
    installed: Mapping[str, Version] | None = None,
) -> list[str]:
    """Every way ``solution`` breaks the rules (empty when it is a valid answer).

    Valid means: every requirement is met; every installed component is present (one not
    requested at a release, or at its installed version if that is a pre-release); every selected
    version exists and has its dependencies met; and nothing outside the roots and their
    transitive dependencies is selected. O(size of the solution x dependencies).
    """
    problems: list[str] = []
    roots: list[str] = []
    reqs = _requirements(requirements)
    # A requested component follows its request's pre-release rule, not the installed one's.
    requested = {name for name, _ in reqs}
    for name, spec in reqs:
        roots.append(name)
        if name not in solution:
            problems.append(f"requested {name} is missing")
        elif not allows(spec, solution[name], installed=_is_kept(installed, name, solution)):
            problems.append(f"{name} {solution[name]} does not meet the request {name}{spec}")
    for name, kept in (installed or {}).items():
        roots.append(name)
        if name not in solution:
            problems.append(f"installed {name} was dropped")
        elif name not in requested and not _keeps(kept, solution[name]):
            problems.append(f"installed {name} {kept} moved to the pre-release {solution[name]}")
    for name, version in solution.items():
        deps = _deps(universe, name, version)
        if deps is None:
            problems.append(f"{name} {version} does not exist")
            continue
        for dep, dep_spec in deps.items():
            if dep not in solution:
                problems.append(f"{name} {version} needs {dep}, which is missing")
            elif not allows(dep_spec, solution[dep], installed=_is_kept(installed, dep, solution)):
                problems.append(f"{name} {version} needs {dep}{dep_spec}, got {solution[dep]}")
    reachable: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in reachable or name not in solution:
            continue
        reachable.add(name)
        deps = _deps(universe, name, solution[name])
        stack.extend(deps or ())
    for extra in sorted(set(solution) - reachable):
        problems.append(f"{extra} is selected but nothing needs it")
    return problems


def brute_force(
    universe: UniverseData,
    requirements: Iterable[str],
    installed: Mapping[str, Version] | None = None,
) -> dict[str, Version] | None:
    """Some valid solution, found by trying every selection, or ``None`` if none exists.

    Costs O((v + 1) ** c) for c components of at most v versions: tiny universes only.
    """
    reqs = _requirements(requirements)
    names = sorted(universe)
    choices = [[None, *(Version(v) for v in universe[name])] for name in names]
    kept = dict(installed or {})
    keep = sorted(set(kept) - {name for name, _ in reqs})
    for combo in itertools.product(*choices):
        selected = {n: v for n, v in zip(names, combo, strict=True) if v is not None}
        if any(
            name not in selected
            or not allows(s, selected[name], installed=_is_kept(kept, name, selected))
            for name, s in reqs
        ):
            continue
        if any(name not in selected or not _keeps(kept[name], selected[name]) for name in keep):
            continue
        ok = True
        for name, version in selected.items():
            for dep, spec in universe[name][_raw(universe, name, version)].items():
                if dep not in selected or not allows(
                    spec, selected[dep], installed=_is_kept(kept, dep, selected)
                ):
                    ok = False
                    break
            if not ok:
                break
        if ok:
            return _closure(universe, [n for n, _ in reqs] + keep, selected)
    return None


def _raw(universe: UniverseData, name: str, version: Version) -> str:
    for raw in universe[name]:
        if Version(raw) == version:
            return raw
    raise KeyError(f"{name} {version}")


def _closure(
    universe: UniverseData, roots: list[str], selected: Mapping[str, Version]
) -> dict[str, Version]:
    """``selected`` restricted to what the roots need, transitively (still valid)."""
    out: dict[str, Version] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in out:
            continue
        out[name] = selected[name]
        stack.extend(universe[name][_raw(universe, name, selected[name])])
    return dict(sorted(out.items()))
