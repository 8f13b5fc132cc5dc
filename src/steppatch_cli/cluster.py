"""``steppatch nodes``: the cluster's nodes; the hidden ``steppatch node`` protocol commands a
coordinating node runs over SSH; and the rendering of cluster results.
"""

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from steppatch_cli import render
from steppatch_cli.context import open_home as open_run_home
from steppatch_cli.parsing import SyncModeName
from steppatch_cli.render import (
    cluster_report_json,
    cluster_status_json,
    mixed_warning,
    show_cluster_report,
    show_cluster_status,
)

if TYPE_CHECKING:
    from typer._click import Context

    from steppatch import Home
    from steppatch.cluster import NodeServer

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


#: ``open_home(ctx)``: the home of the run ``ctx`` belongs to, opened
OpenHome = Callable[["Context"], "Home"]


def make_nodes_app(open_home: OpenHome = open_run_home) -> typer.Typer:
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
        from steppatch.commands import list_nodes

        rows = list_nodes(open_home(ctx))
        if json_out:
            render.print_json(render.nodes_json(rows))
        else:
            render.show_nodes(rows)

    @nodes_app.command("add")
    def nodes_add(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(metavar="NAME")],
        location: Annotated[
            str, typer.Argument(metavar="LOCATION", help="A path, or ssh://USER@HOST[:PORT]/PATH.")
        ],
        command: Annotated[
            str, typer.Option(help="The steppatch command on an SSH node (default: steppatch).")
        ] = "",
    ) -> None:
        """Add a node: another home on a local path, or one reached over SSH."""
        from steppatch.commands import add_node

        stored = add_node(lambda: open_home(ctx), name, location, command)
        render.out.print(f"Added node {name} ({stored})")

    @nodes_app.command("remove")
    def nodes_remove(
        ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME")]
    ) -> None:
        """Remove a node from this home's list (the node itself is not touched)."""
        open_home(ctx).remove_node(name)
        render.out.print(f"Removed node {name}")

    @nodes_app.command("name")
    def nodes_name(
        ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME")]
    ) -> None:
        """Name this node (default: the host name)."""
        open_home(ctx).name_node(name)
        render.out.print(f"This node is now called {name}")

    return nodes_app


def make_node_app(open_home: OpenHome = open_run_home) -> typer.Typer:
    """The hidden protocol commands (``steppatch-node/1``): each prints one JSON object."""
    node_app = typer.Typer(
        help="Protocol commands a coordinating node runs here over SSH (JSON out).",
        no_args_is_help=True,
        hidden=True,
    )

    @node_app.command("status")
    def node_status(ctx: typer.Context) -> None:
        """This node's versions, environment id and state fingerprint."""
        render.print_json(_server(ctx).status())

    @node_app.command("stage")
    def node_stage(
        ctx: typer.Context,
        hot: Annotated[bool, typer.Option("--hot")] = False,
        sync: Annotated[SyncModeName | None, typer.Option("--sync")] = None,
    ) -> None:
        """Stage the recipe read from stdin; print its token and plan."""
        recipe = sys.stdin.buffer.read()
        render.print_json(_server(ctx).stage(recipe, hot=hot, sync=sync.mode if sync else None))

    @node_app.command("switch")
    def node_switch(ctx: typer.Context, token: Annotated[str, typer.Argument()]) -> None:
        """Make a staged apply live (stop, switch, start)."""
        render.print_json(_server(ctx).switch(token))

    @node_app.command("discard")
    def node_discard(ctx: typer.Context, token: Annotated[str, typer.Argument()]) -> None:
        """Drop a staged apply."""
        render.print_json(_server(ctx).discard(token))

    def _server(ctx: typer.Context) -> "NodeServer":
        from steppatch.cluster import NodeServer

        return NodeServer(open_home(ctx))

    return node_app


# --- rendering: render.py's (these names stay importable from here) -------------------------------
