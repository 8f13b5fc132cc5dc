"""The entry point of every foothold archive: the build copies this file in as ``__main__.py``.

It runs before anything but the standard library can be imported, so it imports nothing else until
the archive is on ``sys.path`` (then only ``packaging``, which the archive holds). In order, it:

1. pins the archive: opens it once and puts ``/proc/self/fd/N`` on ``sys.path``. zipimport
   re-opens its archive by name for every module it loads, so without this a self-update that
   replaces the file would have this process read new bytes at old offsets;
2. drops site-packages from ``sys.path``, so that a foothold runs the same on every host whatever
   the host's Python has installed;
3. installs the wheels of the compiled dependencies that fit this interpreter into a private
   environment, once per build: each wheel checked against the archive's list (sha256, size) and
   each file against the wheel's RECORD, unpacked into a temporary directory renamed into place,
   so a first run killed half way leaves nothing half made;
4. runs the command line.

Errors before the command line runs print one line and exit with 5 (the local environment).
The library reads the same format through :mod:`steppatch.foothold`; this module is its one
definition and must keep importing nothing but the standard library at module level.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import site
import sys
import sysconfig
import tempfile
import time
import types
import zipfile
from collections.abc import Callable
from typing import Any, NoReturn

FORMAT = "steppatch-foothold/1"
BUILD_MEMBER = "_foothold/build.json"
ARCHIVE_WHEELS = "_foothold/wheels/"
BESIDE_WHEELS = "wheels"
ENVS_VARIABLE = "STEPPATCH_FOOTHOLD_ENVS"
RUNTIME_MODULE = "_steppatch_foothold"
ENV_MARKER = "foothold-env.json"
EXIT_ENVIRONMENT = 5
MIN_PYTHON = (3, 11)
#: a temporary environment older than this was left by a killed first run
STALE_SECONDS = 3600.0


class FootholdBootError(Exception):
    """The foothold cannot run here; the message says why and what to do."""


def record_hash(data: bytes) -> str:
    """A RECORD hash field: ``sha256=`` and the urlsafe base64 digest without padding."""
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def read_build(archive: str) -> dict[str, Any]:
    """The archive's ``_foothold/build.json``. Raises :class:`FootholdBootError`."""
    try:
        with zipfile.ZipFile(archive) as z:
            build = json.loads(z.read(BUILD_MEMBER))
    # RecursionError: deep nesting; this file may use the standard library only, not parse_json
    except (OSError, KeyError, ValueError, RecursionError, zipfile.BadZipFile) as e:
        raise FootholdBootError(f"{archive} is not a steppatch foothold: {e}") from e
    if not isinstance(build, dict) or build.get("format") != FORMAT:
        raise FootholdBootError(f"{archive}: unknown foothold format (expected {FORMAT})")
    return build


def choose_wheels(build: dict[str, Any], tags: list[str]) -> list[dict[str, Any]]:
    """For each compiled distribution, the wheel whose best tag ranks first in ``tags``
    (the interpreter's tags, most specific first).

    Raises :class:`FootholdBootError` naming every distribution with no wheel for this host.
    """
    rank = {tag: i for i, tag in enumerate(tags)}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for wheel in build.get("wheels", []):
        by_name.setdefault(wheel["name"], []).append(wheel)
    chosen, missing = [], []
    for name in sorted(by_name):
        fits = sorted(
            (min(rank[t] for t in w["tags"] if t in rank), w["file"])
            for w in by_name[name]
            if any(t in rank for t in w["tags"])
        )
        if not fits:
            missing.append(f"{name} {by_name[name][0]['version']}")
            continue
        best = fits[0][1]
        chosen.append(next(w for w in by_name[name] if w["file"] == best))
    if missing:
        raise FootholdBootError(
            f"this foothold has no wheel for this host ({tags[0] if tags else 'unknown'}) of: "
            f"{', '.join(missing)}; build it with 'steppatch foothold build --wheels DIR', DIR "
            "holding those wheels for this platform (docs/foothold.md)"
        )
    return chosen


def _safe_member(name: str, wheel: str) -> None:
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise FootholdBootError(f"{wheel}: unsafe member name {name!r}")


