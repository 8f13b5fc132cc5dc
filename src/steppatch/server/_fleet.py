"""The fleet from the store on disk: the uploaded snapshots, the verified index, its releases.

Reads ``snapshots/`` (each folder holding a ``latest.spr`` is a system; its uploads are named
``TIME-SHA8.spr``, TIME the UTC time the server stored it), the index the store verified (a
mirror's ``metadata/``, checked again against its root as the server does; an origin's published
repository) and the release recipes of that index it holds, then calls the pure
:func:`steppatch.fleet.compute_fleet`. :class:`FleetSource` keeps what it parsed, keyed by each
file's identity (inode, size, mtime), so a server answers the next page from memory plus one
``scandir`` per system. Blocking: the server calls it from its worker pool.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from steppatch import _record as record
from steppatch.clock import utcnow
from steppatch.errors import SteppatchError
from steppatch.fleet import (
    Fleet,
    FleetMemo,
    SystemUploads,
    Upload,
    compute_fleet,
    parse_stored_snapshot,
)
from steppatch.formats import index_from_json
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import FileRef, Recipe, RecipeKind, RepositoryIndex
from steppatch.recipe import parse_recipe
from steppatch.server.config import MirrorConfig
from steppatch.server.errors import MirrorConfigError

__all__ = ["FleetSource", "IndexSource", "fleet_report", "store_index"]

_LATEST = "latest.spr"
#: how recent a folder's change may be for its listing to be kept (file times are coarse)
_RACY_NS = 2_000_000_000
#: a system name, as ``steppatch.pki.validate_system_name`` takes it (not imported: that module
#: loads cryptography, and ``mirror fleet`` does not need it)
_SYSTEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_UPLOAD = re.compile(r"(\d{8}T\d{6})\.(\d{6})Z-[0-9a-f]{8}\.spr")

#: what gives the index now: (verified index or None, its version or None)
IndexSource = Callable[[], tuple[RepositoryIndex | None, int | None]]


def upload_time(name: str) -> dt.datetime | None:
    """When an upload named ``TIME.MICROSZ-SHA8.spr`` was stored (``None`` for other names)."""
    m = _UPLOAD.fullmatch(name)
    if m is None:
        return None
    t = m.group(1)
    try:
        return dt.datetime(
            int(t[0:4]), int(t[4:6]), int(t[6:8]), int(t[9:11]), int(t[11:13]), int(t[13:15]),
            int(m.group(2)), tzinfo=dt.UTC,
        )
    except ValueError:
        return None


@record.frozen
class _Folder:
    name: str
    path: Path
    #: the uploads' file names, oldest first (the names sort by time)
    uploads: tuple[str, ...]


class FleetSource:
    """The fleet of one store: ``snapshots`` (the uploads), ``index`` (gives the verified index),
    ``recipe_bytes`` (the bytes of a recipe the index lists, when held; ``None`` otherwise).
    Thread-safe; parsed snapshots and releases are kept while their files stay the same."""

    def __init__(
        self,
        snapshots: Path,
        index: IndexSource,
        recipe_bytes: Callable[[FileRef], bytes | None],
        stale_after: dt.timedelta,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.snapshots = snapshots
        self.index = index
        self.recipe_bytes = recipe_bytes
        self.stale_after = stale_after
        self.limits = limits
        self._lock = threading.Lock()
        self._parsed: dict[str, tuple[tuple[int, int, int], Upload | str]] = {}
        self._releases: dict[str, Recipe | None] = {}
        self._memo = FleetMemo()
        self._computing = threading.Lock()
        #: each folder's listing while the folder is unchanged (inode, mtime)
        self._listings: dict[str, tuple[tuple[int, int], list[str], list[str], bool]] = {}

    # --- reading -------------------------------------------------------------------------------

    def _folders(self) -> list[_Folder]:
        found: list[_Folder] = []
        self._walk(self.snapshots, [], found)
        return found

    def _walk(self, folder: Path, names: list[str], found: list[_Folder]) -> None:
        listing = self._list(folder)
        if listing is None:
            return
        subfolders, uploads, latest = listing
        for sub in subfolders:
            self._walk(folder / sub, [*names, sub], found)
        if latest and names:
            found.append(_Folder("/".join(names), folder, tuple(uploads)))

    def _list(self, folder: Path) -> tuple[list[str], list[str], bool] | None:
        """A folder's system subfolders, its uploads (oldest first) and whether it holds a
        ``latest.spr``: listed again only when the folder changed (the server adds and replaces
        files by rename, which changes the folder's mtime)."""
        try:
            st = os.stat(folder)
        except OSError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns)
        key = str(folder)
        with self._lock:
            held = self._listings.get(key)
        if held is not None and held[0] == stamp:
            return held[1], held[2], held[3]
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return None
        subfolders: list[str] = []
        uploads: list[str] = []
        latest = False
        for entry in entries:
            if entry.name.startswith("."):
                continue  # the outbox, temporaries
            if entry.name == _LATEST:
                latest = True
            elif entry.is_dir(follow_symlinks=False):
                if _SYSTEM_NAME.fullmatch(entry.name):
                    subfolders.append(entry.name)
            elif _UPLOAD.fullmatch(entry.name):
                uploads.append(entry.name)
        subfolders.sort()
        uploads.sort()
        # A folder changed within the last moments may change again within the same tick of
        # the file system's clock (a few ms) without a new mtime: such a listing is not kept.
        if time.time_ns() - st.st_mtime_ns > _RACY_NS:
            with self._lock:
                self._listings[key] = (stamp, subfolders, uploads, latest)
        return subfolders, uploads, latest

    def _parse(self, file: Path, what: str, when: dt.datetime | None) -> Upload | str:
        """A stored snapshot, parsed (kept while the file is unchanged), or why it cannot be.
        ``when``: the upload's time (``None``: the file's own)."""
        key = str(file)
        try:
            st = os.stat(file)
        except OSError as e:
            return f"cannot read {what}: {e.strerror or e}"
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            held = self._parsed.get(key)
        if held is not None and held[0] == stamp:
            return held[1]
        result: Upload | str
        if when is None:
            when = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC)
        try:
            if st.st_size > self.limits.max_snapshot_bytes:
                raise OSError(f"larger than {self.limits.max_snapshot_bytes} bytes")
            result = parse_stored_snapshot(file.read_bytes(), what, when, self.limits)
        except OSError as e:
            result = f"{what}: {e.strerror or e}"
        except SteppatchError as e:
            result = str(e)
        if time.time_ns() - st.st_mtime_ns > _RACY_NS:  # see _list
            with self._lock:
                self._parsed[key] = (stamp, result)
        return result

    def _system(self, folder: _Folder, history: bool) -> SystemUploads | str:
        # latest.spr is a copy of the newest upload: its time is the newest name's.
        when = upload_time(folder.uploads[-1]) if folder.uploads else None
        latest = self._parse(folder.path / _LATEST, f"snapshots/{folder.name}/{_LATEST}", when)
        if isinstance(latest, str):
            return latest
        uploads = []
        if history:
            for name in folder.uploads[:-1]:
                old = self._parse(
                    folder.path / name, f"snapshots/{folder.name}/{name}", upload_time(name)
                )
                if not isinstance(old, str):  # an unreadable old upload is left out
                    uploads.append(old)
        uploads.append(latest)
        return SystemUploads(folder.name, tuple(uploads), kept=max(len(folder.uploads), 1))

    def releases(self, index: RepositoryIndex | None) -> dict[str, Recipe]:
        """The release recipes of ``index`` this store holds, verified against the index."""
        if index is None:
            return {}
        components = {cv.recipe for cvs in index.components.values() for cv in cvs.values()}
        found: dict[str, Recipe] = {}
        for path, ref in sorted(index.recipes.items()):
            if path in components:
                continue
            with self._lock:
                known = ref.sha256 in self._releases
                recipe = self._releases.get(ref.sha256)
            if not known:
                recipe = None
                data = self.recipe_bytes(ref)
                if data is not None:
                    from steppatch.trust import verify_length_and_hash

                    try:
                        verify_length_and_hash(data, ref.length, ref.sha256, path)
                        recipe = parse_recipe(data, path, self.limits)
                    except SteppatchError:
                        recipe = None
                    with self._lock:
                        self._releases[ref.sha256] = recipe
            if recipe is not None and recipe.kind is RecipeKind.RELEASE:
                found[path] = recipe
        return found

    def fleet(
        self, now: dt.datetime | None = None, *, only: str | None = None
    ) -> tuple[Fleet, dict[str, str]]:
        """The fleet at ``now`` and the systems that could not be read (name -> why). With
        ``only``, that one system (with its upload history) or none."""
        folders = self._folders()
        if only is not None:
            folders = [f for f in folders if f.name == only]
        systems: list[SystemUploads] = []
        unreadable: dict[str, str] = {}
        for folder in folders:
            result = self._system(folder, history=only is not None)
            if isinstance(result, str):
                unreadable[folder.name] = result
            else:
                systems.append(result)
        index, version = self.index()
        releases = self.releases(index)
        with self._computing:  # the memo is one thread's at a time
            fleet = compute_fleet(
                systems, index, releases, now or utcnow(),
                stale_after=self.stale_after, index_version=version, history=only is not None,
                memo=self._memo,
            )
        return fleet, unreadable


