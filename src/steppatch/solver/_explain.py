"""Explanations of a failed solve, written from its derivation graph the way pub writes them.

Most derivations are a chain and read as one paragraph ("Because ..., ... And because ..., ...
So, because ..., version solving failed."). A fact used more than once gets a line number
"(1)" when first concluded and is referred to by it later; no other line is numbered.
"""

from __future__ import annotations

import sys

from ._incompat import (
    ComponentDependency,
    Dependency,
    Derived,
    Incompatibility,
    NoVersions,
    UnknownComponent,
)
from ._terms import Term

__all__ = ["describe", "explain"]


def _single(inc: Incompatibility, positive: bool) -> Term | None:
    found = [t for t in inc.terms if t.positive == positive]
    return found[0] if len(found) == 1 else None


def _verb(inc: Incompatibility) -> str:
    return "depends on" if isinstance(inc.cause, (Dependency, ComponentDependency)) else "requires"


def _dependee_text(inc: Incompatibility) -> str:
    cause = inc.cause
    assert isinstance(cause, Dependency)
    name = cause.dependee.name
    return f"{name} {cause.specifier}" if cause.specifier else name


def describe(inc: Incompatibility) -> str:
    """One incompatibility as a clause ("foo >=1.0 depends on bar >=2"). O(terms x versions)."""
    cause = inc.cause
    if isinstance(cause, Dependency):
        return f"{cause.depender.text(allow_every=True)} depends on {_dependee_text(inc)}"
    if isinstance(cause, ComponentDependency):
        return f"{cause.depender.text(allow_every=True)} depends on {cause.dependee.name}"
    if isinstance(cause, NoVersions):
        if not cause.specifier:
            return f"{cause.term.name} has only pre-releases"
        return f"no versions of {cause.term.name} match {cause.specifier}"
    if isinstance(cause, UnknownComponent):
        return f"{cause.name} doesn't exist"
    if inc.is_failure:
        return "version solving failed"
    terms = inc.terms
    if len(terms) == 1:
        term = terms[0]
        name = term.name if term.is_any else term.text()
        return f"{name} is {'forbidden' if term.positive else 'required'}"
    if len(terms) == 2:
        first, second = terms
        if first.positive and second.positive:
            one = first.name if first.is_any else first.text()
            two = second.name if second.is_any else second.text()
            return f"{one} is incompatible with {two}"
        if not first.positive and not second.positive:
            return f"either {first.text()} or {second.text()}"
    positive = [t for t in terms if t.positive]
    negative = [t.text() for t in terms if not t.positive]
    if positive and negative:
        if len(positive) == 1:
            return f"{positive[0].text(allow_every=True)} requires {' or '.join(negative)}"
        return f"if {' and '.join(t.text() for t in positive)} then {' or '.join(negative)}"
    if positive:
        return f"one of {' or '.join(t.text() for t in positive)} must be false"
    return f"one of {' or '.join(negative)} must be true"


def _negatives_text(inc: Incompatibility) -> str:
    if isinstance(inc.cause, Dependency):
        return _dependee_text(inc)
    return " or ".join(t.text() for t in inc.terms if not t.positive)


def _line(number: int | None) -> str:
    return f" ({number})" if number is not None else ""


def _requires_both(
    a: Incompatibility, b: Incompatibility, a_line: int | None, b_line: int | None
) -> str | None:
    """ "X depends on both Y and Z" when both facts are about the same depender."""
    if len(a.terms) == 1 or len(b.terms) == 1:
        return None
    a_pos = _single(a, True)
    b_pos = _single(b, True)
    if a_pos is None or b_pos is None or a_pos != b_pos:
        return None
    verb = "depends on" if _verb(a) == _verb(b) == "depends on" else "requires"
    return (
        f"{a_pos.text(allow_every=True)} {verb} both {_negatives_text(a)}{_line(a_line)}"
        f" and {_negatives_text(b)}{_line(b_line)}"
    )


