"""A home's configuration file, ``steppatch.toml``: parsed into a value, written back.

Only what the operator sets lives here; what steppatch records (installed versions, trees) is state
and lives under ``.steppatch/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from steppatch import _record as record
from steppatch._toml import TomlProblem, parse_toml
from steppatch.errors import ConfigError, InputError
from steppatch.paths import CONFIG_NAME

__all__ = [
    "CONFIG_NAME",
    "HomeConfig",
    "Location",
    "MirrorEntry",
    "NodeEntry",
    "ServiceConfig",
    "check_node_name",
    "dump_home_config",
    "parse_home_config",
    "parse_location",
]

#: replaced states kept for ``rollback`` by ``steppatch gc`` unless ``keep_history`` says otherwise
DEFAULT_KEEP_HISTORY = 5
GC_MODES = ("auto", "manual")


@record.frozen
class ServiceConfig:
    """Shell commands that stop, start and check the application (empty: none)."""

    start: str = ""
    stop: str = ""
    status: str = ""


@record.frozen
class MirrorEntry:
    """A mirror the home may read from; a higher ``priority`` is tried first."""

    id: str
    url: str
    priority: int = 0
    name: str = ""


@record.frozen
class NodeEntry:
    """Another node of the home's cluster: ``location`` is a local path or
    ``ssh://USER@HOST[:PORT]/PATH``; ``command`` the steppatch to run there over SSH (default
    ``steppatch`` on the node's PATH).
    """

    name: str
    location: str
    command: str = ""


_SSH = re.compile(
    r"ssh://(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?(?P<path>/.*)"
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


@record.frozen
class Location:
    """Where a node's home is: a local ``path``, or ``path`` on ``host`` over SSH."""

    path: str
    host: str = ""
    user: str = ""
    port: int | None = None

    @property
    def is_ssh(self) -> bool:
        return bool(self.host)

    def __str__(self) -> str:
        if not self.host:
            return self.path
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"ssh://{user}{self.host}{port}{self.path}"


def parse_location(text: str) -> Location:
    """``/srv/step`` or ``ssh://USER@HOST[:PORT]/PATH``. Raises :class:`InputError`."""
    if text.startswith("ssh://"):
        m = _SSH.fullmatch(text)
        if m is None:
            raise InputError(f"node location {text!r}: expected ssh://USER@HOST[:PORT]/PATH")
        port = int(m["port"]) if m["port"] else None
        if port is not None and not 0 < port < 65536:
            raise InputError(f"node location {text!r}: port {port} out of range")
        path = m["path"]
        if "\0" in path or ".." in path.split("/"):
            raise InputError(f"node location {text!r}: the path must be absolute, without '..'")
        return Location(path, m["host"], m["user"] or "", port)
    if "://" in text:
        raise InputError(f"node location {text!r}: expected a path or ssh://USER@HOST[:PORT]/PATH")
    if not text.startswith("/"):
        raise InputError(f"node location {text!r}: a local path must be absolute")
    return Location(text)


def check_node_name(name: str) -> str:
    """A node name: letters, digits, ``._-``. Raises :class:`InputError`."""
    if not _NAME.fullmatch(name):
        raise InputError(f"node name {name!r}: use letters, digits, '.', '_' and '-' (max 63)")
    return name


@record.frozen
class HomeConfig:
    """``updates``: the selected mirror's URL (tried first); ``mirrors``: every mirror, by
    priority; ``system``: this environment's system name; ``service``: how to stop and start the
    application around an apply; ``node``: this node's name in its cluster (empty: the host
    name); ``nodes``: the cluster's other nodes; ``keep_history``: how many replaced states
    ``steppatch gc`` keeps for ``rollback``; ``gc``: ``"auto"`` (collect after each apply) or
    ``"manual"``.
    """

    updates: str
    system: str = ""
    service: ServiceConfig = ServiceConfig()
    mirrors: tuple[MirrorEntry, ...] = ()
    node: str = ""
    nodes: tuple[NodeEntry, ...] = ()
    keep_history: int = DEFAULT_KEEP_HISTORY
    gc: str = "auto"

    def mirror_list(self) -> list[MirrorEntry]:
        """The mirrors in the order they are tried: the selected one, then by priority."""
        ordered = sorted(self.mirrors, key=lambda m: -m.priority)
        if not any(m.url == self.updates for m in ordered):
            ordered.insert(0, MirrorEntry("updates", self.updates, 100))
        return sorted(ordered, key=lambda m: m.url != self.updates)


