"""Reading TOML from outside: every failure of ``tomllib`` as one error type.

``tomllib.loads`` raises more than ``TOMLDecodeError``: ``RecursionError`` for deeply nested
arrays or inline tables, and ``ValueError`` for an integer of more digits than Python's
``int_max_str_digits``. Callers catch :class:`TomlProblem` and raise their own typed error.
"""

from __future__ import annotations

import tomllib
from typing import Any

__all__ = ["TomlProblem", "parse_toml"]


class TomlProblem(ValueError):
    """``data`` is not a UTF-8 TOML document; ``problem`` says why."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def parse_toml(data: bytes) -> dict[str, Any]:
    """The table in ``data``. Raises :class:`TomlProblem` (``not valid TOML: ...``)."""
    try:
        return tomllib.loads(data.decode("utf-8"))
    except RecursionError as e:
        raise TomlProblem("not valid TOML: nested too deeply") from e
    except (UnicodeDecodeError, ValueError) as e:  # tomllib.TOMLDecodeError is a ValueError
        raise TomlProblem(f"not valid TOML: {e}") from e
