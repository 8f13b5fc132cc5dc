"""``steppatch nodes``: the cluster's nodes; the hidden ``steppatch node`` protocol commands a
coordinating node runs over SSH; and the rendering of cluster results.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from steppatch_cli import render
from steppatch_cli.parsing import SyncModeName

if TYPE_CHECKING:
    from steppatch import Home
    from steppatch.cluster import ClusterReport, ClusterStatus, NodeServer

__all__ = [
    "cluster_report_json",
    "cluster_status_json",
    "make_node_app",
    "make_nodes_app",
    "mixed_warning",
    "show_cluster_report",
    "show_cluster_status",
]

MIXED_EXIT = 1  # status --cluster on a mixed or partly unreachable cluster


def make_nodes_app(open_home: Callable[[], Home]) -> typer.Typer:
    """``steppatch nodes [--json] | add | remove | name``."""
    nodes_app = typer.Typer(
        help="The other nodes of this home's cluster (this node is always one of them).",
        invoke_without_command=True,
    )

    @nodes_app.callback()
    def nodes(
        ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json")] = False
    ) -> None:
        """List the cluster's nodes: this one first, then the others as configured."""
        if ctx.invoked_subcommand is not None:
            return
        from steppatch.cluster import Cluster

        cluster = Cluster(open_home())
        rows = [(cluster.self_name, str(cluster.home.path), "", True)] + [
            (e.name, e.location, e.command, False) for e in cluster.entries()
        ]
        if json_out:
            render.print_json(
                {
                    "nodes": [
                        {"name": n, "location": loc, "command": cmd, "self": me}
                        for n, loc, cmd, me in rows
                    ]
                }
            )
            return
        table = render.new_table("Cluster nodes")
        for column in ("name", "location", "this node"):
            table.add_column(column)
        for name, location, _cmd, me in rows:
            table.add_row(name, location, "*" if me else "")
        render.out.print(table)

    @nodes_app.command("add")
    def nodes_add(
        name: Annotated[str, typer.Argument(metavar="NAME")],
        location: Annotated[
            str, typer.Argument(metavar="LOCATION", help="A path, or ssh://USER@HOST[:PORT]/PATH.")
        ],
        command: Annotated[
            str, typer.Option(help="The steppatch command on an SSH node (default: steppatch).")
        ] = "",
    ) -> None:
        """Add a node: another home on a local path, or one reached over SSH."""
        from steppatch.config import NodeEntry

        if not location.startswith("ssh://") and "://" not in location:
            location = str(Path(location).absolute())
        open_home().add_node(NodeEntry(name, location, command))
        render.out.print(f"Added node {name} ({location})")

    @nodes_app.command("remove")
    def nodes_remove(name: Annotated[str, typer.Argument(metavar="NAME")]) -> None:
        """Remove a node from this home's list (the node itself is not touched)."""
        open_home().remove_node(name)
        render.out.print(f"Removed node {name}")

    @nodes_app.command("name")
    def nodes_name(name: Annotated[str, typer.Argument(metavar="NAME")]) -> None:
        """Name this node (default: the host name)."""
        open_home().name_node(name)
        render.out.print(f"This node is now called {name}")

    return nodes_app


def make_node_app(open_home: Callable[[], Home]) -> typer.Typer:
    """The hidden protocol commands (``steppatch-node/1``): each prints one JSON object."""
    node_app = typer.Typer(
        help="Protocol commands a coordinating node runs here over SSH (JSON out).",
        no_args_is_help=True,
        hidden=True,
    )

    @node_app.command("status")
    def node_status() -> None:
        """This node's versions, environment id and state fingerprint."""
        render.print_json(_server().status())

    @node_app.command("stage")
    def node_stage(
        hot: Annotated[bool, typer.Option("--hot")] = False,
        sync: Annotated[SyncModeName | None, typer.Option("--sync")] = None,
    ) -> None:
        """Stage the recipe read from stdin; print its token and plan."""
        recipe = sys.stdin.buffer.read()
        render.print_json(_server().stage(recipe, hot=hot, sync=sync.mode if sync else None))

    @node_app.command("switch")
    def node_switch(token: Annotated[str, typer.Argument()]) -> None:
        """Make a staged apply live (stop, switch, start)."""
        render.print_json(_server().switch(token))

    @node_app.command("discard")
    def node_discard(token: Annotated[str, typer.Argument()]) -> None:
        """Drop a staged apply."""
        render.print_json(_server().discard(token))

    def _server() -> NodeServer:
        from steppatch.cluster import NodeServer

        return NodeServer(open_home())

    return node_app


# --- rendering -----------------------------------------------------------------------------------


def cluster_status_json(status: ClusterStatus) -> dict[str, Any]:
    return {
        "consistent": status.consistent,
        "nodes": [
            {
                "name": n.name,
                "location": n.location,
                "self": n.is_self,
                "components": None
                if n.versions is None
                else {c: str(v) for c, v in sorted(n.versions.items())},
                "error": n.error or None,
            }
            for n in status.nodes
        ],
    }


def show_cluster_status(status: ClusterStatus) -> None:
    from steppatch.cluster import versions_text

    table = render.new_table("Cluster status")
    for column in ("node", "location", "versions"):
        table.add_column(column)
    for n in status.nodes:
        versions = versions_text(n.versions) if n.versions is not None else f"UNKNOWN: {n.error}"
        name = f"{n.name} (this node)" if n.is_self else n.name
        table.add_row(name, n.location, versions)
    render.out.print(table)
    if status.consistent:
        render.out.print(f"Consistent: all {len(status.nodes)} node(s) at the same versions.")
    elif status.unreachable:
        render.out.print("Not known to be consistent: a node could not be asked.")
    else:
        render.out.print("MIXED: the nodes are not at the same versions.")


def cluster_report_json(report: ClusterReport) -> dict[str, Any]:
    value = render.plan_json(report.plan)
    value["nodes"] = [
        {"name": o.name, "switched": o.switched, "restarted": o.restarted} for o in report.nodes
    ]
    value["snapshot_upload"] = report.upload
    return value


def show_cluster_report(report: ClusterReport) -> None:
    render.show_plan(report.plan, applied=True)
    switched = [o.name for o in report.nodes if o.switched]
    if switched:
        render.out.print(f"Switched {len(switched)} node(s): {', '.join(switched)}")
    unchanged = [o.name for o in report.nodes if not o.switched]
    if unchanged and switched:
        render.out.print(f"Already there: {', '.join(unchanged)}")
    if report.upload.startswith("failed"):
        render.err.print(f"warning: cluster snapshot upload {report.upload}", markup=False)


def mixed_warning(status: ClusterStatus) -> str:
    """The warning after an ``apply --local`` leaves the cluster mixed (empty if it is not)."""
    if len(status.nodes) < 2 or status.consistent:
        return ""
    groups = "; ".join(f"{', '.join(names)} at {text}" for text, names in status.groups())
    return (
        f"warning: the cluster is now mixed ({groups}); patch the other nodes with "
        "'apply --local' too, so that every node is at the same release"
    )

