"""The foothold this process runs from, if any, as its bootstrap recorded it."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steppatch import _record as record
from steppatch.foothold._bootstrap import RUNTIME_MODULE, env_drift, read_env_record
from steppatch.foothold._errors import EnvironmentDrift, FootholdError
from steppatch.foothold._info import FootholdInfo, FootholdSummary, InfoCheck

__all__ = [
    "CORE_MODULES",
    "Host",
    "RunningFoothold",
    "check_env",
    "check_imports",
    "foothold_info",
    "host",
    "running",
]

#: what every command needs, including the lazily imported server (aiohttp) and PKI (cryptography)
CORE_MODULES = ("steppatch", "steppatch.pki", "steppatch.server", "steppatch_cli.app")


@record.frozen
class RunningFoothold:
    """The foothold this process runs from.

    ``archive`` is the real path it was started from (it may since have been replaced by a
    self-update; this process keeps reading the file it opened), ``env`` the private environment
    holding the wheels chosen for this host (``None`` when it needs none).
    """

    archive: Path
    version: str
    build: str
    steppatch: str
    layout: str
    env: Path | None
    wheels: tuple[str, ...]
    platform: str
    #: the archive's ``_foothold/build.json``
    info: dict[str, Any] = record.field(eq=False, repr=False)
    #: the name the archive is imported under (``/proc/self/fd/N``)
    pinned: str = ""

    def modules(self) -> list[str]:
        """The top-level modules of every distribution carried, for this host."""
        chosen = set(self.wheels)
        names: set[str] = set()
        for dist in self.info.get("zipped", []):
            names.update(dist.get("modules", []))
        for wheel in self.info.get("wheels", []):
            if wheel["file"] in chosen:
                names.update(wheel.get("modules", []))
        return sorted(names)


def running() -> RunningFoothold | None:
    """The foothold this process runs from, or ``None`` (an installed steppatch)."""
    runtime = sys.modules.get(RUNTIME_MODULE)
    if runtime is None:
        return None
    values = vars(runtime)
    info: dict[str, Any] = values["build"]
    env = values.get("env")
    return RunningFoothold(
        archive=Path(values["archive"]),
        version=str(info.get("version", "")),
        build=str(info.get("build", "")),
        steppatch=str(info.get("steppatch", "")),
        layout=str(info.get("layout", "")),
        env=Path(env) if env else None,
        wheels=tuple(values.get("wheels", ())),
        platform=str(values.get("platform", "")),
        info=info,
        pinned=str(values.get("pinned", "")),
    )


def check_imports(modules: Sequence[str]) -> list[str]:
    """Import each module; return them. Raises :class:`FootholdError` naming every one that
    fails and why (a missing or broken compiled library shows here, not in the middle of work).
    """
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as e:  # any import-time failure is the finding, whatever its type
            failed.append(f"{name}: {type(e).__name__}: {e}")
    if failed:
        raise FootholdError("these modules do not import here: " + "; ".join(failed))
    return list(modules)


def check_env(env: Path | None) -> int:
    """Hash every file of the private environment ``env`` (``None``: the foothold needs none)
    against the record written when it was installed; return the number of files checked.

    Finds what a start's size-and-mtime check cannot: a file changed and its mtime put back.
    Cost: reads every file once (about 36 MB for Linux x86-64). Raises :class:`EnvironmentDrift`
    naming every file that was changed, is missing or was added, and ``OSError`` for an
    environment that cannot be listed.
    """
    if env is None:
        return 0
    drift = env_drift(str(env), hashes=True)
    if drift:
        raise EnvironmentDrift(str(env), tuple(drift))
    recorded = read_env_record(str(env))
    return len(recorded[0]) if recorded is not None else 0


@record.frozen
class Host:
    """The interpreter this steppatch runs on: versions, executable and its most specific
    wheel tag."""

    steppatch: str
    python: str
    executable: str
    platform: str


def host() -> Host:
    """This process's :class:`Host`."""
    from packaging.tags import sys_tags

    here = running()
    tag = here.platform if here is not None and here.platform else str(next(iter(sys_tags())))
    try:
        version = importlib.metadata.version("steppatch")
    except importlib.metadata.PackageNotFoundError:
        version = here.steppatch if here is not None else "unknown"
    return Host(version, platform.python_version(), sys.executable, tag)


def foothold_info(*, check: bool = False) -> FootholdInfo:
    """What runs (``foothold info``): the foothold this process runs from, if any, and the
    interpreter; with ``check``, every file of the private environment hashed against its record
    (:func:`check_env`), then every module carried imported (:func:`check_imports`).

    Raises :class:`EnvironmentDrift` (each file that differs) and :class:`FootholdError` (each
    module that does not import) for ``check``.
    """
    here = running()
    checked = None
    if check:
        files = check_env(here.env if here else None)
        imported = check_imports([*(here.modules() if here else []), *CORE_MODULES])
        checked = InfoCheck(modules=len(imported), files=files)
    this = host()
    summary = None if here is None else FootholdSummary(
        archive=str(here.archive), version=here.version, build=here.build,
        steppatch=here.steppatch, layout=here.layout,
        env=None if here.env is None else str(here.env), wheels=here.wheels,
    )  # fmt: skip
    return FootholdInfo(
        summary, this.steppatch, this.python, this.executable, this.platform, checked
    )
