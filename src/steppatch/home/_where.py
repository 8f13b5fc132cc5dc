"""Which home a command works on, when it is not named: a module of its own so that finding the
home loads nothing else (start-up)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from steppatch.errors import HomeError
from steppatch.paths import CONFIG_NAME, STATE_DIR

__all__ = ["HOME_ENV", "home_path", "require_home"]

#: the environment variable naming the home (set by the home's service commands too)
HOME_ENV = "STEPPATCH_HOME"


def home_path(given: Path | None, environ: Mapping[str, str] = os.environ) -> Path:
    """The home a command works on: ``given`` (``--home``), else ``$STEPPATCH_HOME``, else the
    current directory."""
    if given is not None:
        return given
    env = environ.get(HOME_ENV)
    return Path(env) if env else Path.cwd()


def require_home(root: Path) -> Path:
    """``root`` made absolute, if it is a home (its state directory and config file exist).

    The one test of "is this a home" (:meth:`~steppatch.home.HomeDir.open` runs it; the CLI runs
    it before loading the rest of the library, so a command outside a home says so at once).
    Raises :class:`~steppatch.errors.HomeError` if not.
    """
    root = root.absolute()
    if not (root / STATE_DIR).is_dir() or not (root / CONFIG_NAME).is_file():
        raise HomeError(str(root), "not a steppatch home (run 'steppatch init' there first)")
    return root
