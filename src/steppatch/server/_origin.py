"""What an origin may serve of a repository directory: the published layout, nothing else.

That is ``root.json``, ``timestamp.json``, ``roots/N.root.json``, ``indexes/N.index.json``, and the
recipes, manifests and objects the repository's verified index names (through
:func:`steppatch.server._store.index_item`, as a mirror decides). Anything else in the directory
(a key directory put there by mistake, an editor's backup, a stray file) is not served, whatever
its name. Blocking: called from worker threads.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from steppatch.errors import SteppatchError
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import FileRef, RepositoryIndex
from steppatch.repo import published_index
from steppatch.server._store import (
    Item,
    index_item,
    manifest_objects,
    manifest_refs,
    transfers_encoded,
    transfers_refs,
)
from steppatch.trust import verify_length_and_hash

__all__ = ["PublishedRepository"]

_METADATA = re.compile(
    r"root\.json|timestamp\.json|roots/[1-9][0-9]{0,8}\.root\.json"
    r"|indexes/[1-9][0-9]{0,8}\.index\.json"
)
_OBJECT_PATH = re.compile(r"(objects|deltas)/[0-9a-f]{2}/[0-9a-f]{64}")


class PublishedRepository:
    """The published view of one repository directory. Thread-safe.

    The index is read (and verified against the repository's own root) again whenever
    ``timestamp.json`` changes, which a publish replaces last; objects become known as the
    manifests of the index are read, once each, on the first request for an object not known yet.
    """

    def __init__(self, root: Path, limits: Limits = DEFAULT_LIMITS) -> None:
        self.root = root
        self.limits = limits
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self.index: RepositoryIndex | None = None
        #: why the current timestamp's index could not be used (``None`` when it could)
        self.problem: str | None = None
        self._catalogue: dict[str, int] = {}
        self._deltas: dict[str, int] = {}
        self._read: set[str] = set()

    def is_published(self, path: str) -> bool:
        """Whether ``path`` (already a safe relative path) is part of the published layout."""
        if _METADATA.fullmatch(path):
            return True
        return self.item(path) is not None

    def item(self, path: str) -> Item | None:
        """The recipe, manifest or object ``path`` is by the current verified index, if any."""
        index = self._current()
        item = index_item(path, index, self._catalogue, self._deltas)
        if item is None and index is not None and _OBJECT_PATH.fullmatch(path):
            self._complete_catalogue(index)
            item = index_item(path, index, self._catalogue, self._deltas)
        return item

    def current(self) -> RepositoryIndex | None:
        """The verified index published now (read again after a publish), if any."""
        return self._current()

    def _current(self) -> RepositoryIndex | None:
        # One stat per request: cheaper than anything else that would notice a publish.
        try:
            st = os.stat(self.root / "timestamp.json")
        except OSError as e:
            self.problem = f"timestamp.json: {e.strerror or e}"
            return self.index
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return self.index
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                self._reload()
        return self.index

    def _reload(self) -> None:
        try:
            index = published_index(self.root, self.limits)
        except (SteppatchError, OSError) as e:
            # Keep what was served before: a publish under way, or metadata someone damaged.
            # The metadata files themselves are still served (a client refuses them itself).
            self.problem = f"the published index does not verify: {e}"
            return
        if not self._read <= manifest_refs(index).keys() | transfers_refs(index).keys():
            # A manifest left the index: its objects must not stay servable through it.
            self._catalogue, self._deltas, self._read = {}, {}, set()
        self.index, self.problem = index, None

    def _complete_catalogue(self, index: RepositoryIndex) -> None:
        with self._lock:
            for sha, ref in manifest_refs(index).items():
                if sha not in self._read:
                    # Marked read even if it fails: a damaged manifest is not re-read each miss.
                    self._read.add(sha)
                    self._catalogue.update(self._objects_of(ref))
            for sha, ref in transfers_refs(index).items():
                if sha not in self._read:
                    self._read.add(sha)
                    self._deltas.update(self._objects_of(ref, transfers_encoded))

    def _objects_of(
        self, ref: FileRef, read: Callable[[bytes, str, Limits], dict[str, int]] = manifest_objects
    ) -> dict[str, int]:
        # Checked against the index first: only a manifest the index signs can name objects.
        try:
            with open(self.root / ref.path, "rb") as f:
                data = f.read(ref.length + 1)
            verify_length_and_hash(data, ref.length, ref.sha256, ref.path)
            return read(data, ref.path, self.limits)
        except (SteppatchError, OSError):
            return {}
