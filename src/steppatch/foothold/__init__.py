"""Footholds: the running steppatch and its runtime dependencies as one artifact that runs on a
host with only Python 3.11+ and no network (``docs/foothold.md``).

:func:`build_foothold` makes one; :func:`running` tells whether this process runs from one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from steppatch._lazy import attach

if TYPE_CHECKING:
    from steppatch.foothold._bootstrap import ENVS_VARIABLE, FORMAT
    from steppatch.foothold._build import (
        PYZ_NAME,
        Foothold,
        Layout,
        Part,
        build_foothold,
        read_foothold,
    )
    from steppatch.foothold._errors import (
        BadFootholdInfo,
        BadWheel,
        EnvironmentDrift,
        FootholdError,
    )
    from steppatch.foothold._info import (
        INFO_FORMAT,
        FootholdInfo,
        FootholdSummary,
        InfoCheck,
        info_to_json,
        parse_foothold_info,
    )
    from steppatch.foothold._runtime import (
        CORE_MODULES,
        Host,
        RunningFoothold,
        check_env,
        check_imports,
        foothold_info,
        host,
        running,
    )

__getattr__, __dir__ = attach(
    __name__,
    {
        "steppatch.foothold._bootstrap": ("ENVS_VARIABLE", "FORMAT"),
        "steppatch.foothold._build": (
            "PYZ_NAME",
            "Foothold",
            "Layout",
            "Part",
            "build_foothold",
            "read_foothold",
        ),
        "steppatch.foothold._errors": (
            "BadFootholdInfo",
            "BadWheel",
            "EnvironmentDrift",
            "FootholdError",
        ),
        "steppatch.foothold._info": (
            "INFO_FORMAT",
            "FootholdInfo",
            "FootholdSummary",
            "InfoCheck",
            "info_to_json",
            "parse_foothold_info",
        ),
        "steppatch.foothold._runtime": (
            "CORE_MODULES",
            "Host",
            "RunningFoothold",
            "check_env",
            "check_imports",
            "foothold_info",
            "host",
            "running",
        ),
    },
)

__all__ = [
    "CORE_MODULES",
    "ENVS_VARIABLE",
    "FORMAT",
    "INFO_FORMAT",
    "PYZ_NAME",
    "BadFootholdInfo",
    "BadWheel",
    "EnvironmentDrift",
    "Foothold",
    "FootholdError",
    "FootholdInfo",
    "FootholdSummary",
    "Host",
    "InfoCheck",
    "Layout",
    "Part",
    "RunningFoothold",
    "build_foothold",
    "check_env",
    "check_imports",
    "foothold_info",
    "host",
    "info_to_json",
    "parse_foothold_info",
    "read_foothold",
    "running",
]
