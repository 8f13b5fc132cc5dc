"""Fixtures shared by every test layer."""

from __future__ import annotations

import compileall
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from steppatch import Repository

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
COMPONENTS = EXAMPLES / "components"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Let the CLI subprocesses the tests start use bytecode, as an installed steppatch does.

    With ``PYTHONDONTWRITEBYTECODE`` set (some shells and CI images set it) every one of the
    suite's thousands of ``steppatch`` processes would compile the sources it imports again: a
    quarter of their CPU time. Compiled once here (the controller; workers find it done).
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    if not hasattr(session.config, "workerinput"):
        for package in ("steppatch", "steppatch_cli"):
            compileall.compile_dir(ROOT / "src" / package, quiet=1)


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """A private copy of the example component sources, free to modify."""
    dest = tmp_path / "sources"
    shutil.copytree(COMPONENTS, dest, symlinks=True)
    return dest


@pytest.fixture
def examples_repo(tmp_path: Path, sources: Path) -> Repository:
    """The example components, published in ``tmp_path/repo``."""
    from steppatch import Repository

    repo = Repository.init(tmp_path / "repo")
    for source in sorted(sources.iterdir()):
        repo.add(source)
    return repo


@pytest.fixture
def no_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if it starts a process (for tests that must run with fakes only)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a subprocess was started: {args}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
