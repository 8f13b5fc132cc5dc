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
   so a first run killed half way leaves nothing half made. The environment's files are compiled
   to bytecode and recorded (path, size, mtime, sha256) in ``foothold-files.json``; at every later
   start each file is checked against the record (one ``stat`` each, hashes only on ``foothold
   info --check``), and an environment that differs (a file changed, missing or added) is made
   again from the archive's verified wheels before anything imports from it;
4. runs the command line, with bytecode writing off, so the environment stays as recorded.

Errors before the command line runs print one line and exit with 5 (the local environment).
The library reads the same format through :mod:`steppatch.foothold`; this module is its one
definition and must keep importing nothing but the standard library at module level.
"""

from __future__ import annotations

import base64
import compileall
import contextlib
import csv
import hashlib
import io
import json
import os
import py_compile
import shutil
import site
import sys
import sysconfig
import tempfile
import time
import types
import zipfile
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

FORMAT = "steppatch-foothold/1"
BUILD_MEMBER = "_foothold/build.json"
ARCHIVE_WHEELS = "_foothold/wheels/"
BESIDE_WHEELS = "wheels"
ENVS_VARIABLE = "STEPPATCH_FOOTHOLD_ENVS"
RUNTIME_MODULE = "_steppatch_foothold"
ENV_MARKER = "foothold-env.json"
#: every file of a private environment: path, size, mtime and sha256 (see :func:`record_env`)
ENV_RECORD = "foothold-files.json"
ENV_RECORD_FORMAT = "steppatch-foothold-files/1"
#: a record larger than this is not one this bootstrap wrote (a few hundred files, ~100 KiB)
ENV_RECORD_MAX_BYTES = 64 * 2**20
#: how many differing files the start-up line names before "and N more"
DRIFT_SHOWN = 3
EXIT_ENVIRONMENT = 5
MIN_PYTHON = (3, 11)
#: a temporary environment older than this was left by a killed first run
STALE_SECONDS = 3600.0


class FootholdBootError(Exception):
    """The foothold cannot run here; the message says why and what to do."""


#: what differs in a private environment: ``changed`` (size, mtime or hash), ``missing``,
#: ``extra`` (a file, directory or link the record does not list) or ``record`` (none, unreadable)
DRIFT_KINDS = ("changed", "missing", "extra", "record")


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
    """The private environment holding ``chosen``, as recorded; returns its path.

    Made now if missing, and made again if it differs from its record (:func:`env_drift`, sizes
    and mtimes only: one ``stat`` per file). Made in a temporary directory and renamed into place,
    so it exists whole or not at all; two first runs at once each make one and the second rename
    loses harmlessly. Raises :class:`FootholdBootError` (naming the differing files when the
    wheels to make it again cannot be read) and ``OSError``.
    """
    env = os.path.join(root, env_key(build, chosen))
    drift: list[tuple[str, str]] = []
    if _is_made(env):
        drift = env_drift(env)
        if not drift:
            return env
    elif os.path.lexists(env):
        drift = [(ENV_MARKER, "missing")]  # not one this bootstrap made, or its marker deleted
    if drift:
        log(
            f"steppatch: the private environment {env} differs from its record "
            f"({describe_drift(drift)}); installing it again from this foothold's wheels"
        )
    else:
        log(
            f"steppatch: first run of foothold {build['version']} (build {build['build'][:12]}): "
            f"installing {len(chosen)} compiled wheel(s) into {env}"
        )
    try:
        os.makedirs(root, exist_ok=True)
        _remove_stale(root)
        tmp = _make_env(archive, beside, build, chosen, root, env)
    except (FootholdBootError, OSError) as e:
        if not drift:
            raise
        # Refused, not used as it is: the differing file may be one that runs at import.
        raise FootholdBootError(
            f"the private environment {env} differs from its record ({describe_drift(drift)}) "
            f"and cannot be made again: {e}"
        ) from e
    try:
        if drift:
            if _is_made(env) and not env_drift(env):
                # Another start made it again meanwhile and may be running from it already.
                shutil.rmtree(tmp, ignore_errors=True)
                return env
            _set_aside(env, root)
        try:
            os.rename(tmp, env)
        except OSError:
            if not _is_made(env):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another first run finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return env


def _make_env(
    archive: str,
    beside: str,
    build: dict[str, Any],
    chosen: list[dict[str, Any]],
    root: str,
    env: str,
) -> str:
    """A complete private environment in a new temporary directory under ``root``, made for
    the path ``env``: the wheels unpacked, compiled, marked and recorded; returns its path."""
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=root)
    try:
        site_dir = os.path.join(tmp, "site-packages")
        os.mkdir(site_dir)
        with zipfile.ZipFile(archive) as z:
            for wheel in chosen:
                install_wheel(wheel_bytes(z, beside, wheel), wheel["file"], site_dir)
        # Compiled now, since the process never writes bytecode here (that would be files the
        # record does not know); unchecked hash-based, as in the archive: the record guards them.
        compileall.compile_dir(
            site_dir,
            quiet=2,
            ddir=os.path.join(env, "site-packages"),
            workers=1,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        marker = {"format": FORMAT, "build": build["build"], "wheels": [w["file"] for w in chosen]}
        with open(os.path.join(tmp, ENV_MARKER), "w", encoding="utf-8") as f:
            json.dump(marker, f, indent=2, sort_keys=True)
        record_env(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would lock out other users of the tool
        os.sync()  # the rename that follows must not outlive the files after a power cut
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _is_made(env: str) -> bool:
    """``env`` is a directory (not a link to one) with the marker of a finished environment."""
    return not os.path.islink(env) and os.path.isfile(os.path.join(env, ENV_MARKER))


def _set_aside(env: str, root: str) -> None:
    """Move a differing environment (or whatever is at its path) out of the way, into a
    temporary directory that :func:`_remove_stale` also clears should this process die before
    it is removed."""
    aside = tempfile.mkdtemp(prefix=".tmp-", dir=root)
    with contextlib.suppress(FileNotFoundError):  # another start set it aside already
        os.rename(env, os.path.join(aside, "differing"))
    shutil.rmtree(aside, ignore_errors=True)


def scan_env(env: str) -> tuple[dict[str, os.stat_result], set[str], set[str]]:
    """Every entry under ``env`` but its record, by path relative to it (``/``-separated):
    regular files with their ``lstat``, directories, and anything else (links, devices).

    Cost: one ``readdir`` per directory and one ``stat`` per file. Raises ``OSError``.
    """
    files: dict[str, os.stat_result] = {}
    dirs: set[str] = set()
    other: set[str] = set()
    todo = [""]
    while todo:
        rel = todo.pop()
        with os.scandir(os.path.join(env, rel) if rel else env) as entries:
            for entry in entries:
                name = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    dirs.add(name)
                    todo.append(name)
                elif entry.is_file(follow_symlinks=False):
                    if name != ENV_RECORD:
                        files[name] = entry.stat(follow_symlinks=False)
                else:
                    other.add(name)
    return files, dirs, other


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def record_env(env: str) -> int:
    """Write ``env``'s record: for every file its path, size, ``mtime_ns`` and sha256, and
    every directory. Returns the number of files. Raises ``OSError`` and
    :class:`FootholdBootError` for an entry that is neither a file nor a directory.

    Written into the environment while it is still a temporary directory, flushed to disk,
    so the rename that makes the environment appear also makes its record appear.
    """
    files, dirs, other = scan_env(env)
    if other:
        raise FootholdBootError(f"{env}: {sorted(other)[0]} is neither a file nor a directory")
    record = {
        "format": ENV_RECORD_FORMAT,
        "dirs": sorted(dirs),
        "files": {
            name: [st.st_size, st.st_mtime_ns, _sha256_file(os.path.join(env, name))]
            for name, st in sorted(files.items())
        },
    }
    fd = os.open(os.path.join(env, ENV_RECORD), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=0, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    return len(files)


def read_env_record(env: str) -> tuple[dict[str, list[Any]], set[str]] | None:
    """The files (path -> ``[size, mtime_ns, sha256]``) and directories ``env``'s record
    lists; ``None`` when there is no readable record of this format."""
    try:
        with open(os.path.join(env, ENV_RECORD), "rb") as f:
            data = f.read(ENV_RECORD_MAX_BYTES + 1)
        record = json.loads(data) if len(data) <= ENV_RECORD_MAX_BYTES else None
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or record.get("format") != ENV_RECORD_FORMAT:
        return None
    files, dirs = record.get("files"), record.get("dirs")
    if not isinstance(files, dict) or not isinstance(dirs, list):
        return None
    for value in files.values():
        if not (
            isinstance(value, list)
            and len(value) == 3
            and all(isinstance(v, int) for v in value[:2])
            and isinstance(value[2], str)
        ):
            return None
    if not all(isinstance(d, str) for d in dirs):
        return None
    return files, set(dirs)


def env_drift(env: str, *, hashes: bool = False) -> list[tuple[str, str]]:
    """How ``env`` differs from its record: ``(path, kind)`` pairs sorted by path, ``kind`` one
    of :data:`DRIFT_KINDS`; empty when it is as recorded.

    Without ``hashes``, a file is compared by size and mtime only (one ``stat`` each: what every
    start does); with them, each file is also read and hashed (``foothold info --check``).
    Raises ``OSError`` only for an environment that cannot be listed at all.
    """
    recorded = read_env_record(env)
    if recorded is None:
        return [(ENV_RECORD, "record")]
    listed, listed_dirs = recorded
    try:
        files, dirs, other = scan_env(env)
    except FileNotFoundError:
        return [(ENV_RECORD, "record")]
    drift = [(name, "extra") for name in other]
    drift += [(name, "extra") for name in dirs - listed_dirs]
    drift += [(name, "missing") for name in listed_dirs - dirs]
    for name, (size, mtime, sha256) in listed.items():
        st = files.pop(name, None)
        if st is None:
            drift.append((name, "missing"))
        elif st.st_size != size or st.st_mtime_ns != mtime:
            drift.append((name, "changed"))
        elif hashes:
            try:
                same = _sha256_file(os.path.join(env, name)) == sha256
            except OSError:
                same = False
            if not same:
                drift.append((name, "changed"))
    drift += [(name, "extra") for name in files]
    return sorted(drift)


def describe_drift(drift: Iterable[tuple[str, str]]) -> str:
    """``site-packages/x.py changed, site-packages/evil.pth extra and 2 more``."""
    items = [f"{name} {kind}" for name, kind in drift]
    shown = ", ".join(items[:DRIFT_SHOWN])
    return shown if len(items) <= DRIFT_SHOWN else f"{shown} and {len(items) - DRIFT_SHOWN} more"


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
        # Bytecode is not written next to the sources of the private environment (it comes
        # compiled), nor anywhere else: a foothold leaves no files behind as it imports.
        sys.dont_write_bytecode = True
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
    module, _, function = str(build.get("entry_point") or "").partition(":")
    if not module or not function:
        _fail(f"{real}: its build record names no entry point")
    import importlib

    getattr(importlib.import_module(module), function)()


if __name__ == "__main__":
    main()
