"""Parsing of option values that the library takes as typed values, and options shared by
several command modules."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from steppatch.errors import InputError

if TYPE_CHECKING:
    from steppatch.plan import SyncMode

__all__ = ["KeysOption", "SyncModeName", "parse_expiry", "rewrite_enroll_alias"]


class SyncModeName(StrEnum):
    """``--syncmode``'s choices: the values of :class:`steppatch.plan.SyncMode`, named here so
    that building the command line does not import the planner (a test keeps them equal)."""

    KEEP = "keep"
    DELETE = "delete"

    @property
    def mode(self) -> SyncMode:
        from steppatch.plan import SyncMode

        return SyncMode(self.value)

#: ``--keys``: every release-side command that signs takes it
KeysOption = Annotated[
    Path | None,
    typer.Option(
        "--keys",
        help="The signing key directory (default: DIR.keys beside the repository).",
    ),
]

_DURATION = re.compile(r"(\d+)([dhm])\Z")


def parse_expiry(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``7d``, ``12h``, ``30m`` from now, or an ISO 8601 time (UTC if no zone is given).

    Raises :class:`InputError` for anything else.
    """
    now = now or dt.datetime.now(dt.UTC)
    match = _DURATION.match(text.strip())
    if match:
        amount, unit = int(match[1]), match[2]
        delta = {"d": dt.timedelta(days=amount), "h": dt.timedelta(hours=amount),
                 "m": dt.timedelta(minutes=amount)}[unit]
        return (now + delta).replace(microsecond=0)
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--expires {text!r}: expected 7d, 12h, 30m or an ISO 8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def rewrite_enroll_alias(argv: Sequence[str]) -> list[str]:
    """Turn the manuals' top-level ``--enroll=mirror:NAME:HOST`` into ``enroll --enroll=...``.

    For ``main()``: global options before it (``--home``, ``-v``) stay in front.
    """
    args = list(argv)
    for i, arg in enumerate(args):
        if arg.startswith("--enroll="):
            return [*args[:i], "enroll", arg, *args[i + 1 :]]
        if arg == "--enroll" and i + 1 < len(args):
            return [*args[:i], "enroll", f"--enroll={args[i + 1]}", *args[i + 2 :]]
        if not arg.startswith("-"):
            break  # a command: its options are its own
    return args
