"""Building a foothold: the running steppatch and every runtime dependency in one artifact.

Pure-Python distributions go into the archive as they are installed (the site-packages layout,
with a regenerated RECORD), so they import straight from it. Compiled ones go in as wheels:
repacked from the running environment (each file checked against the RECORD its installer
wrote), or, when the running steppatch is itself a foothold, the wheels it carries; plus wheels
for other platforms from ``--wheels DIR``. Nothing is downloaded. The build is deterministic: the
same environment and arguments give the same bytes, so publishing it twice is a no-op.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import io
import json
import marshal
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from importlib.util import MAGIC_NUMBER, source_hash
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from steppatch import _record as record
from steppatch._fs import atomic_write
from steppatch.errors import InputError
from steppatch.foothold._bootstrap import (
    ARCHIVE_WHEELS,
    BESIDE_WHEELS,
    BUILD_MEMBER,
    FORMAT,
    FootholdBootError,
    install_wheel,
    record_hash,
    wheel_bytes,
)
from steppatch.foothold._errors import BadWheel, FootholdError
from steppatch.foothold._runtime import running

__all__ = ["PYZ_NAME", "Foothold", "Layout", "Part", "build_foothold", "read_foothold"]

ROOT_DISTRIBUTION = "steppatch"
#: the project's own import packages (an editable install's RECORD does not list them)
PROJECT_PACKAGES = ("steppatch", "steppatch_cli")
PYZ_NAME = "steppatch.pyz"
SHEBANG = b"#!/usr/bin/env python3\n"
#: zip's earliest time: every member gets it, so equal content gives equal bytes
_EPOCH = (1980, 1, 1, 0, 0, 0)
_COMPRESSLEVEL = 6
#: written by installers, not part of a distribution
_INSTALLER_FILES = frozenset({"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"})
_COMPILED_SUFFIXES = (".so", ".pyd", ".dylib")

#: ``progress(stage, done, total)``, as :data:`steppatch.updater.Progress`
Progress = Callable[[str, int, int], None]


class Layout(enum.Enum):
    """``pyz``: one file, wheels inside. ``dir``: ``DIR/steppatch.pyz`` and ``DIR/wheels/``."""

    PYZ = "pyz"
    DIR = "dir"


@record.frozen
class Part:
    """One distribution in a foothold (one row per wheel file for compiled ones).

    ``kind`` is ``zipped`` (imported from the archive) or ``wheel`` (installed on first run);
    ``detail`` the file count or the wheel's name; ``size`` the bytes it adds to the artifact.
    """

    name: str
    version: str
    kind: str
    detail: str
    size: int


@record.frozen
class Foothold:
    """A built foothold: where, what version and build, its total size and its contents.

    ``skipped`` lists ``--wheels`` files that are not compiled dependencies (or duplicates).
    """

    path: Path
    layout: Layout
    version: str
    build: str
    steppatch: str
    python_requires: str
    size: int
    parts: tuple[Part, ...]
    skipped: tuple[str, ...] = ()

    @property
    def pyz(self) -> Path:
        """The archive to run with Python."""
        return self.path if self.layout is Layout.PYZ else self.path / PYZ_NAME


@record.frozen
class _Wheel:
    name: str  # canonical
    version: str
    file: str
    tags: tuple[str, ...]
    sha256: str
    data: bytes = record.field(repr=False)

    @property
    def modules(self) -> list[str]:
        with zipfile.ZipFile(io.BytesIO(self.data)) as z:
            return _top_level(z.namelist())


def build_foothold(
    out: Path | str,
    *,
    version: str | None = None,
    wheels: Path | str | None = None,
    progress: Progress | None = None,
) -> Foothold:
    """Build a foothold of the running steppatch at ``out``.

    ``out`` ending in ``.pyz`` is one file with the wheels inside; anything else is a directory
    (which must not exist or be empty) holding ``steppatch.pyz`` and ``wheels/``. ``version``
    labels the build (default: steppatch's own version); ``wheels`` is a directory of wheels for
    other platforms. Cost: reads and hashes every installed file of every runtime distribution
    once, compresses the pure ones.

    Raises :class:`FootholdError` when the running environment lacks a dependency or an installed
    file differs from its RECORD, :class:`BadWheel` for an unusable ``--wheels`` file and
    :class:`InputError` for a bad ``out`` or ``version``.
    """
    out = Path(out).absolute()
    layout = Layout.PYZ if out.suffix == ".pyz" else Layout.DIR
    _check_out(out, layout)
    report = progress or _no_progress
    dists = runtime_closure()
    root = dists[canonicalize_name(ROOT_DISTRIBUTION)]
    label = version or root.version
    try:
        Version(label)
    except InvalidVersion:
        raise InputError(f"--version {label!r} is not a PEP 440 version") from None
    compiled = {key: d.version for key, d in dists.items() if not _is_pure(d)}
    # Given wheels are checked first: a wrong one fails the build before the long part.
    given = _given_wheels(Path(wheels), compiled) if wheels is not None else ([], [])
    members: dict[str, bytes] = {}
    zipped: list[dict[str, Any]] = []
    groups: dict[str, list[str]] = {}
    carried: dict[str, list[_Wheel]] = {}
    own = _running_wheels()
    for done, (key, dist) in enumerate(sorted(dists.items()), start=1):
        files = _project_files(dist) if key == ROOT_DISTRIBUTION else _dist_files(dist)
        if key not in compiled:
            names = _add_zipped(members, files)
            groups[key] = names
            zipped.append({
                "name": key, "version": dist.version, "files": len(files),
                "modules": _top_level(names),
            })
        else:
            carried[key] = own.get(key) or [_repack(dist, files)]
        report("build", done, len(dists))
    skipped = list(given[1])
    for wheel in given[0]:
        if any(w.file == wheel.file for w in carried[wheel.name]):
            skipped.append(wheel.file)
        else:
            carried[wheel.name].append(wheel)
    where = "archive" if layout is Layout.PYZ else "beside"
    wheel_list = [w for key in sorted(carried) for w in sorted(carried[key], key=lambda w: w.file)]
    info: dict[str, Any] = {
        "format": FORMAT,
        "version": label,
        "steppatch": root.version,
        "python_requires": ", ".join(root.metadata.get_all("Requires-Python") or []),
        # The bootstrap runs what the distribution declares, so the library names no CLI module.
        "entry_point": _entry_point(root),
        "layout": layout.value,
        "zipped": zipped,
        "wheels": [
            {"name": w.name, "version": w.version, "file": w.file, "tags": list(w.tags),
             "sha256": w.sha256, "size": len(w.data), "where": where, "modules": w.modules}
            for w in wheel_list
        ],
    }
    members["__main__.py"] = _bootstrap_source()
    if layout is Layout.PYZ:
        for w in wheel_list:
            members[ARCHIVE_WHEELS + w.file] = w.data
    info["build"] = _build_id(info, members)
    members[BUILD_MEMBER] = json.dumps(info, indent=2, sort_keys=True).encode() + b"\n"
    archive, sizes = _zip(members, prefix=SHEBANG)
    parts = [
        Part(z["name"], z["version"], "zipped", f"{z['files']} files",
             sum(sizes[m] for m in groups[z["name"]]))
        for z in zipped
    ]
    parts += [Part(w.name, w.version, "wheel", w.file, len(w.data)) for w in wheel_list]
    _write(out, layout, archive, wheel_list)
    return Foothold(
        path=out,
        layout=layout,
        version=label,
        build=info["build"],
        steppatch=root.version,
        python_requires=info["python_requires"],
        size=len(archive) + (sum(len(w.data) for w in wheel_list) if where == "beside" else 0),
        parts=tuple(sorted(parts, key=lambda p: (p.name, p.detail))),
        skipped=tuple(skipped),
    )


def read_foothold(pyz: Path | str) -> dict[str, Any]:
    """The ``build.json`` of a foothold archive. Raises :class:`FootholdError`."""
    from steppatch.foothold._bootstrap import read_build

    try:
        return read_build(str(pyz))
    except FootholdBootError as e:
        raise FootholdError(str(e)) from e


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def _entry_point(dist: importlib.metadata.Distribution) -> str:
    """``module:function`` of the ``steppatch`` console script. Raises :class:`FootholdError`."""
    for entry in dist.entry_points.select(group="console_scripts", name=ROOT_DISTRIBUTION):
        return str(entry.value)
    raise FootholdError(f"the installed {ROOT_DISTRIBUTION} declares no console script to run")


def _check_out(out: Path, layout: Layout) -> None:
    if layout is Layout.PYZ:
        if not out.parent.is_dir():
            raise InputError(f"{out.parent} is not a directory")
        if out.is_dir():
            raise InputError(f"{out} is a directory")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: a foothold directory must not exist yet or be empty")


# --- what to carry -------------------------------------------------------------------------------


def runtime_closure() -> dict[str, importlib.metadata.Distribution]:
    """steppatch's distribution and every one it needs at run time, by canonical name.

    Markers are evaluated for the running interpreter: build on the oldest Python the foothold
    must run on (backports are then included). Raises :class:`FootholdError` for a dependency
    that is not installed.
    """
    found: dict[str, importlib.metadata.Distribution] = {}
    todo: list[tuple[str, frozenset[str], str]] = [(ROOT_DISTRIBUTION, frozenset(), "")]
    while todo:
        name, extras, wanted_by = todo.pop()
        key = canonicalize_name(name)
        if key in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise FootholdError(
                f"{name}, needed by {wanted_by}, is not installed in the running environment"
            ) from None
        found[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            wanted = req.marker is None or any(
                req.marker.evaluate({"extra": extra}) for extra in ("", *extras)
            )
            if wanted:
                todo.append((req.name, frozenset(req.extras), f"{dist.metadata['Name']}"))
    return found


def _read(dist: importlib.metadata.Distribution, path: importlib.metadata.PackagePath) -> bytes:
    try:
        data = path.read_binary()
    except OSError as e:
        raise FootholdError(
            f"{dist.metadata['Name']} {dist.version}: {path} cannot be read ({e}); reinstall it"
        ) from e
    recorded = path.hash
    if recorded is not None and recorded.mode == "sha256" and (
        record_hash(data) != f"sha256={recorded.value}"
    ):
        raise FootholdError(
            f"{dist.metadata['Name']} {dist.version}: {path} differs from what its installer "
            "recorded; reinstall it"
        )
    return data


def _dist_files(dist: importlib.metadata.Distribution) -> list[tuple[str, bytes]]:
    """What a distribution installed into site-packages, each file checked against its RECORD:
    no bytecode, no scripts, no ``.pth`` files, no installer's records."""
    files = []
    for path in dist.files or []:
        rel = path.as_posix()
        parts = rel.split("/")
        installer_record = (
            len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] in _INSTALLER_FILES
        )
        if (
            rel.startswith("../")
            or "__pycache__" in parts
            or rel.endswith((".pyc", ".pth"))
            or installer_record
        ):
            continue
        files.append((rel, _read(dist, path)))
    if not any(name.split("/")[0].endswith(".dist-info") for name, _ in files):
        raise FootholdError(
            f"{dist.metadata['Name']} {dist.version} is not installed with .dist-info metadata "
            "(reinstall it with pip)"
        )
    return sorted(files)


