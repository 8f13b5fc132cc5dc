"""The run's global options (``--home``, ``-v``), passed down in Typer's context, not kept in a
module: the root callback stores one frozen :class:`CliOptions` as ``ctx.obj``; commands read it
through the ``ctx`` they are given.

A NamedTuple, not an attrs class: the CLI defines no attrs classes at import (start-up).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    # typer's own click (typer.Context is one): the plain `click` is not loaded by typer
    from typer._click import Context

    from steppatch.pipeline import Progress
    from steppatch.updater import Home

__all__ = ["CliOptions", "home_opener", "home_path", "open_home", "options"]


class CliOptions(NamedTuple):
    """The root options of one run."""

    #: ``--home`` (``None``: ``$STEPPATCH_HOME``, else the current directory)
    home: Path | None = None
    #: ``-v``: a traceback with an error
    verbose: bool = False


def options(ctx: Context) -> CliOptions:
    """The options of the run ``ctx`` belongs to (the defaults before the root callback ran)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliOptions) else CliOptions()


def home_path(ctx: Context) -> Path:
    """The home the run works on (:func:`steppatch.home.home_path`)."""
    from steppatch.home import home_path

    return home_path(options(ctx).home)


def open_home(ctx: Context, progress: Progress | None = None) -> Home:
    """The run's home, opened (:meth:`steppatch.Home.open`)."""
    from steppatch.home._where import require_home

    # outside a home, say so before loading the library's home facade (start-up)
    path = require_home(home_path(ctx))
    from steppatch.updater import Home

    return Home.open(path, progress=progress)


def home_opener(ctx: Context, progress: Progress | None = None) -> Callable[[], Home]:
    """``open_home`` for :mod:`steppatch.commands`: opens the run's home when called."""
    return lambda: open_home(ctx, progress)
