"""The Typer root: parse, call the library, render. Errors become one line and an exit code here.

Exit codes: 0 success, 1 other steppatch error, 2 bad input, 3 repository, 4 network,
5 local environment, 6 drift found by ``verify``.
"""

import copy
import errno
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup
from typer.models import TyperInfo

from steppatch.errors import InputError, LocalEnvironmentError, NetworkError, SteppatchError
from steppatch_cli import render
from steppatch_cli.context import CliOptions, home_opener, home_path, open_home, options
from steppatch_cli.parsing import KeysOption, SyncModeName, parse_expiry, rewrite_enroll_alias

if TYPE_CHECKING:
    from typer._click import Context

    from steppatch.commands import ApplyOutcome, MadePatch

# Start-up is a feature: this module imports only what building the command line needs; each
# command imports the library parts it uses, so `--help` or `status` never loads the network
# stack, the server or the solver.
#
# No `from __future__ import annotations` in the modules that define commands: Typer reads every
# command's annotations (twice) when it builds the command line; as objects made once at import
# they cost less than strings evaluated again on each run (`--help` builds every command).


class _Root(TyperGroup):
    """The root command: a ``SteppatchError`` (or ``OSError``) a command raises becomes one line
    on stderr and its exit code, with the traceback when the run's options (``ctx.obj``) say
    ``-v``. A broken pipe is left to click (exit 1), as it always was."""

    def invoke(self, ctx: "Context") -> Any:
        try:
            return super().invoke(ctx)
        except SteppatchError as e:
            _fail(ctx, str(e), e.exit_code)
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise
            _fail(ctx, str(e), LocalEnvironmentError.exit_code)


def _fail(ctx: "Context", message: str, code: int) -> None:
    if options(ctx).verbose:
        import traceback

        traceback.print_exc()
    render.err.print(f"error: {message}", markup=False)
    sys.exit(code)


def _new_root() -> typer.Typer:
    return typer.Typer(
        cls=_Root,
        name="steppatch",
        help="Keep a componentized server installation (a home) patched.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # click's plain help: rich's formatting costs more than the rest of a start (docs/cli.md)
        rich_markup_mode=None,
    )


# The commands of this module; the groups and commands of the other CLI modules are added in
# their places when they run, or for the whole command line (`_Deferred`).
app = _new_root()
repo_app = typer.Typer(
    help="Build and publish a repository (the release side).", no_args_is_help=True
)
app.add_typer(repo_app, name="repo")


class _Deferred:
    """A group or command another module defines, loaded only by a run that needs it: the run of
    the top-level command ``needed_by``, or one that builds the whole command line (``--help``).

    Start-up: each of those modules costs its imports and its options' objects (a few ms all
    together), which a run of ``status`` would otherwise pay for nothing.
    """

    parts: list["_Deferred"] = []  # noqa: RUF012 -- the one registry, in declaration order

    def __init__(
        self, target: typer.Typer, needed_by: str, group: bool, add: Callable[[typer.Typer], None]
    ) -> None:
        self.target, self.needed_by, self.group, self._add = target, needed_by, group, add
        # its place among the target's commands (or groups): --help lists them in that order
        self.place = len(target.registered_groups if group else target.registered_commands)
        self._items: list[Any] | None = None
        _Deferred.parts.append(self)

    def items(self) -> list[Any]:
        """What ``add`` registers (a CommandInfo or TyperInfo), loaded once per process."""
        if self._items is None:
            holder = typer.Typer()
            self._add(holder)
            self._items = holder.registered_groups if self.group else holder.registered_commands
        return self._items


def _merged(target: typer.Typer, needed_by: str | None) -> typer.Typer:
    """A copy of ``target`` with its deferred parts in their places: all of them, or those the
    command ``needed_by`` needs; its groups merged the same way."""
    merged = copy.copy(target)
    commands, groups = list(target.registered_commands), list(target.registered_groups)
    # from the last place back, so that each place is still where it was declared
    for part in reversed(_Deferred.parts):
        if part.target is target and needed_by in (None, part.needed_by):
            into = groups if part.group else commands
            into[part.place:part.place] = part.items()
    merged.registered_commands = commands
    merged.registered_groups = [
        _merged_group(g, needed_by)
        if any(p.target is g.typer_instance for p in _Deferred.parts) else g
        for g in groups
    ]
    return merged