def _target(name: str) -> str | None:
    """Where a wheel member goes in site-packages; ``None`` for data an import never needs."""
    parts = name.split("/")
    if parts[0].endswith(".data"):
        if len(parts) > 2 and parts[1] in ("purelib", "platlib"):
            return "/".join(parts[2:])
        return None  # scripts, headers, data: not needed to import the distribution
    return name


def install_wheel(data: bytes, wheel: str, site_dir: str | None) -> int:
    """Unpack one wheel into ``site_dir`` (``None``: only check it); return the files written.

    Every member must be listed in the wheel's RECORD with its sha256, and every listed file must
    be there. Raises :class:`FootholdBootError` for a damaged or unsafe wheel and ``OSError``.
    """
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise FootholdBootError(f"{wheel}: not a wheel: {e}") from e
    with z:
        members = [i for i in z.infolist() if not i.is_dir()]
        records = [
            i.filename for i in members
            if i.filename.count("/") == 1 and i.filename.endswith(".dist-info/RECORD")
        ]
        if len(records) != 1:
            raise FootholdBootError(f"{wheel}: not a wheel (it needs exactly one RECORD)")
        try:
            listed = {
                row[0]: row[1] for row in csv.reader(io.StringIO(z.read(records[0]).decode()))
                if row
            }
        except (UnicodeDecodeError, csv.Error, IndexError) as e:
            raise FootholdBootError(f"{wheel}: unreadable RECORD: {e}") from e
        written = 0
        seen = set()
        for info in members:
            name = info.filename
            _safe_member(name, wheel)
            seen.add(name)
            try:
                content = z.read(info)
            except (zipfile.BadZipFile, OSError) as e:
                raise FootholdBootError(f"{wheel}: {name}: {e}") from e
            if name != records[0] and record_hash(content) != listed.get(name):
                raise FootholdBootError(f"{wheel}: {name} does not match the wheel's RECORD")
            target = _target(name)
            if site_dir is None or target is None:
                continue
            path = os.path.join(site_dir, *target.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            written += 1
        absent = sorted(set(listed) - seen)
        if absent:
            raise FootholdBootError(f"{wheel}: RECORD lists {absent[0]}, which is not in the wheel")
    return written


def wheel_bytes(archive: zipfile.ZipFile, beside: str, wheel: dict[str, Any]) -> bytes:
    """One wheel the build lists, from the archive or the ``wheels/`` directory beside it,
    checked against its listed size and sha256. Raises :class:`FootholdBootError`."""
    name = wheel["file"]
    try:
        if wheel.get("where") == "beside":
            with open(os.path.join(beside, BESIDE_WHEELS, name), "rb") as f:
                data = f.read(wheel["size"] + 1)
        else:
            data = archive.read(ARCHIVE_WHEELS + name)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise FootholdBootError(f"wheel {name} of this foothold cannot be read: {e}") from e
    if len(data) != wheel["size"] or hashlib.sha256(data).hexdigest() != wheel["sha256"]:
        raise FootholdBootError(f"wheel {name} does not match this foothold's list of wheels")
    return data


def envs_root() -> str:
    """Where private environments live: ``$STEPPATCH_FOOTHOLD_ENVS``, else the user's cache."""
    explicit = os.environ.get(ENVS_VARIABLE)
    if explicit:
        return explicit
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "steppatch", "foothold")


def env_key(build: dict[str, Any], chosen: list[dict[str, Any]]) -> str:
    """The private environment's directory name: the build and the wheels chosen for this host."""
    wheels = hashlib.sha256("\n".join(w["sha256"] for w in chosen).encode()).hexdigest()
    return f"{build['build'][:16]}-{wheels[:8]}"


