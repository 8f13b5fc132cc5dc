"""PubGrub version solving (Dart pub's ``doc/solver.md``), over the finite versions of an index.

The algorithm is pub's: unit propagation over incompatibilities, decisions that pick the newest
(or kept) version of the component with the fewest versions left, and conflict resolution that
learns a root-cause incompatibility and backjumps. Adjacent versions with the same dependency
(as written) are merged into one incompatibility, so a component's many versions that fail for
one reason fail together. When a component is ruled out entirely, its dependers learn a summary
fact ("these versions of D all need C"), so that versions with differing ranges on it fail
together too. The solver does no I/O of its own; everything it learns about components comes
from the :class:`~steppatch.solver.PackageIndex` it is given.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Final

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from steppatch.errors import ResolutionImpossible

from ._explain import explain
from ._incompat import (
    ComponentDependency,
    Dependency,
    Derived,
    Incompatibility,
    NoVersions,
    UnknownComponent,
)
from ._index import PackageIndex
from ._terms import ROOT, Space, Term, format_specifier

__all__ = ["SolverLimitExceeded", "solve"]

# Relation of an incompatibility to the partial solution.
_SATISFIED: Final = 0
_CONTRADICTED: Final = 1
_ALMOST: Final = 2
_INCONCLUSIVE: Final = 3

_ANY: Final = SpecifierSet()


class SolverLimitExceeded(ResolutionImpossible):
    """The solver gave up after ``rounds`` rounds (decisions plus conflict steps).

    The request may still have a solution; ``derivation`` is ``None``.
    """

    def __init__(self, rounds: int) -> None:
        super().__init__(
            f"version solving gave up after {rounds} rounds, the configured limit; "
            "the request may have a solution but it is too costly to find",
            None,
        )
        self.rounds = rounds


class _Assignment:
    """One entry of the partial solution. ``cause`` is ``None`` for a decision."""

    __slots__ = (
        "acc_bits",
        "acc_positive",
        "bits",
        "cause",
        "index",
        "level",
        "name",
        "positive",
        "term",
    )

    def __init__(
        self,
        term: Term,
        level: int,
        index: int,
        cause: Incompatibility | None,
        acc: tuple[bool, int],
    ) -> None:
        self.term = term
        self.name = term.name
        self.positive = term.positive
        self.bits = term.bits
        self.level = level
        self.index = index
        self.cause = cause
        # The intersection of its component's assignments up to and including this one: these
        # only shrink, so the satisfier of a term can be found by bisection.
        self.acc_positive, self.acc_bits = acc


def _meet(p1: bool, b1: int, p2: bool, b2: int) -> tuple[bool, int]:
    """Intersection of two (positive, bits) terms of one component."""
    if p1:
        return (True, b1 & b2) if p2 else (True, b1 & ~b2)
    return (True, b2 & ~b1) if p2 else (False, b1 | b2)


def _subset(p1: bool, b1: int, p2: bool, b2: int) -> bool:
    """Whether term 1 implies term 2."""
    if p1:
        return b1 & ~b2 == 0 if p2 else b1 & b2 == 0
    return False if p2 else b2 & ~b1 == 0


def _same(spec: SpecifierSet | None, other: SpecifierSet) -> bool:
    """Whether two dependencies are written alike (the same clauses, in any order).

    Text, not ``==``: ``==`` canonicalizes every version in both sets, which made comparing a
    version's range with its neighbours' a tenth of a small solve. Ranges written differently
    but equal (``>=1.0`` and ``>=1.0.0``) are then not merged, which costs speed, not answers.
    An index that shares parsed sets (``DictIndex``) makes this an identity test.
    """
    return spec is other or (spec is not None and str(spec) == str(other))


def _run_mask(lo: int, hi: int) -> int:
    return ((1 << (hi + 1)) - 1) ^ ((1 << lo) - 1)


class _Solver:
    def __init__(
        self, index: PackageIndex, max_rounds: int, installed: Mapping[str, Version]
    ) -> None:
        self.index = index
        self.installed = installed
        self.max_rounds = max_rounds
        self.rounds = 0
        # Assignments made by propagation, however many backjumps undid: the work that grows
        # with the problem when the same facts are derived again and again (tests bound it).
        self.derivations = 0
        self.spaces: dict[str, Space] = {}
        self.first_seen: dict[str, int] = {}
        # The active incompatibilities of each component, oldest first, keyed by id.
        self.incompats: dict[str, dict[int, Incompatibility]] = {}
        # The partial solution: its assignments, per component too, their running intersection
        # per component, and the decisions (version indices).
        self.assignments: list[_Assignment] = []
        self.by_name: dict[str, list[_Assignment]] = {}
        self.acc: dict[str, tuple[bool, int]] = {}
        self.decisions: dict[str, int] = {}
        self.level = 0
        # Incompatibilities found contradicted are parked under the decision level that made
        # them so, and stay out of propagation until a backtrack drops that level. Without this,
        # every change of a component re-checks all its old facts (quadratic in versions).
        self.parked: list[list[Incompatibility]] = [[]]
        # Candidates for the next decision: (versions left, first seen, name). Entries go stale
        # when a component's versions change; a fresh one is pushed then, stale ones are skipped.
        self.heap: list[tuple[int, int, str]] = []
        self.deps: dict[tuple[str, int], Mapping[str, SpecifierSet]] = {}
        # (depender, dependee) -> version index -> the incompatibility of the run holding it
        # (None: a self-dependency that forbids nothing).
        self.runs: dict[tuple[str, str], dict[int, Incompatibility | None]] = {}
        # Installed components not named by the request: the version index they prefer.
        self.keep: dict[str, int] = {}
        # Dependee -> (depender, first, last version index) of each dependency run met since the
        # dependee was last ruled out entirely; and (depender, dependee) -> version index -> the
        # ComponentDependency fact of the run holding it (None: no wider than its dependency).
        # See summarize() and component_dependency().
        self.dependers: dict[str, list[tuple[str, int, int]]] = {}
        self.summaries: dict[tuple[str, str], dict[int, Incompatibility | None]] = {}

    # --- components ------------------------------------------------------------------------

    def space(self, name: str) -> Space:
        space = self.spaces.get(name)
        if space is None:
            space = Space(name, self.index.versions(name), self.installed.get(name))
            self.spaces[name] = space
            self.first_seen[name] = len(self.first_seen)
        return space

    def dependencies_of(self, name: str, i: int) -> Mapping[str, SpecifierSet]:
        key = (name, i)
        deps = self.deps.get(key)
        if deps is None:
            deps = self.deps[key] = self.index.dependencies(name, self.spaces[name].versions[i])
        return deps

    def dependency(
        self, space: Space, lo: int, hi: int, dep: str, spec: SpecifierSet
    ) -> Incompatibility | None:
        """The incompatibility "versions lo..hi of ``space`` depend on ``dep`` ``spec``"."""
        bits = _run_mask(lo, hi)
        run_text = space.run_text(lo, hi)
        if space.name == ROOT or run_text == "any":
            depender = Term(space, True, bits)
        else:
            space.label(bits, run_text)
            depender = Term(space, True, bits, run_text)
        target = self.space(dep)
        dep_bits = target.bits_for(spec)
        text = format_specifier(spec)
        if text:
            target.label(dep_bits, text)
        cause = Dependency(depender, Term(target, True, dep_bits, text or None), text)
        if space.name != ROOT and dep != space.name and target.versions:
            self.dependers.setdefault(dep, []).append((space.name, lo, hi))
        if dep == space.name:
            # A self-dependency forbids the versions of the run that it excludes.
            forbidden = bits & ~dep_bits
            if not forbidden:
                return None
            return Incompatibility((Term(space, True, forbidden),), cause)
        inc = Incompatibility((depender, Term(target, False, dep_bits, text or None)), cause)
        if dep_bits:
            return inc
        # No version can satisfy the dependency: learn at once that the depender run is out,
        # keeping the external facts (dependency, and no versions / unknown name) for the story.
        leaf: Incompatibility
        if not target.versions:
            leaf = Incompatibility((Term(target, True, 0),), UnknownComponent(dep))
        else:
            term = Term(target, True, 0, text or None)
            leaf = Incompatibility((term,), NoVersions(term, text))
        return Incompatibility((depender,), Derived(inc, leaf))

    def dependency_incompats(self, name: str, i: int) -> list[Incompatibility]:
        """The incompatibilities of version ``i``'s dependencies, each for its whole run.

        Costs one ``dependencies`` call per version of the run the first time; a run is computed
        once per (component, dependency).
        """
        space = self.spaces[name]
        deps = self.dependencies_of(name, i)
        last = len(space.versions) - 1
        out: list[Incompatibility] = []
        for dep in sorted(deps):
            cache = self.runs.setdefault((name, dep), {})
            if i in cache:
                inc = cache[i]
            else:
                spec = deps[dep]
                lo = i
                while lo > 0 and _same(self.dependencies_of(name, lo - 1).get(dep), spec):
                    lo -= 1
                hi = i
                while hi < last and _same(self.dependencies_of(name, hi + 1).get(dep), spec):
                    hi += 1
                inc = self.dependency(space, lo, hi, dep, spec)
                for k in range(lo, hi + 1):
                    cache[k] = inc
            if inc is not None:
                out.append(inc)
        return out

    def add(self, inc: Incompatibility) -> None:
        inc.added = True
        for term in inc.terms:
            self.incompats.setdefault(term.name, {})[id(inc)] = inc

    def park(self, inc: Incompatibility, level: int) -> None:
        for term in inc.terms:
            del self.incompats[term.name][id(inc)]
        while len(self.parked) <= level:
            self.parked.append([])
        self.parked[level].append(inc)

    # --- the partial solution --------------------------------------------------------------

    def tick(self) -> None:
        self.rounds += 1
        if self.rounds > self.max_rounds:
            raise SolverLimitExceeded(self.max_rounds)

    def assign(self, term: Term, cause: Incompatibility | None) -> None:
        name = term.name
        if cause is not None:
            self.derivations += 1
        known = self.acc.get(name)
        if known is None:
            positive, bits = term.positive, term.bits
        else:
            positive, bits = _meet(known[0], known[1], term.positive, term.bits)
        self.acc[name] = (positive, bits)
        assignment = _Assignment(term, self.level, len(self.assignments), cause, (positive, bits))
        self.assignments.append(assignment)
        self.by_name.setdefault(name, []).append(assignment)
        if positive and name not in self.decisions:
            heapq.heappush(self.heap, (bits.bit_count(), self.first_seen[name], name))
        if name in self.dependers and (bits == 0 if positive else bits == term.space.full):
            self.summarize(name)

    def summarize(self, name: str) -> None:
        """Add, now that ``name`` is ruled out entirely, what its known dependers learn from it.

        A dependency run covers adjacent versions with equal ranges; when every version depends
        on ``name`` with a range of its own, those runs are single versions, and without this
        each would be ruled out by a conflict of its own after every backjump (quadratic in
        versions). A :class:`ComponentDependency` over the maximal run of adjacent versions
        that depend on ``name`` at all rules them out in one propagation step.
        """
        for depender, lo, hi in self.dependers.pop(name):
            inc = self.component_dependency(depender, lo, hi, name)
            if inc is not None and not inc.added:
                self.add(inc)

    def component_dependency(
        self, depender: str, lo: int, hi: int, dependee: str
    ) -> Incompatibility | None:
        """The fact "the versions of ``depender`` around ``lo..hi`` that depend on ``dependee``
        need it", over the maximal run of adjacent such versions, or ``None`` when that run is
        just ``lo..hi`` (the dependency fact of the run says as much).

        ``lo..hi`` must be versions that depend on ``dependee``. Costs one ``dependencies`` call
        per version of the run (cached) the first time; a run is computed once.
        """
        cache = self.summaries.setdefault((depender, dependee), {})
        if lo in cache:
            return cache[lo]
        first, last = lo, hi
        space = self.spaces[depender]
        top = len(space.versions) - 1
        dependencies_of = self.dependencies_of  # the loops may visit every version
        while lo > 0 and dependee in dependencies_of(depender, lo - 1):
            lo -= 1
        while hi < top and dependee in dependencies_of(depender, hi + 1):
            hi += 1
        inc: Incompatibility | None = None
        if (lo, hi) != (first, last):
            bits = _run_mask(lo, hi)
            run_text = space.run_text(lo, hi)
            if run_text == "any":
                term = Term(space, True, bits)
            else:
                space.label(bits, run_text)
                term = Term(space, True, bits, run_text)
            target = self.spaces[dependee]
            cause = ComponentDependency(term, Term(target, True, target.full))
            inc = Incompatibility((term, Term(target, False, target.full)), cause)
        for k in range(lo, hi + 1):
            cache[k] = inc
        return inc

    def widened(self, inc: Incompatibility, dependee: str) -> Incompatibility | None:
        """For a dependency fact on ``dependee``, the :meth:`component_dependency` of its run."""
        cause = inc.cause
        if not isinstance(cause, Dependency) or cause.dependee.name != dependee:
            return None
        depender = cause.depender
        if depender.name in (ROOT, dependee):
            return None
        bits = depender.bits
        return self.component_dependency(
            depender.name, (bits & -bits).bit_length() - 1, bits.bit_length() - 1, dependee
        )

    def decide(self, name: str, i: int) -> None:
        self.level += 1
        self.decisions[name] = i
        self.assign(Term(self.spaces[name], True, 1 << i), None)

    def backtrack(self, level: int) -> None:
        """Drop every assignment above ``level``, and bring back what they had parked.

        O(dropped assignments + restored incompatibilities x their terms).
        """
        for parked in self.parked[level + 1 :]:
            for inc in parked:
                for term in inc.terms:
                    self.incompats[term.name][id(inc)] = inc
        del self.parked[level + 1 :]
        touched: dict[str, None] = {}
        assignments = self.assignments
        while assignments and assignments[-1].level > level:
            a = assignments.pop()
            self.by_name[a.name].pop()
            if a.cause is None:
                del self.decisions[a.name]
            touched[a.name] = None
        self.level = level
        for name in touched:
            remaining = self.by_name[name]
            if not remaining:
                del self.acc[name]
                continue
            positive, bits = remaining[-1].acc_positive, remaining[-1].acc_bits
            self.acc[name] = (positive, bits)
            if positive and name not in self.decisions:
                heapq.heappush(self.heap, (bits.bit_count(), self.first_seen[name], name))

    def holds(self, term: Term) -> bool:
        """Whether the partial solution satisfies ``term``."""
        known = self.acc.get(term.name)
        if known is None:
            return not term.positive and term.bits == 0
        return _subset(known[0], known[1], term.positive, term.bits)

    def relation(self, inc: Incompatibility) -> tuple[int, Term | None]:
        """Satisfied, contradicted (with a false term), almost satisfied (with the open term),
        or inconclusive.

        Called for every incompatibility of each changed component: O(terms) big-int operations.
        """
        acc = self.acc
        unsatisfied: Term | None = None
        for term in inc.terms:
            known = acc.get(term.name)
            tb = term.bits
            if known is not None:
                sp, sb = known
                if sp:
                    if term.positive:
                        if sb & ~tb == 0:
                            continue
                        if sb & tb == 0:
                            return _CONTRADICTED, term
                    else:
                        if sb & tb == 0:
                            continue
                        if sb & ~tb == 0:
                            return _CONTRADICTED, term
                elif term.positive:
                    if tb & ~sb == 0:
                        return _CONTRADICTED, term
                elif tb & ~sb == 0:
                    continue
            elif not term.positive and tb == 0:
                continue
            if unsatisfied is not None:
                return _INCONCLUSIVE, None
            unsatisfied = term
        if unsatisfied is None:
            return _SATISFIED, None
        return _ALMOST, unsatisfied

    def satisfier(self, term: Term) -> _Assignment:
        """The earliest assignment after which the partial solution satisfies ``term``.

        O(log n) for the n assignments of the term's component.
        """
        assignments = self.by_name.get(term.name, [])
        tp, tb = term.positive, term.bits
        lo, hi = 0, len(assignments)
        while lo < hi:
            mid = (lo + hi) // 2
            a = assignments[mid]
            if _subset(a.acc_positive, a.acc_bits, tp, tb):
                hi = mid
            else:
                lo = mid + 1
        if lo == len(assignments):
            raise AssertionError(f"{term} is not satisfied by the partial solution")
        return assignments[lo]

    # --- the algorithm -----------------------------------------------------------------------

    def propagate(self, start: str) -> None:
        """Unit propagation from ``start``; resolves any conflict it meets (or raises)."""
        queue: deque[str] = deque([start])
        queued = {start}
        while queue:
            name = queue.popleft()
            queued.discard(name)
            active = self.incompats.get(name)
            if not active:
                continue
            # Newest first: learned incompatibilities are the more general ones.
            for inc in list(reversed(active.values())):
                kind, term = self.relation(inc)
                if kind == _CONTRADICTED:
                    assert term is not None
                    self.park(inc, self.by_name[term.name][-1].level)
                    continue
                if kind == _SATISFIED:
                    root_cause = self.resolve(inc)
                    kind, term = self.relation(root_cause)
                    assert kind == _ALMOST and term is not None, "learned fact must be unit"
                    self.assign(term.negate(), root_cause)
                    queue.clear()
                    queued.clear()
                    queue.append(term.name)
                    queued.add(term.name)
                    break
                if kind == _ALMOST:
                    assert term is not None
                    self.assign(term.negate(), inc)
                    if term.name not in queued:
                        queue.append(term.name)
                        queued.add(term.name)

    def resolve(self, inc: Incompatibility) -> Incompatibility:
        """Conflict resolution: learn the root cause of ``inc`` being satisfied, and backjump.

        Raises :class:`ResolutionImpossible` when the root cause is the request itself.
        """
        original = inc
        while True:
            self.tick()
            if inc.is_failure:
                raise ResolutionImpossible(explain(inc), inc)
            recent_term: Term | None = None
            recent: _Assignment | None = None
            difference: Term | None = None
            previous_level = 0
            for term in inc.terms:
                sat = self.satisfier(term)
                if recent is None:
                    recent_term, recent = term, sat
                elif recent.index < sat.index:
                    previous_level = max(previous_level, recent.level)
                    recent_term, recent = term, sat
                    difference = None
                else:
                    previous_level = max(previous_level, sat.level)
                if recent_term is term:
                    # The satisfier may satisfy the term only together with earlier assignments
                    # of its component; those then count as previous satisfiers too.
                    diff = recent.term.difference(term)
                    if diff.is_empty():
                        difference = None
                    else:
                        difference = diff
                        previous_level = max(previous_level, self.satisfier(diff.negate()).level)
            assert recent is not None and recent_term is not None
            if recent.cause is None or previous_level != recent.level:
                if inc is not original:
                    self.add(inc)
                self.backtrack(previous_level)
                return inc
            name = recent.name
            cause = recent.cause
            if recent_term.positive and recent_term.bits == recent_term.space.full:
                # inc needs only that the component is selected at all: resolving with "these
                # versions of D need it" instead of D's range for one run rules out all of them.
                wider = self.widened(cause, name)
                if wider is not None:
                    if not wider.added:
                        self.add(wider)
                    cause = wider
            terms = [t for t in inc.terms if t.name != name]
            terms.extend(t for t in cause.terms if t.name != name)
            if difference is not None:
                terms.append(difference.negate())
            inc = Incompatibility(terms, Derived(inc, cause))

    def choose(self) -> str | None:
        """The undecided component with a positive derivation and the fewest versions left."""
        heap = self.heap
        while heap:
            count, _, name = heap[0]
            known = self.acc.get(name)
            if (
                name in self.decisions
                or known is None
                or not known[0]
                or known[1].bit_count() != count
            ):
                heapq.heappop(heap)
                continue
            return name
        return None

    def make_decision(self) -> str | None:
        """Pick a version of the next component, adding its dependencies first.

        The version is not decided when one of its dependencies already conflicts with the
        partial solution; propagation then rules it out. Returns the component, or ``None``
        when the partial solution is complete.
        """
        name = self.choose()
        if name is None:
            return None
        self.tick()
        bits = self.acc[name][1]
        keep = self.keep.get(name)
        i = keep if keep is not None and bits >> keep & 1 else bits.bit_length() - 1
        conflict = False
        for inc in self.dependency_incompats(name, i):
            if not inc.added:
                self.add(inc)
            if not conflict:
                # Would deciding version i satisfy the whole incompatibility?
                conflict = all(
                    (t.bits >> i & 1 == t.positive) if t.name == name else self.holds(t)
                    for t in inc.terms
                )
        if not conflict:
            self.decide(name, i)
        return name

    def solve(self, requirements: list[tuple[str, SpecifierSet]]) -> dict[str, Version]:
        root = Space(ROOT, [Version("0")])
        self.spaces[ROOT] = root
        self.first_seen[ROOT] = 0
        self.decisions[ROOT] = 0
        self.assign(Term(root, True, 1), None)
        requested: set[str] = set()
        for name, spec in requirements:
            requested.add(name)
            inc = self.dependency(root, 0, 0, name, spec)
            if inc is not None:
                self.add(inc)
        for name in sorted(self.installed):
            if name in requested:
                continue
            space = self.space(name)
            if space.installed is not None:
                self.keep[name] = space.position[space.installed]
            self.add(self.dependency_on_installed(root, name))
        next_name: str | None = ROOT
        while next_name is not None:
            self.propagate(next_name)
            next_name = self.make_decision()
        return {
            name: self.spaces[name].versions[i]
            for name, i in sorted(self.decisions.items())
            if name != ROOT
        }

    def dependency_on_installed(self, root: Space, name: str) -> Incompatibility:
        """The request keeps installed ``name``: any release, or its installed version."""
        target = self.spaces[name]
        bits = target.bits_for(_ANY)
        depender = Term(root, True, 1)
        cause = Dependency(depender, Term(target, True, bits), "")
        inc = Incompatibility((depender, Term(target, False, bits)), cause)
        if bits:
            return inc
        leaf: Incompatibility
        if not target.versions:
            leaf = Incompatibility((Term(target, True, 0),), UnknownComponent(name))
        else:
            term = Term(target, True, 0)
            leaf = Incompatibility((term,), NoVersions(term, ""))
        return Incompatibility((depender,), Derived(inc, leaf))


def _parse(requirement: str | Requirement) -> tuple[str, SpecifierSet]:
    req = Requirement(requirement) if isinstance(requirement, str) else requirement
    if req.extras or req.marker is not None or req.url:
        raise ValueError(f"requirement {str(req)!r}: extras, markers and URLs are not supported")
    return req.name, req.specifier


def solve(
    requirements: Iterable[str | Requirement],
    index: PackageIndex,
    *,
    installed: Mapping[str, Version] | None = None,
    max_rounds: int = 100_000,
) -> dict[str, Version]:
    """The component versions that satisfy ``requirements`` with every dependency, by PubGrub.

    ``installed`` components stay in the solution, each at its installed version unless a
    requirement forces it to move; requested components and new dependencies get their newest
    possible version. Pre-releases are allowed only by specifiers that name one, except that an
    installed pre-release satisfies any specifier whose range holds it (packaging's rule for
    installed versions). The result maps every requested, installed and (transitively) needed
    component to its version, sorted by name, and nothing else. Deterministic for a given input.

    Raises :class:`~steppatch.errors.ResolutionImpossible` (with the derivation and a pub-style
    explanation) when no solution exists, :class:`SolverLimitExceeded` (a subclass) after
    ``max_rounds`` decisions and conflict steps, and ``ValueError`` for a requirement that is not
    ``NAME[SPECIFIER]``. Typical cost is linear in the components and versions it visits; it is
    exponential only for problems that are hard in themselves.
    """
    parsed: list[tuple[str, SpecifierSet]] = []
    seen: set[tuple[str, SpecifierSet]] = set()
    for requirement in requirements:
        item = _parse(requirement)
        if item not in seen:
            seen.add(item)
            parsed.append(item)
    return _Solver(index, max_rounds, installed or {}).solve(parsed)
