"""Reading and writing the repository's documents and a home's state: bytes in, values out.

The formats are described, versioned, in ``docs/formats.md``. Parsing never trusts its input:
every field is type-checked, every path made safe, every limit enforced.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from packaging.version import Version

from steppatch import _record as record
from steppatch._json import Fields, dump_json, load_json_object
from steppatch.errors import MalformedDocument, TooLarge, UnsafePath
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import (
    ComponentVersion,
    ConfigChecks,
    Encoded,
    EntryKind,
    FileEntry,
    FileRef,
    HomeState,
    InstalledComponent,
    Manifest,
    ObjectTransfers,
    RepositoryIndex,
    Transfers,
)
from steppatch.paths import link_stays_inside, safe_relpath
from steppatch.versions import is_valid_name, parse_specifier, parse_version

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet

    from steppatch.plan import Plan

__all__ = [
    "INDEX_FORMAT",
    "INLINE_STATE_FORMAT",
    "MANIFEST_FORMAT",
    "STATE_FORMAT",
    "TRANSFERS_FORMAT",
    "StateRecord",
    "dump_home_state",
    "dump_manifest",
    "dump_state",
    "dump_stored_manifest",
    "dump_transfers",
    "entries_from_json",
    "entry_to_json",
    "index_from_json",
    "index_to_json",
    "manifest_from_json",
    "manifest_to_json",
    "parse_home_state",
    "parse_manifest",
    "parse_state",
    "parse_stored_manifest",
    "parse_transfers",
    "plan_from_json",
    "plan_to_json",
    "state_from_records",
    "stored_manifest_entries",
]

MANIFEST_FORMAT = "steppatch-manifest/1"
INDEX_FORMAT = "steppatch-index/1"
#: a component version's deltas and compressed forms, named by the index's optional ``transfers``
TRANSFERS_FORMAT = "steppatch-transfers/1"
#: a home's state file: components and the names of their stored manifests
STATE_FORMAT = "steppatch-state/2"
#: the self-contained state, manifests inline: homes before state/2, and staged applies
INLINE_STATE_FORMAT = "steppatch-state/1"


def _failer(source: str) -> Callable[[str], NoReturn]:
    def fail(problem: str) -> NoReturn:
        raise MalformedDocument(source, problem)

    return fail


def _check_format(fields: Fields, expected: str) -> None:
    found = fields.get("format", str)
    if found != expected:
        fields.fail("format", f"expected {expected!r}, got {found!r}")


def _name(fields: Fields, field: str) -> str:
    name = fields.get(field, str)
    if not is_valid_name(name):
        fields.fail(field, f"{name!r} is not a component name")
    return name


# --- manifests ------------------------------------------------------------------------------------


def entry_to_json(e: FileEntry) -> dict[str, Any]:
    """The JSON value of one manifest entry."""
    item: dict[str, Any] = {"path": e.path, "type": e.kind.value}
    if e.kind is EntryKind.FILE:
        item.update(mode=f"{e.mode:04o}", size=e.size, sha256=e.sha256)
    elif e.kind is EntryKind.DIR:
        item["mode"] = f"{e.mode:04o}"
    else:
        item["target"] = e.target
    return item


def entries_from_json(
    raw_entries: list[Any], fail: Callable[[str], NoReturn], limits: Limits = DEFAULT_LIMITS
) -> tuple[FileEntry, ...]:
    """Manifest entries from their JSON values, sorted by path; ``fail(problem)`` raises.

    Every path is made safe, every link checked to stay inside, no entry may lie under a file or
    link, set-uid and set-gid modes are refused. Cost: O(entries x depth); a well-formed entry
    takes the fast path, anything unusual the careful one that names the field at fault.
    """
    if len(raw_entries) > limits.max_manifest_entries:
        fail(f"more than {limits.max_manifest_entries} entries")
    entries: list[FileEntry] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_entries):
        entry = _entry_fast(raw) or _entry_checked(i, raw, fail)
        if entry.path in seen:
            fail(f"entries[{i}].path: {entry.path!r} listed twice")
        seen.add(entry.path)
        entries.append(entry)
    entries.sort(key=lambda e: e.path)
    _check_parents(entries, fail)
    return tuple(entries)


_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_MODE = re.compile(r"[0-7]{1,4}\Z")
_KINDS = {kind.value: kind for kind in EntryKind}


def _entry_fast(raw: object) -> FileEntry | None:
    """The entry if ``raw`` is plainly well formed, else ``None`` (the careful path decides)."""
    if not isinstance(raw, dict):
        return None
    path, kind_text = raw.get("path"), raw.get("type")
    # Checked to be a string before the look-up: a list or an object is not hashable.
    kind = _KINDS.get(kind_text) if isinstance(kind_text, str) else None
    if not isinstance(path, str) or kind is None or not path or path[0] == "/":
        return None
    # Substring tests in C instead of a loop over the parts: no empty, "." or ".." part.
    framed = f"/{path}/"
    if "//" in framed or "/./" in framed or "/../" in framed or "\0" in path or "\\" in path:
        return None
    if kind is EntryKind.SYMLINK:
        target = raw.get("target")
        if isinstance(target, str) and link_stays_inside(path, target):
            return FileEntry(path, kind, 0o777, target=target)
        return None
    mode_text = raw.get("mode")
    if not isinstance(mode_text, str) or not _MODE.match(mode_text):
        return None
    mode = int(mode_text, 8)
    if mode & 0o6000:
        return None
    if kind is EntryKind.DIR:
        return FileEntry(path, kind, mode)
    size, sha256 = raw.get("size"), raw.get("sha256")
    if (
        type(size) is not int
        or size < 0
        or not isinstance(sha256, str)
        or not _HEX64.match(sha256)
    ):
        return None
    return FileEntry(path, kind, mode, size, sha256)


def _entry_checked(i: int, raw: object, fail: Callable[[str], NoReturn]) -> FileEntry:
    if not isinstance(raw, dict):
        fail(f"entries[{i}]: expected an object")
    ef = Fields(raw, f"entries[{i}].", fail)
    try:
        path = safe_relpath(ef.get("path", str))
    except UnsafePath as e:
        ef.fail("path", e.problem)
    kind_text = ef.get("type", str)
    try:
        kind = EntryKind(kind_text)
    except ValueError:
        ef.fail("type", f"expected file, symlink or dir, got {kind_text!r}")
    if kind is EntryKind.FILE:
        size = ef.get("size", int)
        if size < 0:
            ef.fail("size", "negative")
        return FileEntry(path, kind, ef.parse("mode", _parse_mode), size, _sha256(ef, "sha256"))
    if kind is EntryKind.DIR:
        return FileEntry(path, kind, ef.parse("mode", _parse_mode))
    target = ef.get("target", str)
    if not link_stays_inside(path, target):
        ef.fail("target", f"{target!r} points outside the tree")
    return FileEntry(path, kind, 0o777, target=target)


def manifest_to_json(manifest: Manifest) -> dict[str, Any]:
    """The JSON value of a manifest."""
    entries = [entry_to_json(e) for e in manifest.entries]
    return {
        "format": MANIFEST_FORMAT,
        "component": manifest.component,
        "version": str(manifest.version),
        "entries": entries,
    }


def dump_manifest(manifest: Manifest) -> bytes:
    """The published bytes of a manifest."""
    return dump_json(manifest_to_json(manifest))


def _parse_mode(text: str) -> int:
    mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        raise ValueError("mode out of range")
    if mode & 0o6000:
        # A patch never installs set-user-id or set-group-id files.
        raise ValueError(f"{text}: set-uid and set-gid modes are refused")
    return mode


def _sha256(fields: Fields, field: str) -> str:
    value = fields.get(field, str)
    if not _HEX64.match(value):
        fields.fail(field, "expected 64 lowercase hex digits")
    return value


def manifest_from_json(
    obj: dict[str, Any], source: str, limits: Limits = DEFAULT_LIMITS
) -> Manifest:
    """Build a manifest from its JSON value. Raises :class:`MalformedDocument`."""
    fail = _failer(source)
    f = Fields(obj, "", fail)
    _check_format(f, MANIFEST_FORMAT)
    component = _name(f, "component")
    version = f.parse("version", parse_version)
    entries = entries_from_json(f.get("entries", list), fail, limits)
    return Manifest(component, version, entries)


def _check_parents(entries: list[FileEntry], fail: Callable[[str], NoReturn]) -> None:
    # A file under a path that is itself a file or a symlink would let a later write follow a link.
    kinds = {e.path: e.kind for e in entries}
    for e in entries:
        parent = e.path.rpartition("/")[0]
        while parent:
            kind = kinds.get(parent)
            if kind is not None and kind is not EntryKind.DIR:
                fail(f"{e.path!r} lies under {parent!r}, which is a {kind.value}")
            parent = parent.rpartition("/")[0]


def parse_manifest(data: bytes, source: str, limits: Limits = DEFAULT_LIMITS) -> Manifest:
    """Parse a manifest document. Raises :class:`MalformedDocument` or :class:`TooLarge`."""
    if len(data) > limits.max_manifest_bytes:
        raise TooLarge(source, limits.max_manifest_bytes)
    obj = load_json_object(data, _failer(source), limits.json())
    return manifest_from_json(obj, source, limits)


# --- the repository index ------------------------------------------------------------------------


def _ref_json(ref: FileRef) -> dict[str, Any]:
    return {"path": ref.path, "sha256": ref.sha256, "length": ref.length}


def _config_json(config: ConfigChecks) -> dict[str, Any]:
    # Omitted when empty, so indexes of components without checks stay as they were.
    if not config:
        return {}
    return {
        "config": {
            "deprecated": list(config.deprecated),
            "renamed": dict(sorted(config.renamed.items())),
        }
    }


def _config_from(f: Fields) -> ConfigChecks:
    if "config" not in f.obj:
        return ConfigChecks()
    cf = f.sub("config")
    deprecated = cf.get("deprecated", list, [])
    if not all(isinstance(k, str) and k for k in deprecated):
        cf.fail("deprecated", "expected a list of setting names")
    renamed = cf.get("renamed", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) and k and v for k, v in renamed.items()):
        cf.fail("renamed", "expected an object of old name to new name")
    return ConfigChecks(tuple(deprecated), renamed)


def index_to_json(index: RepositoryIndex) -> dict[str, Any]:
    """The JSON value of a repository index."""
    components: dict[str, Any] = {}
    for name, versions in index.components.items():
        components[name] = {
            str(v): {
                "summary": cv.summary,
                "notes": cv.notes,
                "hot": cv.hot,
                "dependencies": {d: str(s) for d, s in sorted(cv.dependencies.items())},
                "manifest": _ref_json(cv.manifest),
                "recipe": cv.recipe,
                **_config_json(cv.config),
                # Optional: readers before transfers ignore fields they do not know.
                **({"transfers": _ref_json(cv.transfers)} if cv.transfers is not None else {}),
            }
            for v, cv in sorted(versions.items())
        }
    recipes = {
        path: {"sha256": ref.sha256, "length": ref.length}
        for path, ref in sorted(index.recipes.items())
    }
    return {"format": INDEX_FORMAT, "components": components, "recipes": recipes}


def _file_ref(f: Fields, path: str | None = None) -> FileRef:
    if path is None:
        try:
            path = safe_relpath(f.get("path", str))
        except UnsafePath as e:
            f.fail("path", e.problem)
    length = f.get("length", int)
    if length < 0:
        f.fail("length", "negative")
    return FileRef(path, _sha256(f, "sha256"), length)


def index_from_json(obj: dict[str, Any], source: str) -> RepositoryIndex:
    """Build a repository index from the payload of verified index metadata.

    Raises :class:`MalformedDocument` naming the field at fault.
    """
    fail = _failer(source)
    f = Fields(obj, "", fail)
    _check_format(f, INDEX_FORMAT)
    components: dict[str, dict[Version, ComponentVersion]] = {}
    comps = f.sub("components")
    for name in sorted(comps.obj):
        if not is_valid_name(name):
            comps.fail(name, "not a component name")
        versions = comps.sub(name)
        parsed: dict[Version, ComponentVersion] = {}
        for vtext in versions.obj:
            try:
                version = parse_version(vtext)
            except ValueError as e:
                versions.fail(vtext, str(e))
            cf = versions.sub(vtext)
            deps = cf.sub("dependencies")
            dependencies: dict[str, SpecifierSet] = {}
            for dep in sorted(deps.obj):
                if not is_valid_name(dep):
                    deps.fail(dep, "not a component name")
                dependencies[dep] = deps.parse(dep, parse_specifier)
            try:
                recipe = safe_relpath(cf.get("recipe", str))
            except UnsafePath as e:
                cf.fail("recipe", e.problem)
            parsed[version] = ComponentVersion(
                name=name,
                version=version,
                manifest=_file_ref(cf.sub("manifest")),
                recipe=recipe,
                summary=cf.get("summary", str, ""),
                notes=cf.get("notes", str, ""),
                hot=cf.get("hot", bool, False),
                dependencies=dependencies,
                config=_config_from(cf),
                transfers=_file_ref(cf.sub("transfers")) if "transfers" in cf.obj else None,
            )
        components[name] = parsed
    recipes: dict[str, FileRef] = {}
    rf = f.sub("recipes")
    for path in sorted(rf.obj):
        try:
            safe = safe_relpath(path)
        except UnsafePath as e:
            rf.fail(path, e.problem)
        recipes[safe] = _file_ref(rf.sub(path), safe)
    return RepositoryIndex(components, recipes)


# --- a component version's transfers (deltas, compressed forms) ----------------------------------


def _encoded_json(e: Encoded) -> dict[str, Any]:
    extra = {"expanded": e.expanded} if e.expanded is not None else {}
    return {"sha256": e.sha256, "length": e.length, **({"base": e.base} if e.base else {}), **extra}


def dump_transfers(transfers: Transfers) -> bytes:
    """The published bytes of a transfers document."""
    objects: dict[str, Any] = {}
    for sha, ot in sorted(transfers.objects.items()):
        item: dict[str, Any] = {"size": ot.size}
        if ot.compressed is not None:
            item["compressed"] = _encoded_json(ot.compressed)
        plain = [d for d in ot.deltas if d.expanded is None]
        zipped = [d for d in ot.deltas if d.expanded is not None]
        if plain:
            item["deltas"] = [_encoded_json(d) for d in plain]
        if zipped:
            # Its own key: a reader that knows only "deltas" ignores it.
            item["zip_deltas"] = [_encoded_json(d) for d in zipped]
        objects[sha] = item
    return dump_json(
        {
            "format": TRANSFERS_FORMAT,
            "component": transfers.component,
            "version": str(transfers.version),
            "objects": objects,
        }
    )


def _encoded(f: Fields, size: int, with_base: bool, zipped: bool = False) -> Encoded:
    length = f.get("length", int)
    if length <= 0:
        f.fail("length", "not positive")
    if length >= size:
        f.fail("length", f"not shorter than the object ({size} bytes)")
    base = _sha256(f, "base") if with_base else None
    if not with_base and "base" in f.obj:
        f.fail("base", "a compressed form has no base")
    expanded = f.get("expanded", int) if zipped else None
    if expanded is not None and expanded <= 0:
        f.fail("expanded", "not positive")
    return Encoded(_sha256(f, "sha256"), length, base, expanded)


def parse_transfers(data: bytes, source: str, limits: Limits = DEFAULT_LIMITS) -> Transfers:
    """Parse a transfers document (``steppatch-transfers/1``). Raises
    :class:`MalformedDocument` naming the field at fault, :class:`TooLarge`."""
    if len(data) > limits.max_transfers_bytes:
        raise TooLarge(source, limits.max_transfers_bytes)
    fail = _failer(source)
    f = Fields(load_json_object(data, fail, limits.json()), "", fail)
    _check_format(f, TRANSFERS_FORMAT)
    component = _name(f, "component")
    version = f.parse("version", parse_version)
    objects: dict[str, ObjectTransfers] = {}
    of = f.sub("objects")
    for sha in sorted(of.obj):
        if not _HEX64.fullmatch(sha):
            of.fail(sha, "not a sha256")
        item = of.sub(sha)
        size = item.get("size", int)
        if size < 0:
            item.fail("size", "negative")
        compressed = None
        if "compressed" in item.obj:
            compressed = _encoded(item.sub("compressed"), size, False)
        deltas = []
        for key in ("deltas", "zip_deltas"):
            for i, raw in enumerate(item.get(key, list, [])):
                if not isinstance(raw, dict):
                    item.fail(f"{key}[{i}]", "expected an object")
                where = f"{item.where}{key}[{i}]."
                delta = _encoded(Fields(raw, where, fail), size, True, key == "zip_deltas")
                if delta.base == sha:
                    item.fail(f"{key}[{i}].base", "the object itself")
                deltas.append(delta)
        objects[sha] = ObjectTransfers(size, compressed, tuple(deltas))
    return Transfers(component, version, objects)


# --- a home's state -------------------------------------------------------------------------------
#
# steppatch-state/2 (written since issue 6): the state file names each component's manifest by the
# sha256 of its stored copy (compact JSON, gzip) in the home's manifest store, so that an apply
# writes a manifest only when its component changes. steppatch-state/1 keeps the manifests inline:
# homes made before hold it (still read), and a staged apply keeps its state in it.


def dump_state(state: HomeState) -> bytes:
    """The self-contained form of a state (``steppatch-state/1``, manifests inline)."""
    return dump_json(
        {
            "format": INLINE_STATE_FORMAT,
            "components": {
                name: {
                    "hot": c.hot,
                    "manifest_sha256": c.manifest_sha256,
                    "manifest": manifest_to_json(c.manifest),
                    **_config_json(c.config),
                }
                for name, c in sorted(state.components.items())
            },
        }
    )


def parse_state(data: bytes, source: str) -> HomeState:
    """Parse the self-contained form of a state (``steppatch-state/1``).

    Raises :class:`MalformedDocument`.
    """
    fail = _failer(source)
    f = Fields(load_json_object(data, fail), "", fail)
    _check_format(f, INLINE_STATE_FORMAT)
    return _inline_components(f, source)


def _inline_components(f: Fields, source: str) -> HomeState:
    comps = f.sub("components")
    installed: dict[str, InstalledComponent] = {}
    for name in sorted(comps.obj):
        cf = comps.sub(name)
        manifest = manifest_from_json(cf.get("manifest", dict), f"{source}: {name}")
        if manifest.component != name:
            cf.fail("manifest", f"is for {manifest.component!r}")
        installed[name] = InstalledComponent(
            manifest, _sha256(cf, "manifest_sha256"), cf.get("hot", bool, False), _config_from(cf)
        )
    return HomeState(installed)


def dump_stored_manifest(manifest: Manifest) -> bytes:
    """A manifest as a home stores it: its ``steppatch-manifest/1`` document as compact JSON,
    gzip-compressed (no time stamp, so equal manifests give equal bytes). About a fifth of the
    published size: a manifest's bulk is its hashes and paths.
    """
    text = json.dumps(
        manifest_to_json(manifest), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    # Level 1: within 5% of level 6's size here, at a third of the time.
    import gzip

    return gzip.compress(text.encode(), compresslevel=1, mtime=0)


def _stored_json(
    data: bytes, stored: str, source: str, limits: Limits
) -> tuple[dict[str, Any], Callable[[str], NoReturn]]:
    """The JSON object of stored manifest ``stored``: its bytes checked against the name first."""
    what = f"{source}: stored manifest {stored}"
    fail = _failer(what)
    actual = hashlib.sha256(data).hexdigest()
    if actual != stored:
        fail(f"damaged (its sha256 is {actual})")
    inflate = zlib.decompressobj(wbits=31)  # gzip framing
    try:
        text = inflate.decompress(data, limits.max_manifest_bytes + 1)
    except zlib.error as e:
        fail(f"not gzip data ({e})")
    if len(text) > limits.max_manifest_bytes or inflate.unconsumed_tail:
        raise TooLarge(what, limits.max_manifest_bytes)
    return load_json_object(text, fail, limits.json()), fail


def parse_stored_manifest(
    data: bytes, stored: str, source: str, limits: Limits = DEFAULT_LIMITS
) -> Manifest:
    """The manifest stored under the name ``stored`` (the sha256 of ``data``), checked in full.

    Raises :class:`MalformedDocument` (damaged or not a manifest) or :class:`TooLarge`.
    """
    obj, _fail = _stored_json(data, stored, source, limits)
    return manifest_from_json(obj, f"{source}: stored manifest {stored}", limits)


def stored_manifest_entries(
    data: bytes, stored: str, source: str, limits: Limits = DEFAULT_LIMITS
) -> dict[str, FileEntry]:
    """The entries of stored manifest ``stored`` by path, for comparing a tree with them.

    Cheaper than :func:`parse_stored_manifest`: the bytes are checked against their name (so
    they are what steppatch wrote after checking the manifest in full) and every entry's
    types, but paths are not made safe again; use the result to compare, never to write.
    Raises :class:`MalformedDocument` or :class:`TooLarge`.
    """
    obj, fail = _stored_json(data, stored, source, limits)
    raw_entries = obj.get("entries")
    if obj.get("format") != MANIFEST_FORMAT or not isinstance(raw_entries, list):
        fail(f"not a {MANIFEST_FORMAT} document")
    entries: dict[str, FileEntry] = {}
    modes: dict[str, int] = {}  # a tree has few distinct modes: parse each once
    file, directory, symlink = EntryKind.FILE, EntryKind.DIR, EntryKind.SYMLINK
    try:
        for raw in raw_entries:
            path, kind = raw["path"], raw["type"]
            if kind == "symlink":
                entries[path] = FileEntry(path, symlink, 0o777, target=raw["target"])
                continue
            text = raw["mode"]
            try:
                mode = modes[text]
            except KeyError:
                mode = modes[text] = int(text, 8)
            if kind == "file":
                entries[path] = FileEntry(path, file, mode, raw["size"], raw["sha256"])
            elif kind == "dir":
                entries[path] = FileEntry(path, directory, mode)
            else:
                fail(f"{path!r}: unknown type {kind!r}")
    except (KeyError, TypeError, ValueError) as e:
        fail(f"an entry is not well formed ({e!r})")
    return entries


@record.frozen
class StateRecord:
    """One component as a ``steppatch-state/2`` file records it: its stored manifest by name."""

    manifest_sha256: str
    stored: str
    hot: bool = False
    config: ConfigChecks = record.field(factory=ConfigChecks)


def dump_home_state(state: HomeState, stored: Mapping[str, str]) -> bytes:
    """A home's state file (``steppatch-state/2``): ``stored`` maps each component to the name
    (sha256) of its stored manifest, which must be written, durably, before this file is.
    """
    return dump_json(
        {
            "format": STATE_FORMAT,
            "components": {
                name: {
                    "hot": c.hot,
                    "manifest_sha256": c.manifest_sha256,
                    "stored_manifest": stored[name],
                    **_config_json(c.config),
                }
                for name, c in sorted(state.components.items())
            },
        }
    )


def parse_home_state(data: bytes, source: str) -> HomeState | dict[str, StateRecord]:
    """A home's state file: a :class:`HomeState` for the inline ``steppatch-state/1`` form, or
    each component's :class:`StateRecord` for ``steppatch-state/2`` (whose manifests the caller
    reads from the manifest store). Raises :class:`MalformedDocument`.
    """
    fail = _failer(source)
    f = Fields(load_json_object(data, fail), "", fail)
    found = f.get("format", str)
    if found == INLINE_STATE_FORMAT:
        return _inline_components(f, source)
    if found != STATE_FORMAT:
        f.fail("format", f"expected {STATE_FORMAT!r} or {INLINE_STATE_FORMAT!r}, got {found!r}")
    comps = f.sub("components")
    records: dict[str, StateRecord] = {}
    for name in sorted(comps.obj):
        if not is_valid_name(name):
            comps.fail(name, "not a component name")
        cf = comps.sub(name)
        records[name] = StateRecord(
            _sha256(cf, "manifest_sha256"),
            _sha256(cf, "stored_manifest"),
            cf.get("hot", bool, False),
            _config_from(cf),
        )
    return records


def state_from_records(
    records: Mapping[str, StateRecord], manifests: Mapping[str, Manifest]
) -> HomeState:
    """The state that ``steppatch-state/2`` records describe, given each component's manifest.

    Raises :class:`MalformedDocument` if a manifest is for another component.
    """
    installed: dict[str, InstalledComponent] = {}
    for name, r in sorted(records.items()):
        manifest = manifests[name]
        if manifest.component != name:
            raise MalformedDocument(
                f"stored manifest {r.stored}", f"is for {manifest.component!r}, not {name!r}"
            )
        installed[name] = InstalledComponent(manifest, r.manifest_sha256, r.hot, r.config)
    return HomeState(installed)


# --- plans (``--json`` output and the node protocol) -----------------------------------------


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """A plan as ``prepare --json`` prints it and the node protocol sends it (docs/cli.md)."""
    return {
        "target": {n: str(v) for n, v in sorted(plan.target.items())},
        "changes": [
            {
                "name": c.name,
                "from": None if c.old is None else str(c.old),
                "to": None if c.new is None else str(c.new),
                "reason": c.reason.value,
            }
            for c in plan.changes
        ],
        "hot": plan.hot,
        "download_objects": plan.download_objects,
        "download_bytes": plan.download_bytes,
        "repairs": plan.repairs,
        "routes": {r: {"objects": n, "bytes": b} for r, (n, b) in sorted(plan.routes.items())},
        "fallbacks": plan.fallbacks,
    }


def plan_from_json(value: object, fail: Callable[[str], NoReturn]) -> Plan:
    """Parse what :func:`plan_to_json` made; ``fail(problem)`` raises the caller's error."""
    from steppatch.plan import ChangeReason, ComponentChange, Plan

    if not isinstance(value, dict):
        fail("plan: expected an object")
    f = Fields(dict(value), "plan.", fail)
    target = f.sub("target")
    changes = []
    for i, item in enumerate(f.get("changes", list)):
        if not isinstance(item, dict):
            fail(f"plan.changes[{i}]: expected an object")
        c = Fields(item, f"plan.changes[{i}].", fail)
        try:
            reason = ChangeReason(c.get("reason", str))
        except ValueError:
            c.fail("reason", "unknown")
        changes.append(
            ComponentChange(c.get("name", str), _maybe_version(c, "from"),
                            _maybe_version(c, "to"), reason)
        )
    return Plan(
        target={n: target.parse(n, Version) for n in sorted(target.obj)},
        changes=tuple(changes),
        hot=f.get("hot", bool),
        download_objects=f.get("download_objects", int),
        download_bytes=f.get("download_bytes", int),
        repairs=f.get("repairs", int),
        routes=_routes_from(f),
        fallbacks=f.get("fallbacks", int, 0),
    )


def _routes_from(f: Fields) -> dict[str, tuple[int, int]]:
    # Optional: a node of a version before routes sends none.
    if "routes" not in f.obj:
        return {}
    rf = f.sub("routes")
    routes = {}
    for name in sorted(rf.obj):
        r = rf.sub(name)
        routes[name] = (r.get("objects", int), r.get("bytes", int))
    return routes


def _maybe_version(f: Fields, field: str) -> Version | None:
    value = f.obj.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        f.fail(field, "expected a version or null")
    return f.parse(field, Version)
