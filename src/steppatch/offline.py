"""Offline patch files: everything an air-gapped home needs to apply a change, in one file.

A patch file is an uncompressed POSIX tar archive followed by one trailer line that carries the
SHA-256 of every byte before it::

    patch.json                       what the patch is for (environment, base state) and does
    roots/N.root.json                the repository's root versions, for key rotations
    timestamp.json                   the signed timestamp ...
    indexes/N.index.json             ... and the signed index it pins
    RECIPE PATHS                     the recipes asked for (``to:`` ones as published)
    local/K.spr                      recipes given as local files
    manifests/ab/....json            manifests of the component versions that change
    objects/ab/....                  only the objects the target does not hold, and no delta gives
    transfers/ab/....json            (patch/2) the transfers documents of the versions that change
    deltas/ab/....                   (patch/2) deltas from objects the target holds; compressed
    \\nsteppatch-patch-sha256:HEX\\n   the trailer

The trailer makes any damage (a flipped bit anywhere, a truncation) visible before a byte is
extracted; authenticity comes from the signed metadata inside, verified by the home against the
root it trusts, exactly as for a download. The archive is deterministic: members sorted, times,
owners and modes fixed, so the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, NoReturn

from packaging.version import Version

from steppatch import _record as record
from steppatch._fs import temp_path
from steppatch._json import Fields, dump_json, load_json_object
from steppatch.errors import InputError, UnsafePath
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.paths import safe_relpath
from steppatch.versions import is_valid_name, parse_version

__all__ = [
    "PATCH_FORMAT",
    "PATCH_FORMAT_DELTAS",
    "PatchError",
    "PatchFile",
    "PatchInfo",
    "dump_patch_info",
    "is_patch_file",
    "parse_patch_info",
    "write_patch",
]

PATCH_FORMAT = "steppatch-patch/1"
#: a patch that carries deltas or compressed forms (homes before them cannot use it)
PATCH_FORMAT_DELTAS = "steppatch-patch/2"
TRAILER = b"\nsteppatch-patch-sha256:"
_TRAILER_LEN = len(TRAILER) + 64 + 1
_CHUNK = 1024 * 1024


class PatchError(InputError):
    """A patch file is damaged, malformed or over a limit. ``path`` names it."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} is not a usable patch file: {problem}")
        self.path = path
        self.problem = problem


@record.frozen
class PatchInfo:
    """What a patch is for and what it does (``patch.json``).

    ``environment``/``system``/``fingerprint``: the snapshot it was made from; ``base``: that
    snapshot's versions; ``target``: the versions it brings the home to; ``refs``: the recipes,
    as ``to:PATH`` or ``local:MEMBER``; ``objects``/``object_bytes``: what it carries.
    """

    environment: str
    system: str
    fingerprint: str
    base: Mapping[str, Version]
    target: Mapping[str, Version]
    refs: tuple[str, ...]
    objects: int = 0
    object_bytes: int = 0
    #: of ``objects``, how many come as a delta or compressed form, and those forms' bytes
    delta_objects: int = 0
    delta_bytes: int = 0


def dump_patch_info(info: PatchInfo) -> bytes:
    """The bytes of ``patch.json``."""
    return dump_json(
        {
            # patch/2 when it carries deltas: a home before them refuses it by its format rather
            # than failing on a missing object half way.
            "format": PATCH_FORMAT_DELTAS if info.delta_objects else PATCH_FORMAT,
            "environment": info.environment,
            "system": info.system,
            "fingerprint": info.fingerprint,
            "base": {n: str(v) for n, v in sorted(info.base.items())},
            "target": {n: str(v) for n, v in sorted(info.target.items())},
            "refs": list(info.refs),
            "objects": info.objects,
            "object_bytes": info.object_bytes,
            **(
                {"delta_objects": info.delta_objects, "delta_bytes": info.delta_bytes}
                if info.delta_objects
                else {}
            ),
        }
    )


def parse_patch_info(data: bytes, source: str) -> PatchInfo:
    """Parse ``patch.json``. Raises :class:`PatchError` naming the field at fault."""

    def fail(problem: str) -> NoReturn:
        raise PatchError(source, f"patch.json: {problem}")

    f = Fields(load_json_object(data, fail), "", fail)
    if f.get("format", str) not in (PATCH_FORMAT, PATCH_FORMAT_DELTAS):
        f.fail("format", f"expected {PATCH_FORMAT!r} or {PATCH_FORMAT_DELTAS!r}")

    def versions(field: str) -> dict[str, Version]:
        sub = f.sub(field)
        result = {}
        for name in sorted(sub.obj):
            if not is_valid_name(name):
                sub.fail(name, "not a component name")
            result[name] = sub.parse(name, parse_version)
        return result

    refs = f.get("refs", list)
    if not refs or not all(isinstance(r, str) and r for r in refs):
        f.fail("refs", "expected a list of recipe references")
    return PatchInfo(
        environment=f.get("environment", str),
        system=f.get("system", str, ""),
        fingerprint=f.get("fingerprint", str),
        base=versions("base"),
        target=versions("target"),
        refs=tuple(refs),
        objects=f.get("objects", int, 0),
        object_bytes=f.get("object_bytes", int, 0),
        delta_objects=f.get("delta_objects", int, 0),
        delta_bytes=f.get("delta_bytes", int, 0),
    )


