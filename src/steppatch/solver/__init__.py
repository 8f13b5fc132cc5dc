"""The dependency solver: PubGrub over a :class:`PackageIndex`, with explained failures.

>>> from steppatch.solver import DictIndex, solve
>>> index = DictIndex({"restapi": {"7.0.40": {"step-core": ">=9.0,<10"}},
...                    "step-core": {"9.0.0": {}, "9.0.5": {}}})
>>> solve(["restapi>=7.0"], index)
{'restapi': <Version('7.0.40')>, 'step-core': <Version('9.0.5')>}

A failure raises :class:`~steppatch.errors.ResolutionImpossible`; its ``derivation`` is the root
:class:`Incompatibility` of the proof and its ``str()`` the explanation.
"""

from __future__ import annotations

from steppatch.errors import ResolutionImpossible

from ._explain import explain
from ._incompat import (
    Cause,
    ComponentDependency,
    Dependency,
    Derived,
    Incompatibility,
    NoVersions,
    UnknownComponent,
)
from ._index import DictIndex, PackageIndex
from ._solver import SolverLimitExceeded, solve
from ._terms import ROOT, Term

__all__ = [
    "ROOT",
    "Cause",
    "ComponentDependency",
    "Dependency",
    "Derived",
    "DictIndex",
    "Incompatibility",
    "NoVersions",
    "PackageIndex",
    "ResolutionImpossible",
    "SolverLimitExceeded",
    "Term",
    "UnknownComponent",
    "explain",
    "solve",
]
