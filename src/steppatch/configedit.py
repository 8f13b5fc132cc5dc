"""Edits of a home's config as pure functions, ``HomeConfig -> HomeConfig``.

Each one returns the edited value or raises :class:`~steppatch.errors.InputError` saying why the
edit does not apply; none reads or writes a file. :meth:`steppatch.home.HomeDir.edit_config` is
the one locked edit that applies them to ``steppatch.toml``.
"""

from __future__ import annotations

from steppatch import _record as record
from steppatch.config import HomeConfig, MirrorEntry, NodeEntry, check_node_name, parse_location
from steppatch.errors import InputError

__all__ = ["add_mirror", "add_node", "name_node", "remove_mirror", "remove_node", "select_mirror"]


def add_mirror(config: HomeConfig, mirror: MirrorEntry) -> HomeConfig:
    """``config`` with ``mirror`` listed. Raises :class:`InputError` if its id is taken."""
    if any(m.id == mirror.id for m in config.mirrors):
        raise InputError(f"a mirror with id {mirror.id!r} exists already")
    return record.evolve(config, mirrors=(*config.mirrors, mirror))


def remove_mirror(config: HomeConfig, mirror_id: str) -> HomeConfig:
    """``config`` without mirror ``mirror_id``; if it was the selected one, the mirror of the
    highest priority left is selected. Raises :class:`InputError` for an unknown id or the last
    mirror."""
    kept = tuple(m for m in config.mirrors if m.id != mirror_id)
    if len(kept) == len(config.mirrors):
        raise InputError(f"no mirror with id {mirror_id!r}")
    if not kept:
        raise InputError("the last mirror cannot be removed (add another first)")
    updates = config.updates
    if not any(m.url == updates for m in kept):
        updates = max(kept, key=lambda m: m.priority).url
    return record.evolve(config, mirrors=kept, updates=updates)


def select_mirror(config: HomeConfig, url: str) -> HomeConfig:
    """``config`` with ``url`` the mirror tried first; a URL not listed yet is added with
    priority 0 under the first free id ``mirrorN``."""
    mirrors = config.mirrors
    if not any(m.url == url for m in mirrors):
        taken = {m.id for m in mirrors}
        new_id = next(f"mirror{i}" for i in range(1, len(taken) + 2) if f"mirror{i}" not in taken)
        mirrors = (*mirrors, MirrorEntry(new_id, url, 0))
    return record.evolve(config, updates=url, mirrors=mirrors)


def add_node(config: HomeConfig, node: NodeEntry) -> HomeConfig:
    """``config`` with another node of the cluster. Raises :class:`InputError` for a bad name
    or location, a name taken (this node's included) or a location listed already. (Whether a
    local location is this home itself is for the caller to check: it reads the disk.)"""
    check_node_name(node.name)
    location = parse_location(node.location)
    if node.name == config.node or any(n.name == node.name for n in config.nodes):
        raise InputError(f"a node named {node.name!r} exists already")
    if any(parse_location(n.location) == location for n in config.nodes):
        raise InputError(f"{location} is listed already")
    return record.evolve(config, nodes=(*config.nodes, node))


def remove_node(config: HomeConfig, name: str) -> HomeConfig:
    """``config`` without node ``name``. Raises :class:`InputError` for an unknown one."""
    kept = tuple(n for n in config.nodes if n.name != name)
    if len(kept) == len(config.nodes):
        raise InputError(f"no node named {name!r}")
    return record.evolve(config, nodes=kept)


def name_node(config: HomeConfig, name: str) -> HomeConfig:
    """``config`` with this node named ``name``. Raises :class:`InputError` for a bad name or
    one another node has."""
    check_node_name(name)
    if any(n.name == name for n in config.nodes):
        raise InputError(f"another node is named {name!r}")
    return record.evolve(config, node=name)