def store_index(config: MirrorConfig, limits: Limits = DEFAULT_LIMITS) -> IndexSource:
    """The verified index of a store on disk, read again only when its files change: a mirror's
    stored metadata verified against its stored root (as the server does at start), an origin's
    published repository (:class:`PublishedRepository`). Metadata that does not verify gives no
    index (nothing is called behind)."""
    if config.origin is not None:
        return _origin_index(config.origin.repository, limits)
    folder = config.store / "metadata"
    return _cached(
        [folder / "root.json", folder / "timestamp.json", folder / "index.json"],
        lambda: _mirror_index(folder, limits),
    )


def _cached(files: list[Path], read: IndexSource) -> IndexSource:
    """``read``, called again only when one of ``files`` changed (inode, size, mtime)."""
    held: list[tuple[tuple[int, ...], RepositoryIndex | None, int | None]] = []

    def stamp() -> tuple[int, ...]:
        found: list[int] = []
        for file in files:
            try:
                st = os.stat(file)
                found += [st.st_ino, st.st_size, st.st_mtime_ns]
            except OSError:
                found += [0, 0, 0]
        return tuple(found)

    def current() -> tuple[RepositoryIndex | None, int | None]:
        now = stamp()
        if held and held[0][0] == now:
            return held[0][1], held[0][2]
        index, version = read()
        held[:] = [(now, index, version)]
        return index, version

    return current


