"""The errors of building and running a foothold, in the tree of :mod:`steppatch.errors`."""

from __future__ import annotations

from steppatch.errors import InputError, LocalEnvironmentError

__all__ = ["BadWheel", "FootholdError"]


class FootholdError(LocalEnvironmentError):
    """The running environment cannot make (or run) a foothold: a dependency that is not
    installed, an installed file that differs from its RECORD, a module that does not import."""


class BadWheel(InputError):
    """A wheel given with ``--wheels`` cannot be carried; ``path`` names it."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"--wheels {path}: {problem}")
        self.path = path
        self.problem = problem
