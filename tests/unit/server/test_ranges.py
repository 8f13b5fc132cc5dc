"""Range and ETag rules (RFC 9110), with properties for every size and header."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steppatch.server._ranges import ByteRange, Unsatisfiable, etag_matches, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-0", 10, ByteRange(0, 0)),
        ("bytes=2-5", 10, ByteRange(2, 5)),
        ("bytes=2-", 10, ByteRange(2, 9)),
        ("bytes=5-100", 10, ByteRange(5, 9)),
        ("bytes=-3", 10, ByteRange(7, 9)),
        ("bytes=-30", 10, ByteRange(0, 9)),
        ("bytes=5-2", 10, None),  # invalid: ignored
        ("bytes=0-1,4-5", 10, None),  # several ranges: the whole file
        ("items=0-1", 10, None),
        ("bytes=-", 10, None),
        ("bytes = 1-2", 10, ByteRange(1, 2)),
    ],
)
def test_parse(header: str | None, size: int, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=10-20", 10),
                                              ("bytes=-0", 10), ("bytes=0-", 0)])
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


@given(st.integers(0, 10**12), st.integers(0, 10**12), st.integers(1, 10**12))
def test_a_range_always_lies_inside_the_file(first: int, last: int, size: int) -> None:
    try:
        r = parse_range(f"bytes={first}-{last}", size)
    except Unsatisfiable:
        assert first >= size
        return
    if r is not None:
        assert 0 <= r.start <= r.end < size and r.length == r.end - r.start + 1


def test_etag_matches() -> None:
    assert etag_matches('"abc"', '"abc"')
    assert etag_matches('"x", W/"abc"', '"abc"')
    assert etag_matches("*", '"abc"')
    assert not etag_matches('"abd"', '"abc"')
    assert not etag_matches(None, '"abc"')