def _merged_group(info: TyperInfo, needed_by: str | None) -> TyperInfo:
    merged = copy.copy(info)
    assert info.typer_instance is not None
    merged.typer_instance = _merged(info.typer_instance, needed_by)
    return merged


def _add_mirror(t: typer.Typer) -> None:
    from steppatch_cli.mirror import mirror_app

    t.add_typer(mirror_app, name="mirror")


def _add_ca(t: typer.Typer) -> None:
    from steppatch_cli.ca import ca_app

    t.add_typer(ca_app, name="ca")


def _add_foothold(t: typer.Typer) -> None:
    from steppatch_cli.foothold import foothold_app

    t.add_typer(foothold_app, name="foothold")


def _add_self_update(t: typer.Typer) -> None:
    from steppatch_cli.foothold import self_update_command

    t.command("self-update")(self_update_command)


_Deferred(app, "mirror", True, _add_mirror)
_Deferred(app, "ca", True, _add_ca)
_Deferred(app, "foothold", True, _add_foothold)
_Deferred(app, "self-update", False, _add_self_update)


DRIFT_EXIT = 6
PING_FAILED_EXIT = NetworkError.exit_code


def _print_version(value: bool) -> None:
    if not value:
        return
    from steppatch._version import __version__

    render.out.print(f"steppatch {__version__}", markup=False)
    raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="The home to work on (default: $STEPPATCH_HOME, else the current directory).",
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "-v", "--verbose", help="Tracebacks on error; how each download went (fallbacks)."
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", is_eager=True, callback=_print_version,
            help="Print steppatch's version and exit.",
        ),
    ] = False,
) -> None:
    ctx.obj = CliOptions(home, verbose)
    if verbose:
        import logging

        # The library's notes (a delta that fell back to the whole object) go to stderr.
        logging.basicConfig(level=logging.INFO, format="steppatch: %(message)s")


# --- the release side ---------------------------------------------------------------------------


@repo_app.command("init")
def repo_init(
    directory: Annotated[Path, typer.Argument(help="Where to make it.")],
    keys: KeysOption = None,
) -> None:
    """Make an empty, signed repository (and signing keys, unless --keys holds some)."""
    from steppatch.repo import Repository

    repo = Repository.init(directory, keys=keys)
    render.out.print(f"Made an empty repository in {repo.root}")
    render.out.print(f"Signing keys (keep them private, off the served tree): {repo.key_dir}")
    for role in ("root", "timestamp", "index"):
        ids = ", ".join(sorted(k[:16] for k in repo.trusted_root.role(role).keyids))
        render.out.print(f"  {role} key(s): {ids}")
    render.out.print(
        f"Give homes {repo.root / 'root.json'} out of band: steppatch init --root FILE"
    )


@repo_app.command("add")
def repo_add(
    directory: Annotated[Path, typer.Argument(help="The repository.")],
    sources: Annotated[list[Path], typer.Argument(help="Component source directories.")],
    keys: KeysOption = None,
) -> None:
    """Publish component versions (each a directory with component.toml and files/)."""
    from steppatch.repo import Repository

    repo = Repository.open(directory, keys=keys)
    for source in sources:
        with render.progress_bar() as progress:
            result = repo.add(source, progress=progress)
        verb = "Added" if result.added else "Already published, unchanged:"
        render.out.print(f"{verb} {result.name} {result.version} -> to:{result.recipe}")


@repo_app.command("release")
def repo_release(
    directory: Annotated[Path, typer.Argument(help="The repository.")],
    path: Annotated[str, typer.Argument(help="Recipe path inside the repository (.spr).")],
    pin: Annotated[
        list[str], typer.Option("--pin", help="NAME==VERSION; repeat for each component.")
    ],
    name: Annotated[str, typer.Option(help="The release's name (default: from PATH).")] = "",
    keys: KeysOption = None,
) -> None:
    """Publish a release recipe pinning a consistent set of component versions."""
    from steppatch.commands import release

    recipe = release(directory, path, pin, name=name, keys=keys)
    render.out.print(f"Published release to:{path} pinning {len(recipe.components)} component(s)")


