"""Property: a single changed byte anywhere in a signed document is refused.

The only exceptions yield the identical verified content: a byte of insignificant whitespace in
the pretty-printed published form turned into another whitespace byte, or a byte inside a surplus
signature entry (one not needed to meet the threshold, here a stranger's), which is ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steppatch.errors import RepositoryError
from steppatch.trust import (
    ROLES,
    SigningKey,
    TrustedMetadataSet,
    make_index,
    make_root,
    make_timestamp,
    sign,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
_EXPIRES = NOW + timedelta(days=7)
_WHITESPACE = b" \t\r\n"


STRANGER = SigningKey.generate()


def _documents() -> tuple[bytes, bytes, bytes, bytes]:
    # every signature is needed: each role is signed by exactly its threshold of keys
    keys = {role: [SigningKey.generate(), SigningKey.generate()] for role in ROLES}
    root = sign(
        make_root(
            {role: [key.public for key in keys[role]] for role in ROLES},
            {"root": 2, "timestamp": 2, "index": 2},
            1,
            _EXPIRES,
        ),
        keys["root"],
    )
    payload = {
        "components": {"restapi": {"7.0.40": {"length": 1234, "sha256": "ab" * 32}}},
        "recipes": {"step/9.0.spr": {"length": 0, "sha256": "cd" * 32}},
        "notes": 'Grüße, 日本, \\ " / \u2028',
        "flags": [True, False, None, -1, 0],
    }
    index = sign(make_index(payload, 3, _EXPIRES), keys["index"])
    timestamp = sign(make_timestamp(index, 3, 5, _EXPIRES), keys["timestamp"])
    surplus = sign(make_index(payload, 3, _EXPIRES), [*keys["index"], STRANGER])
    return root, timestamp, index, surplus


ROOT, TIMESTAMP, INDEX, INDEX_SURPLUS = _documents()


def _span_of_stranger(data: bytes) -> range:
    """The byte range of the stranger's signature entry, from its opening to its closing brace."""
    at = data.index(STRANGER.keyid.encode())
    return range(data.rindex(b"{", 0, at), data.index(b"}", at) + 1)


def _root(data: bytes) -> bytes:
    return TrustedMetadataSet(data, NOW).root.canonical


def _timestamp(data: bytes) -> bytes:
    return TrustedMetadataSet(ROOT, NOW).update_timestamp(data).canonical


def _index_pinned(data: bytes) -> bytes:
    trusted = TrustedMetadataSet(ROOT, NOW)
    trusted.update_timestamp(TIMESTAMP)
    return trusted.update_index(data).canonical


def _index_stored(data: bytes) -> bytes:
    # no pin: only the signatures protect a stored index
    index = TrustedMetadataSet.reload(ROOT, None, data, now=NOW).index
    assert index is not None
    return index.canonical


KINDS: dict[str, tuple[bytes, Callable[[bytes], bytes]]] = {
    "root": (ROOT, _root),
    "timestamp": (TIMESTAMP, _timestamp),
    "index pinned by timestamp": (INDEX, _index_pinned),
    "index stored": (INDEX, _index_stored),
    "index stored, surplus signature": (INDEX_SURPLUS, _index_stored),
}


def _check_flip(kind: str, position: int, mask: int) -> None:
    original, verify = KINDS[kind]
    flipped = bytearray(original)
    flipped[position] ^= mask
    try:
        content = verify(bytes(flipped))
    except RepositoryError:
        return
    # accepted: the content must be exactly the same, and the byte harmless
    assert content == verify(original)
    whitespace = original[position] in _WHITESPACE and flipped[position] in _WHITESPACE
    surplus = original is INDEX_SURPLUS and position in _span_of_stranger(original)
    assert whitespace or surplus, (kind, position, mask)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_unflipped_documents_verify(kind: str) -> None:
    original, verify = KINDS[kind]
    verify(original)


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), data=st.data())
def test_any_single_byte_change_is_refused_or_harmless_whitespace(
    kind: str, data: st.DataObject
) -> None:
    original, _ = KINDS[kind]
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor mask")
    _check_flip(kind, position, mask)


@pytest.mark.parametrize("kind", ["root", "index stored", "index stored, surplus signature"])
@pytest.mark.parametrize("mask", [0x01, 0x20, 0x80])
def test_every_position_with_a_few_masks(kind: str, mask: int) -> None:
    # exhaustive over positions for the two paths where only signatures protect the bytes
    original, _ = KINDS[kind]
    for position in range(len(original)):
        _check_flip(kind, position, mask)


# bytes that could turn one valid JSON spelling into another: whitespace, signs, digits, quotes,
# escapes, exponent and hex-case letters, structure
_INTERESTING = b' \t\r\n-+0123456789.eEaAfFuUnt"\\/,:[]{}'


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["index stored", "root"])
def test_every_position_with_every_interesting_byte(kind: str) -> None:
    original, _ = KINDS[kind]
    for position in range(len(original)):
        for replacement in _INTERESTING:
            if replacement != original[position]:
                _check_flip(kind, position, original[position] ^ replacement)
