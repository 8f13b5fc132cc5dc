"""Fixtures shared by every test layer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
COMPONENTS = EXAMPLES / "components"


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """A private copy of the example component sources, free to modify."""
    dest = tmp_path / "sources"
    shutil.copytree(COMPONENTS, dest, symlinks=True)
    return dest