def parse_home_config(data: bytes, source: str) -> HomeConfig:
    """Parse ``steppatch.toml``. Raises :class:`ConfigError` naming the field at fault."""
    try:
        raw = parse_toml(data)
    except TomlProblem as e:
        raise ConfigError(source, e.problem) from e
    values: dict[str, str] = {}
    for key, required in (("updates", True), ("system", False), ("node", False)):
        if key not in raw:
            if required:
                raise ConfigError(source, f"field {key!r}: missing (required)")
            continue
        if not isinstance(raw[key], str):
            raise ConfigError(source, f"field {key!r}: expected a string")
        values[key] = raw[key]
    service = raw.get("service", {})
    if not isinstance(service, dict):
        raise ConfigError(source, "[service]: expected a table")
    commands: dict[str, str] = {}
    for key, value in service.items():
        if key not in ("start", "stop", "status"):
            raise ConfigError(source, f"field 'service.{key}': unknown (start, stop, status)")
        if not isinstance(value, str):
            raise ConfigError(source, f"field 'service.{key}': expected a string")
        commands[key] = value
    keep = raw.get("keep_history", DEFAULT_KEEP_HISTORY)
    if not isinstance(keep, int) or isinstance(keep, bool) or not 0 <= keep <= 1_000_000:
        raise ConfigError(source, "field 'keep_history': expected an integer from 0 to 1000000")
    gc = raw.get("gc", "auto")
    if gc not in GC_MODES:
        raise ConfigError(source, f"field 'gc': expected one of {', '.join(GC_MODES)}")
    return HomeConfig(
        **values,
        keep_history=keep,
        gc=gc,
        service=ServiceConfig(**commands),
        mirrors=_mirrors(raw, source),
        nodes=_nodes(raw, source),
    )


def _nodes(raw: dict[str, object], source: str) -> tuple[NodeEntry, ...]:
    fields = {"name": str, "location": str, "command": str}
    tables = _tables(raw, "nodes", fields, ("name", "location"), source)
    return tuple(NodeEntry(t["name"], t["location"], t.get("command", "")) for t in tables)


def _mirrors(raw: dict[str, object], source: str) -> tuple[MirrorEntry, ...]:
    fields = {"id": str, "url": str, "priority": int, "name": str}
    tables = _tables(raw, "mirrors", fields, ("id", "url"), source)
    return tuple(
        MirrorEntry(t["id"], t["url"], t.get("priority", 0), t.get("name", "")) for t in tables
    )


def _tables(
    raw: dict[str, object],
    key: str,
    fields: Mapping[str, type],
    required: tuple[str, str],
    source: str,
) -> list[dict[str, Any]]:
    """The array of tables ``[[key]]``, each field checked; ``required[0]`` is its unique id.

    Raises :class:`ConfigError` naming the table and field at fault.
    """
    tables = raw.get(key, [])
    if not isinstance(tables, list):
        raise ConfigError(source, f"[[{key}]]: expected an array of tables")
    for i, table in enumerate(tables):
        where = f"{key}[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(source, f"{where}: expected a table")
        unknown = sorted(set(table) - set(fields))
        if unknown:
            raise ConfigError(source, f"field '{where}.{unknown[0]}': unknown")
        for name, kind in fields.items():
            # bool is an int in Python; a TOML true is never a priority
            if name in table and (
                not isinstance(table[name], kind) or isinstance(table[name], bool)
            ):
                raise ConfigError(source, f"field '{where}.{name}': expected {kind.__name__}")
        if not all(table.get(name) for name in required):
            raise ConfigError(source, f"{where}: {required[0]!r} and {required[1]!r} are required")
    ids = [table[required[0]] for table in tables]
    if len(set(ids)) != len(ids):
        raise ConfigError(source, f"[[{key}]]: {required[0]}s must be unique, got {ids}")
    return tables


def dump_home_config(config: HomeConfig) -> bytes:
    """The bytes of ``steppatch.toml``."""
    # A JSON string literal is a valid TOML basic string.
    lines = [
        "# steppatch home configuration (docs/formats.md)",
        "# updates: the selected mirror, tried first; the others follow by priority.",
        f"updates = {json.dumps(config.updates)}",
        f"system = {json.dumps(config.system)}",
        "# node: this node's name in its cluster (empty: the host name)",
        f"node = {json.dumps(config.node)}",
        "# keep_history: replaced states kept for rollback; gc: auto (after each apply) or manual",
        f"keep_history = {config.keep_history}",
        f"gc = {json.dumps(config.gc)}",
        "",
        "# Shell commands run in the home around an apply; empty means there is none.",
        "[service]",
        f"start = {json.dumps(config.service.start)}",
        f"stop = {json.dumps(config.service.stop)}",
        f"status = {json.dumps(config.service.status)}",
    ]
    for mirror in config.mirrors:
        lines += [
            "",
            "[[mirrors]]",
            f"id = {json.dumps(mirror.id)}",
            f"url = {json.dumps(mirror.url)}",
            f"priority = {mirror.priority}",
            f"name = {json.dumps(mirror.name)}",
        ]
    for node in config.nodes:
        lines += [
            "",
            "[[nodes]]",
            f"name = {json.dumps(node.name)}",
            f"location = {json.dumps(node.location)}",
            f"command = {json.dumps(node.command)}",
        ]
    return ("\n".join(lines) + "\n").encode()
