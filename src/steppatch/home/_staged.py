"""Staged applies: a new tree built and kept, until a cluster switch makes it live.

Layout and format (``docs/formats.md``, ``steppatch-staged/1``)::

    HOME/.steppatch/staged/TOKEN/tree/          the built managed tree (TOKEN is its tree id)
    HOME/.steppatch/staged/TOKEN/state.json     the state it makes (self-contained state form)
    HOME/.steppatch/staged/TOKEN/history.spr    the thin snapshot of the state it replaces
    HOME/.steppatch/staged/TOKEN/staged.json    the record, written last

The tree is kept out of ``trees/`` so that recovery (which removes every tree ``current`` does not
use) leaves it alone. A staged apply without its record is incomplete and is never switched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from steppatch import _record as record
from steppatch._fs import atomic_write
from steppatch._json import Fields, dump_json, load_json_object
from steppatch.errors import InputError, StagedApplyMissing
from steppatch.formats import dump_state, parse_state
from steppatch.home._layout import HomeDir, is_tree_id
from steppatch.model import HomeState, Recipe
from steppatch.recipe import dump_recipe, parse_recipe

__all__ = ["STAGED_DIR", "STAGED_FORMAT", "StagedApplies", "StagedRecord"]

STAGED_DIR = "staged"
STAGED_FORMAT = "steppatch-staged/1"


@record.frozen
class StagedRecord:
    """What a staged apply holds: its tree (back among the trees once taken), the state it
    makes, the history entry for the state it replaces, and what the apply was asked."""

    tree_id: str
    state: HomeState
    history: Recipe
    base: str  # the fingerprint of the state it was built on
    hot: bool
    requested: frozenset[str]
    repairs: int
    displaced: tuple[str, ...]


class StagedApplies:
    """The staged applies of one home (``.steppatch/staged/``). Every method must be called
    with the home's lock held."""

    def __init__(self, files: HomeDir) -> None:
        self.files = files
        self.root = files.state_dir / STAGED_DIR

    def keep(self, record: StagedRecord) -> None:
        """Move the built tree ``record.tree_id`` out of ``trees/`` and write the record."""
        staged = self.root / record.tree_id
        staged.mkdir(parents=True)
        os.replace(self.files.trees / record.tree_id, staged / "tree")
        atomic_write(staged / "state.json", dump_state(record.state))
        atomic_write(staged / "history.spr", dump_recipe(record.history))
        fields = {
            "format": STAGED_FORMAT,
            "tree": record.tree_id,
            "base": record.base,
            "hot": record.hot,
            "requested": sorted(record.requested),
            "repairs": record.repairs,
            "displaced": list(record.displaced),
        }
        # Written last: a staged apply without it is incomplete and is never switched.
        atomic_write(staged / "staged.json", dump_json(fields))

    def take(self, token: str, base: str) -> StagedRecord:
        """The staged apply ``token``, its tree moved back among the trees, its directory gone:
        ready to be made live on a home whose state fingerprint is ``base``.

        Raises :class:`InputError` for a malformed token, :class:`StagedApplyMissing` if it is
        gone, incomplete or damaged, or the home changed since it was staged (it is discarded
        then).
        """
        staged = self._dir(token)
        record_path = staged / "staged.json"
        home = str(self.files.root)
        if not record_path.is_file():
            raise StagedApplyMissing(home, token, "not found; stage again")

        def fail(problem: str) -> NoReturn:
            raise StagedApplyMissing(home, token, f"record: {problem}")

        fields = read_staged_record(record_path.read_bytes(), fail)
        if base != fields.base:
            self._discard(staged)
            raise StagedApplyMissing(
                home, token, "the home changed since it was staged; stage again"
            )
        state = parse_state((staged / "state.json").read_bytes(), str(staged / "state.json"))
        history = parse_recipe((staged / "history.spr").read_bytes(), "staged history")
        record = StagedRecord(
            tree_id=fields.tree,
            state=state,
            history=history,
            base=base,
            hot=fields.hot,
            requested=frozenset(fields.requested),
            repairs=fields.repairs,
            displaced=fields.displaced,
        )
        if not is_tree_id(record.tree_id) or not (staged / "tree").is_dir():
            self._discard(staged)
            raise StagedApplyMissing(home, token, "its tree is missing")
        os.replace(staged / "tree", self.files.trees / record.tree_id)
        shutil.rmtree(staged)
        return record

    def discard(self, token: str) -> None:
        """Drop the staged apply ``token``; one that is gone is no error. Raises
        :class:`InputError` for a malformed token."""
        self._discard(self._dir(token))

    def discard_all(self) -> None:
        """Drop every staged apply."""
        for staged in self._all():
            self._discard(staged)

    def _all(self) -> Sequence[Path]:
        return sorted(self.root.iterdir()) if self.root.is_dir() else []

    def _dir(self, token: str) -> Path:
        if not is_tree_id(token):
            raise InputError(f"{token!r} is not a staged apply's token")
        return self.root / token

    def _discard(self, staged: Path) -> None:
        if (staged / "tree").is_dir():
            # Back among the trees, where discard knows how to remove read-only directories.
            os.replace(staged / "tree", self.files.trees / staged.name)
        self.files.discard(staged.name)
        shutil.rmtree(staged, ignore_errors=True)


@record.frozen
class StagedFields:
    """The fields of a ``staged.json`` record, checked."""

    tree: str
    base: str
    hot: bool
    requested: tuple[str, ...]
    repairs: int
    displaced: tuple[str, ...]


def read_staged_record(data: bytes, fail: Callable[[str], NoReturn]) -> StagedFields:
    """Parse a ``steppatch-staged/1`` record; ``fail(problem)`` raises the caller's error (a
    list of anything but strings where names belong included)."""
    f = Fields(load_json_object(data, fail), "", fail)
    if f.get("format", str) != STAGED_FORMAT:
        f.fail("format", f"expected {STAGED_FORMAT!r}")
    lists: dict[str, tuple[str, ...]] = {}
    for field in ("requested", "displaced"):
        listed = f.get(field, list)
        if not all(isinstance(item, str) for item in listed):
            f.fail(field, "expected a list of strings")
        lists[field] = tuple(listed)
    return StagedFields(
        tree=f.get("tree", str),
        base=f.get("base", str),
        hot=f.get("hot", bool),
        requested=lists["requested"],
        repairs=f.get("repairs", int),
        displaced=lists["displaced"],
    )
