"""``steppatch foothold build|info``, ``steppatch self-update`` and ``steppatch repo add-self``:
the tool as one self-contained artifact and as a component of its own (``docs/foothold.md``).

Thin: each command parses, calls :mod:`steppatch.foothold` or :mod:`steppatch.selfupdate`, and
renders what it returned.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from steppatch.channel import DEFAULT_CHANNEL, DEFAULT_REF
from steppatch.errors import InputError
from steppatch_cli import render
from steppatch_cli.parsing import KeysOption
from steppatch_cli.render import foothold_json, self_update_json

if TYPE_CHECKING:
    from steppatch.foothold import Foothold
    from steppatch.selfupdate import SelfUpdate

__all__ = [
    "DEFAULT_REF",
    "RefArgument",
    "foothold_app",
    "repo_add_self",
    "self_update_command",
    "self_update_json",
    "show_self_update",
    "tool_home_option",
]

foothold_app = typer.Typer(
    help="Build a foothold: steppatch in one artifact that runs with only Python 3.11+ and "
    "no network.",
    no_args_is_help=True,
)

WheelsOption = Annotated[
    Path | None,
    typer.Option(
        "--wheels",
        help="A directory of wheels of the compiled dependencies for other platforms "
        "(pip download --only-binary=:all: --platform ...).",
    ),
]
tool_home_option = typer.Option(
    "--tool-home",
    help="The tool home to update (default: $STEPPATCH_TOOL_HOME, which its launcher sets).",
)
ToolHomeOption = Annotated[Path | None, tool_home_option]
RefArgument = Annotated[
    str, typer.Argument(help="The recipe naming the steppatch version (default: the channel).")
]


@foothold_app.command("build")
def build(
    out: Annotated[
        Path, typer.Argument(help="OUT.pyz (one file) or a directory (steppatch.pyz + wheels/).")
    ],
    version: Annotated[
        str | None, typer.Option("--version", help="The build's version (default: steppatch's).")
    ] = None,
    wheels: WheelsOption = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Build a foothold of this steppatch, offline, from what is installed; print its contents."""
    from steppatch.foothold import build_foothold

    with render.progress_bar(enabled=not json_out) as bar:
        built = build_foothold(out, version=version, wheels=wheels, progress=bar)
    if json_out:
        render.print_json(foothold_json(built))
        return
    show_foothold(built)
    render.out.print(f"Run it with: python3 {built.pyz} --help", markup=False)


@foothold_app.command("info")
def info(
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Hash every file of the private environment against its record, then import "
            "every module it carries (exit 5 naming each file that differs or module that fails).",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The foothold this steppatch runs from: version, build, private environment, wheels."""
    from steppatch.foothold import EnvironmentDrift, foothold_info, info_to_json

    try:
        said = foothold_info(check=check)
    except EnvironmentDrift as e:
        for name, kind in e.drift:
            render.err.print(f"{kind}: {name}", markup=False)
        raise
    if json_out:
        render.print_json(info_to_json(said))
        return
    out, here = render.out, said.foothold
    if here is None:
        out.print(f"steppatch {said.steppatch}, installed (not a foothold)", markup=False)
    else:
        out.print(
            f"steppatch foothold {here.version} (steppatch {here.steppatch}), build "
            f"{here.build[:16]}\nfrom {here.archive}\nprivate environment: "
            f"{here.env or 'none needed'}",
            markup=False,
        )
        for wheel in here.wheels:
            out.print(f"  {wheel}", markup=False)
    out.print(f"Python {said.python} ({said.executable}), {said.platform}", markup=False)
    if said.check is not None:
        files = f"{said.check.files} files as recorded, " if here is not None and here.env else ""
        out.print(f"check: {files}{said.check.modules} modules import", markup=False)


def show_foothold(built: "Foothold") -> None:
    table = render.new_table(f"Foothold {built.path}")
    for column in ("distribution", "version", "carried as", "size"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for p in built.parts:
        how = f"zipped, {p.detail}" if p.kind == "zipped" else p.detail
        table.add_row(p.name, p.version, how, _mib(p.size))
    render.out.print(table)
    zipped = sum(1 for p in built.parts if p.kind == "zipped")
    wheels = len(built.parts) - zipped
    render.out.print(
        f"{_mib(built.size)} ({built.size} bytes): {zipped} distributions zipped, {wheels} "
        f"wheel(s); version {built.version}, build {built.build[:16]}, Python "
        f"{built.python_requires or 'any'}",
        markup=False,
    )
    for name in built.skipped:
        render.err.print(f"skipped {name}: not a compiled dependency, or carried already",
                         markup=False)


def _mib(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"


def repo_add_self(
    directory: Annotated[Path, typer.Argument(help="The repository.")],
    version: Annotated[
        str | None,
        typer.Option("--version", help="Component version to publish (default: steppatch's)."),
    ] = None,
    channel: Annotated[
        str, typer.Option("--channel", help="The release recipe moved to this version.")
    ] = DEFAULT_CHANNEL,
    wheels: WheelsOption = None,
    keys: KeysOption = None,
) -> None:
    """Publish the running steppatch (a foothold and its wheels) as component steppatch."""
    from packaging.version import InvalidVersion, Version

    from steppatch.repo import Repository
    from steppatch.selfupdate import publish_self

    try:
        wanted = Version(version) if version is not None else None
    except InvalidVersion:
        raise InputError(f"--version {version!r} is not a PEP 440 version") from None
    repo = Repository.open(directory, keys=keys)
    with render.progress_bar() as bar:
        published = publish_self(repo, wanted, channel=channel, wheels=wheels, progress=bar)
    show_foothold(published.foothold)
    added = published.component
    verb = "Published" if added.added else "Already published, unchanged:"
    render.out.print(
        f"{verb} steppatch {added.version} -> to:{added.recipe}\n"
        f"Channel to:{published.channel} now pins steppatch=={added.version}; tool homes "
        "update with: steppatch self-update",
        markup=False,
    )


def self_update_command(
    ref: RefArgument = DEFAULT_REF,
    tool_home: ToolHomeOption = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Update this steppatch from its channel: verified, tried first, switched atomically."""
    from steppatch.selfupdate import self_update, tool_home_path

    with render.progress_bar(enabled=not json_out) as bar:
        result = self_update(tool_home_path(tool_home), ref, progress=bar)
    show_self_update(result, json_out=json_out)


def show_self_update(result: "SelfUpdate", *, json_out: bool) -> None:
    """What a self-update did, as JSON or for a person."""
    if json_out:
        render.print_json(self_update_json(result))
        return
    out = render.out
    if not result.changed:
        out.print(f"steppatch {result.new} is current in {result.tool_home}", markup=False)
    else:
        old = "nothing" if result.old is None else str(result.old)
        out.print(f"steppatch {old} -> {result.new} in {result.tool_home}", markup=False)
        if result.check is not None:
            out.print(
                f"tried before the switch: build {result.check.build[:16]} runs on Python "
                f"{result.check.python}, {result.check.platform}",
                markup=False,
            )
    out.print(f"run it as {result.launcher}", markup=False)
