"""A foothold, built once per session with the CLI, runs steppatch on a host that has only Python:
a new virtual environment without pip or packages, no package index, no pip cache.

Real processes, a real disk, SIGKILL during the first run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from steppatch.foothold import read_foothold
from steppatch.foothold._bootstrap import (
    ARCHIVE_WHEELS,
    ENV_MARKER,
    ENV_RECORD,
    env_drift,
    read_env_record,
)
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


# --- the private environment as recorded ----------------------------------------------------------


def _first_run(
    built: Built, python: Path, tmp_path: Path
) -> tuple[list[str], dict[str, str], Path]:
    """Run the foothold once (installing its private environment); return the command line of
    ``foothold info --check``, its environment and the private environment's directory."""
    env = offline_env(tmp_path, STEPPATCH_FOOTHOLD_ENVS=str(tmp_path / "envs"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as on a host: the interpreter may write bytecode
    argv = [str(python), str(built.pyz), "foothold", "info", "--check"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    [made] = (tmp_path / "envs").iterdir()
    return argv, env, made


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_importing_leaves_the_private_environment_as_recorded(
    built: Built, python: Path, tmp_path: Path
) -> None:
    argv, env, made = _first_run(built, python, tmp_path)
    recorded = read_env_record(str(made))
    assert recorded is not None and env_drift(str(made), hashes=True) == []
    # Every module was imported (--check), yet no bytecode was written beside the recorded one.
    assert set(_files(made)) == {*recorded[0], ENV_RECORD}
    done = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and "differs" not in done.stderr, done.stderr
    assert json.loads(done.stdout)["check"]["files"] == len(recorded[0])
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert f"check: {len(recorded[0])} files as recorded, " in done.stdout, done.stderr


def test_a_changed_file_of_the_private_environment_is_not_run(
    built: Built, python: Path, tmp_path: Path
) -> None:
    argv, env, made = _first_run(built, python, tmp_path)
    site = made / "site-packages"
    pristine = _files(made)
    ran = tmp_path / "ran"
    module = site / "cryptography" / "__init__.py"
    with module.open("a") as f:
        f.write(f"\nopen({str(ran)!r}, 'w').close()\n")
    for cached in (site / "cryptography" / "__pycache__").glob("__init__.*.pyc"):
        cached.unlink()  # so that an import would compile and run the source
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert f"the private environment {made} differs from its record" in done.stderr
    assert "site-packages/cryptography/__init__.py changed" in done.stderr
    assert "installing it again from this foothold's wheels" in done.stderr
    assert not ran.exists()
    now = _files(made)
    now.pop(ENV_RECORD), pristine.pop(ENV_RECORD)
    assert now == pristine
    assert [p.name for p in (tmp_path / "envs").iterdir()] == [made.name]


@pytest.mark.parametrize("name", ["evil.pth", "uuid.py"])
def test_a_file_dropped_into_the_private_environment_is_not_run(
    built: Built, python: Path, tmp_path: Path, name: str
) -> None:
    """A ``.pth`` file (code that runs at start from a site directory: the bootstrap puts the
    private environment on ``sys.path`` without processing them, but must not rely on that
    alone) or a module shadowing the standard library's (the private environment comes first
    on ``sys.path``)."""
    argv, env, made = _first_run(built, python, tmp_path)
    ran = tmp_path / "ran"
    code = f"open({str(ran)!r}, 'w').close()"
    (made / "site-packages" / name).write_text(f"import os; {code}\n" if name.endswith(".pth")
                                               else f"{code}\nraise ImportError('shadowed')\n")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert f"site-packages/{name} extra" in done.stderr
    assert not ran.exists()
    assert not (made / "site-packages" / name).exists()
    assert env_drift(str(made), hashes=True) == []


def test_foothold_info_check_finds_a_change_that_keeps_size_and_mtime(
    built: Built, python: Path, tmp_path: Path
) -> None:
    argv, env, made = _first_run(built, python, tmp_path)
    about = made / "site-packages" / "cryptography" / "__about__.py"
    before = about.stat()
    data = about.read_bytes()
    changed = data.replace(b"__version__", b"__versi0n__", 1)
    assert changed != data and len(changed) == len(data)
    about.write_bytes(changed)
    os.utime(about, ns=(before.st_atime_ns, before.st_mtime_ns))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 5, done.stdout + done.stderr
    assert "changed: site-packages/cryptography/__about__.py" in done.stderr
    assert f"error: the private environment {made} differs from its record: 1 file(s)" in (
        done.stderr
    )
    assert about.read_bytes() == changed  # reported, not repaired: the operator decides
