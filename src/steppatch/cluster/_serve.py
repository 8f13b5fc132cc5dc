"""The serving side of the node protocol (``steppatch-node/1``): what this home answers when a
coordinating node runs ``steppatch node ...`` here over SSH.

Each answer is what :class:`~steppatch.cluster.LocalNode` reports for this home, put in the
protocol's JSON by :mod:`steppatch.cluster._core`, so the local and the remote view of a node
are one code path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from steppatch.cluster._core import empty_answer, stage_answer, status_answer, switch_answer
from steppatch.cluster._nodes import LocalNode
from steppatch.recipe import parse_recipe

if TYPE_CHECKING:
    from steppatch.plan import SyncMode
    from steppatch.updater import Home

__all__ = ["NodeServer"]


class NodeServer:
    """Answers the protocol's four commands for one home; each returns the JSON object to print.

    Errors propagate as the library raises them (the CLI turns them into a message and an exit
    code, which the coordinator reports with the node's name).
    """

    def __init__(self, home: Home) -> None:
        self._node = LocalNode("", home, is_self=True)

    def status(self) -> dict[str, object]:
        """This node's versions, environment id and state fingerprint."""
        return status_answer(self._node.status())

    def stage(self, recipe: bytes, *, hot: bool, sync: SyncMode | None) -> dict[str, object]:
        """Stage the recipe (bytes as the coordinator sent them). Raises
        :class:`~steppatch.errors.RecipeError` for a bad recipe, else what staging raises."""
        staged = self._node.stage(
            parse_recipe(recipe, "the recipe on stdin"), hot=hot, sync=sync
        )
        return stage_answer(staged.token, staged.plan)

    def switch(self, token: str) -> dict[str, object]:
        """Make a staged apply live (stop, switch, start)."""
        return switch_answer(self._node.switch(token))

    def discard(self, token: str) -> dict[str, object]:
        """Drop a staged apply."""
        self._node.discard(token)
        return empty_answer()