def write_patch(path: Path, info: PatchInfo, members: Mapping[str, bytes | Path]) -> int:
    """Write a patch file: ``patch.json`` and ``members`` (name -> bytes or a file to copy).

    Deterministic: the same arguments give the same bytes. Written beside ``path`` and renamed
    into place. Returns the file's size. Raises ``OSError``; ``ValueError`` for an unsafe name.
    """
    entries: dict[str, bytes | Path] = {"patch.json": dump_patch_info(info)}
    for name, content in members.items():
        entries[safe_relpath(name)] = content
    tmp = temp_path(path)
    digest = hashlib.sha256()
    try:
        with open(tmp, "xb") as raw:
            out = _HashingWriter(raw, digest)
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name in sorted(entries):
                    content = entries[name]
                    member = tarfile.TarInfo(name)
                    if isinstance(content, bytes):
                        member.size = len(content)
                    else:
                        member.size = content.stat().st_size
                    member.mode = 0o644
                    member.mtime = 0
                    member.uid = member.gid = 0
                    member.uname = member.gname = ""
                    if isinstance(content, bytes):
                        tar.addfile(member, io.BytesIO(content))
                    else:
                        with open(content, "rb") as f:
                            tar.addfile(member, f)
            raw.write(TRAILER + digest.hexdigest().encode() + b"\n")
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path.stat().st_size


class _HashingWriter(io.RawIOBase):
    def __init__(self, raw: IO[bytes], digest: Any) -> None:
        self.raw = raw
        self.digest = digest

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        self.raw.write(view)
        return len(view)


def is_patch_file(path: Path) -> bool:
    """Whether ``path`` looks like a patch file (a tar archive), not a JSON recipe."""
    try:
        with open(path, "rb") as f:
            head = f.read(263)
    except OSError:
        return False
    return len(head) == 263 and head[257:262] == b"ustar"


class PatchFile:
    """A patch file checked whole (size, trailer hash, members) before anything is read from it.

    Construct with :meth:`open`.
    """

    def __init__(self, path: Path, info: PatchInfo, members: dict[str, int], size: int) -> None:
        self.path = path
        self.info = info
        self.members = members
        self.size = size

    @classmethod
    def open(cls, path: Path | str, limits: Limits = DEFAULT_LIMITS) -> PatchFile:
        """Check ``path``: within the size limit, trailer hash matching every byte, a tar of
        regular files with safe, unique names within the member limit, and a valid
        ``patch.json``. Raises :class:`PatchError`. Cost: one read of the whole file.
        """
        path = Path(path)
        where = str(path)
        try:
            size = path.stat().st_size
        except OSError as e:
            raise PatchError(where, e.strerror or str(e)) from None
        if size > limits.max_patch_bytes:
            raise PatchError(where, f"larger than the limit of {limits.max_patch_bytes} bytes")
        if size < _TRAILER_LEN:
            raise PatchError(where, "too short (truncated?)")
        body = size - _TRAILER_LEN
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            left = body
            while left:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    raise PatchError(where, "changed while being read")
                digest.update(chunk)
                left -= len(chunk)
            trailer = f.read()
        expected = TRAILER + digest.hexdigest().encode() + b"\n"
        if trailer != expected:
            raise PatchError(where, "damaged: its checksum does not match (changed or cut short)")
        members: dict[str, int] = {}
        info_bytes = b""
        try:
            with open(path, "rb") as f, tarfile.open(
                fileobj=_Limited(f, body), mode="r|"
            ) as tar:
                for member in tar:
                    if len(members) >= limits.max_patch_members:
                        raise PatchError(where, f"more than {limits.max_patch_members} members")
                    if not member.isreg():
                        raise PatchError(where, f"member {member.name!r} is not a regular file")
                    try:
                        name = safe_relpath(member.name)
                    except UnsafePath as e:
                        raise PatchError(where, f"member {member.name!r}: {e.problem}") from None
                    if name in members:
                        raise PatchError(where, f"member {name!r} appears twice")
                    members[name] = member.size
                    if name == "patch.json":
                        extracted = tar.extractfile(member)
                        assert extracted is not None
                        info_bytes = extracted.read(limits.max_recipe_bytes + 1)
        except tarfile.TarError as e:
            raise PatchError(where, f"not a readable archive: {e}") from None
        if not info_bytes:
            raise PatchError(where, "no patch.json")
        return cls(path, parse_patch_info(info_bytes, where), members, size)

    def extract(self, dest: Path) -> None:
        """Write every member below ``dest`` (which must exist). Names were checked by
        :meth:`open`; files are created new, never through a link. Raises ``OSError``.
        """
        body = self.size - _TRAILER_LEN
        with open(self.path, "rb") as f, tarfile.open(fileobj=_Limited(f, body), mode="r|") as tar:
            for member in tar:
                name = safe_relpath(member.name)
                if self.members.get(name) != member.size:
                    raise PatchError(str(self.path), "changed since it was checked")
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as out:
                    while chunk := source.read(_CHUNK):
                        out.write(chunk)


class _Limited(io.RawIOBase):
    """The first ``size`` bytes of a file: the archive without its trailer."""

    def __init__(self, raw: IO[bytes], size: int) -> None:
        self.raw = raw
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.left)
        if want <= 0:
            return 0
        data = self.raw.read(want)
        view[: len(data)] = data
        self.left -= len(data)
        return len(data)
