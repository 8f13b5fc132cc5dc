"""Running a program to completion: how a self-update tries a new steppatch before installing it."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence

from steppatch import _record as record
from steppatch.errors import LocalEnvironmentError

__all__ = ["ProgramResult", "run_program"]


@record.frozen
class ProgramResult:
    """A finished program: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def run_program(argv: Sequence[str], env: Mapping[str, str], timeout: float) -> ProgramResult:
    """Run ``argv`` with ``env`` and no input, its output captured, for at most ``timeout`` s.

    Raises :class:`LocalEnvironmentError` when it cannot be started or does not finish in time
    (it is killed then).
    """
    try:
        done = subprocess.run(
            list(argv), env=dict(env), stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise LocalEnvironmentError(
            f"{argv[0]} {' '.join(argv[1:3])} did not finish in {timeout:g} s"
        ) from None
    except OSError as e:
        raise LocalEnvironmentError(f"cannot run {argv[0]}: {e.strerror or e}") from e
    return ProgramResult(done.returncode, done.stdout, done.stderr)
