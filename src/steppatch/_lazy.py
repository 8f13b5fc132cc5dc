"""Package attributes imported on first use (PEP 562).

A package's ``__init__`` names what it exports and where each name lives; importing the package
then costs nothing more, and ``steppatch.transport.HttpsFetcher`` imports ``requests`` only when it
is first used. Start-up is a feature: a command that reads local files never pays for the network
stack, the server or the terminal renderer.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["attach"]


def attach(
    package: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose ``exports`` map a module (absolute,
    or relative to ``package``) to the names it provides. The first access imports the module
    and keeps the value in the package, so later accesses are plain lookups. Raises
    ``AttributeError`` for a name that is not exported."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
