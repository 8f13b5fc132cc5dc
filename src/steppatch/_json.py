"""Deterministic JSON, and field access that says exactly what is wrong.

Every document steppatch writes is UTF-8 JSON with sorted keys and two-space indentation, so the
same value always gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

__all__ = ["Fields", "dump_json", "load_json_object"]

T = TypeVar("T")


def dump_json(value: object) -> bytes:
    """The canonical published form of a document."""
    return (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def load_json_object(data: bytes, fail: Callable[[str], NoReturn]) -> dict[str, Any]:
    """Parse ``data`` as a JSON object; calls ``fail(problem)`` (which raises) otherwise."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"not UTF-8 JSON ({e})")
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
