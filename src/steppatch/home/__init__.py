"""The home's edge: its files on disk, its lock, staging, the one commit point, recovery,
staged applies (``_staged``), its TLS files (``_tls``), garbage collection and sizes (``_gc``),
service control."""

from __future__ import annotations

from typing import TYPE_CHECKING

from steppatch._lazy import attach

if TYPE_CHECKING:
    from steppatch.home._gc import HomeSizes, collect_home, home_sizes
    from steppatch.home._layout import HomeDir
    from steppatch.home._program import ProgramResult, run_program
    from steppatch.home._scan import scan_tree
    from steppatch.home._service import Service, ShellService
    from steppatch.home._staged import StagedApplies, StagedRecord
    from steppatch.home._tls import HomeTls
    from steppatch.home._where import HOME_ENV, home_path, require_home

__getattr__, __dir__ = attach(
    __name__,
    {
        "steppatch.home._gc": ("HomeSizes", "collect_home", "home_sizes"),
        "steppatch.home._layout": ("HomeDir",),
        "steppatch.home._program": ("ProgramResult", "run_program"),
        "steppatch.home._scan": ("scan_tree",),
        "steppatch.home._service": ("Service", "ShellService"),
        "steppatch.home._staged": ("StagedApplies", "StagedRecord"),
        "steppatch.home._tls": ("HomeTls",),
        "steppatch.home._where": ("HOME_ENV", "home_path", "require_home"),
    },
)

__all__ = [
    "HOME_ENV",
    "HomeDir",
    "HomeSizes",
    "HomeTls",
    "ProgramResult",
    "Service",
    "ShellService",
    "StagedApplies",
    "StagedRecord",
    "collect_home",
    "home_path",
    "home_sizes",
    "require_home",
    "run_program",
    "scan_tree",
]
