"""The Typer root: parse, call the library, render. Errors become one line and an exit code here.

Exit codes: 0 success, 1 other steppatch error, 2 bad input, 3 repository, 4 network,
5 local environment, 6 drift found by ``verify``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from steppatch.errors import InputError, LocalEnvironmentError, NetworkError, SteppatchError
from steppatch_cli import cluster, render
from steppatch_cli.ca import ca_app, enroll_cli, rewrite_enroll_alias
from steppatch_cli.foothold import foothold_app, repo_add_self, self_update_command
from steppatch_cli.mirror import mirror_app
from steppatch_cli.parsing import KeysOption, SyncModeName, parse_expiry
from steppatch_cli.spot import register as register_spot

if TYPE_CHECKING:
    from steppatch import Home
    from steppatch.plan import SyncMode
    from steppatch.updater import Progress

# Start-up is a feature: this module imports only what building the command line needs; each
# command imports the library parts it uses, so `--help` or `status` never loads the network
# stack, the server or the solver.



def _new_root() -> typer.Typer:
    return typer.Typer(
        name="steppatch",
        help="Keep a componentized server installation (a home) patched.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # click's plain help: rich's formatting costs more than the rest of a start (docs/cli.md)
        rich_markup_mode=None,
    )


app = _new_root()
repo_app = typer.Typer(
    help="Build and publish a repository (the release side).", no_args_is_help=True
)
app.add_typer(repo_app, name="repo")
app.add_typer(mirror_app, name="mirror")
app.add_typer(ca_app, name="ca")
app.add_typer(foothold_app, name="foothold")
app.command("self-update")(self_update_command)


class _Options:
    home: Path | None = None
    verbose: bool = False


options = _Options()
DRIFT_EXIT = 6
PING_FAILED_EXIT = NetworkError.exit_code


def _print_version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("steppatch")
    except PackageNotFoundError:  # run from a source tree that is not installed
        text = "unknown"
    render.out.print(f"steppatch {text}", markup=False)
    raise typer.Exit()


@app.callback()
def _root(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="The home to work on (default: $STEPPATCH_HOME, else the current directory).",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Tracebacks on error.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", is_eager=True, callback=_print_version,
            help="Print steppatch's version and exit.",
        ),
    ] = False,
) -> None:
    options.home = home
    options.verbose = verbose


def _home_path() -> Path:
    if options.home is not None:
        return options.home
    env = os.environ.get("STEPPATCH_HOME")
    return Path(env) if env else Path.cwd()


def _refs(text: list[str]) -> list[str]:
    from steppatch.updater import split_refs

    refs = [ref for part in text for ref in split_refs(part)]
    if not refs:
        raise InputError("no reference given: name a to:PATH recipe or a local .spr file")
    return refs


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
        result = repo.add(source)
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
    from packaging.version import Version

    from steppatch.repo import Repository
    from steppatch.versions import parse_requirement

    pins = {}
    for text in pin:
        try:
            req = parse_requirement(text)
        except ValueError as e:
            raise InputError(f"--pin {text!r}: {e}") from None
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            raise InputError(f"--pin {text!r}: expected NAME==VERSION")
        pins[req.name] = Version(specs[0].version)
    Repository.open(directory, keys=keys).release(path, pins, name=name)
    render.out.print(f"Published release to:{path} pinning {len(pins)} component(s)")


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


repo_app.command("add-self")(repo_add_self)


# --- a home -------------------------------------------------------------------------------------


@app.command("init")
def init(
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
    from steppatch.updater import Home

    root_bytes = _read_input_file(root, "--root") if root else None
    if (cert is None) != (key is None):
        raise InputError("--cert and --key go together")
    client = (
        (_read_input_file(cert, "--cert"), _read_input_file(key, "--key"))
        if cert is not None and key is not None
        else None
    )
    home = Home.init(
        _home_path(), updates, root=root_bytes, trust_on_first_use=trust_on_first_use,
        system=system, ca=_read_input_file(ca, "--ca") if ca else None, client_cert=client,
        mirror_id=mirror_id,
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


def _read_input_file(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"{option} {path}: {e.strerror or e}") from None


def _open_home(progress: Progress | None = None) -> Home:
    from steppatch.updater import Home

    return Home.open(_home_path(), progress=progress)


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


def _sync(sync: bool, syncmode: SyncModeName | None) -> SyncMode | None:
    if syncmode is not None and not sync:
        raise InputError("--syncmode goes with --sync")
    return (syncmode or SyncModeName.KEEP).mode if sync else None


TargetOption = Annotated[
    Path | None,
    typer.Option("--target", help="Offline: the installation's snapshot to make a patch for."),
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", help="Offline: where to write the patch file.")
]


def _offline(refs: list[str], target: Path | None, output: Path | None, json_out: bool) -> None:
    if target is None or output is None:
        raise InputError("an offline patch needs both --target SNAPSHOT.spr and --output PATCH")
    from steppatch.recipe import parse_recipe

    snapshot = parse_recipe(_read_input_file(target, "--target"), str(target))
    with render.progress_bar(enabled=not json_out) as bar:
        info, size = _open_home(bar).prepare_offline(_refs(refs), snapshot, output)
    if json_out:
        render.print_json(render.patch_json(info, size))
    else:
        render.out.print(
            f"Wrote {output}: {size} bytes, {info.objects} object(s) the installation lacks, "
            f"for {info.system or 'an unnamed system'} ({info.environment})"
        )
        render.show_patch(info)


@app.command("apply")
def apply(
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
    if accessmode not in ("online", "offline"):
        raise InputError(f"--accessmode {accessmode!r}: expected online or offline")
    if accessmode == "offline":
        _offline(refs, target, output, json_out)
        return
    from steppatch.cluster import Cluster
    from steppatch.offline import is_patch_file
    from steppatch.updater import ApplyStartFailed

    mode = _sync(sync, syncmode)
    names = _refs(refs)
    with render.progress_bar(enabled=not json_out) as bar:
        home = _open_home(bar)
        patch = len(names) == 1 and is_patch_file(Path(names[0]))
        if home.files.config.nodes and not local and not patch:
            result = Cluster(home).apply(names, hot=hot, sync=mode)
            if json_out:
                render.print_json(cluster.cluster_report_json(result))
            else:
                cluster.show_cluster_report(result)
            return
        try:
            if patch:
                if mode is not None:
                    raise InputError("--sync does not go with a patch file")
                report = home.apply_patch(names[0], force=force, hot=hot)
            else:
                report = home.apply(names, hot=hot, sync=mode)
        except ApplyStartFailed as e:
            render.show_report(e.report)
            raise
    render.report(report, json_out=json_out)
    if home.files.config.nodes:
        warning = cluster.mixed_warning(Cluster(home).status())
        if warning:
            render.err.print(warning, markup=False)


@app.command("prepare")
def prepare(
    refs: Annotated[list[str], typer.Argument(help="to:PATH or a local .spr; comma lists too.")],
    target: TargetOption = None,
    output: OutputOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="The plan as JSON.")] = False,
) -> None:
    """Resolve and download ahead; print the plan. The managed tree is untouched.

    With --target SNAPSHOT --output PATCH: make an offline patch file for that installation.
    """
    if target is not None or output is not None:
        _offline(refs, target, output, json_out)
        return
    with render.progress_bar(enabled=not json_out) as bar:
        plan = _open_home(bar).prepare(_refs(refs))
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
def rollback(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Return to the state the last apply replaced (repeat to go further back)."""
    with render.progress_bar(enabled=not json_out) as bar:
        report = _open_home(bar).rollback()
    render.report(report, json_out=json_out)


