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

    Costs O(n) to build for n versions given in order, O(n log n) otherwise; what is derived
    from every version (positions, pre-releases) is computed when first needed. Not thread-safe
    (caches are filled lazily).
    """

    __slots__ = (
        "_bits_cache",
        "_labels",
        "_position",
        "_pre_bits",
        "_pre_known",
        "full",
        "installed",
        "name",
        "versions",
    )

    def __init__(
        self, name: str, versions: Sequence[Version], installed: Version | None = None
    ) -> None:
        self.name = name
        # dict.fromkeys keeps the index's order, which is often sorted already: Timsort then
        # needs n - 1 comparisons (Version's are Python calls), where a set's order needs n log n.
        self.versions: tuple[Version, ...] = tuple(sorted(dict.fromkeys(versions)))
        self.full: int = (1 << len(self.versions)) - 1
        #: the installed version, if the index still has it
        self.installed: Version | None = None
        if installed is not None:
            i = bisect_left(self.versions, installed)
            if i < len(self.versions) and self.versions[i] == installed:
                self.installed = installed
        self._position: dict[Version, int] | None = None
        # Which versions are known to be pre-releases, and which have been looked at.
        self._pre_bits = 0
        self._pre_known = 0
        self._labels: dict[int, str] = {}
        # Keyed by id: hashing a SpecifierSet canonicalizes every version in it, which costs
        # more than the lookup saves. The set is kept in the value, so its id stays unique.
        self._bits_cache: dict[int, tuple[SpecifierSet, int]] = {}

    @property
    def position(self) -> dict[Version, int]:
        """Version -> its index in :attr:`versions`. O(n) the first time."""
        if self._position is None:
            self._position = {v: i for i, v in enumerate(self.versions)}
        return self._position

    def prereleases(self, lo: int, hi: int) -> int:
        """The pre-releases among versions ``lo..hi - 1``, as a bitset.

        O(hi - lo) unless every one of them was looked at before, then O(n/64).
        """
        mask = ((1 << hi) - 1) ^ ((1 << lo) - 1)
        if mask & ~self._pre_known:
            versions = self.versions
            found = 0
            for k in range(lo, hi):
                if versions[k].is_prerelease:
                    found |= 1 << k
            self._pre_bits |= found
            self._pre_known |= mask
        return self._pre_bits & mask

    def bits_for(self, spec: SpecifierSet) -> int:
        """The versions ``spec`` allows, as a bitset. O(log n) the first time per ``spec`` for
        ranges and pins (plus the length of the run for the pre-release check), O(n) for other
        operators.

        Pre-releases match only when the specifier names one (or was built with
        ``prereleases=True``), as packaging's ``SpecifierSet.prereleases`` says, except the
        installed version, which matches when it is in range (packaging's ``installed=True``).
        """
        cached = self._bits_cache.get(id(spec))
        if cached is not None:
            return cached[1]
        bits = self._bounded(spec)
        if bits is None:
            position = self.position
            bits = 0
            for version in spec.filter(self.versions, prereleases=spec.prereleases is True):
                bits |= 1 << position[version]
        elif bits:
            # A run of versions: only its own are checked for being pre-releases, and the
            # specifier (whose prereleases property parses each of its versions) only if any is.
            pre = self.prereleases((bits & -bits).bit_length() - 1, bits.bit_length())
            if pre and spec.prereleases is not True:
                bits &= ~pre
        installed = self.installed
        if installed is not None and spec.contains(installed, installed=True):
            bits |= 1 << self.position[installed]
        self._bits_cache[id(spec)] = (spec, bits)
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
        indices = range(len(versions))
        lo, hi = 0, len(versions)
        for item in spec:
            op = item.operator
            # Each bound's predicate is monotone over all versions, so searching only the run
            # left by the bounds before it finds the same intersection, in fewer calls.
            if op in (">", ">="):
                lo = bisect_left(indices, True, lo, hi, key=_admits(item, versions))
            elif op in ("<", "<="):
                hi = bisect_left(indices, True, lo, hi, key=_refuses(item, versions))
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
