"""Terms: statements "component NAME is selected at one of these versions" (or is not).

The solver works on the finite set of versions an index publishes, so a term's version set is a
bitset over one component's sorted versions (bit ``i`` is the ``i``-th oldest version). Set algebra
is then exact and cheap (a few big-int operations), and the pre-release rule is applied once, when
a specifier becomes a bitset. A term also carries an optional display label (the specifier text it
came from), used only for explanations.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

from packaging.specifiers import Specifier, SpecifierSet
from packaging.version import Version

__all__ = ["ROOT", "Space", "Term", "format_specifier"]

#: The name of the virtual root component, the request itself. It cannot clash with a component
#: name: those are made of letters, digits, '-', '_' and '.'.
ROOT = "<request>"

# Lower bounds first, then pins, then upper bounds, then exclusions: reads like ">=9.0,<10".
_OPERATOR_RANK = {">=": 0, ">": 1, "~=": 2, "==": 3, "===": 4, "<=": 5, "<": 6, "!=": 7}


def format_specifier(spec: SpecifierSet) -> str:
    """``spec`` as text with lower bounds before upper bounds (``>=9.0,<10``), deterministically.

    ``str(SpecifierSet)`` sorts lexically, which puts ``<10`` before ``>=9.0``.
    """

    def key(s: Specifier) -> tuple[int, str]:
        return (_OPERATOR_RANK.get(s.operator, 9), s.version)

    return ",".join(str(s) for s in sorted(spec, key=key))


def _admits(item: Specifier, versions: Sequence[Version]) -> Callable[[int], bool]:
    return lambda i: item.contains(versions[i], prereleases=True)


def _refuses(item: Specifier, versions: Sequence[Version]) -> Callable[[int], bool]:
    return lambda i: not item.contains(versions[i], prereleases=True)


class Space:
    """The versions of one component, sorted ascending, and the display labels of its sets.

    Costs O(n log n) to build for n versions. Not thread-safe (caches are filled lazily).
    """

    __slots__ = (
        "_bits_cache",
        "_labels",
        "full",
        "installed",
        "name",
        "position",
        "prereleases",
        "versions",
    )

    def __init__(
        self, name: str, versions: Sequence[Version], installed: Version | None = None
    ) -> None:
        self.name = name
        self.versions: tuple[Version, ...] = tuple(sorted(set(versions)))
        self.position: dict[Version, int] = {v: i for i, v in enumerate(self.versions)}
        self.full: int = (1 << len(self.versions)) - 1
        #: the installed version, if the index still has it
        self.installed = installed if installed in self.position else None
        #: the pre-releases, as a bitset
        self.prereleases = sum(1 << i for i, v in enumerate(self.versions) if v.is_prerelease)
        self._labels: dict[int, str] = {}
        self._bits_cache: dict[SpecifierSet, int] = {}

    def bits_for(self, spec: SpecifierSet) -> int:
        """The versions ``spec`` allows, as a bitset. O(n) the first time per ``spec``.

        Pre-releases match only when the specifier names one (or was built with
        ``prereleases=True``), as packaging's ``SpecifierSet.prereleases`` says, except the
        installed version, which matches when it is in range (packaging's ``installed=True``).
        """
        bits = self._bits_cache.get(spec)
        if bits is None:
            bits = self._bounded(spec)
            if bits is None:
                position = self.position
                bits = 0
                for version in spec.filter(self.versions, prereleases=spec.prereleases is True):
                    bits |= 1 << position[version]
            elif spec.prereleases is not True:
                bits &= ~self.prereleases
            installed = self.installed
            if installed is not None and spec.contains(installed, installed=True):
                bits |= 1 << self.position[installed]
            self._bits_cache[spec] = bits
        return bits

    def _bounded(self, spec: SpecifierSet) -> int | None:
        """The versions ``spec`` allows with pre-releases admitted, found by bisection, or
        ``None`` when ``spec`` has an operator this does not handle (``!=``, ``~=``, ``===``,
        wildcards). O(log n) ``contains`` calls per specifier.

        Each of ``>``, ``>=``, ``<``, ``<=`` and an exact ``==`` admits a contiguous run of the
        sorted versions (PEP 440's exceptions - post-releases for ``>``, pre-releases for ``<``,
        local versions - sit at the run's edge), so a run's ends are found by bisecting on
        ``contains``. This keeps many distinct specifiers (exact pins, shifting ranges) from
        costing O(n) each.
        """
        versions = self.versions
        lo, hi = 0, len(versions)
        for item in spec:
            op = item.operator
            if op in (">", ">="):
                lo = max(lo, bisect_left(range(len(versions)), True, key=_admits(item, versions)))
            elif op in ("<", "<="):
                hi = min(hi, bisect_left(range(len(versions)), True, key=_refuses(item, versions)))
            elif op == "==" and not item.version.endswith(".*") and "+" not in item.version:
                start = bisect_left(versions, Version(item.version))
                end = start
                while end < len(versions) and item.contains(versions[end], prereleases=True):
                    end += 1
                if end == start:
                    return 0
                lo, hi = max(lo, start), min(hi, end)
            else:
                return None
        if lo >= hi:
            return 0
        return ((1 << hi) - 1) ^ ((1 << lo) - 1)

    def label(self, bits: int, text: str) -> None:
        """Remember ``text`` as the display of ``bits`` unless one is already known. O(1)."""
        self._labels.setdefault(bits, text)

    def run_text(self, lo: int, hi: int) -> str:
        """The versions ``lo..hi`` (inclusive indices) as pub writes a depender range.

        The lower bound is omitted when the run starts at the oldest version and the upper bound
        when it ends at the newest, so that the text is "any" for every version.
        """
        parts = []
        if lo > 0:
            parts.append(f">={self.versions[lo]}")
        if hi < len(self.versions) - 1:
            parts.append(f"<{self.versions[hi + 1]}")
        return ",".join(parts) if parts else "any"

    def describe(self, bits: int) -> str:
        """``bits`` as text: a known label, else its runs of consecutive versions.

        O(r x n / 64) for r runs over n versions.
        """
        if bits == self.full:
            return "any"
        known = self._labels.get(bits)
        if known is not None:
            return known
        if bits == 0:
            return "<none>"
        runs: list[str] = []
        while bits:
            i = (bits & -bits).bit_length() - 1
            x = bits >> i
            j = i + (x ^ (x + 1)).bit_length() - 2  # the run of ones starting at bit i
            runs.append(str(self.versions[i]) if i == j else self.run_text(i, j))
            bits &= ~(((1 << (j + 1)) - 1) ^ ((1 << i) - 1))
        return " or ".join(runs)

    def __repr__(self) -> str:
        return f"<Space {self.name} ({len(self.versions)} versions)>"


class Term:
    """``name`` is selected at one of ``versions`` (positive), or is not (negative).

    A negative term is also true when the component is not selected at all. Equality and hashing
    ignore the display label. Set operations cost O(n/64) for n versions.
    """

    __slots__ = ("bits", "label", "name", "positive", "space")

    def __init__(self, space: Space, positive: bool, bits: int, label: str | None = None) -> None:
        self.space = space
        self.name = space.name
        self.positive = positive
        self.bits = bits
        self.label = label

    @property
    def versions(self) -> tuple[Version, ...]:
        """The versions the term names (selected ones if positive, excluded ones if not)."""
        bits = self.bits
        return tuple(v for i, v in enumerate(self.space.versions) if bits >> i & 1)

    @property
    def is_any(self) -> bool:
        """Whether the term names every version of its component."""
        return self.bits == self.space.full

    def negate(self) -> Term:
        return Term(self.space, not self.positive, self.bits, self.label)

    def intersect(self, other: Term) -> Term:
        """The term true exactly when both are. Both must be about the same component."""
        if self.positive:
            if other.positive:
                return Term(self.space, True, self.bits & other.bits)
            return Term(self.space, True, self.bits & ~other.bits)
        if other.positive:
            return Term(self.space, True, other.bits & ~self.bits)
        return Term(self.space, False, self.bits | other.bits)

    def difference(self, other: Term) -> Term:
        return self.intersect(other.negate())

    def is_empty(self) -> bool:
        """Whether no selection makes the term true (negative terms hold when not selected)."""
        return self.positive and self.bits == 0

    def satisfies(self, other: Term) -> bool:
        """Whether ``self`` implies ``other`` (set inclusion)."""
        if self.positive:
            if other.positive:
                return self.bits & ~other.bits == 0
            return self.bits & other.bits == 0
        if other.positive:
            return False
        return other.bits & ~self.bits == 0

    def text(self, *, allow_every: bool = False) -> str:
        """How explanations name the term's versions ("restapi >=7.0", "every version of x")."""
        if self.name == ROOT:
            return "the request"
        if self.bits == self.space.full:
            return f"every version of {self.name}" if allow_every else self.name
        return f"{self.name} {self.label or self.space.describe(self.bits)}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Term):
            return NotImplemented
        return (
            self.name == other.name and self.positive == other.positive and self.bits == other.bits
        )

    def __hash__(self) -> int:
        return hash((self.name, self.positive, self.bits))

    def __str__(self) -> str:
        return self.text() if self.positive else f"not {self.text()}"

    def __repr__(self) -> str:
        return f"<Term {self}>"
