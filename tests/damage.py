"""Damaging bytes for the property tests (a byte flipped, the end cut off, a byte inserted),
and fetching an object through a damaged delta."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hypothesis import strategies as st

from steppatch.model import Encoded
from steppatch.remote import MetadataStore, RepositoryClient, RoutedResult
from steppatch.routes import Fetch, Route
from steppatch.store import ObjectStore
from steppatch.transport import FileFetcher

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


def fetch_by_damaged_delta(
    d: Path, target: bytes, base: Path, good: bytes, bad: bytes, *, signed: bool,
    expanded: int | None = None,
) -> tuple[ObjectStore, RoutedResult, Path]:  # fmt: skip
    """Fetch ``target`` into ``d / "store"`` by its delta from the file ``base`` (a zip delta
    when ``expanded`` is given), from a repository at ``d / "repo"`` that holds ``target``
    whole and serves ``bad`` as the delta. The metadata names ``bad`` when ``signed`` (a
    repository that published a bad delta), else ``good``. The store, the result, and where
    the served delta lies."""
    repo = d / "repo"
    tsha = hashlib.sha256(target).hexdigest()
    (repo / "objects" / tsha[:2]).mkdir(parents=True, exist_ok=True)
    (repo / "objects" / tsha[:2] / tsha).write_bytes(target)
    named = bad if signed else good
    dsha = hashlib.sha256(named).hexdigest()
    served = repo / "deltas" / dsha[:2] / dsha
    served.parent.mkdir(parents=True)
    served.write_bytes(bad)
    bsha = hashlib.sha256(base.read_bytes()).hexdigest()
    client = RepositoryClient(FileFetcher(repo), MetadataStore(d / "meta"))
    store = ObjectStore(d / "store")
    fetch = Fetch(tsha, len(target), Route.DELTA, Encoded(dsha, len(named), bsha, expanded))
    result = client.fetch_routed([fetch], store, ObjectStore(d / "scratch"), lambda sha: base)
    return store, result, served
