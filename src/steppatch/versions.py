"""Component names, versions and requirements, parsed at the boundary.

Versions are PEP 440 (:class:`packaging.version.Version`); ranges are :class:`SpecifierSet`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from packaging.version import Version

if TYPE_CHECKING:
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

__all__ = [
    "NAME_PATTERN",
    "Requirement",
    "SpecifierSet",
    "Version",
    "is_valid_name",
    "major_minor",
    "parse_pin",
    "parse_requirement",
    "parse_specifier",
    "parse_version",
]



def __getattr__(name: str) -> object:
    # packaging.requirements brings the marker grammar: a third of the library's import, and
    # only the solver and the CLI's pins parse requirements. packaging.specifiers compiles its
    # grammar too: it loads with the first range parsed (`status` of a home parses none).
    if name == "Requirement":
        from packaging.requirements import Requirement

        return Requirement
    if name == "SpecifierSet":
        from packaging.specifiers import SpecifierSet

        return SpecifierSet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: a component name: lowercase letters, digits and '-', starting with a letter or digit
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*\Z")


def is_valid_name(name: str) -> bool:
    """Whether ``name`` is a valid component name."""
    return bool(NAME_PATTERN.match(name)) and len(name) <= 128


def parse_version(text: str) -> Version:
    """Parse a PEP 440 version. Raises ``ValueError`` (``InvalidVersion``) on bad input."""
    return Version(text)


def parse_specifier(text: str) -> SpecifierSet:
    """Parse a PEP 440 specifier set. Raises ``ValueError`` (``InvalidSpecifier``) on bad input."""
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(text)


def parse_requirement(text: str) -> Requirement:
    """Parse ``NAME[SPECIFIER]``; extras, URLs and markers are refused.

    Raises ``ValueError`` naming what is wrong.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(text)
    except InvalidRequirement as e:
        raise ValueError(f"invalid requirement {text!r}: {e}") from e
    if req.extras or req.url or req.marker:
        raise ValueError(f"invalid requirement {text!r}: extras, URLs and markers are not allowed")
    if not is_valid_name(req.name):
        raise ValueError(
            f"invalid requirement {text!r}: a component name is lowercase letters, digits and '-'"
        )
    return req


def parse_pin(text: str) -> tuple[str, Version]:
    """``NAME==VERSION`` (one exact version, no wildcard) -> ``(NAME, VERSION)``.

    Raises ``ValueError`` naming what is wrong (what :func:`parse_requirement` refuses, or
    ``expected NAME==VERSION`` for any other specifier).
    """
    req = parse_requirement(text)
    specs = list(req.specifier)
    if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
        raise ValueError("expected NAME==VERSION")
    return req.name, Version(specs[0].version)


def major_minor(version: Version) -> str:
    """``7.0`` for ``7.0.40``: the folder a component recipe is published under."""
    release = (*version.release, 0)
    return f"{release[0]}.{release[1]}"

