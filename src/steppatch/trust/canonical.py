"""The canonical form of what is signed, and the strict JSON reader for published documents.

Canonical form (what a signature covers): the ``signed`` object serialized as JSON with

- object keys sorted by Unicode code point, each key a string;
- no insignificant whitespace (separators ``,`` and ``:``);
- non-ASCII characters written as themselves (``ensure_ascii=False``), the result encoded as UTF-8;
- only strings, integers, booleans, null, arrays and objects: floats (and NaN/Infinity) are refused,
  since their text form is not unique.

The published document around it may be indented any way; the reader below accepts any valid JSON
that holds only those types, no object with a repeated key (a repeated key would let two readers
see different values under one signature) and no ``-0`` (so that apart from whitespace, and string
escapes, which need more than one byte to change, every value has a single spelling).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from steppatch._json import DEFAULT_JSON_LIMITS, JsonLimits, JsonProblem, parse_json
from steppatch.trust.errors import BadMetadata

__all__ = ["MAX_DEPTH", "canonical_bytes", "published_bytes", "read_json"]


#: deepest nesting of arrays and objects accepted; metadata needs a handful of levels, and a bound
#: keeps every walk of a document well inside Python's recursion limit
MAX_DEPTH = 64
#: the reader's bounds: the depth above, integers as for every document steppatch reads
_LIMITS = JsonLimits(max_depth=MAX_DEPTH, max_int_digits=DEFAULT_JSON_LIMITS.max_int_digits)


def show(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about untrusted data."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Invalid(ValueError):
    def __init__(self, path: list[str], problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(problem)


def _walk(value: object, depth: int) -> None:
    """Raise _Invalid (with the path, innermost first) for a value outside the canonical types."""
    if value is None or isinstance(value, str | bool | int):
        return
    if depth >= MAX_DEPTH:
        raise _Invalid([], f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            try:
                _walk(item, depth + 1)
            except _Invalid as e:
                e.path.append(f"[{i}]")
                raise
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Invalid([], f"object key {show(key)} is not a string")
            try:
                _walk(item, depth + 1)
            except _Invalid as e:
                e.path.append(f".{key}")
                raise
        return
    raise _Invalid([], f"{type(value).__name__} is not allowed in metadata")


def _check(value: object) -> None:
    try:
        _walk(value, 0)
    except _Invalid as e:
        where = "".join(reversed(e.path)).lstrip(".")
        raise ValueError(f"{where}: {e.problem}" if where else e.problem) from None


def canonical_bytes(value: Mapping[str, Any]) -> bytes:
    """The canonical form of ``value`` (see the module docstring).

    Raises ValueError for a float, a non-string key, any other non-JSON type, nesting deeper than
    :data:`MAX_DEPTH`, or a string that is not valid Unicode (a lone surrogate). Costs one walk and
    one serialization of ``value``.
    """
    _check(value)
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"string is not valid Unicode: {e}") from e


def published_bytes(document: Mapping[str, Any]) -> bytes:
    """The form a document is published in: sorted keys, indented, UTF-8, a final newline.

    Raises ValueError like :func:`canonical_bytes`.
    """
    _check(document)
    text = json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"string is not valid Unicode: {e}") from e


def _no_float(text: str) -> Any:
    raise ValueError(f"number {show(text)} is not an integer")


def _int(text: str) -> int:
    # "-0" is the one integer JSON can spell two ways; refuse it so each value has one spelling
    if text == "-0":
        raise ValueError("number -0 is not allowed (write 0)")
    return int(text)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{show(text)} is not allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"object key {show(key)} appears twice")
        result[key] = value
    return result


def read_json(data: bytes, role: str | None) -> Any:
    """The JSON value in ``data``.

    Raises :class:`BadMetadata` (for ``role``) if ``data`` is not UTF-8, not JSON, holds a float,
    ``-0``, NaN or Infinity, an integer of more than 20 digits, an object with a repeated key, or
    nesting deeper than :data:`MAX_DEPTH`. Costs one parse and one walk of ``data``.
    """
    try:
        value = parse_json(
            data,
            _LIMITS,
            parse_float=_no_float,
            parse_int=_int,
            parse_constant=_no_constant,
            object_pairs_hook=_unique_keys,
        )
    except JsonProblem as e:
        raise BadMetadata(role, None, e.problem) from e
    try:
        _check(value)
    except ValueError as e:
        raise BadMetadata(role, None, str(e)) from e
    return value
