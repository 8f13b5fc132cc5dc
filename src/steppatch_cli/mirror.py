"""``steppatch mirror``: run the updates server (origin or mirror) and look after its store.

Thin: each command parses, calls :mod:`steppatch.server`, renders. The server package (and with
it aiohttp) is imported only when a mirror command runs, so other commands start no slower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from steppatch_cli import render

__all__ = ["mirror_app"]

mirror_app = typer.Typer(
    help="Run the updates server: serve a repository, or mirror upstream servers.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="The server's mirror.toml (docs/mirror.md)."),
]


@mirror_app.command("serve")
def serve(config: ConfigOption = Path("mirror.toml")) -> None:
    """Serve until SIGTERM: the HTTPS service port and the admin port (/health, /metrics)."""
    from steppatch import server

    cfg = server.load_config(config)
    kind = "mirror" if cfg.is_mirror else "origin"

    def ready(addresses: dict[str, str]) -> None:
        server.print_ready(addresses)
        render.err.print(
            f"{kind} serving https://{addresses['listen']} "
            f"(admin http://{addresses['admin_listen']}); SIGTERM stops it",
            markup=False,
        )

    server.serve(cfg, ready)


@mirror_app.command("status")
def status(
    config: ConfigOption = Path("mirror.toml"),
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What the store holds, bulk progress, and the running server's health."""
    from steppatch import server

    result = server.mirror_status(server.load_config(config))
    if json_out:
        render.print_json(result.to_json())
        return
    out = render.out
    out.print(f"{result.mode} ({result.download}), store {result.store}", markup=False)
    out.print(f"held: {result.objects} file(s), {result.bytes} bytes", markup=False)
    state: dict[str, Any] = result.state
    if state.get("last_refresh"):
        out.print(f"last metadata refresh: {state['last_refresh']}", markup=False)
    for process, progress in sorted(state.get("bulk", {}).items()):
        out.print(
            f"bulk {process}: {progress.get('state')}, {progress.get('done', 0)} done, "
            f"{progress.get('pending', 0)} pending, {progress.get('errors', 0)} error(s)",
            markup=False,
        )
    health = result.health
    if health is None:
        out.print("server: not answering on its admin port", markup=False)
        return
    out.print(f"server: {health['status']}", markup=False)
    for reason in health.get("reasons", []):
        out.print(f"  - {reason}", markup=False)
    if "index_version" in health:
        out.print(
            f"index version {health['index_version']}, "
            f"timestamp version {health['timestamp_version']}",
            markup=False,
        )


@mirror_app.command("sync")
def sync(
    config: ConfigOption = Path("mirror.toml"),
    once: Annotated[
        bool, typer.Option("--once", help="Refresh and run each bulk process once, then exit.")
    ] = False,
    uncapped: Annotated[
        bool, typer.Option("--uncapped", help="Ignore the bulk bandwidth cap and back-off.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Bring the store up to date with the upstreams (asks the running server if there is one)."""
    from steppatch import server
    from steppatch.errors import InputError

    if not once:
        raise InputError("'mirror sync' needs --once (a running server syncs by itself)")
    result = server.sync_once(server.load_config(config), capped=not uncapped)
    if json_out:
        render.print_json(result)
        return
    for key, value in sorted(result.items()):
        render.out.print(f"{key}: {value}", markup=False)

