"""A home's configuration file, ``steppatch.toml``: parsed into a value, written back.

Only what the operator sets lives here; what steppatch records (installed versions, trees) is state
and lives under ``.steppatch/``.
"""

from __future__ import annotations

import json
import tomllib

import attrs

from steppatch.errors import ConfigError

__all__ = [
    "CONFIG_NAME",
    "HomeConfig",
    "ServiceConfig",
    "dump_home_config",
    "parse_home_config",
]

CONFIG_NAME = "steppatch.toml"


@attrs.frozen
class ServiceConfig:
    """Shell commands that stop, start and check the application (empty: none)."""

    start: str = ""
    stop: str = ""
    status: str = ""


@attrs.frozen
class HomeConfig:
    """``updates``: the repository URL; ``system``: this environment's system name;
    ``service``: how to stop and start the application around an apply.
    """

    updates: str
    system: str = ""
    service: ServiceConfig = ServiceConfig()


def parse_home_config(data: bytes, source: str) -> HomeConfig:
    """Parse ``steppatch.toml``. Raises :class:`ConfigError` naming the field at fault."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(source, f"not valid TOML: {e}") from e
    values: dict[str, str] = {}
    for key, required in (("updates", True), ("system", False)):
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
    return HomeConfig(**values, service=ServiceConfig(**commands))


def dump_home_config(config: HomeConfig) -> bytes:
    """The bytes of ``steppatch.toml``."""
    # A JSON string literal is a valid TOML basic string.
    lines = [
        "# steppatch home configuration (docs/formats.md)",
        f"updates = {json.dumps(config.updates)}",
        f"system = {json.dumps(config.system)}",
        "",
        "# Shell commands run in the home around an apply; empty means there is none.",
        "[service]",
        f"start = {json.dumps(config.service.start)}",
        f"stop = {json.dumps(config.service.stop)}",
        f"status = {json.dumps(config.service.status)}",
    ]
    return ("\n".join(lines) + "\n").encode()
