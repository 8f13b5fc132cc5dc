"""The README's demo and the docs/api.md script run, and finish in time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import EXAMPLES


def test_demo_runs_in_under_a_minute(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - started < 60
    assert "Demo finished" in done.stdout
    assert "version solving failed" in done.stderr
    assert "Switched 2 node(s): app1, app2" in done.stdout  # the cluster moved together


def test_api_script_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "api_demo.py"), str(tmp_path / "api")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "restored:" in done.stdout
    assert "refused, as it must be" in done.stdout
