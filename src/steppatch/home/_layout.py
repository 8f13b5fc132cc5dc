"""A home on disk.

Layout (``docs/formats.md``)::

    HOME/steppatch.toml                  config (the operator's)
    HOME/current -> .steppatch/trees/T   the managed tree: a symlink, swapped atomically
    HOME/.steppatch/trees/T/             managed trees (the live one; a new one while applying)
    HOME/.steppatch/trees/T.state.json   what tree T holds (components, stored manifest names)
    HOME/.steppatch/manifests/H.json.gz  the installed components' manifests, by sha256 H
    HOME/.steppatch/cache/objects/       content-addressed download cache
    HOME/.steppatch/history/             thin snapshots of states an apply replaced, each with
                                         its state file (NNNNNN-STAMP.spr, .state.json)
    HOME/.steppatch/metadata/            the signed metadata this home trusts (verified only)
    HOME/.steppatch/tls/                 ca.crt, client.crt, client.key (0600) for https mirrors
                                         (``_tls.HomeTls``; request.key/.csr while enrolling)
    HOME/.steppatch/lock                 one writer at a time

The commit point of an apply is the rename of a new ``current`` symlink over the old one: before
it the old tree is live and whole, after it the new one is (invariant 2). The next run removes
whatever tree ``current`` does not point to, and the stored manifests its state does not name.

An object the new tree uses once is moved out of the cache into it rather than copied, and the
files of the old tree the new one does not keep are moved into the cache (each hashed first):
an upgrade writes a changed file's bytes once, and the cache still holds what a rollback needs.
No inode is ever both in the cache and in the live tree (``docs/architecture.md``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from steppatch._fs import atomic_write, checkpoint, file_lock, fsync_dir, sync_filesystem
from steppatch.clock import tree_stamp, utcnow
from steppatch.config import CONFIG_NAME, HomeConfig, dump_home_config, parse_home_config
from steppatch.errors import HomeError, InsufficientSpace, MalformedDocument, TooLarge, UnsafePath
from steppatch.home._tls import TLS_SUBDIR, HomeTls
from steppatch.home._where import require_home
from steppatch.paths import STATE_DIR

if TYPE_CHECKING:
    import datetime as dt

    from steppatch.formats import StateRecord
    from steppatch.model import FileEntry, HomeState, Manifest
    from steppatch.plan import Drift, TreeStep
    from steppatch.store import ObjectStore

# Start-up: opening a home reads its config only. The formats, the model, plans, the object store
# and the tree scanner load with the first method that uses them, so commands that read only the
# config (mirrors, nodes) or only the state (status) do not pay for the rest.

__all__ = ["TLS_DIR", "HomeDir", "history_state_path", "is_tree_id"]

#: a home's TLS files (:class:`~steppatch.home.HomeTls`), relative to the home
TLS_DIR = Path(STATE_DIR) / TLS_SUBDIR
CURRENT = "current"
STORED_SUFFIX = ".json.gz"
#: the operator's settings file the installed components' config rules are checked against
CONFIG_PROPERTIES = "config.properties"
#: in the history directory: the number of the newest entry ``gc`` removed
PRUNED = "pruned"
_TREE_ID = re.compile(r"[0-9]{8}T[0-9]{6}-[0-9a-f]{8}")


def history_state_path(entry: Path) -> Path:
    """Where the state file of history entry ``NNNNNN-STAMP.spr`` is kept."""
    return entry.with_name(entry.name.removesuffix(".spr") + ".state.json")


def is_tree_id(text: str) -> bool:
    """Whether ``text`` has the form of a tree id (``20260601T120000-1a2b3c4d``)."""
    return _TREE_ID.fullmatch(text) is not None


class HomeDir:
    """The files of one home. Construct with :meth:`create` or :meth:`open`."""

    def __init__(self, root: Path, config: HomeConfig) -> None:
        self.root = root
        self.config = config
        self.state_dir = root / STATE_DIR
        self.trees = self.state_dir / "trees"
        self.history = self.state_dir / "history"
        self.metadata_dir = self.state_dir / "metadata"
        #: the TLS files (CA, client certificate, a pending enrollment)
        self.tls = HomeTls(self.state_dir / TLS_SUBDIR)
        self.tls_dir = self.tls.dir
        self.manifests = self.state_dir / "manifests"
        # `cache`: the download cache, an ObjectStore made on first use (start-up)
        # A tree's state file never changes once written and tree ids are never reused, so the
        # state read for a tree id stays true: an apply reads it once, not at every step.
        self._loaded: tuple[str, HomeState] | None = None
        #: published manifest sha256 -> name of its stored copy, as far as known
        self._stored: dict[str, str] = {}

    @functools.cached_property
    def cache(self) -> ObjectStore:
        """The content-addressed download cache (``.steppatch/cache/objects``)."""
        from steppatch.store import ObjectStore

        return ObjectStore(self.state_dir / "cache" / "objects")

    # --- creating and opening -------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, config: HomeConfig, *, now: dt.datetime | None = None) -> HomeDir:
        """Make a new home with an empty managed tree (its id from ``now``, the clock reading).

        Raises :class:`HomeError` if ``root`` is already a home or holds a ``current`` entry.
        """
        from steppatch.formats import dump_home_state
        from steppatch.model import HomeState

        root = root.absolute()
        if (root / STATE_DIR).exists() or (root / CONFIG_NAME).exists():
            raise HomeError(str(root), "already a steppatch home")
        if os.path.lexists(root / CURRENT):
            raise HomeError(str(root), f"{CURRENT!r} exists and is not a steppatch managed tree")
        root.mkdir(parents=True, exist_ok=True)
        home = cls(root, config)
        for d in (home.trees, home.history, home.cache.root):
            d.mkdir(parents=True, exist_ok=True)
        (home.state_dir / "lock").touch()
        home.environment_id()
        tree_id = home._new_tree_id(now)
        (home.trees / tree_id).mkdir()
        atomic_write(home.trees / f"{tree_id}.state.json", dump_home_state(HomeState(), {}))
        home._switch(tree_id)
        atomic_write(root / CONFIG_NAME, dump_home_config(config))
        return home

    @classmethod
    def open(cls, root: Path) -> HomeDir:
        """Open an existing home. Raises :class:`HomeError` if ``root`` is not one."""
        root = require_home(root)
        config_path = root / CONFIG_NAME
        return cls(root, parse_home_config(config_path.read_bytes(), str(config_path)))

    def environment_id(self) -> str:
        """This environment's random id (made at ``init``; made now for an older home)."""
        path = self.state_dir / "environment"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            import uuid

            value = uuid.uuid4().hex
            atomic_write(path, f"{value}\n".encode())
            return value

    def write_config(self, config: HomeConfig) -> None:
        """Replace ``steppatch.toml`` (atomically) with ``config``."""
        atomic_write(self.root / CONFIG_NAME, dump_home_config(config))
        self.config = config

    def edit_config(self, change: Callable[[HomeConfig], HomeConfig], timeout: float) -> None:
        """The one locked edit of ``steppatch.toml``: under the lock, read the file again and
        write ``change(config)``, so two edits at once both land. What ``change`` raises
        leaves the file as it was.
        """
        with self.locked(timeout):
            path = self.root / CONFIG_NAME
            fresh = parse_home_config(path.read_bytes(), str(path))
            self.write_config(change(fresh))

    def node_name(self) -> str:
        """This node's name in a cluster: the config's ``node``, else the host name."""
        # os.uname, not socket.gethostname: the same name, without loading the socket module
        return self.config.node or os.uname().nodename

    def config_properties(self) -> str | None:
        """The operator's ``HOME/config.properties``, if there is one (undecodable bytes
        replaced)."""
        try:
            return (self.root / CONFIG_PROPERTIES).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def locked(self, timeout: float) -> Iterator[None]:
        """Hold the home's lock, then finish or discard any interrupted apply."""
        with file_lock(self.state_dir / "lock", timeout):
            self.recover()
            # Objects count as downloaded for this run (build_tree may move them) only if they
            # were stored while this lock is held. (A cache not opened yet has added nothing:
            # commands that only read, like `status`, never load the object store.)
            if "cache" in self.__dict__:
                self.cache.forget_added()
            yield

    # --- state -----------------------------------------------------------------------------------

    def current_tree_id(self) -> str:
        """The id of the live managed tree. Raises :class:`HomeError` if ``current`` is broken."""
        link = self.root / CURRENT
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            raise HomeError(str(self.root), f"{CURRENT!r} is missing") from None
        except OSError:
            raise HomeError(str(self.root), f"{CURRENT!r} is not steppatch's symlink") from None
        prefix = f"{STATE_DIR}/trees/"
        tree_id = target.removeprefix(prefix)
        if not target.startswith(prefix) or "/" in tree_id or not (self.trees / tree_id).is_dir():
            raise HomeError(str(self.root), f"{CURRENT!r} points to {target!r}, not a tree")
        return tree_id

    @property
    def current(self) -> Path:
        """The live managed tree's real directory."""
        return self.trees / self.current_tree_id()

    def state(self) -> HomeState:
        """What the live tree holds, every manifest checked in full.

        Raises :class:`HomeError` if the state file or a stored manifest is missing or damaged.
        """
        tree_id = self.current_tree_id()
        if self._loaded is not None and self._loaded[0] == tree_id:
            return self._loaded[1]
        from steppatch._heap import gc_paused
        from steppatch.formats import parse_home_state, parse_stored_manifest, state_from_records
        from steppatch.model import HomeState

        path = self.trees / f"{tree_id}.state.json"
        try:
            with gc_paused():
                parsed = parse_home_state(path.read_bytes(), str(path))
                if isinstance(parsed, HomeState):
                    state = parsed
                else:
                    manifests = {
                        name: parse_stored_manifest(self._stored_bytes(r), r.stored, str(path))
                        for name, r in parsed.items()
                    }
                    state = state_from_records(parsed, manifests)
                    self._stored.update({r.manifest_sha256: r.stored for r in parsed.values()})
        except (FileNotFoundError, MalformedDocument, TooLarge) as e:
            raise HomeError(str(self.root), f"state unreadable: {e}") from e
        self._loaded = (tree_id, state)
        return state

    def expected_entries(self) -> dict[str, FileEntry]:
        """Every entry the live tree should hold, by path: for comparing it with the tree.

        Lighter than :meth:`state`: a stored manifest is checked against its name (so it is what
        was checked in full when it was installed), not parsed again in full. Never use the
        result to write. Raises :class:`HomeError` like :meth:`state`.
        """
        from steppatch.formats import parse_home_state, stored_manifest_entries
        from steppatch.model import HomeState

        tree_id = self.current_tree_id()
        loaded = self._loaded[1] if self._loaded and self._loaded[0] == tree_id else None
        path = self.trees / f"{tree_id}.state.json"
        try:
            parsed = loaded or parse_home_state(path.read_bytes(), str(path))
            if isinstance(parsed, HomeState):
                # The installed set was merged (conflicts refused) when it was applied.
                return {e.path: e for c in parsed.components.values() for e in c.manifest.entries}
            entries: dict[str, FileEntry] = {}
            for r in parsed.values():
                entries.update(stored_manifest_entries(self._stored_bytes(r), r.stored, str(path)))
            return entries
        except (FileNotFoundError, MalformedDocument, TooLarge) as e:
            raise HomeError(str(self.root), f"state unreadable: {e}") from e

    def drift(self, against: Mapping[str, FileEntry] | None = None, workers: int = 2) -> Drift:
        """How the live tree differs from its manifests (or from ``against``): every file that
        could match is hashed, by this process and ``workers - 1`` helper processes. Raises
        :class:`HomeError` like :meth:`state`, ``OSError`` if the tree cannot be read.
        """
        from steppatch.home._scan import check_tree

        # The loader runs while helper processes hash: loading and hashing overlap.
        expected = self.expected_entries if against is None else against
        return check_tree(self.current, expected, workers=workers)

    def _stored_bytes(self, record: StateRecord) -> bytes:
        return (self.manifests / f"{record.stored}{STORED_SUFFIX}").read_bytes()

    def _stored_names(self, tree_id: str) -> set[str] | None:
        """The stored manifests tree ``tree_id``'s state names; ``None`` if it cannot be read."""
        from steppatch.formats import parse_home_state
        from steppatch.model import HomeState

        path = self.trees / f"{tree_id}.state.json"
        try:
            parsed = parse_home_state(path.read_bytes(), str(path))
        except (OSError, MalformedDocument):
            return None
        if isinstance(parsed, HomeState):
            return set()
        return {r.stored for r in parsed.values()}

    def recover(self) -> None:
        """Discard what an interrupted apply left: trees and files ``current`` does not use.

        Must be called with the lock held.
        """
        live = self.current_tree_id()
        with contextlib.suppress(FileNotFoundError):
            (self.root / f".{CURRENT}.new").unlink()
        for item in sorted(self.trees.iterdir()):
            if item.name in (live, f"{live}.state.json"):
                continue
            checkpoint("recovering")
            if item.is_dir() and not item.is_symlink():
                # Objects an interrupted build moved in from the cache go back (each hashed).
                self._return_objects(item)
            _remove(item)
        staging = self.state_dir / "cache" / "tmp"  # the cache's temporary files
        if staging.exists():
            shutil.rmtree(staging)
        if self.manifests.is_dir():
            keep = self._stored_names(live)
            if keep is not None:
                self._drop_stored_except(keep | self._history_stored_names())

    def record_history(self, name: str, data: bytes) -> Path:
        """Keep a snapshot of a state being replaced, named ``NNNNNN-name``.

        The live tree's state file is copied beside it first (``NNNNNN-STAMP.state.json``): it
        names the stored manifests of the replaced state, which stay while the entry does, so
        ``gc`` knows which cached objects a rollback to it needs and the rollback downloads no
        manifest. Numbers grow past every entry ``gc`` pruned: they are never reused.
        """
        self.history.mkdir(parents=True, exist_ok=True)
        path = self.history / f"{self._next_history_number():06d}-{name}"
        live = self.trees / f"{self.current_tree_id()}.state.json"
        with contextlib.suppress(OSError):
            atomic_write(history_state_path(path), live.read_bytes())
        atomic_write(path, data)
        return path

    def _next_history_number(self) -> int:
        from steppatch.collect import history_number

        numbers = [n for item in self.history.iterdir() if (n := history_number(item.name))]
        return max([*numbers, self.pruned_history()]) + 1

    def history_entries(self) -> list[Path]:
        """The history entries, oldest first."""
        if not self.history.is_dir():
            return []
        from steppatch.collect import history_number

        named = [(n, p) for p in self.history.iterdir() if (n := history_number(p.name))]
        return [p for _n, p in sorted(named)]

    def last_history(self) -> Path | None:
        """The newest snapshot :meth:`record_history` kept (what ``rollback`` returns to)."""
        entries = self.history_entries()
        return entries[-1] if entries else None

    def drop_history(self, entry: Path) -> None:
        """Remove a history entry, then the record of its files."""
        entry.unlink(missing_ok=True)
        history_state_path(entry).unlink(missing_ok=True)

    def pruned_history(self) -> int:
        """The number of the newest history entry ``gc`` removed (0: none)."""
        try:
            text = (self.history / PRUNED).read_text().strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return 0
        return int(text) if text.isdigit() else 0

    def mark_pruned(self, number: int) -> None:
        """Record (durably, before they go) that history entries up to ``number`` are pruned."""
        if number > self.pruned_history():
            atomic_write(self.history / PRUNED, f"{number}\n".encode())

    def history_stored(self, entry: Path) -> dict[str, StateRecord] | HomeState | None:
        """What the history entry ``entry`` records of its state's files: its components'
        stored manifests (or an inline state); ``None`` when not recorded or unreadable."""
        from steppatch.formats import parse_home_state

        path = history_state_path(entry)
        try:
            return parse_home_state(path.read_bytes(), str(path))
        except (OSError, MalformedDocument, TooLarge):
            return None

    def _history_stored_names(self) -> set[str]:
        """The stored manifests the history entries' states name (kept while they are)."""
        from steppatch.formats import parse_home_state
        from steppatch.model import HomeState

        names: set[str] = set()
        if not self.history.is_dir():
            return names
        for item in self.history.glob("*.state.json"):
            with contextlib.suppress(OSError, MalformedDocument, TooLarge):
                parsed = parse_home_state(item.read_bytes(), str(item))
                if not isinstance(parsed, HomeState):
                    names.update(r.stored for r in parsed.values())
        return names

    def history_manifests(self) -> dict[str, Callable[[], Manifest | None]]:
        """The manifests the history entries' states stored, by published sha256: each a
        loader that reads it checked in full against its stored name (``None`` if it is gone or
        damaged). A rollback within the kept history reads its manifests here rather than
        downloading them."""
        from steppatch.model import HomeState

        found: dict[str, Callable[[], Manifest | None]] = {}
        for entry in self.history_entries():
            parsed = self.history_stored(entry)
            if isinstance(parsed, HomeState):
                for c in parsed.components.values():
                    found[c.manifest_sha256] = functools.partial(_given, c.manifest)
            elif parsed is not None:
                for r in parsed.values():
                    found[r.manifest_sha256] = functools.partial(
                        self.load_stored, r, str(entry)
                    )
        return found

    def stored_names(self, tree_id: str) -> set[str]:
        """The stored manifests tree ``tree_id``'s state names (empty if it cannot be read)."""
        return self._stored_names(tree_id) or set()

    def load_stored(self, record: StateRecord, source: str) -> Manifest | None:
        """The stored manifest ``record`` names, checked in full; ``None`` if gone or damaged."""
        from steppatch.formats import parse_stored_manifest

        try:
            return parse_stored_manifest(self._stored_bytes(record), record.stored, source)
        except (OSError, MalformedDocument, TooLarge):
            return None

    def ensure_space(self, needed: int, reserve: int) -> None:
        """Raise :class:`InsufficientSpace` unless ``needed`` bytes plus ``reserve`` are free
        where new trees and the cache are written."""
        free = shutil.disk_usage(self.state_dir).free
        if needed + reserve > free:
            raise InsufficientSpace(str(self.state_dir), needed, free)

    def live_path(self, path: str) -> Path:
        """Where the live tree's entry ``path`` lies."""
        return _joined(self.current, path)

    def cache_live_file(self, path: str, sha256: str, size: int) -> None:
        """Put the live tree's file ``path`` into the cache as object ``sha256`` (copied,
        verified). Raises :class:`~steppatch.errors.IntegrityError` or
        :class:`~steppatch.errors.TooLarge` if it is not that object, ``OSError``.
        """
        self.cache.add_file(_joined(self.current, path), sha256, size)

    @contextlib.contextmanager
    def scratch(self, prefix: str) -> Iterator[Path]:
        """A temporary directory inside the home's state directory (same filesystem as its
        trees and cache), removed afterwards."""
        import tempfile

        with tempfile.TemporaryDirectory(dir=self.state_dir, prefix=prefix) as tmp:
            yield Path(tmp)

    # --- building and committing a new tree -------------------------------------------------------

    def build_tree(
        self,
        steps: Sequence[TreeStep],
        progress: Callable[[int, int], None] | None = None,
        *,
        now: dt.datetime | None = None,
    ) -> tuple[str, list[str]]:
        """Build a new managed tree beside the live one from ``steps``, make it durable; its
        id is made from ``now`` (the home's clock reading).

        Returns the new tree's id and the paths displaced into ``.steppatch/displaced/ID/``.
        Files come out of the cache with their hash checked as they are copied; the live tree is
        only read. Raises :class:`~steppatch.errors.IntegrityError` if a cached object is corrupt
        (it is removed) and ``OSError`` from the filesystem; the partial tree is removed then.
        """
        from collections import Counter

        from steppatch.home._build import make_entry
        from steppatch.plan import StepKind

        tree_id = self._new_tree_id(now)
        dest = self.trees / tree_id
        live = self.current
        aside = self.state_dir / "displaced" / tree_id
        dest.mkdir()
        displaced: list[str] = []
        # The last use of an object downloaded for this run moves it out of the cache (it is
        # written once); earlier uses copy it.
        uses = Counter(s.entry.sha256 for s in steps if s.kind is StepKind.FETCH)
        made: set[Path] = set()
        try:
            dirs: list[tuple[Path, int]] = []
            for done, step in enumerate(steps, start=1):
                root = aside if step.kind is StepKind.DISPLACE else dest
                target = _joined(root, step.path)
                if target.parent not in made:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    made.add(target.parent)
                make_entry(self.cache, step, live, target, dirs, uses)
                if step.kind is StepKind.DISPLACE:
                    displaced.append(step.path)
                if progress is not None and done % 500 == 0:
                    progress(done, len(steps))
                if done == len(steps) // 2:
                    checkpoint("staging")
            # Modes last, deepest first, so a read-only directory does not block its own filling.
            for d, mode in sorted(dirs, key=lambda item: len(item[0].parts), reverse=True):
                os.chmod(d, mode)
            sync_filesystem(dest)
        except BaseException:
            self._return_objects(dest)
            _remove(dest)
            _remove(aside)
            raise
        return tree_id, displaced

    def commit(self, tree_id: str, state: HomeState) -> None:
        """Make tree ``tree_id`` live with ``state``: the one commit point, then clean up.

        Before the switch, the manifests ``state`` names are stored (only those not stored
        yet, durably), then its state file is written. After it, the old tree's files that the
        new state does not keep at their path go into the cache when they hash to what the old
        state says, and the old tree is removed. Raises ``OSError`` from the filesystem (before
        the switch: the old tree stays live).
        """
        from steppatch.formats import dump_home_state

        old = self.current_tree_id()
        try:
            before = _files(self.state())
        except HomeError:
            before = {}  # unreadable: nothing is kept from the old tree, it is only removed
        stored = self._store_manifests(state)
        atomic_write(self.trees / f"{tree_id}.state.json", dump_home_state(state, stored))
        checkpoint("state-written")
        self._switch(tree_id)
        checkpoint("switched")
        self._loaded = (tree_id, state)
        _remove(self.trees / f"{old}.state.json")
        after = _files(state)
        for path, entry in before.items():
            if after.get(path) != entry:
                self._keep_replaced(self.trees / old / path, entry)
        _remove(self.trees / old)
        self._drop_stored_except(set(stored.values()) | self._history_stored_names())

    def _keep_replaced(self, path: Path, entry: FileEntry) -> None:
        # Best effort: the old tree is garbage now, and the cache is only a cache.
        with contextlib.suppress(OSError):
            self.cache.adopt(path, entry.sha256, entry.size)

    def _store_manifests(self, state: HomeState) -> dict[str, str]:
        """Store the manifests of ``state`` that are not stored yet; each one's stored name."""
        import hashlib

        from steppatch.formats import dump_stored_manifest

        if not self.manifests.is_dir():
            self.manifests.mkdir()
            fsync_dir(self.state_dir)
        names: dict[str, str] = {}
        for name, c in sorted(state.components.items()):
            known = self._stored.get(c.manifest_sha256)
            if known is not None and (self.manifests / f"{known}{STORED_SUFFIX}").is_file():
                names[name] = known
                continue
            data = dump_stored_manifest(c.manifest)
            stored = hashlib.sha256(data).hexdigest()
            path = self.manifests / f"{stored}{STORED_SUFFIX}"
            if not path.is_file():
                atomic_write(path, data, mode=0o444)
            self._stored[c.manifest_sha256] = stored
            names[name] = stored
        return names

    def _drop_stored_except(self, keep: set[str]) -> None:
        """Remove stored manifests (and unfinished writes) but those named in ``keep``."""
        wanted = {f"{name}{STORED_SUFFIX}" for name in keep}
        for item in self.manifests.iterdir():
            if item.name not in wanted:
                _remove(item)

    def discard(self, tree_id: str) -> None:
        """Remove a staged tree that will not be made live; objects it took from the cache
        go back there (each hashed)."""
        tree = self.trees / tree_id
        if tree.is_dir() and not tree.is_symlink():
            self._return_objects(tree)
        _remove(tree)
        _remove(self.state_dir / "displaced" / tree_id)

    def _return_objects(self, tree: Path) -> None:
        """Move the files of a tree that is not live, and that nothing else links to, into
        the cache under the hash they have (what :meth:`build_tree` moved out of it).

        Best effort, file by file: the tree is removed next whatever happens here.
        """
        for dirpath, _dirnames, filenames in os.walk(tree):
            if filenames and not os.access(dirpath, os.W_OK):
                # A read-only directory of the tree: its entries cannot be moved otherwise.
                with contextlib.suppress(OSError):
                    os.chmod(dirpath, 0o700)
            for name in filenames:
                with contextlib.suppress(OSError):
                    self.cache.adopt(Path(dirpath) / name)

    def _switch(self, tree_id: str) -> None:
        tmp = self.root / f".{CURRENT}.new"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(f"{STATE_DIR}/trees/{tree_id}", tmp)
        os.replace(tmp, self.root / CURRENT)
        fsync_dir(self.root)

    def _new_tree_id(self, now: dt.datetime | None) -> str:
        import uuid

        return f"{tree_stamp(now or utcnow())}-{uuid.uuid4().hex[:8]}"


def _given(manifest: Manifest) -> Manifest | None:
    return manifest


def _joined(root: Path, path: str) -> Path:
    """``root / path``, refused (:class:`UnsafePath`) unless ``path`` stays below ``root``.

    A relative path without empty, ``.`` or ``..`` parts cannot leave the directory it is
    joined to: a string check (``is_within``'s ``Path.parents`` cost a third of a large build).
    Unlike ``safe_relpath`` it lets a backslash pass: a name an operator gave a file of his.
    """
    if not path or path[0] == "/" or "\0" in path or any(
        part in ("", ".", "..") for part in path.split("/")
    ):
        raise UnsafePath(path, "outside the managed tree")
    return root / path


def _files(state: HomeState) -> dict[str, FileEntry]:
    from steppatch.model import EntryKind

    return {
        e.path: e
        for c in state.components.values()
        for e in c.manifest.entries
        if e.kind is EntryKind.FILE
    }


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        # A tree may hold read-only directories; make them writable to delete their entries.
        for dirpath, dirnames, _files in os.walk(path):
            for d in dirnames:
                p = Path(dirpath) / d
                if not p.is_symlink():
                    os.chmod(p, 0o700)
        os.chmod(path, 0o700)
        shutil.rmtree(path)