def _project_files(dist: importlib.metadata.Distribution) -> list[tuple[str, bytes]]:
    """steppatch itself: as installed, or, for an editable install (whose RECORD lists only a
    ``.pth`` file), its packages' directories plus its metadata."""
    files = _dist_files(dist)
    if any(name.split("/")[0] in PROJECT_PACKAGES for name, _ in files):
        return files
    found = [(name, data) for name, data in files if name.split("/")[0].endswith(".dist-info")]
    for package in PROJECT_PACKAGES:
        spec = importlib.util.find_spec(package)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if not locations or not Path(locations[0]).is_dir():
            raise FootholdError(f"cannot find the sources of the package {package!r}")
        root = Path(locations[0])
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if (
                path.is_file()
                and "__pycache__" not in rel.parts
                and not any(p.startswith(".") for p in rel.parts)
                and path.suffix != ".pyc"
            ):
                found.append((f"{package}/{rel.as_posix()}", path.read_bytes()))
    return sorted(found)


def _is_pure(dist: importlib.metadata.Distribution) -> bool:
    """Installed from a pure wheel and holding no extension module: it can import from a zip."""
    wheel = dist.read_text("WHEEL") or ""
    purelib = "root-is-purelib: true" in wheel.lower()
    return purelib and not any(str(f).endswith(_COMPILED_SUFFIXES) for f in dist.files or [])