def ensure_env(
    archive: str,
    beside: str,
    build: dict[str, Any],
    chosen: list[dict[str, Any]],
    root: str,
    log: Callable[[str], None],
) -> str:
    """The private environment holding ``chosen`` (made now if missing); returns its path.

    Made in a temporary directory and renamed into place, so it exists whole or not at all;
    two first runs at once each make one and the second rename loses harmlessly. Raises
    :class:`FootholdBootError` and ``OSError``.
    """
    env = os.path.join(root, env_key(build, chosen))
    if os.path.isfile(os.path.join(env, ENV_MARKER)):
        return env
    os.makedirs(root, exist_ok=True)
    _remove_stale(root)
    log(
        f"steppatch: first run of foothold {build['version']} (build {build['build'][:12]}): "
        f"installing {len(chosen)} compiled wheel(s) into {env}"
    )
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=root)
    try:
        site_dir = os.path.join(tmp, "site-packages")
        os.mkdir(site_dir)
        with zipfile.ZipFile(archive) as z:
            for wheel in chosen:
                install_wheel(wheel_bytes(z, beside, wheel), wheel["file"], site_dir)
        marker = {"format": FORMAT, "build": build["build"], "wheels": [w["file"] for w in chosen]}
        with open(os.path.join(tmp, ENV_MARKER), "w", encoding="utf-8") as f:
            json.dump(marker, f, indent=2, sort_keys=True)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would lock out other users of the tool
        os.sync()  # the rename below must not outlive the files after a power cut
        try:
            os.rename(tmp, env)
        except OSError:
            if not os.path.isfile(os.path.join(env, ENV_MARKER)):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another first run finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return env


def _remove_stale(root: str) -> None:
    now = time.time()
    for name in os.listdir(root):
        path = os.path.join(root, name)
        try:
            if name.startswith(".tmp-") and now - os.stat(path).st_mtime > STALE_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def pin_archive(path: str) -> tuple[str, str]:
    """Open the archive once; return the name to import from (``/proc/self/fd/N`` where there
    is a ``/proc``, else the real path) and the real path."""
    real = os.path.realpath(path)
    fd = os.open(real, os.O_RDONLY)  # non-inheritable: a child or an exec does not keep it
    pinned = f"/proc/self/fd/{fd}"
    if not os.path.exists(pinned):
        os.close(fd)
        return real, real
    return pinned, real


def _inside(path: str, parent: str) -> bool:
    try:
        path, parent = os.path.realpath(path), os.path.realpath(parent)
        return os.path.commonpath([path, parent]) == parent
    except ValueError:
        return False


def hermetic_path(path: list[str], archive: str) -> list[str]:
    """``sys.path`` with the archive first, then the standard library and ``$PYTHONPATH`` only:
    site-packages (and what their ``.pth`` files added) are dropped."""
    paths = sysconfig.get_paths()
    stdlib = [paths["stdlib"], paths["platstdlib"]]
    sites = [*site.getsitepackages(), site.getusersitepackages()]
    explicit = {p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    kept = [archive]
    for entry in path[1:]:
        standard = any(_inside(entry, d) for d in stdlib) and not any(
            _inside(entry, d) for d in sites
        )
        bundled = os.path.basename(entry).startswith("python3") and entry.endswith(".zip")
        if entry != archive and (standard or bundled or entry in explicit):
            kept.append(entry)
    return kept


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(EXIT_ENVIRONMENT)


def main() -> None:
    """Set up the interpreter as the module docstring says, then run the command line."""
    if sys.version_info < MIN_PYTHON:
        _fail(f"steppatch needs Python {'.'.join(map(str, MIN_PYTHON))} or newer, "
              f"this is {sys.version.split()[0]}")
    try:
        pinned, real = pin_archive(sys.argv[0])
        sys.argv[0] = "steppatch"  # what usage lines and help show
        sys.path[0] = pinned
        sys.path[:] = hermetic_path(sys.path, pinned)
        build = read_build(pinned)
        from packaging.specifiers import SpecifierSet
        from packaging.tags import sys_tags

        required = build.get("python_requires") or ""
        here = ".".join(map(str, sys.version_info[:3]))
        if required and not SpecifierSet(required).contains(here, prereleases=True):
            raise FootholdBootError(f"this steppatch needs Python {required}, this is {here}")
        tags = [str(t) for t in sys_tags()]
        chosen = choose_wheels(build, tags)
        env = None
        if chosen:
            env = ensure_env(pinned, os.path.dirname(real), build, chosen, envs_root(), _say)
            sys.path.insert(1, os.path.join(env, "site-packages"))
    except (FootholdBootError, OSError) as e:
        _fail(str(e))
    runtime = types.ModuleType(RUNTIME_MODULE)
    vars(runtime).update(
        archive=real, pinned=pinned, build=build, env=env, wheels=[w["file"] for w in chosen],
        platform=tags[0] if tags else "",
    )
    sys.modules[RUNTIME_MODULE] = runtime
    from steppatch_cli.app import main as cli

    cli()


if __name__ == "__main__":
    main()