@repo_app.command("sign")
def repo_sign(
    directory: Annotated[Path, typer.Argument(help="The repository.")],
    expires: Annotated[
        str | None,
        typer.Option(help="When the new index and timestamp expire: 7d, 12h, or ISO 8601."),
    ] = None,
    keys: KeysOption = None,
) -> None:
    """Re-sign the index and timestamp with new versions (run it before the timestamp expires)."""
    from steppatch.repo import Repository

    when = parse_expiry(expires) if expires else None
    version = Repository.open(directory, keys=keys).sign(when)
    until = f", expiring {when:%Y-%m-%dT%H:%M:%SZ}" if when else ""
    render.out.print(f"Signed index version {version}{until}")


@repo_app.command("rotate-keys")
def repo_rotate_keys(
    directory: Annotated[Path, typer.Argument(help="The repository.")],
    role: Annotated[str, typer.Option(help="root, timestamp or index.")],
    keys: KeysOption = None,
) -> None:
    """Replace a role's keys: publish root N+1 signed by the old and the new keys."""
    from steppatch.repo import Repository

    if role not in ("root", "timestamp", "index"):
        raise InputError(f"--role {role!r}: expected root, timestamp or index")
    root = Repository.open(directory, keys=keys).rotate_keys(role)
    ids = ", ".join(sorted(k[:16] for k in root.role(role).keyids))
    render.out.print(f"Published root version {root.version}; {role} key(s) now: {ids}")


def _add_repo_add_self(t: typer.Typer) -> None:
    from steppatch_cli.foothold import repo_add_self

    t.command("add-self")(repo_add_self)


_Deferred(repo_app, "repo", False, _add_repo_add_self)


# --- a home -------------------------------------------------------------------------------------


@app.command("init")
def init(
    ctx: typer.Context,
    updates: Annotated[str, typer.Option("--updates", help="The repository URL (file:///...).")],
    root: Annotated[
        Path | None,
        typer.Option("--root", help="The repository's root.json, obtained out of band."),
    ] = None,
    trust_on_first_use: Annotated[
        bool,
        typer.Option(
            "--trust-on-first-use",
            help="Trust the root the repository serves now (its key ids are printed).",
        ),
    ] = False,
    system: Annotated[str, typer.Option(help="This environment's system name.")] = "",
    ca: Annotated[
        Path | None, typer.Option("--ca", help="The private CA certificate https mirrors use.")
    ] = None,
    cert: Annotated[
        Path | None, typer.Option("--cert", help="This home's client certificate (PEM).")
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", help="Its private key (PEM).")] = None,
    mirror_id: Annotated[
        str, typer.Option("--mirror-id", help="The id of the --updates mirror.")
    ] = "primary",
) -> None:
    """Make the current home (see --home) with its config and its trusted root."""
    from steppatch.commands import init_home

    home = init_home(
        home_path(ctx), updates, root=root, trust_on_first_use=trust_on_first_use,
        system=system, ca=ca, cert=cert, key=key, mirror_id=mirror_id,
    )
    render.out.print(f"Made a home in {home.path} taking updates from {updates}")
    if trust_on_first_use:
        trusted = home.trusted_root
        render.err.print(
            f"warning: trusting root version {trusted.version} on first use; check these "
            "root key ids with the repository's publisher:"
        )
        for keyid in sorted(trusted.root_role.keyids):
            render.err.print(f"  {keyid}")


SyncOption = Annotated[
    bool, typer.Option("--sync", help="Also restore drifted files to their manifests.")
]
SyncModeOption = Annotated[
    SyncModeName | None,
    typer.Option(
        "--syncmode",
        help="With --sync: delete files the manifests do not list, or keep them (default).",
    ),
]
HOT_NOTICE = "This upgrade can be applied without restarting. To do so, rerun with --hot."

TargetOption = Annotated[
    Path | None,
    typer.Option("--target", help="Offline: the installation's snapshot to make a patch for."),
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", help="Offline: where to write the patch file.")
]


def _show_patch_made(made: "MadePatch", json_out: bool) -> None:
    if json_out:
        render.print_json(render.patch_json(made.info, made.size))
    else:
        render.show_patch_made(made)


def _show_apply(outcome: "ApplyOutcome", json_out: bool) -> None:
    if outcome.cluster is not None:
        if json_out:
            render.print_json(render.cluster_report_json(outcome.cluster))
        else:
            render.show_cluster_report(outcome.cluster)
        return
    assert outcome.report is not None
    render.report(outcome.report, json_out=json_out)
    if outcome.mixed is not None:
        render.err.print(render.mixed_warning(outcome.mixed), markup=False)


@app.command("apply")
def apply(
    ctx: typer.Context,
    refs: Annotated[
        list[str],
        typer.Argument(help="to:PATH, a local .spr or a patch file; comma lists too."),
    ],
    hot: Annotated[
        bool,
        typer.Option("--hot", help="Switch without restarting (only if every change allows)."),
    ] = False,
    sync: SyncOption = False,
    syncmode: SyncModeOption = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Apply a patch made from an older snapshot (re-resolves)."),
    ] = False,
    accessmode: Annotated[
        str, typer.Option("--accessmode", help="'offline': make a patch (with --target, --output).")
    ] = "online",
    target: TargetOption = None,
    output: OutputOption = None,
    local: Annotated[
        bool,
        typer.Option("--local", help="In a cluster: patch this node only (the cluster is mixed)."),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="The plan as JSON.")] = False,
) -> None:
    """Bring the home to what the recipes ask for, or apply an offline patch file.

    In a cluster (steppatch nodes add) every node is staged first and then switched, unless
    --local; a patch file is always for this node only.
    """
    from steppatch import commands
    from steppatch.pipeline import ApplyStartFailed

    with render.progress_bar(enabled=not json_out) as bar:
        try:
            outcome = commands.apply(
                home_opener(ctx, bar), refs, hot=hot, sync=sync,
                syncmode=syncmode.mode if syncmode else None, force=force, local=local,
                accessmode=accessmode, target=target, output=output,
            )
        except ApplyStartFailed as e:
            render.show_report(e.report)
            raise
    if isinstance(outcome, commands.MadePatch):
        _show_patch_made(outcome, json_out)
    else:
        _show_apply(outcome, json_out)