@app.command("gc")
def gc(
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
    collected = _open_home().gc(keep=keep, older_than=age, dry_run=dry_run)
    if json_out:
        render.print_json(collected.to_json())
    else:
        render.out.print(collected.summary(), markup=False)


@app.command("verify")
def verify(
    against: Annotated[
        Path | None, typer.Option("--against", help="A full snapshot to compare with.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List drift of the managed tree (changed, missing, extra files), by hash. Exit 6 if any."""
    recipe = None
    if against is not None:
        from steppatch.recipe import parse_recipe

        recipe = parse_recipe(_read_input_file(against, "--against"), str(against))
    drift = _open_home().verify(recipe)
    if json_out:
        render.print_json(render.drift_json(drift))
    else:
        render.show_drift(drift)
    if drift:
        raise typer.Exit(DRIFT_EXIT)


@app.command("start")
def start(
    force: Annotated[
        bool, typer.Option("--force", help="Start even if config.properties needs corrections.")
    ] = False,
) -> None:
    """Start the application (with the home's configured start command)."""
    _open_home().start(force=force)
    render.out.print("Started.")


@app.command("stop")
def stop() -> None:
    """Stop the application (with the home's configured stop command)."""
    _open_home().stop()
    render.out.print("Stopped.")


@app.command("restart")
def restart(
    force: Annotated[
        bool, typer.Option("--force", help="Start even if config.properties needs corrections.")
    ] = False,
) -> None:
    """Stop, then start the application."""
    home = _open_home()
    home.stop()
    home.start(force=force)
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
    home = _open_home()
    if updates:
        home.select_mirror(updates)
    listed = home.mirrors()
    if json_out:
        render.print_json(render.mirrors_json(listed))
    else:
        render.show_mirrors(listed)


@mirrors_app.command("add")
def mirrors_add(
    mirror_id: Annotated[str, typer.Argument(metavar="ID")],
    url: Annotated[str, typer.Argument(metavar="URL")],
    priority: Annotated[int, typer.Option(help="Higher is tried first.")] = 0,
    name: Annotated[str, typer.Option(help="A name to show.")] = "",
) -> None:
    """Add a mirror."""
    from steppatch.config import MirrorEntry

    _open_home().add_mirror(MirrorEntry(mirror_id, url, priority, name))
    render.out.print(f"Added mirror {mirror_id} ({url}) with priority {priority}")


@mirrors_app.command("remove")
def mirrors_remove(mirror_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Remove a mirror."""
    _open_home().remove_mirror(mirror_id)
    render.out.print(f"Removed mirror {mirror_id}")


@app.command("ping")
def ping(
    updates: Annotated[
        str | None, typer.Option("--updates", help="The mirror to check (default: selected).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check a mirror: reachable, its TLS identity, and that its signed metadata verifies."""
    checks = _open_home().ping(updates)
    if json_out:
        render.print_json(
            {"checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]}
        )
    else:
        for c in checks:
            mark = "ok    " if c.ok else "FAILED"
            render.out.print(f"{mark} {c.name}: {c.detail}", markup=False)
    if not all(c.ok for c in checks):
        raise typer.Exit(PING_FAILED_EXIT)


@app.command("status")
def status(
    json_out: Annotated[bool, typer.Option("--json")] = False,
    in_cluster: Annotated[
        bool,
        typer.Option(
            "--cluster", help="Every node's versions and whether they agree (exit 1 if not)."
        ),
    ] = False,
) -> None:
    """The installed components."""
    home = _open_home()
    if in_cluster:
        from steppatch.cluster import Cluster

        cluster_status = Cluster(home).status()
        if json_out:
            render.print_json(cluster.cluster_status_json(cluster_status))
        else:
            cluster.show_cluster_status(cluster_status)
        if not cluster_status.consistent:
            raise typer.Exit(cluster.MIXED_EXIT)
        return
    state = home.status()
    if json_out:
        render.print_json({**render.state_json(state), "sizes": home.sizes().to_json()})
    else:
        render.show_status(state, str(home.path))


@app.command("snapshot")
def snapshot(
    file: Annotated[Path, typer.Argument(help="Where to write the .spr.")],
    full: Annotated[
        bool, typer.Option("--full", help="Also every managed file's hash, mode and link target.")
    ] = False,
    in_cluster: Annotated[
        bool, typer.Option("--cluster", help="Record every node of the cluster too.")
    ] = False,
) -> None:
    """Write the home's snapshot: thin (component versions only) or --full."""
    if in_cluster:
        if full:
            raise InputError("--full is per node: take it on each node without --cluster")
        from steppatch.cluster import Cluster

        recipe = Cluster(_open_home()).snapshot(file)
        render.out.print(
            f"Wrote a cluster snapshot of {len(recipe.nodes)} node(s), "
            f"{len(recipe.components)} component(s), to {file}"
        )
        return
    recipe = _open_home().snapshot(file, full=full)
    extra = f" and {len(recipe.files)} file entries" if full else ""
    render.out.print(
        f"Wrote a snapshot of {len(recipe.components)} component(s){extra} to {file}"
    )


@app.command("showupdates")
def showupdates(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """For each installed component, the newer versions with their release notes."""
    updates = _open_home().showupdates()
    if json_out:
        render.print_json(render.updates_json(updates))
    else:
        render.show_updates(updates)


app.command("enroll")(enroll_cli(_home_path))
register_spot(app)  # `steppatch spot --apply=...`: docs/spot.md
app.add_typer(cluster.make_nodes_app(lambda: _open_home()), name="nodes")
app.add_typer(cluster.make_node_app(lambda: _open_home()), name="node")


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


def app_for(args: list[str]) -> typer.Typer:
    """The app reduced to the one command ``args`` runs (the whole app for ``--help``, an
    unknown name or a command that runs others).

    Typer turns every registered command into a click command on each run, about a millisecond
    each; a command line of fifty commands would pay that on every start (bench/startup_bench.py).
    """
    name = _command_name(args)
    version_only = name is None and bool(_ROOT_FLAGS.intersection(args)) and "--help" not in args
    if name in _NEEDS_ALL or (name is None and not version_only):
        return app
    commands = [
        c for c in app.registered_commands
        if (c.name or typer.main.get_command_name(c.callback.__name__ if c.callback else ""))
        == name
    ]
    groups = [g for g in app.registered_groups if g.name == name]
    if not (commands or groups or version_only):
        return app  # let the whole app say what is wrong, with its suggestions
    reduced = _new_root()
    reduced.registered_callback = app.registered_callback
    reduced.registered_commands = commands
    reduced.registered_groups = groups
    return reduced


def main(argv: list[str] | None = None) -> None:
    """The console script: run a command, map errors to one line on stderr and an exit code."""
    # Typer handles usage errors and exits itself (standalone mode); ours propagate to here.
    args = rewrite_enroll_alias(sys.argv[1:] if argv is None else argv)
    try:
        app_for(args)(args=args)
    except SteppatchError as e:
        _fail(str(e), e.exit_code)
    except OSError as e:
        _fail(str(e), LocalEnvironmentError.exit_code)


def _fail(message: str, code: int) -> None:
    if options.verbose:
        import traceback

        traceback.print_exc()
    render.err.print(f"error: {message}", markup=False)
    sys.exit(code)
