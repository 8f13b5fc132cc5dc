"""Run the CLI as a user does: a subprocess, its exit code, its stdout and stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest


@attrs.frozen
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def run(tmp_path: Path, home: Path) -> Run:
    """``run("status", "--json")``: the CLI with STEPPATCH_HOME set to ``home``."""

    def run(*args: str | Path, expect: int | None = 0, cwd: Path | None = None) -> Result:
        env = {**os.environ, "STEPPATCH_HOME": str(home), "COLUMNS": "200"}
        done = subprocess.run(
            [sys.executable, "-m", "steppatch_cli", *map(str, args)],
            capture_output=True, text=True, env=env, cwd=cwd or tmp_path, timeout=120,
            check=False,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        if expect is not None:
            assert result.code == expect, result
        return result

    return run
