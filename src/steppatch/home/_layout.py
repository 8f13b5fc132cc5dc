"""A home on disk.

Layout (``docs/formats.md``)::

    HOME/steppatch.toml                  config (the operator's)
    HOME/current -> .steppatch/trees/T   the managed tree: a symlink, swapped atomically
    HOME/.steppatch/trees/T/             managed trees (the live one; a new one while applying)
    HOME/.steppatch/trees/T.state.json   what tree T holds (components, manifests)
    HOME/.steppatch/cache/objects/       content-addressed download cache
    HOME/.steppatch/history/             thin snapshots of states an apply replaced
    HOME/.steppatch/metadata/            the signed metadata this home trusts (verified only)
    HOME/.steppatch/tls/                 ca.crt, client.crt, client.key (0600) for https mirrors
    HOME/.steppatch/lock                 one writer at a time

The commit point of an apply is the rename of a new ``current`` symlink over the old one: before
it the old tree is live and whole, after it the new one is (invariant 2). The next run removes
whatever tree ``current`` does not point to.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from steppatch._fs import atomic_write, checkpoint, file_lock, fsync_dir, sync_filesystem
from steppatch.config import CONFIG_NAME, HomeConfig, dump_home_config, parse_home_config
from steppatch.errors import HomeError, MalformedDocument, UnsafePath
from steppatch.formats import dump_state, parse_state
from steppatch.model import EntryKind, HomeState
from steppatch.paths import is_within
from steppatch.plan import StepKind, TreeStep
from steppatch.store import ObjectStore, copy_verified

__all__ = ["HomeDir"]

STATE_DIR = ".steppatch"
CURRENT = "current"


class HomeDir:
    """The files of one home. Construct with :meth:`create` or :meth:`open`."""

    def __init__(self, root: Path, config: HomeConfig) -> None:
        self.root = root
        self.config = config
        self.state_dir = root / STATE_DIR
        self.trees = self.state_dir / "trees"
        self.cache = ObjectStore(self.state_dir / "cache" / "objects")
        self.history = self.state_dir / "history"
        self.metadata_dir = self.state_dir / "metadata"
        self.tls_dir = self.state_dir / "tls"

    # --- creating and opening -------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, config: HomeConfig) -> HomeDir:
        """Make a new home with an empty managed tree.

        Raises :class:`HomeError` if ``root`` is already a home or holds a ``current`` entry.
        """
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
        tree_id = home._new_tree_id()
        (home.trees / tree_id).mkdir()
        atomic_write(home.trees / f"{tree_id}.state.json", dump_state(HomeState()))
        home._switch(tree_id)
        atomic_write(root / CONFIG_NAME, dump_home_config(config))
        return home

    @classmethod
    def open(cls, root: Path) -> HomeDir:
        """Open an existing home. Raises :class:`HomeError` if ``root`` is not one."""
        root = root.absolute()
        config_path = root / CONFIG_NAME
        if not (root / STATE_DIR).is_dir() or not config_path.is_file():
            raise HomeError(str(root), "not a steppatch home (run 'steppatch init' there first)")
        return cls(root, parse_home_config(config_path.read_bytes(), str(config_path)))

    def environment_id(self) -> str:
        """This environment's random id (made at ``init``; made now for an older home)."""
        path = self.state_dir / "environment"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            value = uuid.uuid4().hex
            atomic_write(path, f"{value}\n".encode())
            return value

    def write_config(self, config: HomeConfig) -> None:
        """Replace ``steppatch.toml`` (atomically) with ``config``."""
        atomic_write(self.root / CONFIG_NAME, dump_home_config(config))
        self.config = config

    @contextlib.contextmanager
    def locked(self, timeout: float) -> Iterator[None]:
        """Hold the home's lock, then finish or discard any interrupted apply."""
        with file_lock(self.state_dir / "lock", timeout):
            self.recover()
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
        """What the live tree holds. Raises :class:`HomeError` if the state file is damaged."""
        path = self.trees / f"{self.current_tree_id()}.state.json"
        try:
            return parse_state(path.read_bytes(), str(path))
        except (FileNotFoundError, MalformedDocument) as e:
            raise HomeError(str(self.root), f"state unreadable: {e}") from e

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
            _remove(item)
        staging = self.cache.root.parent / "tmp"
        if staging.exists():
            shutil.rmtree(staging)

    def record_history(self, name: str, data: bytes) -> Path:
        """Keep a snapshot of a state being replaced, named ``NNNNNN-name``."""
        self.history.mkdir(parents=True, exist_ok=True)
        count = sum(1 for _ in self.history.iterdir())
        path = self.history / f"{count + 1:06d}-{name}"
        atomic_write(path, data)
        return path

    # --- building and committing a new tree -------------------------------------------------------

    def build_tree(
        self, steps: Sequence[TreeStep], progress: Callable[[int, int], None] | None = None
    ) -> tuple[str, list[str]]:
        """Build a new managed tree beside the live one from ``steps``, make it durable.

        Returns the new tree's id and the paths displaced into ``.steppatch/displaced/ID/``.
        Files come out of the cache with their hash checked as they are copied; the live tree is
        only read. Raises :class:`~steppatch.errors.IntegrityError` if a cached object is corrupt
        (it is removed) and ``OSError`` from the filesystem; the partial tree is removed then.
        """
        tree_id = self._new_tree_id()
        dest = self.trees / tree_id
        live = self.current
        aside = self.state_dir / "displaced" / tree_id
        dest.mkdir()
        displaced: list[str] = []
        try:
            dirs: list[tuple[Path, int]] = []
            for done, step in enumerate(steps, start=1):
                root = aside if step.kind is StepKind.DISPLACE else dest
                target = root / step.path
                if not is_within(root, target):
                    raise UnsafePath(step.path, "outside the managed tree")
                target.parent.mkdir(parents=True, exist_ok=True)
                self._make(step, live, target, dirs)
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
            _remove(dest)
            _remove(aside)
            raise
        return tree_id, displaced

    def _make(self, step: TreeStep, live: Path, target: Path, dirs: list[tuple[Path, int]]) -> None:
        e = step.entry
        source = live / step.path
        if e.kind is EntryKind.DIR:
            target.mkdir(exist_ok=True)
            dirs.append((target, e.mode))
        elif e.kind is EntryKind.SYMLINK:
            assert e.target is not None
            os.symlink(e.target, target)
        elif step.kind in (StepKind.CARRY, StepKind.DISPLACE):
            # The operator's own file: keep it as it is, by link when possible.
            if not _link(source, target):
                shutil.copy2(source, target, follow_symlinks=False)
        elif step.kind is StepKind.LINK and _link(source, target):
            pass
        else:
            assert e.sha256 is not None
            if step.kind is StepKind.LINK and not self.cache.has(e.sha256):
                # Not downloaded because the live tree has it: copy that, checked.
                copy_verified(source, e.sha256, e.size, target, e.mode, f"live file {step.path}")
            else:
                self.cache.copy_out(e.sha256, e.size, target, e.mode)

    def commit(self, tree_id: str, state: HomeState) -> None:
        """Make tree ``tree_id`` live with ``state``: the one commit point, then clean up."""
        old = self.current_tree_id()
        atomic_write(self.trees / f"{tree_id}.state.json", dump_state(state))
        checkpoint("state-written")
        self._switch(tree_id)
        checkpoint("switched")
        _remove(self.trees / f"{old}.state.json")
        _remove(self.trees / old)

    def discard(self, tree_id: str) -> None:
        """Remove a staged tree that will not be made live."""
        _remove(self.trees / tree_id)
        _remove(self.state_dir / "displaced" / tree_id)

    def _switch(self, tree_id: str) -> None:
        tmp = self.root / f".{CURRENT}.new"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(f"{STATE_DIR}/trees/{tree_id}", tmp)
        os.replace(tmp, self.root / CURRENT)
        fsync_dir(self.root)

    def _new_tree_id(self) -> str:
        return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def _link(source: Path, target: Path) -> bool:
    """Hard-link an unchanged file from the live tree; false if it cannot (then it is copied)."""
    try:
        st = source.lstat()
        if not stat.S_ISREG(st.st_mode):
            return False
        os.link(source, target, follow_symlinks=False)
        return True
    except OSError:
        return False


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

