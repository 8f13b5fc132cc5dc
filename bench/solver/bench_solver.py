"""Solver benchmark: steppatch's PubGrub against resolvelib 1.2.1 and nab-resolver 0.0.23.

Every solver gets the same parsed index (``DictIndex``) and the same pre-release rule (a
specifier admits a pre-release only when it names one); the adapters below compute allowed
versions lazily and cache them, as the steppatch solver does, so each timing includes that work.

For each problem family and size: the median seconds of ``--runs`` runs per solver, the ratio to
steppatch, whether the outcomes agree, and wrong answers (a "solution" the independent checker
rejects, or "impossible" when another solver found a valid solution). Families are generated
deterministically. Run from the project root: ``.venv/bin/python bench/solver/bench_solver.py``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from steppatch.errors import ResolutionImpossible
from steppatch.solver import DictIndex, SolverLimitExceeded, solve
from steppatch.testing import check_solution, random_registry

Universe = dict[str, dict[str, dict[str, str]]]
Problem = tuple[Universe, list[str]]
Outcome = tuple[str, dict[str, Version] | None]  # ("ok" | "impossible" | "limit" | "error: X", ...)

MAX_ROUNDS = 200_000


# --- problem families ----------------------------------------------------------------------------


def fan_out(n: int) -> Problem:
    """A tree of n components, 4 children each, 3 versions each, children needed at >=1."""
    universe: Universe = {}
    for i in range(n):
        children = [c for c in range(4 * i + 1, 4 * i + 5) if c < n]
        deps = {f"t{c}": ">=1" for c in children}
        universe[f"t{i}"] = {"1.0": deps, "2.0": deps, "3.0": deps}
    return universe, ["t0"]


def singleton_chain(versions: int, length: int = 100) -> Problem:
    """A chain of components, each version pinning the same version of the next; the last one
    lacks the newest 5 versions, so the newest 5 of the first fail through the whole chain."""
    universe: Universe = {}
    for i in range(length):
        top = versions - 5 if i == length - 1 else versions
        universe[f"s{i}"] = {
            f"{j}.0": ({f"s{i + 1}": f"=={j}.0"} if i + 1 < length else {})
            for j in range(1, top + 1)
        }
    return universe, ["s0"]


def disjoint(components: int, versions: int = 200) -> Problem:
    """Independent components with many versions each, all requested: per-version overhead."""
    universe: Universe = {
        f"d{i}": {f"{j}.0": {} for j in range(1, versions + 1)} for i in range(components)
    }
    return universe, [f"d{i}<{versions // 2}" for i in range(components)]


def shifting(versions: int, components: int = 5) -> Problem:
    """Version j of each component needs the next at >=j,<j+2; the last needs the first at <=1.

    Only the lowest versions work, found after walking down from the top.
    """
    universe: Universe = {}
    for i in range(components):
        universe[f"r{i}"] = {}
        for j in range(1, versions + 1):
            last = i + 1 == components
            universe[f"r{i}"][f"{j}"] = {"r0": "<=1"} if last else {f"r{i + 1}": f">={j},<{j + 2}"}
    return universe, ["r0"]


def one_reason(versions: int) -> Problem:
    """Every version but the oldest needs a range of b that does not exist."""
    universe: Universe = {
        "a": {f"1.{j}": ({"b": ">=2"} if j else {"b": ">=1"}) for j in range(versions)},
        "b": {"1.0": {}},
    }
    return universe, ["a"]


def lock_step(versions: int) -> Problem:
    """a, b, c move in lock-step by exact pins; the request caps c at half, so the newest half of
    a fails one version at a time (pins cannot be merged)."""
    universe: Universe = {"a": {}, "b": {}, "c": {}}
    for j in range(1, versions + 1):
        universe["a"][f"{j}"] = {"b": f"=={j}", "c": f"=={j}"}
        universe["b"][f"{j}"] = {"c": f"=={j}"}
        universe["c"][f"{j}"] = {}
    return universe, ["a", f"c<={versions // 2}"]


FAMILIES: dict[str, tuple[Callable[[int], Problem], list[int]]] = {
    "fan-out tree (N components)": (fan_out, [250, 1000, 4000]),
    "singleton chain (100 x N versions)": (singleton_chain, [100, 500]),
    "disjoint versions (N x 200)": (disjoint, [50, 300]),
    "shifting ranges (5 x N versions)": (shifting, [20, 100, 200]),
    "one reason (N versions)": (one_reason, [100, 500, 2000]),
    "lock-step pins (N versions)": (lock_step, [51, 201, 401]),
}


# --- adapters ------------------------------------------------------------------------------------


class _Versions:
    """Sorted versions and allowed sets per (name, specifier), computed lazily."""

    def __init__(self, index: DictIndex) -> None:
        self.index = index
        self._sorted: dict[str, list[Version]] = {}
        self._allowed: dict[tuple[str, SpecifierSet], frozenset[Version]] = {}

    def versions(self, name: str) -> list[Version]:
        found = self._sorted.get(name)
        if found is None:
            found = self._sorted[name] = sorted(self.index.versions(name))
        return found

    def allowed(self, name: str, spec: SpecifierSet) -> frozenset[Version]:
        key = (name, spec)
        found = self._allowed.get(key)
        if found is None:
            pre = spec.prereleases is True
            found = self._allowed[key] = frozenset(
                spec.filter(self.versions(name), prereleases=pre)
            )
        return found


def run_steppatch(index: DictIndex, requirements: list[str]) -> Outcome:
    try:
        return "ok", solve(requirements, index, max_rounds=MAX_ROUNDS)
    except SolverLimitExceeded:
        return "limit", None
    except ResolutionImpossible:
        return "impossible", None


@dataclass(frozen=True)
class _Req:
    name: str
    spec: SpecifierSet
    allowed: frozenset[Version]


@dataclass(frozen=True)
class _Cand:
    name: str
    version: Version


def run_resolvelib(index: DictIndex, requirements: list[str]) -> Outcome:
    import resolvelib

    table = _Versions(index)

    class Provider(resolvelib.AbstractProvider):  # type: ignore[type-arg]
        def identify(self, requirement_or_candidate: Any) -> str:
            return str(requirement_or_candidate.name)

        def get_preference(
            self,
            identifier: str,
            resolutions: Mapping[str, Any],
            candidates: Mapping[str, Iterator[Any]],
            information: Mapping[str, Iterator[Any]],
            backtrack_causes: Sequence[Any],
        ) -> Any:
            # pip's spirit, without its packaging specifics: backtrack causes first, then name.
            causes = {c.requirement.name for c in backtrack_causes}
            return (identifier not in causes, identifier)

        def find_matches(
            self,
            identifier: str,
            requirements: Mapping[str, Iterator[_Req]],
            incompatibilities: Mapping[str, Iterator[_Cand]],
        ) -> list[_Cand]:
            sets = [r.allowed for r in requirements[identifier]]
            bad = {c.version for c in incompatibilities[identifier]}
            return [
                _Cand(identifier, v)
                for v in reversed(table.versions(identifier))
                if v not in bad and all(v in s for s in sets)
            ]

        def is_satisfied_by(self, requirement: _Req, candidate: _Cand) -> bool:
            return candidate.version in requirement.allowed

        def get_dependencies(self, candidate: _Cand) -> list[_Req]:
            deps = index.dependencies(candidate.name, candidate.version)
            return [_Req(d, s, table.allowed(d, s)) for d, s in sorted(deps.items())]

    reqs = []
    for text in requirements:
        r = Requirement(text)
        reqs.append(_Req(r.name, r.specifier, table.allowed(r.name, r.specifier)))
    resolver = resolvelib.Resolver(Provider(), resolvelib.BaseReporter())
    try:
        result = resolver.resolve(reqs, max_rounds=MAX_ROUNDS)
    except resolvelib.ResolutionTooDeep:
        return "limit", None
    except resolvelib.ResolutionImpossible:
        return "impossible", None
    except RecursionError:
        return "error: RecursionError", None
    return "ok", {name: c.version for name, c in sorted(result.mapping.items())}


def run_nab(index: DictIndex, requirements: list[str]) -> Outcome:
    from nab_resolver.errors import ResolutionError, ResolutionTerminatedError
    from nab_resolver.ranges import Range
    from nab_resolver.resolver import BaseProvider, Resolver
    from nab_resolver.types import RootRequirement

    table = _Versions(index)
    ranges: dict[tuple[str, SpecifierSet], Any] = {}

    def as_range(name: str, spec: SpecifierSet) -> Any:
        key = (name, spec)
        found = ranges.get(key)
        if found is None:
            versions = table.versions(name)
            allowed = table.allowed(name, spec)
            found = Range.empty()
            i = 0
            while i < len(versions):
                if versions[i] not in allowed:
                    i += 1
                    continue
                j = i
                while j + 1 < len(versions) and versions[j + 1] in allowed:
                    j += 1
                run = (
                    Range.at_least(versions[i])
                    if j + 1 == len(versions)
                    else Range.between(versions[i], versions[j + 1])
                )
                found = found | run
                i = j + 1
            ranges[key] = found
        return found

    class Provider(BaseProvider):  # type: ignore[type-arg]
        def choose_version(self, package: str, version_range: Any) -> Version | None:
            for v in reversed(table.versions(package)):
                if v in version_range:
                    return v
            return None

        def has_satisfying_version(self, package: str, version_range: Any) -> bool:
            return self.choose_version(package, version_range) is not None

        def get_dependencies(self, package: str, version: Version) -> Mapping[str, Any]:
            deps = index.dependencies(package, version)
            return {d: as_range(d, s) for d, s in sorted(deps.items())}

        def prioritize(
            self,
            package: str,
            version_range: Any,
            conflict_counts: Mapping[str, int],
            culprit_counts: Mapping[str, int] | None = None,
        ) -> Any:
            left = sum(1 for v in table.versions(package) if v in version_range)
            return (-conflict_counts.get(package, 0), left, package)

        def widen_decision(self, package: str, version: Version) -> Any:
            # The run of adjacent versions with the same dependencies, as steppatch merges.
            versions = table.versions(package)
            i = versions.index(version)
            deps = index.dependencies(package, version)
            lo = i
            while lo > 0 and index.dependencies(package, versions[lo - 1]) == deps:
                lo -= 1
            hi = i
            while hi + 1 < len(versions) and index.dependencies(package, versions[hi + 1]) == deps:
                hi += 1
            if hi + 1 == len(versions):
                return Range.at_least(versions[lo]) if lo else Range.full()
            return (
                Range.between(versions[lo], versions[hi + 1])
                if lo
                else Range.less_than(versions[hi + 1])
            )

    roots = []
    for text in requirements:
        r = Requirement(text)
        roots.append(RootRequirement(r.name, as_range(r.name, r.specifier), text))
    resolver = Resolver(Provider(), max_iterations=MAX_ROUNDS, root_version=Version("0"))
    try:
        pins = resolver.resolve(roots)
    except ResolutionTerminatedError:
        return "limit", None
    except ResolutionError:
        return "impossible", None
    except RecursionError:
        return "error: RecursionError", None
    return "ok", dict(sorted(pins.items()))


SOLVERS: dict[str, Callable[[DictIndex, list[str]], Outcome]] = {
    "steppatch": run_steppatch,
    "resolvelib": run_resolvelib,
    "nab": run_nab,
}


# --- measuring -----------------------------------------------------------------------------------


@dataclass
class Row:
    family: str
    size: str
    seconds: dict[str, float]
    outcomes: dict[str, str]
    wrong: dict[str, int]


def _judge(
    universe: Universe, requirements: list[str], outcomes: Mapping[str, Outcome]
) -> dict[str, int]:
    """Wrong answers per solver: invalid solutions, or "impossible" when a valid one exists."""
    valid = {
        name
        for name, (kind, solution) in outcomes.items()
        if kind == "ok"
        and solution is not None
        and not check_solution(universe, requirements, solution)
    }
    wrong: dict[str, int] = {}
    for name, (kind, _) in outcomes.items():
        bad = (kind == "ok" and name not in valid) or (
            kind in ("impossible", "error: RecursionError") and bool(valid)
        )
        wrong[name] = int(bad)
    return wrong


def _timed(fn: Callable[[], Outcome]) -> tuple[float, Outcome]:
    start = time.perf_counter()
    outcome = fn()
    return time.perf_counter() - start, outcome


def measure(
    family: str, size: str, problems: Sequence[Problem], solvers: Iterable[str], runs: int
) -> Row:
    """Median over ``runs`` of the total time to solve all ``problems``, per solver."""
    names = list(solvers)
    indexes = [DictIndex(u) for u, _ in problems]
    seconds: dict[str, float] = {}
    outcomes_by_solver: dict[str, list[Outcome]] = {}
    for name in names:
        samples = []
        last: list[Outcome] = []
        run = SOLVERS[name]
        for _ in range(runs):
            total = 0.0
            last = []
            for index, (_, requirements) in zip(indexes, problems, strict=True):
                took, outcome = _timed(lambda i=index, r=requirements, f=run: f(i, r))
                total += took
                last.append(outcome)
            samples.append(total)
        seconds[name] = statistics.median(samples)
        outcomes_by_solver[name] = last
    wrong = dict.fromkeys(names, 0)
    disagreements = 0
    kinds: dict[str, dict[str, int]] = {name: {} for name in names}
    for k, (universe, requirements) in enumerate(problems):
        per_problem = {name: outcomes_by_solver[name][k] for name in names}
        for name, count in _judge(universe, requirements, per_problem).items():
            wrong[name] += count
        if len({o[0] for o in per_problem.values()}) > 1:
            disagreements += 1
        for name, (kind, _) in per_problem.items():
            kinds[name][kind] = kinds[name].get(kind, 0) + 1
    outcomes = {
        name: ", ".join(
            f"{v} {k}" if len(problems) > 1 else k for k, v in sorted(kinds[name].items())
        )
        for name in names
    }
    if disagreements:
        outcomes["disagree"] = str(disagreements)
    return Row(family, size, seconds, outcomes, wrong)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--seeds", type=int, default=1000, help="random registries to solve")
    parser.add_argument("--quick", action="store_true", help="smallest size of each family only")
    parser.add_argument("--solvers", default=",".join(SOLVERS), help="comma list")
    args = parser.parse_args(argv)
    solvers = [s for s in args.solvers.split(",") if s]
    rows: list[Row] = []
    for family, (make, sizes) in FAMILIES.items():
        for size in sizes[:1] if args.quick else sizes:
            rows.append(measure(family, str(size), [make(size)], solvers, args.runs))
            _print_row(rows[-1], solvers)
    seeds = min(args.seeds, 100) if args.quick else args.seeds
    registries = [random_registry(seed) for seed in range(seeds)]
    rows.append(measure("random registries", f"{seeds} seeds", registries, solvers, args.runs))
    _print_row(rows[-1], solvers)
    _print_summary(rows, solvers)
    return 0


def _print_row(row: Row, solvers: list[str]) -> None:
    base = row.seconds["steppatch"]
    cells = "  ".join(f"{s} {row.seconds[s]:8.3f}s x{row.seconds[s] / base:6.2f}" for s in solvers)
    wrong = sum(row.wrong.values())
    print(f"{row.family:36} {row.size:>9}  {cells}  wrong {wrong}", flush=True)
    print(f"{'':47}outcomes: " + "; ".join(f"{k}: {v}" for k, v in row.outcomes.items()))
    if wrong:
        print(f"{'':47}wrong: " + ", ".join(f"{k} {v}" for k, v in row.wrong.items() if v))


def _print_summary(rows: list[Row], solvers: list[str]) -> None:
    print()
    print("geometric mean of time ratios to steppatch, per family (>1: steppatch is faster)")
    families = list(dict.fromkeys(r.family for r in rows))
    for family in families:
        picked = [r for r in rows if r.family == family]
        cells = []
        for s in solvers:
            ratios = [r.seconds[s] / r.seconds["steppatch"] for r in picked]
            gm = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
            cells.append(f"{s} {gm:7.2f}")
        wrong = {s: sum(r.wrong[s] for r in picked) for s in solvers}
        print(f"  {family:36} " + "  ".join(cells) + "   wrong " + str(wrong))


if __name__ == "__main__":
    sys.exit(main())
