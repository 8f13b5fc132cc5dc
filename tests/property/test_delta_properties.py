"""Properties of deltas: any base and target round trip; a damaged delta never yields anything
but the target, and a home given one always falls back to the whole object.

Each example writes a few small files under a fresh temporary directory (hypothesis calls the
test many times within one ``tmp_path``)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steppatch import delta
from steppatch.delta import decode, encode
from steppatch.errors import DeltaError
from steppatch.routes import Fetch
from tests.damage import damaged, damages, fetch_by_damaged_delta

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# A base (repetitive or random), and edits making the target from it.
contents = st.one_of(
    st.binary(min_size=0, max_size=4000),
    st.builds(lambda seed, n: bytes((seed * i) % 251 for i in range(n)),
              st.integers(1, 250), st.integers(0, 20_000)),
)  # fmt: skip
edits = st.lists(
    st.tuples(st.integers(0, 20_000), st.integers(0, 300), st.binary(max_size=300)), max_size=8
)


def _apply(base: bytes, changes: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(base)
    for at, cut, put in changes:
        at = min(at, len(out))
        out[at : at + cut] = put
    return bytes(out)


def _write(d: Path, name: str, data: bytes) -> Path:
    (d / name).write_bytes(data)
    return d / name


@SETTINGS
@given(base=contents, changes=edits, with_base=st.booleans(), streamed=st.booleans())
def test_any_target_round_trips(base: bytes, changes: list[tuple[int, int, bytes]],
                                with_base: bool, streamed: bool) -> None:  # fmt: skip
    """``streamed``: decoded through a chunk buffer (outputs up to ``STREAM_MAX_BYTES``) or
    into a mapping of the output (longer ones): both give the same bytes."""
    with mock.patch.object(delta, "STREAM_MAX_BYTES", 1 << 30 if streamed else 0):
        _round_trip(base, changes, with_base)


def _round_trip(base: bytes, changes: list[tuple[int, int, bytes]], with_base: bool) -> None:
    target = _apply(base, changes)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        b = _write(d, "base", base) if with_base else None
        t = _write(d, "target", target)
        length = encode(t, d / "delta", base=b, max_length=len(target) + 64)
        if length is None:
            assert len(target) < 64  # only a tiny target does not fit its length plus 64
            return
        decode(d / "delta", d / "out", base=b, length=len(target))
        assert (d / "out").read_bytes() == target


damage = damages(10_000)


@SETTINGS
@given(changes=edits, how=damage, signed=st.booleans())
def test_a_damaged_delta_always_falls_back(
    changes: list[tuple[int, int, bytes]], how: tuple[str, int, int], signed: bool
) -> None:
    """``signed``: the damaged bytes are the ones the metadata names (a repository that
    published a bad delta), so only decoding and the target's hash can catch them."""
    base = os.urandom(6000)
    target = _apply(base, changes) or b"x"
    tsha = hashlib.sha256(target).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _write(d, "base", base)
        _write(d, "target", target)
        length = encode(d / "target", d / "delta", base=d / "base", max_length=len(target) + 64)
        assert length is not None
        good = (d / "delta").read_bytes()
        bad = damaged(good, how)
        if bad == good:
            return
        store, result, served = fetch_by_damaged_delta(
            d, target, d / "base", good, bad, signed=signed
        )
        assert store.has(tsha)
        assert (d / "store").joinpath(store.path(tsha)).read_bytes() == target
        if result.fallbacks:
            assert result.done == (Fetch(tsha, len(target)),)
        else:
            # Only possible when the damage left the decoded output the target's very bytes.
            try:
                decode(served, d / "o", base=d / "base", length=len(target))
            except DeltaError:
                raise AssertionError("an undecodable delta was used") from None
            assert (d / "o").read_bytes() == target
