"""Properties of version 2 zip deltas: any pair of archives round trips, whatever the budget
(members stored or deflated at any level, changed, added, removed); a damaged delta never
yields anything but the archive, and a home given one falls back to the whole object.

Each example writes a few small files under a fresh temporary directory."""

from __future__ import annotations

import hashlib
import io
import random
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import steppatch.zipdelta as zd
from steppatch.errors import DeltaError
from steppatch.limits import Limits
from steppatch.routes import Fetch
from steppatch.zipdelta import DELTA_MAGIC, apply_zip_delta
from tests.builders import zip_delta_between
from tests.damage import damaged, damages, fetch_by_damaged_delta

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
LIMITS = Limits()

# One member: (seed of its content, its length, how it is stored: 0 stored, 1-9 deflate level)
member = st.tuples(st.integers(0, 10_000), st.integers(0, 30_000), st.integers(0, 9))
# What happens to it in the new archive: kept, changed (an edit at a place), removed
fate = st.one_of(
    st.just(("keep", 0)), st.tuples(st.just("change"), st.integers(0, 30_000)),
    st.just(("remove", 0)), st.tuples(st.just("relevel"), st.integers(0, 9)),
)  # fmt: skip


def _content(seed: int, n: int) -> bytes:
    rng = random.Random(seed)
    if seed % 3 == 0:
        return rng.randbytes(n)  # does not compress
    words = [b"alpha", b"beta", b"gamma", b"class", b"void", b"\x00\x01", b"\n"]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words)
    return bytes(out[:n])


def _zip(members: list[tuple[str, bytes, int]], stamp: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data, level in members:
            info = zipfile.ZipInfo(name, stamp)  # type: ignore[arg-type]
            kind = zipfile.ZIP_DEFLATED if level else zipfile.ZIP_STORED
            z.writestr(info, data, kind, level or None)
    return buf.getvalue()


def _pair(
    old: list[tuple[int, int, int]], fates: list[tuple[str, int]], added: list[tuple[int, int, int]]
) -> tuple[bytes, bytes]:
    before, after = [], []
    for i, (seed, n, level) in enumerate(old):
        data = _content(seed, n)
        before.append((f"m/{i}", data, level))
        how, arg = fates[i % len(fates)] if fates else ("keep", 0)
        if how == "change":
            at = arg % (len(data) + 1)
            data = data[:at] + b"CHANGED" + data[at + 3 :]
        elif how == "relevel":
            level = arg
        if how != "remove":
            after.append((f"m/{i}", data, level))
    for i, (seed, n, level) in enumerate(added):
        after.append((f"new/{i}", _content(seed + 1, n), level))
    # the new archive is another build: other time stamps, so its local headers differ
    return _zip(before, (2020, 1, 1, 0, 0, 0)), _zip(after, (2021, 2, 3, 4, 5, 6))


def _apply(delta: Path, base: Path, out: Path, length: int, expanded: int) -> None:
    apply_zip_delta(
        delta, base, out, length=length, expanded=expanded,
        max_member_bytes=LIMITS.max_zip_member_bytes, max_expanded=LIMITS.max_zip_expanded_bytes,
        threads=2, max_pending_bytes=20_000,  # small: several batches
    )  # fmt: skip


archives = st.tuples(
    st.lists(member, min_size=1, max_size=8),
    st.lists(fate, max_size=8),
    st.lists(member, max_size=3),
)


@SETTINGS
@given(
    pair=archives,
    budget=st.sampled_from([0, 5_000, 40_000, 10**9]),
    frame_levels=st.sampled_from([None, (19, 19), (3, 19)]),
)
def test_any_pair_of_archives_round_trips(
    pair: tuple[list[tuple[int, int, int]], list[tuple[str, int]], list[tuple[int, int, int]]],
    budget: int,
    frame_levels: tuple[int, int] | None,
) -> None:
    old, new = _pair(*pair)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        made = zip_delta_between(
            d, old, new, name="delta", budget=budget, max_length=len(new) * 2 + 4096,
            max_member_bytes=LIMITS.max_zip_member_bytes, frame_levels=frame_levels,
        )  # fmt: skip
        assert made is not None
        length, expanded = made
        assert (d / "delta").stat().st_size == length
        assert (d / "delta").read_bytes().startswith(DELTA_MAGIC)
        _apply(d / "delta", d / "old.zip", d / "out", len(new), expanded)
        assert (d / "out").read_bytes() == new
        assert sorted(p.name for p in d.iterdir()) == ["delta", "new.zip", "old.zip", "out"]


damage = damages(100_000)


@SETTINGS
@given(pair=archives, how=damage, signed=st.booleans())
def test_a_damaged_zip_delta_always_falls_back(
    pair: tuple[list[tuple[int, int, int]], list[tuple[str, int]], list[tuple[int, int, int]]],
    how: tuple[str, int, int],
    signed: bool,
) -> None:
    """``signed``: the damaged bytes are the ones the metadata names (a repository that
    published a bad delta), so only applying it and the archive's hash can catch them."""
    old, new = _pair(*pair)
    tsha = hashlib.sha256(new).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        made = zip_delta_between(
            d, old, new, name="delta", budget=40_000, max_length=len(new) * 2 + 4096,
            max_member_bytes=LIMITS.max_zip_member_bytes,
        )  # fmt: skip
        assert made is not None
        expanded = made[1]
        good = (d / "delta").read_bytes()
        bad = damaged(good, how)
        if bad == good:
            return
        # Applied directly: a typed error, or some bytes (never more than the archive's)
        (d / "bad").write_bytes(bad)
        try:
            _apply(d / "bad", d / "old.zip", d / "out", len(new), expanded)
        except DeltaError:
            pass
        else:
            assert (d / "out").stat().st_size == len(new)
        store, result, served = fetch_by_damaged_delta(
            d, new, d / "old.zip", good, bad, signed=signed, expanded=expanded
        )
        assert store.path(tsha).read_bytes() == new
        if result.fallbacks:
            assert result.done == (Fetch(tsha, len(new)),)
        else:
            # Only possible when the damage left the rebuilt archive the very bytes.
            _apply(served, d / "old.zip", d / "o", len(new), expanded)
            assert (d / "o").read_bytes() == new


def test_an_older_reader_refuses_a_version_2_delta_with_a_typed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that knows only version 1 takes the delta for a version 1 frame: it refuses
    it (``DeltaError``), which sends the home to its other routes."""
    old, new = _pair([(1, 20_000, 6), (2, 9_000, 9)], [("change", 500)], [])
    made = zip_delta_between(tmp_path, old, new)
    assert made is not None
    monkeypatch.setattr(zd, "is_delta2", lambda path: False)  # a version 1 reader
    with pytest.raises(DeltaError):
        _apply(tmp_path / "d", tmp_path / "old.zip", tmp_path / "out", len(new), made[1])
    assert not (tmp_path / "out").exists() or (tmp_path / "out").read_bytes() != new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "new.zip", "old.zip"] + (
        ["out"] if (tmp_path / "out").exists() else []
    )
