"""A cluster apply: check every node agrees, stage on every node, then switch each.

The rule the manuals give: every server of a cluster is at the same release. A plain apply
keeps it so. Nothing is switched anywhere until every node has staged (downloaded, verified and
built its new tree); a node that fails before then leaves every node as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from steppatch import _record as record
from steppatch._fs import checkpoint
from steppatch.clock import snapshot_stamp
from steppatch.cluster._core import ClusterStatus, NodeStatus, versions_text
from steppatch.cluster._nodes import LocalNode, Node, connect_node
from steppatch.config import NodeEntry
from steppatch.errors import (
    ClusterMixed,
    ClusterPartiallyApplied,
    NodeFailed,
    SteppatchError,
)
from steppatch.model import NodeSnapshot, Recipe, RecipeKind
from steppatch.plan import Plan, SyncMode
from steppatch.recipe import dump_recipe, pinned_recipe
from steppatch.updater import Home

if TYPE_CHECKING:
    from steppatch.pipeline import StagedApply

__all__ = ["Cluster", "ClusterReport", "NodeOutcome"]


@record.frozen
class NodeOutcome:
    """One node after a cluster apply: its plan and whether its application was restarted."""

    name: str
    plan: Plan
    switched: bool
    restarted: bool = False


@record.frozen
class ClusterReport:
    """What a cluster apply did: this node's plan, and every node's outcome (this one first)."""

    plan: Plan
    nodes: tuple[NodeOutcome, ...]
    #: what became of the cluster snapshot sent to the mirror (``sent``, ``skipped: ...``,
    #: ``failed: ...``; empty when nothing changed)
    upload: str = ""


class Cluster:
    """A home and the other nodes its config lists (``steppatch nodes add``)."""

    def __init__(
        self, home: Home, connect: Callable[[NodeEntry], Node] | None = None
    ) -> None:
        self.home = home
        self._connect = connect or (lambda entry: connect_node(entry, home.progress))

    @property
    def self_name(self) -> str:
        """This node's name: the config's ``node``, else the host name."""
        return self.home.files.node_name()

    def entries(self) -> list[NodeEntry]:
        """The other nodes, as configured."""
        return list(self.home.files.config.nodes)

    def status(self) -> ClusterStatus:
        """Every node's versions; a node that cannot be asked is listed with the reason."""
        statuses = [self._self_node().status()]
        for entry in self.entries():
            try:
                statuses.append(self._connect(entry).status())
            except (SteppatchError, OSError) as e:
                statuses.append(NodeStatus(entry.name, entry.location, error=str(e)))
        return ClusterStatus(tuple(statuses))

    def snapshot(self, path: Path | str | None = None) -> Recipe:
        """A cluster snapshot: this node's versions (what applying it brings every node to) and
        every node's own versions, environment and fingerprint. Written to ``path`` if given.

        Raises :class:`NodeFailed` if a node cannot be asked.
        """
        status = self.status()
        for n in status.unreachable:
            raise NodeFailed(n.name, "status", n.error, NodeFailed.exit_code)
        mine = status.nodes[0]
        assert mine.versions is not None
        recipe = pinned_recipe(
            RecipeKind.SNAPSHOT,
            mine.versions,
            name=f"snapshot-cluster-{self.home.files.config.system or 'home'}",
            system=self.home.files.config.system,
            created=snapshot_stamp(self.home.clock()),
            environment=mine.environment,
            fingerprint=mine.fingerprint,
        )
        recipe = record.evolve(
            recipe,
            nodes=tuple(
                NodeSnapshot(n.name, n.versions or {}, n.environment, n.fingerprint)
                for n in status.nodes
            ),
        )
        if path is not None:
            Path(path).write_bytes(dump_recipe(recipe))
        return recipe

    def apply(
        self, refs: Sequence[str], *, hot: bool = False, sync: SyncMode | None = None
    ) -> ClusterReport:
        """Apply ``refs`` to every node: all stage first, then each is switched in turn.

        Refuses with :class:`ClusterMixed` when the nodes are not at the same versions, unless
        a snapshot is among ``refs`` (it brings every node to its versions). Raises
        :class:`NodeFailed` (nothing switched anywhere) when a node cannot be asked or fails to
        stage, naming it and why; :class:`ClusterPartiallyApplied` when a node fails during its
        switch, saying which nodes are at which versions and how to go back.
        """
        recipes = self.home.load_recipes(refs)
        status = self.status()
        for n in status.unreachable:
            raise NodeFailed(n.name, "status", n.error, NodeFailed.exit_code)
        if not status.consistent and not any(r.kind is RecipeKind.SNAPSHOT for r in recipes):
            raise ClusterMixed(status.groups())
        nodes: list[Node] = [self._self_node()]
        for entry in self.entries():
            nodes.append(self._connect(entry))

        staged: list[tuple[Node, StagedApply]] = []
        try:
            mine = self.home.stage(recipes, hot=hot, sync=sync)
            staged.append((nodes[0], mine))
            # Every node is brought to exactly what this node resolved, whatever it holds now.
            target = pinned_recipe(RecipeKind.SNAPSHOT, mine.plan.target, name="cluster-apply")
            for node in nodes[1:]:
                staged.append((node, node.stage(target, hot=hot, sync=sync)))
        except (SteppatchError, OSError) as e:
            failed = nodes[len(staged)].name
            self._discard(staged)
            code = e.exit_code if isinstance(e, SteppatchError) else NodeFailed.exit_code
            raise NodeFailed(failed, "prepare", str(e), code) from e

        checkpoint("cluster-staged")
        outcomes: list[NodeOutcome] = []
        for i, (node, stage) in enumerate(staged):
            if not stage.token:
                outcomes.append(NodeOutcome(node.name, stage.plan, switched=False))
                continue
            try:
                result = node.switch(stage.token)
            except (SteppatchError, OSError) as e:
                self._discard(staged[i + 1 :])
                raise self._partial(node.name, e, staged, refs) from e
            outcomes.append(NodeOutcome(node.name, stage.plan, True, result.restarted))
            checkpoint(f"cluster-switched-{i + 1}")
        upload = ""
        if any(o.switched for o in outcomes):
            # Every node is now at what this node resolved: the mirror's fleet shows the
            # cluster with its nodes (each node's own upload named no other node).
            versions = dict(mine.plan.target)
            upload = self.home.upload_snapshot(
                versions, [NodeSnapshot(node.name, versions) for node, _stage in staged]
            )
        return ClusterReport(mine.plan, tuple(outcomes), upload)

    def _self_node(self) -> LocalNode:
        return LocalNode(self.self_name, self.home, is_self=True)

    def _discard(self, staged: Sequence[tuple[Node, StagedApply]]) -> None:
        for node, stage in staged:
            if stage.token:
                # A node that cannot discard now does so at its next stage.
                with contextlib.suppress(SteppatchError, OSError):
                    node.discard(stage.token)

    def _partial(
        self,
        failed: str,
        cause: BaseException,
        staged: list[tuple[Node, StagedApply]],
        refs: Sequence[str],
    ) -> ClusterPartiallyApplied:
        status = self.status()
        by_name = {n.name: n for n in status.nodes}
        # Asked again rather than inferred: a node whose start failed did switch.
        switched = [
            node.name
            for node, stage in staged
            if stage.token and by_name[node.name].versions == dict(stage.plan.target)
        ]
        now = tuple(
            (n.name, versions_text(n.versions) if n.versions is not None else f"unknown: {n.error}")
            for n in status.nodes
        )
        behind = [node.name for node, _ in staged if node.name not in switched]
        steps = []
        if switched:
            steps.append(
                f"to go back, run 'steppatch rollback' on {', '.join(switched)}"
            )
        if behind:
            steps.append(
                f"to finish, fix {failed} and run 'steppatch apply --local {' '.join(refs)}' "
                f"on {', '.join(behind)}"
            )
        hint = "; or ".join(steps)
        hint = f"{hint[:1].upper()}{hint[1:]}." if hint else ""
        return ClusterPartiallyApplied(failed, str(cause), now, tuple(switched), hint)