def _requires_through(
    a: Incompatibility, b: Incompatibility, a_line: int | None, b_line: int | None
) -> str | None:
    """ "X depends on Y which depends on Z" when one fact's dependee is the other's depender."""
    if len(a.terms) == 1 or len(b.terms) == 1:
        return None
    a_neg, b_neg = _single(a, False), _single(b, False)
    a_pos, b_pos = _single(a, True), _single(b, True)
    if (
        a_neg is not None
        and b_pos is not None
        and a_neg.name == b_pos.name
        and a_neg.negate().satisfies(b_pos)
    ):
        prior, prior_neg, prior_line, latter, latter_line = a, a_neg, a_line, b, b_line
    elif (
        b_neg is not None
        and a_pos is not None
        and b_neg.name == a_pos.name
        and b_neg.negate().satisfies(a_pos)
    ):
        prior, prior_neg, prior_line, latter, latter_line = b, b_neg, b_line, a, a_line
    else:
        return None
    prior_positives = [t for t in prior.terms if t.positive]
    if not prior_positives:
        return None
    if len(prior_positives) > 1:
        head = f"if {' and '.join(t.text() for t in prior_positives)} then "
    else:
        head = f"{prior_positives[0].text(allow_every=True)} {_verb(prior)} "
    prior_neg_text = (
        _dependee_text(prior) if isinstance(prior.cause, Dependency) else prior_neg.text()
    )
    return (
        f"{head}{prior_neg_text}{_line(prior_line)} which {_verb(latter)} "
        f"{_negatives_text(latter)}{_line(latter_line)}"
    )


def _requires_forbidden(
    a: Incompatibility, b: Incompatibility, a_line: int | None, b_line: int | None
) -> str | None:
    """ "X depends on Y which is forbidden" when the other fact forbids what the first needs."""
    if len(a.terms) != 1 and len(b.terms) != 1:
        return None
    if len(a.terms) == 1:
        prior, prior_line, latter, latter_line = b, b_line, a, a_line
    else:
        prior, prior_line, latter, latter_line = a, a_line, b, b_line
    negative = _single(prior, False)
    if negative is None or not latter.terms[0].positive:
        return None
    if isinstance(latter.cause, NoVersions):
        # Said in full ("... and no versions of X match R"): it names the range that is empty.
        return None
    if not negative.negate().satisfies(latter.terms[0]):
        return None
    positives = [t for t in prior.terms if t.positive]
    if not positives:
        return None
    if len(positives) > 1:
        head = f"if {' and '.join(t.text() for t in positives)} then "
    else:
        head = f"{positives[0].text(allow_every=True)} {_verb(prior)} "
    neg_text = _dependee_text(prior) if isinstance(prior.cause, Dependency) else negative.text()
    if isinstance(latter.cause, UnknownComponent):
        return f"{head}{neg_text}{_line(prior_line)} which doesn't exist{_line(latter_line)}"
    return f"{head}{neg_text}{_line(prior_line)} which is forbidden{_line(latter_line)}"


def _and(
    a: Incompatibility,
    b: Incompatibility,
    a_line: int | None = None,
    b_line: int | None = None,
) -> str:
    return (
        _requires_both(a, b, a_line, b_line)
        or _requires_through(a, b, a_line, b_line)
        or _requires_forbidden(a, b, a_line, b_line)
        or f"{describe(a)}{_line(a_line)} and {describe(b)}{_line(b_line)}"
    )