@app.command("prepare")
def prepare(
    ctx: typer.Context,
    refs: Annotated[list[str], typer.Argument(help="to:PATH or a local .spr; comma lists too.")],
    target: TargetOption = None,
    output: OutputOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="The plan as JSON.")] = False,
) -> None:
    """Resolve and download ahead; print the plan. The managed tree is untouched.

    With --target SNAPSHOT --output PATCH: make an offline patch file for that installation.
    """
    from steppatch import commands

    with render.progress_bar(enabled=not json_out) as bar:
        plan = commands.prepare(home_opener(ctx, bar), refs, target=target, output=output)
    if isinstance(plan, commands.MadePatch):
        _show_patch_made(plan, json_out)
        return
    if json_out:
        render.print_json(render.plan_json(plan))
        return
    render.show_plan(plan, applied=False)
    if plan.changes and plan.hot:
        render.out.print(HOT_NOTICE)


@app.command("inspect")
def inspect(
    patch: Annotated[Path, typer.Argument(help="A patch file.")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What a patch file is for, what it changes, its size (it is checked whole first)."""
    from steppatch.offline import PatchFile

    opened = PatchFile.open(patch)
    if json_out:
        render.print_json(render.patch_json(opened.info, opened.size))
        return
    info = opened.info
    render.out.print(
        f"{patch}: {opened.size} bytes, {len(opened.members)} members, checksum ok\n"
        f"for {info.system or 'an unnamed system'} (environment {info.environment}), "
        f"made from its state {info.fingerprint[:16]}"
    )
    render.show_patch(info)


@app.command("rollback")
def rollback(
    ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Return to the state the last apply replaced (repeat to go further back)."""
    with render.progress_bar(enabled=not json_out) as bar:
        report = open_home(ctx, bar).rollback()
    render.report(report, json_out=json_out)


@app.command("gc")
def gc(
    ctx: typer.Context,
    keep: Annotated[
        int | None,
        typer.Option("--keep", help="History entries to keep (default: keep_history, 5)."),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Also remove what a prepare downloaded this long ago (30d, 12h, 2w).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Remove nothing; say what would go.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Remove cached objects and history entries no kept state needs; print what it frees."""
    from steppatch.collect import parse_age

    age = None if older_than is None else parse_age(older_than)
    collected = open_home(ctx).gc(keep=keep, older_than=age, dry_run=dry_run)
    if json_out:
        render.print_json(collected.to_json())
    else:
        render.out.print(collected.summary(), markup=False)


@app.command("verify")
def verify(
    ctx: typer.Context,
    against: Annotated[
        Path | None, typer.Option("--against", help="A full snapshot to compare with.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List drift of the managed tree (changed, missing, extra files), by hash. Exit 6 if any."""
    from steppatch.commands import verify

    drift = verify(home_opener(ctx), against)
    if json_out:
        render.print_json(render.drift_json(drift))
    else:
        render.show_drift(drift)
    if drift:
        raise typer.Exit(DRIFT_EXIT)


@app.command("start")
def start(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="Start even if config.properties needs corrections.")
    ] = False,
) -> None:
    """Start the application (with the home's configured start command)."""
    open_home(ctx).start(force=force)
    render.out.print("Started.")


@app.command("stop")
def stop(ctx: typer.Context) -> None:
    """Stop the application (with the home's configured stop command)."""
    open_home(ctx).stop()
    render.out.print("Stopped.")


@app.command("restart")
def restart(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="Start even if config.properties needs corrections.")
    ] = False,
) -> None:
    """Stop, then start the application."""
    from steppatch.commands import restart

    restart(open_home(ctx), force=force)
    render.out.print("Restarted.")


