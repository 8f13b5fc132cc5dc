"""Helpers for the foothold and self-update tests: wheels made by hand, one foothold built per
session, a clean virtual environment, an environment with no route to an index."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import attrs
import pytest

from steppatch.foothold._bootstrap import record_hash

STEPPATCH = [sys.executable, "-m", "steppatch_cli"]


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    tag: str,
    files: dict[str, bytes],
    *,
    record: dict[str, str] | None = None,
) -> Path:
    """A wheel ``name-version-tag.whl`` holding ``files`` plus its dist-info; ``record``
    overrides RECORD hash fields (to make a lying wheel)."""
    info = f"{name}-{version}.dist-info"
    members = dict(files)
    members[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    members[f"{info}/WHEEL"] = f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n".encode()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for member, data in members.items():
        writer.writerow([member, (record or {}).get(member, record_hash(data)), len(data)])
    writer.writerow([f"{info}/RECORD", "", ""])
    members[f"{info}/RECORD"] = buf.getvalue().encode()
    path = directory / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as z:
        for member, data in members.items():
            z.writestr(member, data)
    return path


@attrs.frozen
class Built:
    """The session's foothold: the archive, what ``foothold build`` printed, the extra wheel."""

    pyz: Path
    output: str
    extra_wheel: str
    skipped_wheel: str


_BUILT: dict[str, Built] = {}


def session_foothold(factory: pytest.TempPathFactory) -> Built:
    """Build one foothold per test session with the CLI, as an operator would, adding a wheel
    for another platform (cffi for aarch64) and one it must skip (a pure distribution)."""
    if "pyz" not in _BUILT:
        import cffi  # type: ignore[import-untyped]

        root = factory.mktemp("foothold")
        extra = root / "extra-wheels"
        extra.mkdir()
        other = make_wheel(
            extra, "cffi", cffi.__version__, "cp311-cp311-manylinux_2_17_aarch64",
            {"cffi/__init__.py": b"raise ImportError('aarch64 only')\n"},
        )
        skipped = make_wheel(extra, "unrelated", "1.0", "py3-none-any", {"unrelated.py": b""})
        pyz = root / "steppatch.pyz"
        done = subprocess.run(
            [*STEPPATCH, "foothold", "build", str(pyz), "--wheels", str(extra)],
            capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        _BUILT["pyz"] = Built(pyz, done.stdout + done.stderr, other.name, skipped.name)
    return _BUILT["pyz"]


_VENV: dict[str, Path] = {}


def clean_python(factory: pytest.TempPathFactory) -> Path:
    """The python of a new virtual environment without pip or any package (one per session)."""
    if "python" not in _VENV:
        venv = factory.mktemp("clean") / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        _VENV["python"] = venv / "bin" / "python"
    return _VENV["python"]


def offline_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a host that has no package index: pip may not reach one or use a
    cache, no virtual environment or PYTHONPATH leaks in, HOME is empty."""
    env = {
        k: v for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "STEPPATCH_TEST_KILL_AT", "STEPPATCH_HOME",
                     "STEPPATCH_TOOL_HOME", "STEPPATCH_FOOTHOLD_ENVS", "STEPPATCH_CMD")
    }
    home = tmp / "user-home"
    home.mkdir(exist_ok=True)
    env.update(PIP_NO_INDEX="1", PIP_NO_CACHE_DIR="1", HOME=str(home),
               XDG_CACHE_HOME=str(home / ".cache"), COLUMNS="200")
    env.update(extra)
    return env
