"""A home's configuration file, ``steppatch.toml``: parsed into a value, written back.

Only what the operator sets lives here; what steppatch records (installed versions, trees) is state
and lives under ``.steppatch/``.
"""

from __future__ import annotations

import json
import tomllib

import attrs

from steppatch.errors import ConfigError

__all__ = ["CONFIG_NAME", "HomeConfig", "dump_home_config", "parse_home_config"]

CONFIG_NAME = "steppatch.toml"


@attrs.frozen
class HomeConfig:
    """``updates``: the repository URL; ``system``: this environment's system name."""

    updates: str
    system: str = ""


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
    return HomeConfig(**values)


def dump_home_config(config: HomeConfig) -> bytes:
    """The bytes of ``steppatch.toml``."""
    # A JSON string literal is a valid TOML basic string.
    lines = [
        "# steppatch home configuration (docs/formats.md)",
        f"updates = {json.dumps(config.updates)}",
        f"system = {json.dumps(config.system)}",
    ]
    return ("\n".join(lines) + "\n").encode()
