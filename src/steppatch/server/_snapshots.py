"""Thin snapshots uploaded by clients: each may store its own system's only.

``PUT /snapshots/NAME.spr`` stores the thin snapshot of system ``NAME``; the client certificate
must carry ``NAME``. A mirror forwards what it received upstream as
``PUT /snapshots/MIRROR/NAME.spr`` under its own certificate (``MIRROR``): the first path
segment is always the uploader's own name, so no server needs to trust a relay to write in another
system's name. ``GET`` of the same path returns the latest, to the same system only.

Layout: ``snapshots/PATH/TIME-SHA8.spr`` (every upload), ``snapshots/PATH/latest.spr``, and
``snapshots/.outbox/`` (uploads a mirror has not forwarded yet).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import requests

from steppatch._fs import atomic_write
from steppatch.errors import InputError, RecipeError
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import Recipe, RecipeKind
from steppatch.pki import validate_system_name
from steppatch.recipe import parse_recipe
from steppatch.server.errors import SnapshotRefused, StoreError, StoreFull

__all__ = ["MAX_DEPTH", "SnapshotStore", "check_snapshot"]

#: how many relays a snapshot may pass (each adds one path segment)
MAX_DEPTH = 8
_OUTBOX = ".outbox"


def check_snapshot(
    path: str, owner: str | None, body: bytes, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[str], Recipe]:
    """Check an upload of ``body`` to ``snapshots/PATH`` by the system ``owner`` (from its
    certificate). Returns the path's names (without ``.spr``) and the recipe.

    Raises :class:`SnapshotRefused`: 403 when ``owner`` may not write there, 400 for a path or
    document that is not a thin snapshot of the system the path names, 413 when too large.
    """
    if owner is None:
        raise SnapshotRefused(403, "the client certificate carries no system name")
    parts = path.split("/")
    if not parts[-1].endswith(".spr") or len(parts) > MAX_DEPTH:
        raise SnapshotRefused(400, f"expected snapshots/NAME.spr (at most {MAX_DEPTH} levels)")
    names = [*parts[:-1], parts[-1].removesuffix(".spr")]
    try:
        for name in names:
            validate_system_name(name)
    except InputError as e:
        raise SnapshotRefused(400, str(e)) from e
    if names[0] != owner:
        raise SnapshotRefused(403, f"system {owner!r} may store its own snapshots only")
    if len(body) > limits.max_recipe_bytes:
        raise SnapshotRefused(413, f"larger than {limits.max_recipe_bytes} bytes")
    try:
        recipe = parse_recipe(body, f"snapshot {path}", limits)
    except RecipeError as e:
        raise SnapshotRefused(400, e.problem) from e
    if recipe.kind is not RecipeKind.SNAPSHOT:
        raise SnapshotRefused(400, f"a {recipe.kind.value} recipe is not a snapshot")
    if recipe.system != names[-1]:
        raise SnapshotRefused(
            400, f"the snapshot is of system {recipe.system!r}, not {names[-1]!r}"
        )
    for name, spec in recipe.components.items():
        pins = list(spec)
        if len(pins) != 1 or pins[0].operator != "==" or "*" in pins[0].version:
            raise SnapshotRefused(400, f"component {name!r}: a thin snapshot pins one version")
    return names, recipe


class SnapshotStore:
    """Uploaded snapshots under ``root``; ``forward`` keeps an outbox for the upstreams."""

    def __init__(self, root: Path, forward: bool, limits: Limits = DEFAULT_LIMITS) -> None:
        self.root = root
        self.forward = forward
        self.limits = limits

    def put(self, path: str, owner: str | None, body: bytes) -> str:
        """Store an upload (see :func:`check_snapshot`); returns where it was kept.

        Raises :class:`SnapshotRefused`, :class:`StoreFull` / :class:`StoreError`.
        """
        names, _recipe = check_snapshot(path, owner, body, self.limits)
        digest = hashlib.sha256(body).hexdigest()
        folder = self.root.joinpath(*names)
        name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{digest[:8]}.spr"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / name, body)
            atomic_write(folder / "latest.spr", body)
            if self.forward:
                outbox = self.root / _OUTBOX
                outbox.mkdir(exist_ok=True)
                doc = {"path": path, "snapshot": body.decode("utf-8")}
                atomic_write(
                    outbox / f"{time.time_ns()}-{digest[:8]}.json", json.dumps(doc).encode()
                )
        except OSError as e:
            cls = StoreFull if e.errno == 28 else StoreError
            raise cls(str(folder), e.strerror or str(e)) from e
        return "/".join(names) + "/" + name

    def get(self, path: str, owner: str | None) -> bytes:
        """The latest snapshot stored at ``path``. Raises :class:`SnapshotRefused` (403 for
        another system's, 404 when there is none)."""
        if owner is None:
            raise SnapshotRefused(403, "the client certificate carries no system name")
        parts = path.split("/")
        names = [*parts[:-1], parts[-1].removesuffix(".spr")]
        try:
            for name in names:
                validate_system_name(name)
        except InputError as e:
            raise SnapshotRefused(404, str(e)) from e
        if names[0] != owner:
            raise SnapshotRefused(403, f"system {owner!r} may read its own snapshots only")
        try:
            return self.root.joinpath(*names, "latest.spr").read_bytes()
        except OSError:
            raise SnapshotRefused(404, "no snapshot stored") from None

    def pending(self) -> int:
        """How many uploads wait to be forwarded."""
        outbox = self.root / _OUTBOX
        return len(list(outbox.glob("*.json"))) if outbox.is_dir() else 0

    def flush(self, send: Callable[[str, bytes], int]) -> tuple[int, int]:
        """Forward each waiting upload with ``send(path, body) -> HTTP status`` (raising
        ``OSError`` or a :class:`requests.RequestException` when the upstream cannot be
        reached). Returns (forwarded, refused); what could not be sent stays for next time."""
        outbox = self.root / _OUTBOX
        sent = refused = 0
        if not outbox.is_dir():
            return 0, 0
        for item in sorted(outbox.glob("*.json")):
            try:
                doc = json.loads(item.read_bytes())
                status = send(doc["path"], doc["snapshot"].encode("utf-8"))
            except (OSError, requests.RequestException):
                break
            except (ValueError, KeyError):
                status = 400
            if 200 <= status < 300:
                sent += 1
            elif 400 <= status < 500:
                # Refused for good (the upstream's rule or our bytes): retrying cannot help.
                refused += 1
            else:
                break
            with contextlib.suppress(FileNotFoundError):
                item.unlink()
        return sent, refused
