"""The solver's view of a repository: which versions a component has, and what each depends on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from packaging.specifiers import SpecifierSet
from packaging.version import Version

__all__ = ["DictIndex", "PackageIndex"]


class PackageIndex(Protocol):
    """What the solver asks a repository. Implementations may do I/O; the solver does none itself.

    The solver calls ``versions`` once per component name it meets, and ``dependencies`` at most
    once per component version it considers (it caches both), so an index need not cache. It
    considers versions it does not select: the neighbours of a version, to merge adjacent
    versions with equal dependencies, and, once a component is ruled out, the adjacent versions
    of a depender that depend on it too.
    """

    def versions(self, name: str) -> Sequence[Version]:
        """Every published version of ``name``, in any order; empty for an unknown name."""
        ...

    def dependencies(self, name: str, version: Version) -> Mapping[str, SpecifierSet]:
        """The dependency ranges of one version of ``name``: component name -> specifier set."""
        ...


class DictIndex:
    """An in-memory :class:`PackageIndex` built from plain data.

    ``DictIndex({"restapi": {"7.0.40": {"step-core": ">=9.0,<10"}}, "step-core": {"9.0.0": {}}})``
    maps component name -> version string -> dependency name -> specifier string (or a parsed
    :class:`~packaging.specifiers.SpecifierSet`). Everything is parsed once, here.

    Raises :class:`packaging.version.InvalidVersion` or
    :class:`packaging.specifiers.InvalidSpecifier` (both ``ValueError``) on bad input. Costs one
    parse per version and per dependency.
    """

    def __init__(
        self,
        data: Mapping[str, Mapping[str, Mapping[str, str | SpecifierSet]]],
    ) -> None:
        self._versions: dict[str, tuple[Version, ...]] = {}
        self._deps: dict[tuple[str, Version], dict[str, SpecifierSet]] = {}
        # Equal specifier strings share one parsed object: parsing is the costly part, and the
        # solver caches its work per specifier set.
        parsed: dict[str, SpecifierSet] = {}
        for name, versions in data.items():
            vs: list[Version] = []
            for raw_version, deps in versions.items():
                version = Version(raw_version)
                vs.append(version)
                dep_map: dict[str, SpecifierSet] = {}
                for dep, raw_spec in deps.items():
                    if isinstance(raw_spec, SpecifierSet):
                        dep_map[dep] = raw_spec
                    else:
                        spec = parsed.get(raw_spec)
                        if spec is None:
                            spec = parsed[raw_spec] = SpecifierSet(raw_spec)
                        dep_map[dep] = spec
                self._deps[(name, version)] = dep_map
            self._versions[name] = tuple(vs)

    def versions(self, name: str) -> Sequence[Version]:
        """The versions of ``name`` in insertion order; empty for an unknown name. O(1)."""
        return self._versions.get(name, ())

    def dependencies(self, name: str, version: Version) -> Mapping[str, SpecifierSet]:
        """The dependencies of ``name`` ``version``; ``KeyError`` for an unknown one. O(1)."""
        try:
            return self._deps[(name, version)]
        except KeyError:
            raise KeyError(f"{name} {version} is not in this index") from None

    def names(self) -> tuple[str, ...]:
        """Every component name, in insertion order."""
        return tuple(self._versions)

    def __repr__(self) -> str:
        return f"<DictIndex of {len(self._versions)} components, {len(self._deps)} versions>"
