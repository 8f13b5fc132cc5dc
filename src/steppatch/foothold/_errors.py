"""The errors of building and running a foothold, in the tree of :mod:`steppatch.errors`."""

from __future__ import annotations

from steppatch.errors import InputError, LocalEnvironmentError
from steppatch.foothold._bootstrap import describe_drift

__all__ = ["BadFootholdInfo", "BadWheel", "EnvironmentDrift", "FootholdError"]


class FootholdError(LocalEnvironmentError):
    """The running environment cannot make (or run) a foothold: a dependency that is not
    installed, an installed file that differs from its RECORD, a module that does not import."""


class BadWheel(InputError):
    """A wheel given with ``--wheels`` cannot be carried; ``path`` names it."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"--wheels {path}: {problem}")
        self.path = path
        self.problem = problem


class EnvironmentDrift(FootholdError):
    """The foothold's private environment ``env`` differs from the record written when it was
    installed: ``drift`` holds ``(path, kind)`` pairs, paths relative to ``env``, ``kind`` one of
    ``changed``, ``missing``, ``extra`` or ``record`` (no readable record)."""

    def __init__(self, env: str, drift: tuple[tuple[str, str], ...]) -> None:
        super().__init__(
            f"the private environment {env} differs from its record: {len(drift)} file(s): "
            f"{describe_drift(drift)}; delete it to have the next start install it again"
        )
        self.env = env
        self.drift = drift


class BadFootholdInfo(FootholdError):
    """A ``steppatch-foothold-info/1`` document (what ``foothold info --json`` prints) that cannot
    be read: ``source`` names it, ``problem`` says why."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: not a foothold description: {problem}")
        self.source = source
        self.problem = problem
