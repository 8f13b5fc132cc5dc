"""Deterministic JSON, a bounded reader, and field access that says exactly what is wrong.

Every document steppatch writes is UTF-8 JSON with sorted keys and two-space indentation, so the
same value always gives the same bytes. Every document steppatch reads goes through
:func:`parse_json`, which refuses (as :class:`JsonProblem`) what would make ``json.loads`` raise
something other than a decode error: nesting deep enough to exhaust the stack, and integers too
long for ``int()`` (Python's ``int_max_str_digits``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from steppatch import _record as record

__all__ = [
    "DEFAULT_JSON_LIMITS",
    "Fields",
    "JsonLimits",
    "JsonProblem",
    "dump_json",
    "load_json_object",
    "parse_json",
]

T = TypeVar("T")


@record.frozen
class JsonLimits:
    """Bounds on a JSON document's shape (its size is the caller's limit).

    Every document steppatch reads nests a handful of levels and holds integers of at most 20
    digits (a 64-bit size); ``steppatch.limits.Limits`` carries these as fields.
    """

    max_depth: int = 64
    max_int_digits: int = 20


DEFAULT_JSON_LIMITS = JsonLimits()


class JsonProblem(ValueError):
    """``data`` is not a JSON document within :class:`JsonLimits`.

    ``detail`` says what is wrong; ``problem`` (the message) says it with "not UTF-8" or "not
    JSON" in front.
    """

    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.detail = detail


def dump_json(value: object) -> bytes:
    """The canonical published form of a document."""
    return (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


#: every byte but the quote and the brackets, deleted by bytes.translate
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_INNERMOST = re.compile(rb"\[\]|\{\}")


def _depth_within(data: bytes, max_depth: int) -> bool:
    """Whether the brackets outside strings in ``data`` nest at most ``max_depth`` levels.

    A cheap pre-scan at C speed (about a sixth of ``json.loads``' time on a large manifest): drop
    escaped backslashes and quotes, keep only quotes and brackets, drop the brackets inside
    strings, then strip innermost bracket pairs ``max_depth`` times. Where ``data`` is not JSON
    the answer may be wrong, but never ``True`` for a prefix that ``json.loads`` would parse
    deeper: up to its first error, a string found here is a string it finds.
    """
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = data.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in marks:
        marks = b"".join(marks.split(b'"')[::2])
    left = marks
    for _ in range(max_depth):
        if not left:
            return True
        shorter = _INNERMOST.sub(b"", left)  # one pass: pairs it exposes wait for the next
        if len(shorter) == len(left):
            break  # unbalanced or mismatched: no longer a question of depth
        left = shorter
    if not left:
        return True
    # Left over: too deep, or not JSON. Measure the depth exactly (rare, so a Python loop).
    depth = deepest = 0
    for byte in marks:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest <= max_depth


def parse_json(
    data: bytes,
    limits: JsonLimits = DEFAULT_JSON_LIMITS,
    *,
    parse_int: Callable[[str], Any] = int,
    **hooks: Any,
) -> Any:
    """The JSON value in ``data`` (UTF-8); ``parse_int`` and ``hooks`` go to ``json.loads``.

    Raises :class:`JsonProblem` for bytes that are not UTF-8, not JSON, nest deeper than
    ``limits.max_depth``, hold an integer of more than ``limits.max_int_digits`` digits or a
    NaN/Infinity; a hook's ``ValueError`` passes as one too. Costs one pre-scan and one parse.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise JsonProblem(f"not UTF-8 ({e})", str(e)) from e
    too_deep = f"nested deeper than {limits.max_depth} levels"
    if not _depth_within(data, limits.max_depth):
        raise JsonProblem(f"not JSON: {too_deep}", too_deep)
    max_digits = limits.max_int_digits

    def bounded_int(digits: str) -> Any:
        if len(digits.lstrip("-")) > max_digits:
            detail = f"an integer of more than {max_digits} digits"
            raise JsonProblem(f"not JSON: {detail}", detail)
        return parse_int(digits)

    hooks.setdefault("parse_constant", _no_constant)
    try:
        return json.loads(text, parse_int=bounded_int, **hooks)
    except JsonProblem:
        raise
    except RecursionError as e:  # a backstop: the pre-scan keeps documents far from the limit
        raise JsonProblem(f"not JSON: {too_deep}", too_deep) from e
    except ValueError as e:  # json.JSONDecodeError is one
        raise JsonProblem(f"not JSON ({e})", str(e)) from e


def _no_constant(text: str) -> Any:
    detail = f"{text} is not a JSON value"
    raise JsonProblem(f"not JSON: {detail}", detail)


def load_json_object(
    data: bytes, fail: Callable[[str], NoReturn], limits: JsonLimits = DEFAULT_JSON_LIMITS
) -> dict[str, Any]:
    """Parse ``data`` as a JSON object (see :func:`parse_json`); calls ``fail(problem)`` (which
    raises) otherwise."""
    try:
        value = parse_json(data, limits)
    except JsonProblem as e:
        fail(f"not UTF-8 JSON ({e.detail})")
    if not isinstance(value, dict):
        fail("not a JSON object")
    return value


class Fields:
    """Typed access to a JSON object's fields; ``fail(problem)`` raises the caller's error type."""

    def __init__(self, obj: dict[str, Any], where: str, fail: Callable[[str], NoReturn]) -> None:
        self.obj = obj
        self.where = where
        self._fail = fail

    def fail(self, field: str, problem: str) -> NoReturn:
        self._fail(f"{self.where}{field}: {problem}")

    def get(self, field: str, kind: type[T], default: T | None = None) -> T:
        """The field's value, checked to be ``kind``; ``default`` when absent (if given)."""
        if field not in self.obj:
            if default is not None:
                return default
            self.fail(field, "missing")
        value = self.obj[field]
        # bool is an int in Python; a JSON true is never a valid size or mode
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(field, f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    def sub(self, field: str) -> Fields:
        """The field as a nested object."""
        return Fields(self.get(field, dict), f"{self.where}{field}.", self._fail)

    def parse(self, field: str, parser: Callable[[str], T], default: str | None = None) -> T:
        """The field's string value passed through ``parser`` (which raises ``ValueError``)."""
        text = self.get(field, str, default)
        try:
            return parser(text)
        except ValueError as e:
            self.fail(field, str(e))
