"""A foothold, built once per session with the CLI, runs steppatch on a host that has only Python:
a new virtual environment without pip or packages, no package index, no pip cache.

Real processes, a real disk, SIGKILL during the first run.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from steppatch.foothold import read_foothold
from steppatch.foothold._bootstrap import ARCHIVE_WHEELS, ENV_MARKER
from tests.conftest import EXAMPLES
from tests.foothold_helpers import Built, clean_python, offline_env, session_foothold


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return session_foothold(tmp_path_factory)


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clean_python(tmp_path_factory)


def test_build_prints_its_size_and_contents(built: Built) -> None:
    info = read_foothold(built.pyz)
    assert f"({built.pyz.stat().st_size} bytes)" in built.output
    zipped = {d["name"] for d in info["zipped"]}
    wheels = {w["name"] for w in info["wheels"]}
    # The project and its pure dependencies import from the archive ...
    assert {"steppatch", "attrs", "packaging", "requests", "typer", "rich"} <= zipped
    # ... compiled ones travel as wheels, the running platform's and the one given.
    assert {"cryptography", "cffi", "aiohttp"} <= wheels
    assert not zipped & wheels
    assert built.extra_wheel in {w["file"] for w in info["wheels"]}
    assert f"skipped {built.skipped_wheel}" in built.output
    for name in ("cryptography", "steppatch", "zipped,"):
        assert name in built.output
    with zipfile.ZipFile(built.pyz) as z:
        names = z.namelist()
    assert "__main__.py" in names and "steppatch/updater.pyc" in names
    assert not [n for n in names if n.endswith(".so") and not n.startswith(ARCHIVE_WHEELS)]


def test_the_demo_runs_through_the_foothold_in_a_clean_venv_without_an_index(
    built: Built, python: Path, tmp_path: Path
) -> None:
    envs = tmp_path / "envs"
    env = offline_env(
        tmp_path, STEPPATCH_FOOTHOLD_ENVS=str(envs), STEPPATCH_CMD=f"{python} {built.pyz}"
    )
    probe = subprocess.run(
        [python, "-c", "import cryptography"], env=env, capture_output=True, check=False
    )
    assert probe.returncode != 0, "the clean environment must not hold steppatch's dependencies"
    done = subprocess.run(
        [python, str(EXAMPLES / "demo.py"), str(tmp_path / "demo")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Demo finished" in done.stdout
    assert "version solving failed" in done.stderr
    # The compiled wheels were installed once, for this host only, into the private environment.
    assert done.stderr.count("first run of foothold") == 1
    [made] = list(envs.iterdir())
    assert (made / ENV_MARKER).is_file()
    site = made / "site-packages"
    assert (site / "cryptography").is_dir()
    assert "aarch64 only" not in (site / "cffi" / "__init__.py").read_text()


def test_a_first_run_killed_half_way_leaves_nothing_half_made(
    built: Built, python: Path, tmp_path: Path
) -> None:
    envs = tmp_path / "envs"
    env = offline_env(tmp_path, STEPPATCH_FOOTHOLD_ENVS=str(envs))
    argv = [str(python), str(built.pyz), "foothold", "info", "--json"]
    started = time.monotonic()
    subprocess.run(argv, env=env, capture_output=True, check=True, timeout=120)
    duration = time.monotonic() - started
    rng = random.Random(20261122)
    for _attempt in range(2):
        shutil.rmtree(envs, ignore_errors=True)
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.1, duration))
        proc.kill()
        proc.wait()
        for entry in envs.iterdir() if envs.exists() else []:
            assert entry.name.startswith(".tmp-") or (entry / ENV_MARKER).is_file(), entry
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["foothold"]["build"] == read_foothold(built.pyz)["build"]


def test_a_foothold_with_a_damaged_wheel_does_not_run(
    built: Built, python: Path, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged.pyz"
    shutil.copyfile(built.pyz, damaged)
    with zipfile.ZipFile(damaged) as z:
        wheel = next(i for i in z.infolist() if i.filename.startswith(ARCHIVE_WHEELS))
    # Wheels are stored uncompressed: flip one byte of one in place.
    with open(damaged, "r+b") as f:
        f.seek(wheel.header_offset + 26)
        header = f.read(4)
        start = wheel.header_offset + 30 + int.from_bytes(header[:2], "little") + int.from_bytes(
            header[2:], "little"
        )
        f.seek(start + wheel.compress_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    envs = tmp_path / "envs"
    done = subprocess.run(
        [python, damaged, "foothold", "info"], env=offline_env(tmp_path,
        STEPPATCH_FOOTHOLD_ENVS=str(envs)), capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert done.returncode == 5, done.stderr
    assert wheel.filename.removeprefix(ARCHIVE_WHEELS) in done.stderr
    assert not [p for p in envs.iterdir() if not p.name.startswith(".tmp-")]


def test_a_foothold_rebuilds_itself_byte_for_byte(
    built: Built, python: Path, tmp_path: Path
) -> None:
    """What an installed tool does for 'repo add-self': no pip, no index, every platform's
    wheels carried over, and the same bytes (so republishing a version is a no-op)."""
    again = tmp_path / "again.pyz"
    done = subprocess.run(
        [python, built.pyz, "foothold", "build", again, "--json"],
        env=offline_env(tmp_path, STEPPATCH_FOOTHOLD_ENVS=str(tmp_path / "envs")),
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert built.extra_wheel in {p["detail"] for p in json.loads(done.stdout)["parts"]}
    assert again.read_bytes() == built.pyz.read_bytes()
