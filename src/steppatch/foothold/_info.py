"""What ``foothold info`` says, as a value with a format tag (``steppatch-foothold-info/1``,
``docs/formats.md``): written by :func:`info_to_json`, read back by :func:`parse_foothold_info`
(self-update reads a new version's description of itself this way). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from steppatch import _record as record
from steppatch._json import Fields, load_json_object
from steppatch.foothold._errors import BadFootholdInfo

__all__ = [
    "INFO_FORMAT",
    "FootholdInfo",
    "FootholdSummary",
    "InfoCheck",
    "info_to_json",
    "parse_foothold_info",
]

INFO_FORMAT = "steppatch-foothold-info/1"

T = TypeVar("T")


@record.frozen
class FootholdSummary:
    """The foothold a steppatch runs from: the archive, its version and build, its layout, the
    private environment (``None`` when it needs none) and the wheels chosen for the host."""

    archive: str
    version: str
    build: str
    steppatch: str
    layout: str
    env: str | None
    wheels: tuple[str, ...]


@record.frozen
class InfoCheck:
    """What ``--check`` found good: the modules that import, the files hashed as recorded."""

    modules: int
    files: int


@record.frozen
class FootholdInfo:
    """What runs: the foothold (``None`` for an installed steppatch), steppatch's version, the
    interpreter (version, executable, most specific wheel tag) and, with ``--check``, what the
    check found."""

    foothold: FootholdSummary | None
    steppatch: str
    python: str
    executable: str
    platform: str
    check: InfoCheck | None = None


def info_to_json(info: FootholdInfo) -> dict[str, Any]:
    """The ``steppatch-foothold-info/1`` document of ``info`` (``foothold info --json``)."""
    here = info.foothold
    return {
        "format": INFO_FORMAT,
        "foothold": None if here is None else {
            "archive": here.archive, "version": here.version, "build": here.build,
            "steppatch": here.steppatch, "layout": here.layout, "env": here.env,
            "wheels": list(here.wheels),
        },
        "steppatch": info.steppatch, "python": info.python, "executable": info.executable,
        "platform": info.platform,
        "check": None if info.check is None else {
            "ok": True, "modules": info.check.modules, "files": info.check.files,
        },
    }  # fmt: skip


def parse_foothold_info(data: bytes, source: str = "foothold info") -> FootholdInfo:
    """Read a ``steppatch-foothold-info/1`` document. One without a ``format`` field is read as
    the same shape (steppatch printed it untagged before; a self-update may go back to such a
    version). Raises :class:`BadFootholdInfo`."""

    def fail(problem: str) -> NoReturn:
        raise BadFootholdInfo(source, problem)

    f = Fields(load_json_object(data, fail), "", fail)
    if f.get("format", str, INFO_FORMAT) != INFO_FORMAT:
        f.fail("format", f"expected {INFO_FORMAT!r}")
    return FootholdInfo(
        foothold=_optional(f, "foothold", _summary),
        steppatch=f.get("steppatch", str),
        python=f.get("python", str),
        executable=f.get("executable", str),
        platform=f.get("platform", str),
        check=_optional(f, "check", _check),
    )


def _optional(f: Fields, field: str, read: Callable[[Fields], T]) -> T | None:
    if f.obj.get(field) is None:
        if field not in f.obj:
            f.fail(field, "missing")
        return None
    return read(f.sub(field))


def _summary(f: Fields) -> FootholdSummary:
    named = {k: f.get(k, str) for k in ("archive", "version", "build", "steppatch", "layout")}
    env = f.obj.get("env")
    if env is not None and not isinstance(env, str):
        f.fail("env", f"expected str or null, got {type(env).__name__}")
    wheels = f.get("wheels", list)
    if not all(isinstance(w, str) for w in wheels):
        f.fail("wheels", "expected a list of strings")
    return FootholdSummary(**named, env=env, wheels=tuple(wheels))


def _check(f: Fields) -> InfoCheck:
    if f.get("ok", bool) is not True:
        f.fail("ok", "expected true")
    return InfoCheck(modules=f.get("modules", int), files=f.get("files", int))
