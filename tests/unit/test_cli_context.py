"""The command line's global options travel in Typer's context (``ctx.obj``), not in a module:
runs in one process do not see each other's ``--home`` or ``-v``; the root group maps errors
to one line and the exit code, with a traceback only under ``-v``. In process (CliRunner)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steppatch.errors import HomeError, InputError
from steppatch_cli import app as cli
from steppatch_cli.context import CliOptions


@pytest.fixture(autouse=True)
def root_logger_kept() -> Iterator[None]:
    """``-v`` configures the root logger (to the run's stderr): put it back for other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.full_app(), list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_an_error_is_one_line_and_its_exit_code_and_v_adds_the_traceback(tmp_path: Path) -> None:
    code, out, err = run("--home", str(tmp_path), "status")
    assert code == HomeError.exit_code == 5
    assert err == (
        f"error: home {tmp_path}: not a steppatch home (run 'steppatch init' there first)\n"
    )
    assert out == ""
    code, _, err = run("-v", "--home", str(tmp_path), "status")
    assert code == 5
    assert err.startswith("Traceback") and "HomeError" in err
    assert err.endswith(
        f"error: home {tmp_path}: not a steppatch home (run 'steppatch init' there first)\n"
    )
    # the next run of the same process is not verbose: nothing was left behind
    code, _, err = run("--home", str(tmp_path), "status")
    assert code == 5 and "Traceback" not in err


def test_home_option_then_environment(tmp_path: Path) -> None:
    env = {"STEPPATCH_HOME": str(tmp_path / "from-env")}
    _, _, err = run("status", env=env)
    assert f"home {tmp_path / 'from-env'}:" in err
    _, _, err = run("--home", str(tmp_path / "given"), "status", env=env)
    assert f"home {tmp_path / 'given'}:" in err
    # and the option of one run is not the next run's home
    _, _, err = run("status", env=env)
    assert f"home {tmp_path / 'from-env'}:" in err


def test_an_input_error_comes_before_the_home_is_opened(tmp_path: Path) -> None:
    code, _, err = run("--home", str(tmp_path), "apply", "--syncmode", "keep", "to:a.spr")
    assert (code, err) == (InputError.exit_code, "error: --syncmode goes with --sync\n")
    assert list(tmp_path.iterdir()) == []


def test_the_options_are_a_frozen_value() -> None:
    options = CliOptions(Path("/h"), True)
    with pytest.raises(AttributeError):
        options.verbose = False  # type: ignore[misc]
