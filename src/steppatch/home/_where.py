"""Which home a command works on, when it is not named: a module of its own so that finding the
home loads nothing else (start-up)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["HOME_ENV", "home_path"]

#: the environment variable naming the home (set by the home's service commands too)
HOME_ENV = "STEPPATCH_HOME"


def home_path(given: Path | None, environ: Mapping[str, str] = os.environ) -> Path:
    """The home a command works on: ``given`` (``--home``), else ``$STEPPATCH_HOME``, else the
    current directory."""
    if given is not None:
        return given
    env = environ.get(HOME_ENV)
    return Path(env) if env else Path.cwd()
