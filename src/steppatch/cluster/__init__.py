"""Clusters: the nodes of one installation, patched together or one at a time (``--local``).

:class:`Cluster` orchestrates; nodes sit behind the :class:`Node` Protocol (:class:`LocalNode`
for a home on a local path, :class:`SshNode` for one reached with ``ssh``).
"""

from typing import TYPE_CHECKING

from steppatch._lazy import attach

if TYPE_CHECKING:
    from steppatch.cluster._cluster import Cluster, ClusterReport, NodeOutcome
    from steppatch.cluster._core import (
        NODE_FORMAT,
        ClusterStatus,
        Location,
        NodeStatus,
        SwitchResult,
        check_node_name,
        parse_location,
        plan_from_json,
        plan_to_json,
        versions_text,
    )
    from steppatch.cluster._nodes import LocalNode, Node, SshNode, connect_node
    from steppatch.cluster._serve import NodeServer

__getattr__, __dir__ = attach(
    __name__,
    {
        "steppatch.cluster._cluster": ("Cluster", "ClusterReport", "NodeOutcome"),
        "steppatch.cluster._core": (
            "NODE_FORMAT",
            "ClusterStatus",
            "Location",
            "NodeStatus",
            "SwitchResult",
            "check_node_name",
            "parse_location",
            "plan_from_json",
            "plan_to_json",
            "versions_text",
        ),
        "steppatch.cluster._nodes": ("LocalNode", "Node", "SshNode", "connect_node"),
        "steppatch.cluster._serve": ("NodeServer",),
    },
)

__all__ = [
    "NODE_FORMAT",
    "Cluster",
    "ClusterReport",
    "ClusterStatus",
    "LocalNode",
    "Location",
    "Node",
    "NodeOutcome",
    "NodeServer",
    "NodeStatus",
    "SshNode",
    "SwitchResult",
    "check_node_name",
    "connect_node",
    "parse_location",
    "plan_from_json",
    "plan_to_json",
    "versions_text",
]
