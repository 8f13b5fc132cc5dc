"""``steppatch mirror``: run the updates server (origin or mirror) and look after its store.

Thin: each command parses, calls :mod:`steppatch.server`, renders. The server package (and with
it aiohttp) is imported only when a mirror command runs, so other commands start no slower.
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from steppatch_cli import render
from steppatch_cli.foothold import (
    DEFAULT_REF,
    RefArgument,
    show_self_update,
    tool_home_option,
)

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
    """Serve until SIGTERM: the HTTPS service port and the admin port (/health, /metrics).

    SIGHUP restarts it in place (same pid), running the steppatch its tool home now holds.
    """
    from steppatch import server
    from steppatch.server import RestartOnHangup

    cfg = server.load_config(config)
    kind = "mirror" if cfg.is_mirror else "origin"
    restart = RestartOnHangup()

    def ready(addresses: dict[str, str]) -> None:
        server.print_ready(addresses)
        render.err.print(
            f"{kind} serving https://{addresses['listen']} "
            f"(admin http://{addresses['admin_listen']}); SIGTERM stops it, SIGHUP restarts it",
            markup=False,
        )

    server.serve(cfg, ready)
    if restart.requested:
        render.err.print(f"{kind} stopped; restarting in place (SIGHUP)", markup=False)
        restart.reexec()


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
    if result.sizes:
        out.print(
            ", ".join(f"{part} {value}" for part, value in result.sizes.items()) + " (bytes)",
            markup=False,
        )
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


@mirror_app.command("fleet")
def fleet(
    config: ConfigOption = Path("mirror.toml"),
    json_out: Annotated[bool, typer.Option("--json", help="steppatch-fleet/1 (docs/formats.md).")]
    = False,
) -> None:
    """Every system that uploaded its snapshot: what it runs, what it lacks, what to run."""
    from steppatch import server
    from steppatch.fleet import fleet_to_json

    result, unreadable = server.fleet_report(server.load_config(config))
    if json_out:
        # One line: for 1,000 systems the indented form takes seconds (Python's encoder).
        render.print_json(fleet_to_json(result, unreadable), compact=True)
        return
    counts = result.counts()
    render.out.print(
        ", ".join(f"{n} {state}" for state, n in counts.items())
        + f" ({len(result.systems)} system(s); stale after "
        f"{result.stale_after.total_seconds() / 86400:g} days)",
        markup=False,
    )
    if not result.indexed and result.systems:
        render.out.print("no verified index in the store: nothing counts as behind", markup=False)
    for system in result.systems:
        nodes = f", {len(system.nodes)} nodes" if system.nodes else ""
        render.out.print(
            f"{system.name}: {system.state.value}, {len(system.components)} component(s)"
            f"{nodes}, {system.behind} behind, last upload "
            f"{system.last_upload.isoformat(timespec='seconds')}",
            markup=False,
        )
        for line in system.commands:
            render.out.print(f"  {line}", markup=False)
    for name, problem in sorted(unreadable.items()):
        render.err.print(f"warning: {name}: unreadable: {problem}", markup=False)


@mirror_app.command("gc")
def gc(
    config: ConfigOption = Path("mirror.toml"),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Remove nothing; say what would go.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Remove content none of the last keep_indexes indexes names (asks the running server
    if there is one); print what it frees."""
    from steppatch import server

    result = server.collect_mirror(server.load_config(config), dry_run=dry_run)
    if json_out:
        render.print_json(result)
        return
    removed = result["removed"]
    verb = "would free" if result["dry_run"] else "freed"
    render.out.print(
        f"mirror gc: {verb} {result['freed_bytes']} bytes: {removed['objects']} object(s), "
        f"{removed['manifests']} manifest(s), {removed['recipes']} recipe(s), "
        f"{removed['partial']} partial fill(s); kept the content of index version(s) "
        f"{', '.join(map(str, result['kept_indexes'])) or '-'}",
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


@mirror_app.command("upgrade")
def upgrade(
    ref: RefArgument = DEFAULT_REF,
    config: ConfigOption = Path("mirror.toml"),
    tool_home: Annotated[Path | None, tool_home_option] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Update steppatch in its tool home, then restart the running server in place."""
    from steppatch.selfupdate import tool_home_path, upgrade_mirror

    with render.progress_bar(enabled=not json_out) as bar:
        result = upgrade_mirror(config, tool_home_path(tool_home), ref, progress=bar)
    restart = result.restart
    if json_out:
        render.print_json(render.mirror_upgrade_json(result))
        return
    show_self_update(result.update, json_out=False)
    if restart is None:
        render.out.print(
            f"No server runs on {config}; start it with: {result.update.launcher} mirror serve "
            f"--config {config}",
            markup=False,
        )
        return
    render.out.print(
        f"Restarted the server in place (pid {restart.pid}); it is healthy", markup=False
    )
    if str(result.update.tool_home) not in " ".join(restart.command):
        render.err.print(
            f"warning: that server does not run from {result.update.tool_home}: "
            f"{' '.join(restart.command)}",
            markup=False,
        )
