"""Reading a component source directory: ``component.toml`` plus ``files/``."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from steppatch import _record as record
from steppatch._toml import TomlProblem, parse_toml
from steppatch.errors import ComponentSourceError, UnsafeSourceSymlink
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.links import symlinks_of, unsafe_links
from steppatch.model import ConfigChecks, EntryKind, FileEntry, Manifest
from steppatch.paths import link_stays_inside
from steppatch.store import hash_file
from steppatch.versions import is_valid_name

__all__ = ["ComponentSource", "read_source"]

_KNOWN_KEYS = {"name", "version", "summary", "notes", "hot", "dependencies", "config"}


@record.frozen
class ComponentSource:
    """A component version read from its source directory, ready to publish."""

    root: Path
    name: str
    version: Version
    summary: str
    notes: str
    hot: bool
    dependencies: dict[str, SpecifierSet]
    config: ConfigChecks
    manifest: Manifest

    def file_path(self, entry: FileEntry) -> Path:
        """Where an entry's content lies in the source."""
        return self.root / "files" / entry.path


def _field(meta: dict[str, Any], key: str, kind: type, where: str, required: bool) -> Any:
    if key not in meta:
        if required:
            raise ComponentSourceError(where, key, "missing (required)")
        return None
    value = meta[key]
    if not isinstance(value, kind):
        raise ComponentSourceError(
            where, key, f"expected {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _read_meta(path: Path, limits: Limits) -> dict[str, Any]:
    where = str(path)
    try:
        if path.stat().st_size > limits.max_component_toml_bytes:
            raise ComponentSourceError(where, None, "file too large")
        return parse_toml(path.read_bytes())
    except FileNotFoundError:
        raise ComponentSourceError(where, None, "missing: a component source needs one") from None
    except TomlProblem as e:
        raise ComponentSourceError(where, None, e.problem) from e


def read_source(root: Path, limits: Limits = DEFAULT_LIMITS) -> ComponentSource:
    """Read and check a component source directory, hashing every file.

    Raises :class:`ComponentSourceError` naming the file and field at fault: a missing or invalid
    field, a symlink that points outside ``files/`` (:class:`UnsafeSourceSymlink` when it leads
    out, loops or follows too many symlinks through the component's other symlinks), or a file
    that is neither regular, directory nor symlink, or one larger than
    ``limits.max_object_bytes``. Cost: reads every file once.
    """
    toml_path = root / "component.toml"
    where = str(toml_path)
    meta = _read_meta(toml_path, limits)
    unknown = sorted(set(meta) - _KNOWN_KEYS)
    if unknown:
        raise ComponentSourceError(where, unknown[0], "unknown field")
    name = _field(meta, "name", str, where, True)
    if not is_valid_name(name):
        raise ComponentSourceError(
            where, "name", f"{name!r} is not lowercase letters, digits and '-'"
        )
    version_text = _field(meta, "version", str, where, True)
    try:
        version = Version(version_text)
    except InvalidVersion:
        raise ComponentSourceError(
            where, "version", f"{version_text!r} is not a PEP 440 version"
        ) from None
    deps_raw = _field(meta, "dependencies", dict, where, False) or {}
    dependencies: dict[str, SpecifierSet] = {}
    for dep, spec in sorted(deps_raw.items()):
        field = f"dependencies.{dep}"
        if not is_valid_name(dep):
            raise ComponentSourceError(where, field, "not a component name")
        if dep == name:
            raise ComponentSourceError(where, field, "a component cannot depend on itself")
        if not isinstance(spec, str):
            raise ComponentSourceError(where, field, "expected a PEP 440 specifier string")
        try:
            dependencies[dep] = SpecifierSet(spec)
        except InvalidSpecifier:
            raise ComponentSourceError(
                where, field, f"{spec!r} is not a PEP 440 specifier"
            ) from None
    files_root = root / "files"
    if not files_root.is_dir() or files_root.is_symlink():
        raise ComponentSourceError(str(files_root), None, "missing: expected a directory")
    entries = _scan(files_root, limits.max_object_bytes)
    problems = unsafe_links(symlinks_of(entries), limits.max_symlink_hops)
    if problems:
        first = problems[0]
        raise UnsafeSourceSymlink(
            str(files_root / first.path),
            name,
            str(version),
            first.path,
            first.target,
            first.kind.value,
            first.via,
            first.describe(),
        )
    return ComponentSource(
        root=root,
        name=name,
        version=version,
        summary=_field(meta, "summary", str, where, False) or "",
        notes=_field(meta, "notes", str, where, False) or "",
        hot=bool(_field(meta, "hot", bool, where, False)),
        dependencies=dependencies,
        config=_config_checks(meta, where),
        manifest=Manifest(name, version, tuple(entries)),
    )


def _config_checks(meta: dict[str, Any], where: str) -> ConfigChecks:
    """``[config]``: ``deprecated = ["key", ...]`` and ``[config.renamed]`` ``"old" = "new"``."""
    raw = _field(meta, "config", dict, where, False)
    if raw is None:
        return ConfigChecks()
    unknown = sorted(set(raw) - {"deprecated", "renamed"})
    if unknown:
        raise ComponentSourceError(where, f"config.{unknown[0]}", "unknown field")
    deprecated = raw.get("deprecated", [])
    if not isinstance(deprecated, list) or not all(
        isinstance(k, str) and k for k in deprecated
    ):
        raise ComponentSourceError(where, "config.deprecated", "expected a list of setting names")
    renamed = raw.get("renamed", {})
    if not isinstance(renamed, dict) or not all(
        isinstance(v, str) and v and k for k, v in renamed.items()
    ):
        raise ComponentSourceError(where, "config.renamed", "expected old = \"new\" pairs")
    return ConfigChecks(tuple(deprecated), renamed)


def _scan(files_root: Path, max_object_bytes: int) -> list[FileEntry]:
    entries: list[FileEntry] = []
    for dirpath, dirnames, filenames in os.walk(files_root):
        dirnames.sort()
        here = Path(dirpath)
        for item in sorted([*dirnames, *filenames]):
            full = here / item
            rel = full.relative_to(files_root).as_posix()
            st = full.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(full)
                if not link_stays_inside(rel, target):
                    raise ComponentSourceError(
                        str(full), None, f"symlink to {target!r} points outside files/"
                    )
                entries.append(FileEntry(rel, EntryKind.SYMLINK, 0o777, target=target))
            elif mode & 0o6000:
                raise ComponentSourceError(
                    str(full), None, "set-uid and set-gid files are refused"
                )
            elif stat.S_ISDIR(st.st_mode):
                entries.append(FileEntry(rel, EntryKind.DIR, mode & 0o1777))
            elif stat.S_ISREG(st.st_mode):
                if st.st_size > max_object_bytes:
                    # Refused before hashing: no home or mirror would download it.
                    raise ComponentSourceError(
                        str(full), None,
                        f"{st.st_size} bytes, larger than the object limit of "
                        f"{max_object_bytes} bytes (max_object_bytes)",
                    )
                sha256, size = hash_file(full)
                entries.append(FileEntry(rel, EntryKind.FILE, mode & 0o1777, size, sha256))
            else:
                raise ComponentSourceError(
                    str(full), None, "not a regular file, directory or symlink"
                )
    entries.sort(key=lambda e: e.path)
    return entries
