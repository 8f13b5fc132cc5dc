"""Incompatibilities (sets of terms that cannot all hold) and their causes: the derivation data.

A failed solve raises :class:`~steppatch.errors.ResolutionImpossible` whose ``derivation`` is the
root :class:`Incompatibility`. Its leaves (external causes) are facts about the index; inner nodes
(:class:`Derived`) were deduced from two others. Tests and the CLI read these as data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

from ._terms import ROOT, Term

__all__ = [
    "Cause",
    "ComponentDependency",
    "Dependency",
    "Derived",
    "Incompatibility",
    "NoVersions",
    "UnknownComponent",
]


@dataclass(frozen=True, slots=True, eq=False)
class Dependency:
    """External fact: every version in ``depender`` depends on ``dependee``'s versions.

    ``depender`` is positive; ``dependee`` is positive and names the versions the dependency
    allows; ``specifier`` is the dependency's text ("" for any version). A depender about the
    root component is a requirement of the request (or an installed component it keeps).
    """

    depender: Term
    dependee: Term
    specifier: str


@dataclass(frozen=True, slots=True, eq=False)
class ComponentDependency:
    """External fact: every version in ``depender`` depends on component ``dependee.name``.

    Each version has its own range; this fact keeps only that some version is needed
    (``dependee`` is positive and names every version). The solver learns it for a run of
    adjacent versions once ``dependee`` is ruled out entirely, so that the whole run fails in
    one step instead of one version at a time.
    """

    depender: Term
    dependee: Term


@dataclass(frozen=True, slots=True, eq=False)
class NoVersions:
    """External fact: no published version of ``term.name`` matches ``specifier``."""

    term: Term
    specifier: str


@dataclass(frozen=True, slots=True, eq=False)
class UnknownComponent:
    """External fact: the index knows no component called ``name``."""

    name: str


@dataclass(frozen=True, slots=True, eq=False)
class Derived:
    """Deduced by resolution from two earlier incompatibilities."""

    conflict: Incompatibility
    other: Incompatibility


Cause: TypeAlias = Dependency | ComponentDependency | NoVersions | UnknownComponent | Derived


class Incompatibility:
    """Terms that are not all true in any solution, with the reason why (``cause``).

    At most one term per component; terms are kept in the order they were first given. Identity
    is object identity (a derivation graph may share nodes).
    """

    __slots__ = ("added", "cause", "terms")

    def __init__(self, terms: Iterable[Term], cause: Cause) -> None:
        merged: dict[str, Term] = {}
        for term in terms:
            known = merged.get(term.name)
            merged[term.name] = term if known is None else known.intersect(term)
        if isinstance(cause, Derived) and len(merged) > 1:
            # A positive root term always holds, so it says nothing in a derived fact; dropping
            # it puts the root closer to the conclusion in explanations (as pub does).
            root = merged.get(ROOT)
            if root is not None and root.positive:
                del merged[ROOT]
        self.terms: tuple[Term, ...] = tuple(merged.values())
        self.cause: Cause = cause
        #: whether the solver has put it in its incompatibility set
        self.added = False

    @property
    def is_failure(self) -> bool:
        """Whether this says that the request itself cannot be satisfied."""
        terms = self.terms
        return not terms or (len(terms) == 1 and terms[0].positive and terms[0].name == ROOT)

    def leaves(self) -> Iterator[Incompatibility]:
        """The external incompatibilities this one was derived from, each once, depth first."""
        seen: set[int] = set()
        stack: list[Incompatibility] = [self]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            cause = node.cause
            if isinstance(cause, Derived):
                stack.append(cause.other)
                stack.append(cause.conflict)
            else:
                yield node

    def __str__(self) -> str:
        from ._explain import describe  # a local import: the writer imports this module

        return describe(self)

    def __repr__(self) -> str:
        kind = type(self.cause).__name__
        return f"<Incompatibility {{{', '.join(map(str, self.terms))}}} ({kind})>"
