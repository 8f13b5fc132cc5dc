from __future__ import annotations

import pytest

from steppatch.errors import IntegrityError
from steppatch.trust import (
    BadMetadata,
    HashMismatch,
    LengthMismatch,
    canonical_bytes,
    sha256_hex,
    verify_length_and_hash,
)
from steppatch.trust.canonical import read_json


def test_canonical_form_sorts_keys_drops_whitespace_and_keeps_utf8() -> None:
    value = {"b": [1, True, None], "a": {"z": "é", "y": -3}}
    assert canonical_bytes(value) == '{"a":{"y":-3,"z":"é"},"b":[1,true,null]}'.encode()


def test_canonical_form_does_not_depend_on_insertion_order() -> None:
    assert canonical_bytes({"a": 1, "b": 2}) == canonical_bytes({"b": 2, "a": 1})


@pytest.mark.parametrize(
    "value",
    [
        {"x": 1.0},
        {"x": float("nan")},
        {"x": [1, 2.5]},
        {"x": b"bytes"},
        {"x": {1: "a"}},
        {"x": "\ud800"},
    ],
)
def test_canonical_form_refuses_what_has_no_unique_text(value: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        canonical_bytes(value)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\xff{}", "not UTF-8"),
        (b"{", "not JSON"),
        (b'{"a": 1.5}', "not JSON"),
        (b'{"a": 1e3}', "not JSON"),
        (b'{"a": NaN}', "not JSON"),
        (b'{"a": -0}', "-0 is not allowed"),
        (b'{"a": Infinity}', "not JSON"),
        (b'{"a": 1, "a": 2}', "appears twice"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
        (b"[" * 65 + b"]" * 65, "nested deeper than 64"),
        (b'{"a": {"b": [' * 30 + b"1" + b"]}}" * 30, "nested deeper than 64"),
    ],
)
def test_reader_refuses_ambiguous_or_broken_json(data: bytes, problem: str) -> None:
    with pytest.raises(BadMetadata, match=problem) as caught:
        read_json(data, "index")
    assert caught.value.role == "index"


def test_nesting_up_to_the_limit_is_fine() -> None:
    assert read_json(b"[" * 64 + b"]" * 64, "index") is not None


def test_canonical_form_names_where_a_bad_value_is() -> None:
    with pytest.raises(ValueError, match=r"^a\.b\[1\]: float is not allowed"):
        canonical_bytes({"a": {"b": [1, 2.0]}})


def test_sha256_hex() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_verify_length_and_hash_accepts_the_right_bytes() -> None:
    verify_length_and_hash(b"abc", 3, sha256_hex(b"abc"), "object abc")


def test_verify_length_and_hash_checks_length_first_and_names_what() -> None:
    with pytest.raises(LengthMismatch) as caught:
        verify_length_and_hash(b"abcd", 3, sha256_hex(b"abc"), "manifest restapi 7.0.40")
    assert caught.value.what == "manifest restapi 7.0.40"
    assert (caught.value.expected_length, caught.value.actual_length) == (3, 4)
    assert isinstance(caught.value, IntegrityError)


def test_verify_length_and_hash_refuses_a_changed_byte() -> None:
    with pytest.raises(HashMismatch) as caught:
        verify_length_and_hash(b"abd", 3, sha256_hex(b"abc"), "recipe step/9.0.spr")
    assert caught.value.what == "recipe step/9.0.spr"
    assert caught.value.expected_sha256 == sha256_hex(b"abc")
    assert caught.value.actual_sha256 == sha256_hex(b"abd")
    assert "recipe step/9.0.spr" in str(caught.value)


def test_verify_length_and_hash_with_a_garbage_expected_hash_is_a_mismatch() -> None:
    with pytest.raises(HashMismatch):
        verify_length_and_hash(b"abc", 3, "ü" * 64, "object")