def _info_dir(names: Iterable[str]) -> str:
    dirs = sorted({n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")})
    if len(dirs) != 1:
        raise FootholdError(f"expected one .dist-info directory, found {dirs or 'none'}")
    return dirs[0]


def _record(info_dir: str, files: Iterable[tuple[str, bytes]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for name, data in files:
        writer.writerow([name, record_hash(data), len(data)])
    writer.writerow([f"{info_dir}/RECORD", "", ""])
    return buf.getvalue().encode()


def _add_zipped(members: dict[str, bytes], files: list[tuple[str, bytes]]) -> list[str]:
    """Put a pure distribution's files into the archive, each module with its bytecode beside
    it; return the member names."""
    info_dir = _info_dir(name for name, _ in files)
    names = []
    for name, data in files:
        if name in members:
            raise FootholdError(f"two distributions install {name}")
        members[name] = data
        names.append(name)
        bytecode = _bytecode(name, data) if name.endswith(".py") else None
        if bytecode is not None:
            members[name + "c"] = bytecode
            names.append(name + "c")
    # A fresh RECORD that matches the archive, so a foothold can build a foothold in turn.
    members[f"{info_dir}/RECORD"] = _record(info_dir, files)
    return [*names, f"{info_dir}/RECORD"]


def _bytecode(name: str, source: bytes) -> bytes | None:
    """``module.pyc`` for zipimport, for the building interpreter only (another Python sees a
    foreign magic number and compiles the source): without it every start compiles every module
    again, about three times the start-up time.

    Unchecked hash-based (PEP 552), since archive members never change and their zip times mean
    nothing; marshal format 2, whose output does not depend on the building process's reference
    counts, so that builds stay byte-identical. ``None`` for a file this Python cannot compile.
    """
    try:
        code = compile(source, f"<foothold>/{name}", "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError):
        return None
    flags = (1).to_bytes(4, "little")  # hash-based, source not checked
    return MAGIC_NUMBER + flags + source_hash(source) + marshal.dumps(code, 2)


def _top_level(names: Iterable[str]) -> list[str]:
    """The importable top-level modules among archive member names."""
    found = set()
    for name in names:
        first = name.split("/")[0]
        if first.endswith((".dist-info", ".data")) or first == "__pycache__":
            continue
        module = first.split(".")[0] if "/" not in name else first
        if module.isidentifier():
            found.add(module)
    return sorted(found)


def _compress_tags(tags: list[str]) -> str:
    """``cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64``: the wheel file name's tag."""
    columns: list[list[str]] = [[], [], []]
    for tag in tags:
        for column, value in zip(columns, tag.split("-"), strict=True):
            if value not in column:
                column.append(value)
    return "-".join(".".join(column) for column in columns)


def _repack(dist: importlib.metadata.Distribution, files: list[tuple[str, bytes]]) -> _Wheel:
    """An installed compiled distribution as a wheel again: its files, its ``WHEEL`` tags, a
    fresh RECORD, the ``.dist-info`` last as the wheel format asks."""
    info_dir = _info_dir(name for name, _ in files)
    tags = [
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]
    if not tags or any(t.count("-") != 2 for t in tags):
        raise FootholdError(f"{dist.metadata['Name']} {dist.version}: its WHEEL file has no tags")
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    file = f"{name}-{dist.version}-{_compress_tags(tags)}.whl"
    ordered = sorted(files, key=lambda item: (item[0].startswith(f"{info_dir}/"), item[0]))
    members = dict(ordered)
    members[f"{info_dir}/RECORD"] = _record(info_dir, ordered)
    data, _ = _zip(members, sort=False)
    return _Wheel(
        canonicalize_name(dist.metadata["Name"]), dist.version, file, tuple(tags),
        hashlib.sha256(data).hexdigest(), data,
    )


def _running_wheels() -> dict[str, list[_Wheel]]:
    """When this steppatch runs from a foothold: every wheel it carries (all platforms)."""
    here = running()
    if here is None:
        return {}
    found: dict[str, list[_Wheel]] = {}
    with zipfile.ZipFile(here.pinned or here.archive) as z:
        for wheel in here.info.get("wheels", []):
            try:
                data = wheel_bytes(z, str(here.archive.parent), wheel)
            except FootholdBootError as e:
                raise FootholdError(str(e)) from e
            found.setdefault(wheel["name"], []).append(
                _Wheel(wheel["name"], wheel["version"], wheel["file"], tuple(wheel["tags"]),
                       wheel["sha256"], data)
            )
    return found


def _given_wheels(
    directory: Path, compiled: dict[str, str]
) -> tuple[list[_Wheel], list[str]]:
    """The wheels in ``directory`` of the compiled dependencies, each checked whole against
    its RECORD; and the names of those skipped (other distributions).

    Raises :class:`BadWheel` for a wheel of another version or a damaged one.
    """
    if not directory.is_dir():
        raise InputError(f"--wheels {directory}: not a directory")
    found, skipped = [], []
    for path in sorted(directory.glob("*.whl")):
        try:
            name, version, _build, tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename as e:
            raise BadWheel(str(path), str(e)) from None
        key = canonicalize_name(name)
        if key not in compiled:
            skipped.append(path.name)
            continue
        if version != Version(compiled[key]):
            raise BadWheel(
                str(path), f"{name} {version}, but the foothold carries {name} {compiled[key]}"
            )
        data = path.read_bytes()
        try:
            install_wheel(data, path.name, None)
        except FootholdBootError as e:
            raise BadWheel(str(path), str(e)) from None
        found.append(_Wheel(
            key, compiled[key], path.name, tuple(sorted(str(t) for t in tags)),
            hashlib.sha256(data).hexdigest(), data,
        ))
    return found, skipped


# --- writing -------------------------------------------------------------------------------------


def _bootstrap_source() -> bytes:
    return (importlib.resources.files("steppatch.foothold") / "_bootstrap.py").read_bytes()


def _build_id(info: dict[str, Any], members: dict[str, bytes]) -> str:
    """The build's identity: its description and every member's hash."""
    digest = hashlib.sha256(json.dumps(info, sort_keys=True).encode())
    for name in sorted(members):
        digest.update(f"\n{name}\0{hashlib.sha256(members[name]).hexdigest()}".encode())
    return digest.hexdigest()


def _zip(
    members: dict[str, bytes], *, prefix: bytes = b"", sort: bool = True
) -> tuple[bytes, dict[str, int]]:
    """A deterministic zip of ``members`` (fixed times and modes) after ``prefix``; returns it
    and each member's compressed size. Wheels inside are stored, not compressed again."""
    buf = io.BytesIO()
    buf.write(prefix)
    sizes = {}
    with zipfile.ZipFile(buf, "w") as z:
        for name in sorted(members) if sort else members:
            info = zipfile.ZipInfo(name, _EPOCH)
            info.create_system = 3  # unix, so the mode below is read on every host
            mode = 0o755 if name.endswith(_COMPILED_SUFFIXES) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            stored = name.endswith(".whl")
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            z.writestr(info, members[name], compresslevel=None if stored else _COMPRESSLEVEL)
            sizes[name] = z.getinfo(name).compress_size
    return buf.getvalue(), sizes


def _write(out: Path, layout: Layout, archive: bytes, wheels: list[_Wheel]) -> None:
    if layout is Layout.PYZ:
        atomic_write(out, archive, mode=0o755)
        return
    # Made beside and renamed into place: a killed build leaves no half-made directory.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        atomic_write(tmp / PYZ_NAME, archive, mode=0o755)
        (tmp / BESIDE_WHEELS).mkdir()
        for w in wheels:
            atomic_write(tmp / BESIDE_WHEELS / w.file, w.data)
        os.chmod(tmp, 0o755)
        if out.is_dir():
            out.rmdir()  # empty, checked before the build
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