class _Writer:
    """pub's failure writer (``lib/src/solver/failure.dart``), over our incompatibilities."""

    def __init__(self, root: Incompatibility) -> None:
        self.root = root
        self.lines: list[tuple[str, int | None]] = []
        self.numbers: dict[int, int] = {}  # id(incompatibility) -> line number
        self.uses: dict[int, int] = {}  # id(incompatibility) -> how many derivations use it
        self.depth = 0
        stack = [root]
        while stack:
            node = stack.pop()
            key = id(node)
            if key in self.uses:
                self.uses[key] += 1
                continue
            self.uses[key] = 1
            self.depth += 1
            if isinstance(node.cause, Derived):
                stack.append(node.cause.other)
                stack.append(node.cause.conflict)

    def write(self) -> str:
        if not isinstance(self.root.cause, Derived):
            return f"Because {describe(self.root)}, version solving failed."
        # Each derived node costs at most two frames; long chains (thousands of versions failing
        # one by one) would pass the default limit. Python 3.11 frames do not use the C stack.
        old_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old_limit, 4 * self.depth + 1000))
        try:
            self._visit(self.root)
        finally:
            sys.setrecursionlimit(old_limit)
        width = len(f"({len(self.numbers)}) ") if self.numbers else 0
        out: list[str] = []
        last_empty = False
        for message, number in self.lines:
            if not message:
                if not last_empty:
                    out.append("")
                last_empty = True
                continue
            last_empty = False
            prefix = f"({number}) " if number is not None else ""
            out.append(prefix.ljust(width) + message)
        return "\n".join(out)

    def _emit(self, inc: Incompatibility, message: str, numbered: bool) -> None:
        if numbered:
            number = len(self.numbers) + 1
            self.numbers[id(inc)] = number
            self.lines.append((message, number))
        else:
            self.lines.append((message, None))

    def _collapsible(self, inc: Incompatibility) -> bool:
        if self.uses[id(inc)] > 1:
            return False
        cause = inc.cause
        assert isinstance(cause, Derived)
        conflict_derived = isinstance(cause.conflict.cause, Derived)
        other_derived = isinstance(cause.other.cause, Derived)
        if conflict_derived == other_derived:
            return False
        complex_ = cause.conflict if conflict_derived else cause.other
        return id(complex_) not in self.numbers

    def _visit(self, inc: Incompatibility, conclusion: bool = False) -> None:
        numbered = conclusion or self.uses[id(inc)] > 1
        conjunction = "So," if conclusion or inc is self.root else "And"
        text = describe(inc)
        cause = inc.cause
        assert isinstance(cause, Derived)
        conflict, other = cause.conflict, cause.other
        conflict_derived = isinstance(conflict.cause, Derived)
        other_derived = isinstance(other.cause, Derived)

        if conflict_derived and other_derived:
            conflict_line = self.numbers.get(id(conflict))
            other_line = self.numbers.get(id(other))
            if conflict_line is not None and other_line is not None:
                self._emit(
                    inc,
                    f"Because {_and(conflict, other, conflict_line, other_line)}, {text}.",
                    numbered,
                )
            elif conflict_line is not None or other_line is not None:
                if conflict_line is not None:
                    with_line, without_line, line = conflict, other, conflict_line
                else:
                    assert other_line is not None
                    with_line, without_line, line = other, conflict, other_line
                self._visit(without_line)
                self._emit(
                    inc,
                    f"{conjunction} because {describe(with_line)} ({line}), {text}.",
                    numbered,
                )
            else:
                single_conflict = self._single_line(conflict)
                single_other = self._single_line(other)
                if single_conflict or single_other:
                    first, second = (conflict, other) if single_other else (other, conflict)
                    self._visit(first)
                    self._visit(second)
                    self._emit(inc, f"Thus, {text}.", numbered)
                else:
                    self._visit(conflict, conclusion=True)
                    self.lines.append(("", None))
                    self._visit(other)
                    self._emit(
                        inc,
                        f"{conjunction} because {describe(conflict)} "
                        f"({self.numbers[id(conflict)]}), {text}.",
                        numbered,
                    )
        elif conflict_derived or other_derived:
            derived = conflict if conflict_derived else other
            external = other if conflict_derived else conflict
            derived_line = self.numbers.get(id(derived))
            if derived_line is not None:
                self._emit(
                    inc, f"Because {_and(external, derived, None, derived_line)}, {text}.", numbered
                )
            elif self._collapsible(derived):
                dcause = derived.cause
                assert isinstance(dcause, Derived)
                if isinstance(dcause.conflict.cause, Derived):
                    collapsed_derived, collapsed_external = dcause.conflict, dcause.other
                else:
                    collapsed_derived, collapsed_external = dcause.other, dcause.conflict
                self._visit(collapsed_derived)
                self._emit(
                    inc,
                    f"{conjunction} because {_and(collapsed_external, external)}, {text}.",
                    numbered,
                )
            else:
                self._visit(derived)
                self._emit(inc, f"{conjunction} because {describe(external)}, {text}.", numbered)
        else:
            self._emit(inc, f"Because {_and(conflict, other)}, {text}.", numbered)

    @staticmethod
    def _single_line(inc: Incompatibility) -> bool:
        cause = inc.cause
        assert isinstance(cause, Derived)
        return not isinstance(cause.conflict.cause, Derived) and not isinstance(
            cause.other.cause, Derived
        )


def explain(failure: Incompatibility) -> str:
    """The human explanation of a failed solve, from its root incompatibility.

    Costs O(nodes x terms) for the derivation graph's nodes; recursion depth grows with the
    length of the longest chain, so the recursion limit is raised for the call.
    """
    return _Writer(failure).write()