def _read(file: Path) -> bytes | None:
    try:
        return file.read_bytes()
    except FileNotFoundError:
        return None


def _mirror_index(folder: Path, limits: Limits) -> tuple[RepositoryIndex | None, int | None]:
    # What MirrorStore does at start: the stored documents verified again against the root.
    from steppatch.trust import TrustedMetadataSet

    root = _read(folder / "root.json")
    if root is None:
        return None, None
    try:
        trusted = TrustedMetadataSet.reload(
            root, _read(folder / "timestamp.json"), _read(folder / "index.json"), now=utcnow(),
            limits=limits.trust(),
        )
    except (SteppatchError, OSError):
        return None, None
    if trusted.index is None:
        return None, None
    return index_from_json(trusted.index.payload, "stored index"), trusted.index.version


def _origin_index(repository: Path, limits: Limits) -> IndexSource:
    # A publish replaces timestamp.json last: read again when it changes.
    def read() -> tuple[RepositoryIndex | None, int | None]:
        from steppatch.repo import published_index

        try:
            return published_index(repository, limits), None
        except (SteppatchError, OSError):
            return None, None

    return _cached([repository / "timestamp.json"], read)


def store_recipes(config: MirrorConfig) -> Callable[[FileRef], bytes | None]:
    """The bytes of a recipe as the store holds it: a mirror's object under its sha256, an
    origin's file in the repository (checked against the index by the caller)."""

    def read(ref: FileRef) -> bytes | None:
        if config.origin is not None:
            file = config.origin.repository / ref.path
        else:
            file = config.store / "objects" / ref.sha256[:2] / ref.sha256
        try:
            with open(file, "rb") as f:
                return f.read(ref.length + 1)
        except OSError:
            return None

    return read


def fleet_source(config: MirrorConfig, limits: Limits = DEFAULT_LIMITS) -> FleetSource:
    """The :class:`FleetSource` of the store ``config`` names."""
    return FleetSource(
        config.store / "snapshots",
        store_index(config, limits),
        store_recipes(config),
        dt.timedelta(days=config.stale_after_days),
        limits,
    )


def fleet_report(
    config: MirrorConfig, now: dt.datetime | None = None
) -> tuple[Fleet, dict[str, str]]:
    """``steppatch mirror fleet``: the fleet of the store on disk (no server needed). Raises
    :class:`MirrorConfigError` when the store does not exist."""
    if not config.store.is_dir():
        raise MirrorConfigError(config.source, "store", f"{config.store} does not exist")
    return fleet_source(config).fleet(now)