mirrors_app = typer.Typer(
    help="The mirrors this home reads from, by priority (higher first).",
    invoke_without_command=True,
)
app.add_typer(mirrors_app, name="mirrors")


@mirrors_app.callback()
def mirrors(
    ctx: typer.Context,
    updates: Annotated[
        str | None,
        typer.Option("--updates", help="Select this mirror (tried first); added if new."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the mirrors: priority, id, name, URL and which is selected."""
    if ctx.invoked_subcommand is not None:
        return
    from steppatch.commands import select_and_list_mirrors

    listed = select_and_list_mirrors(open_home(ctx), updates)
    if json_out:
        render.print_json(render.mirrors_json(listed))
    else:
        render.show_mirrors(listed)


@mirrors_app.command("add")
def mirrors_add(
    ctx: typer.Context,
    mirror_id: Annotated[str, typer.Argument(metavar="ID")],
    url: Annotated[str, typer.Argument(metavar="URL")],
    priority: Annotated[int, typer.Option(help="Higher is tried first.")] = 0,
    name: Annotated[str, typer.Option(help="A name to show.")] = "",
) -> None:
    """Add a mirror."""
    from steppatch.config import MirrorEntry

    open_home(ctx).add_mirror(MirrorEntry(mirror_id, url, priority, name))
    render.out.print(f"Added mirror {mirror_id} ({url}) with priority {priority}")


@mirrors_app.command("remove")
def mirrors_remove(
    ctx: typer.Context, mirror_id: Annotated[str, typer.Argument(metavar="ID")]
) -> None:
    """Remove a mirror."""
    open_home(ctx).remove_mirror(mirror_id)
    render.out.print(f"Removed mirror {mirror_id}")


@app.command("ping")
def ping(
    ctx: typer.Context,
    updates: Annotated[
        str | None, typer.Option("--updates", help="The mirror to check (default: selected).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check a mirror: reachable, its TLS identity, and that its signed metadata verifies."""
    checks = open_home(ctx).ping(updates)
    if json_out:
        render.print_json(render.ping_json(checks))
    else:
        render.show_ping(checks)
    if not all(c.ok for c in checks):
        raise typer.Exit(PING_FAILED_EXIT)


@app.command("status")
def status(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    in_cluster: Annotated[
        bool,
        typer.Option(
            "--cluster", help="Every node's versions and whether they agree (exit 1 if not)."
        ),
    ] = False,
) -> None:
    """The installed components."""
    home = open_home(ctx)
    if in_cluster:
        from steppatch.cluster import Cluster

        cluster_status = Cluster(home).status()
        if json_out:
            render.print_json(render.cluster_status_json(cluster_status))
        else:
            render.show_cluster_status(cluster_status)
        if not cluster_status.consistent:
            from steppatch_cli.cluster import MIXED_EXIT

            raise typer.Exit(MIXED_EXIT)
        return
    state = home.status()
    if json_out:
        render.print_json({**render.state_json(state), "sizes": home.sizes().to_json()})
    else:
        render.show_status(state, str(home.path))


@app.command("snapshot")
def snapshot(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Where to write the .spr.")],
    full: Annotated[
        bool, typer.Option("--full", help="Also every managed file's hash, mode and link target.")
    ] = False,
    in_cluster: Annotated[
        bool, typer.Option("--cluster", help="Record every node of the cluster too.")
    ] = False,
) -> None:
    """Write the home's snapshot: thin (component versions only) or --full."""
    from steppatch.commands import snapshot

    recipe = snapshot(home_opener(ctx), file, full=full, cluster=in_cluster)
    if in_cluster:
        render.out.print(
            f"Wrote a cluster snapshot of {len(recipe.nodes)} node(s), "
            f"{len(recipe.components)} component(s), to {file}"
        )
        return
    extra = f" and {len(recipe.files)} file entries" if full else ""
    render.out.print(
        f"Wrote a snapshot of {len(recipe.components)} component(s){extra} to {file}"
    )


@app.command("showupdates")
def showupdates(
    ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """For each installed component, the newer versions with their release notes."""
    updates = open_home(ctx).showupdates()
    if json_out:
        render.print_json(render.updates_json(updates))
    else:
        render.show_updates(updates)


def _add_enroll(t: typer.Typer) -> None:
    from steppatch_cli.ca import enroll_cli

    t.command("enroll")(enroll_cli(home_path))


def _add_spot(t: typer.Typer) -> None:
    from steppatch_cli.spot import register

    register(t)  # `steppatch spot --apply=...`: docs/spot.md


def _add_nodes(t: typer.Typer) -> None:
    from steppatch_cli.cluster import make_nodes_app

    t.add_typer(make_nodes_app(open_home), name="nodes")


def _add_node(t: typer.Typer) -> None:
    from steppatch_cli.cluster import make_node_app

    t.add_typer(make_node_app(open_home), name="node")


_Deferred(app, "enroll", False, _add_enroll)
_Deferred(app, "spot", False, _add_spot)
_Deferred(app, "nodes", True, _add_nodes)
_Deferred(app, "node", True, _add_node)


_ROOT_FLAGS = frozenset({"-v", "--verbose", "-V", "--version"})
# Commands that run other commands of the whole app, so they need all of it.
_NEEDS_ALL = frozenset({"spot"})


def _command_name(args: list[str]) -> str | None:
    """The command ``args`` name after the root options, or None (``--help``, no command)."""
    rest = iter(args)
    for arg in rest:
        if arg == "--home":
            next(rest, None)
        elif arg.startswith("--home=") or arg in _ROOT_FLAGS:
            continue
        else:
            return None if arg.startswith("-") else arg
    return None


def full_app() -> typer.Typer:
    """The whole command line: every command and group, in the order ``--help`` lists them."""
    return _merged(app, None)


def app_for(args: list[str]) -> typer.Typer:
    """The app reduced to the one command ``args`` runs (the whole app for ``--help``, an
    unknown name or a command that runs others).

    Typer turns every registered command into a click command on each run, about a millisecond
    each; a command line of fifty commands would pay that on every start (bench/startup_bench.py).
    """
    name = _command_name(args)
    version_only = name is None and bool(_ROOT_FLAGS.intersection(args)) and "--help" not in args
    if name in _NEEDS_ALL or (name is None and not version_only):
        return full_app()
    whole = _merged(app, name)
    commands = [
        c for c in whole.registered_commands
        if (c.name or typer.main.get_command_name(c.callback.__name__ if c.callback else ""))
        == name
    ]
    groups = [g for g in whole.registered_groups if g.name == name]
    if not (commands or groups or version_only):
        return full_app()  # let the whole app say what is wrong, with its suggestions
    reduced = _new_root()
    reduced.registered_callback = app.registered_callback
    reduced.registered_commands = commands
    reduced.registered_groups = groups
    return reduced


def command_for(argv: list[str] | None = None) -> tuple["TyperGroup", list[str]]:
    """The click command that runs ``argv`` (default: this process's arguments), and the
    arguments to give it."""
    args = rewrite_enroll_alias(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app_for(args))
    assert isinstance(command, TyperGroup)
    return command, args


def main(argv: list[str] | None = None) -> None:
    """Run a command; its errors become one line on stderr and an exit code (:class:`_Root`).
    The console script is :func:`steppatch_cli.launch.main`, which calls this."""
    # Typer handles usage errors and exits itself (standalone mode), and so do ours (_Root).
    command, args = command_for(argv)
    command(args=args)
