"""steppatch: component-wise patching of server installations.

The public API. A script does what the CLI does::

    from steppatch import Home, Repository
    repo = Repository.init("repo")
    repo.add("examples/components/step-core-9.0.0")
    home = Home.init("home", updates=repo.root.absolute().as_uri())
    plan = home.apply(["to:step-core/latest.spr"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from steppatch._lazy import attach

if TYPE_CHECKING:
    from steppatch._record import evolve
    from steppatch.errors import (
        InputError,
        IntegrityError,
        LocalEnvironmentError,
        NetworkError,
        RepositoryError,
        ResolutionImpossible,
        SteppatchError,
    )
    from steppatch.limits import DEFAULT_LIMITS, Limits
    from steppatch.model import (
        ComponentVersion,
        FileEntry,
        HomeState,
        Manifest,
        Recipe,
        RecipeKind,
        RepositoryIndex,
    )
    from steppatch.plan import ComponentChange, Plan
    from steppatch.recipe import dump_recipe, parse_recipe
    from steppatch.repo import Repository
    from steppatch.solver import DictIndex, PackageIndex, solve
    from steppatch.updater import Home, Update

__getattr__, __dir__ = attach(
    __name__,
    {
        "steppatch._record": ("evolve",),
        "steppatch.errors": (
            "InputError",
            "IntegrityError",
            "LocalEnvironmentError",
            "NetworkError",
            "RepositoryError",
            "ResolutionImpossible",
            "SteppatchError",
        ),
        "steppatch.limits": ("DEFAULT_LIMITS", "Limits"),
        "steppatch.model": (
            "ComponentVersion",
            "FileEntry",
            "HomeState",
            "Manifest",
            "Recipe",
            "RecipeKind",
            "RepositoryIndex",
        ),
        "steppatch.plan": ("ComponentChange", "Plan"),
        "steppatch.recipe": ("dump_recipe", "parse_recipe"),
        "steppatch.repo": ("Repository",),
        "steppatch.solver": ("DictIndex", "PackageIndex", "solve"),
        "steppatch.updater": ("Home", "Update"),
    },
)

__all__ = [
    "DEFAULT_LIMITS",
    "ComponentChange",
    "ComponentVersion",
    "DictIndex",
    "FileEntry",
    "Home",
    "HomeState",
    "InputError",
    "IntegrityError",
    "Limits",
    "LocalEnvironmentError",
    "Manifest",
    "NetworkError",
    "PackageIndex",
    "Plan",
    "Recipe",
    "RecipeKind",
    "Repository",
    "RepositoryError",
    "RepositoryIndex",
    "ResolutionImpossible",
    "SteppatchError",
    "Update",
    "dump_recipe",
    "evolve",
    "parse_recipe",
    "solve",
]
