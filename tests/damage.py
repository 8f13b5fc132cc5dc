"""Damaging bytes for the property tests: a byte flipped, the end cut off, a byte inserted."""

from __future__ import annotations

from hypothesis import strategies as st

Damage = tuple[str, int, int]


def damages(max_at: int) -> st.SearchStrategy[Damage]:
    """How to damage: the kind, where (taken modulo the length), and the byte involved."""
    return st.one_of(
        st.tuples(st.just("flip"), st.integers(0, max_at), st.integers(1, 255)),
        st.tuples(st.just("cut"), st.integers(0, max_at), st.just(0)),
        st.tuples(st.just("insert"), st.integers(0, max_at), st.integers(0, 255)),
    )


def damaged(data: bytes, how: Damage) -> bytes:
    """``data`` damaged as ``how`` says: never the same bytes (a cut at the end aside)."""
    kind, at, value = how
    at = at % (len(data) + 1)
    if kind == "flip":
        at = min(at, len(data) - 1)
        return data[:at] + bytes([data[at] ^ value]) + data[at + 1 :]
    if kind == "cut":
        return data[:at]
    return data[:at] + bytes([value]) + data[at:]
