"""Relative paths that cannot escape their tree (invariant 4: nothing escapes).

Every path that comes from a recipe, a manifest, a reference or an archive goes through
:func:`safe_relpath` before it is joined to a directory; the edges that write files also check the
joined result with :func:`is_within`.
"""

from __future__ import annotations

import posixpath
from pathlib import PurePath, PurePosixPath

from steppatch.errors import UnsafePath

__all__ = ["CONFIG_NAME", "STATE_DIR", "is_within", "link_stays_inside", "safe_relpath"]

#: a home's config file, relative to the home (docs/formats.md): its one owner
CONFIG_NAME = "steppatch.toml"
#: a home's own directory (trees, manifests, cache, metadata, lock), relative to the home
STATE_DIR = ".steppatch"


def safe_relpath(path: str) -> str:
    """Return ``path`` normalised as a relative POSIX path that stays inside its tree.

    Raises :class:`UnsafePath` for an empty, absolute or ``..`` path, a NUL byte, a backslash or a
    ``.`` component (a manifest path must name one entry exactly once).
    """
    if not path or "\0" in path or "\\" in path:
        raise UnsafePath(path, "empty, or contains NUL or a backslash")
    if path.startswith("/"):
        raise UnsafePath(path, "absolute")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafePath(path, "empty, '.' or '..' component")
    return path


def link_stays_inside(link_path: str, target: str) -> bool:
    """Whether a symlink at ``link_path`` (relative to its tree) pointing to ``target`` stays
    inside the tree, judged on the text alone: a cheap first filter for one entry. The text
    cannot tell where ``link/..`` is when ``link`` is itself a symlink; the tree as a whole is
    judged by :func:`steppatch.links.unsafe_links`.
    """
    if not target or target.startswith("/") or "\0" in target:
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(link_path), target))
    return joined != ".." and not joined.startswith("../")


def is_within(root: PurePath | str, candidate: PurePath | str) -> bool:
    """Whether ``candidate`` equals or lies below ``root`` (both already resolved, lexically)."""
    root_p = PurePosixPath(root)
    cand_p = PurePosixPath(candidate)
    return cand_p == root_p or root_p in cand_p.parents
