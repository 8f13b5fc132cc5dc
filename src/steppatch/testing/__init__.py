"""Test helpers for users' own property tests of component graphs (install ``steppatch[testing]``).

- :mod:`steppatch.testing.strategies`: Hypothesis strategies for universes, requests and
  installed sets (needs ``hypothesis``).
- :mod:`steppatch.testing.checks`: an independent checker of solutions and a brute-force solver
  for tiny universes.
- :mod:`steppatch.testing.registries`: seeded random registries, larger than brute force allows.
"""

from __future__ import annotations

from .checks import UniverseData, allows, brute_force, check_solution
from .registries import random_registry
from .strategies import (
    Problem,
    component_names,
    installed_sets,
    problems,
    requirement_lists,
    specifiers,
    universes,
)

__all__ = [
    "Problem",
    "UniverseData",
    "allows",
    "brute_force",
    "check_solution",
    "component_names",
    "installed_sets",
    "problems",
    "random_registry",
    "requirement_lists",
    "specifiers",
    "universes",
]
