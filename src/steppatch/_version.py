"""The distribution's version: the one place it is written (pyproject.toml reads it from here),
so ``steppatch --version`` needs no scan of installed distributions (importlib.metadata)."""

__version__ = "0.1.0.dev0"
