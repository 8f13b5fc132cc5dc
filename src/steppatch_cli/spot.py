"""``steppatch spot ARGS...``: the SPOT patch tool's flag-style commands, run as steppatch's.

:func:`translate` turns SPOT arguments (``--apply=to:...``, ``--mirrors --updates=URL``) into the
equivalent steppatch arguments; it is pure. :func:`spot` runs the translation through the same
Typer app, so output, errors and exit codes are the steppatch command's. ``docs/spot.md`` has
the table of every form the manuals give.
"""

import shlex
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import typer
from typer.core import TyperGroup

from steppatch.errors import InputError
from steppatch_cli import render

__all__ = ["SPOT_CONTEXT", "SpotCommand", "SpotOptionError", "register", "spot", "translate"]


# SPOT's options as the manuals use them: the value each takes (None: a flag, which takes none).
_OPTIONS: dict[str, str | None] = {
    "apply": "RECIPE[,RECIPE...]",
    "hot": None,
    "local": None,
    "sync": None,
    "syncmode": "delete|keep",
    "accessmode": "online|offline",
    "target": "SNAPSHOT.spr",
    "output": "PATCH.spr",
    "prepare": "RECIPE[,RECIPE...]",
    "snapshot": "FILE.spr",
    "showupdates": None,
    "start": None,
    "stop": None,
    "mirrors": None,
    "ping": None,
    "updates": "URL",
    "enroll": "mirror:NAME:HOST",
    # steppatch's own: SPOT's home is the directory it runs in
    "home": "DIR",
    "explain": None,
}
# For `steppatch spot --help` (tests/unit/test_spot_args.py checks that it names every option).
_FORMS = """\
--apply=RECIPE[,RECIPE...] [--hot] [--local] [--sync [--syncmode=delete|keep]]
--accessmode=offline --apply=RECIPE --target=SNAPSHOT.spr --output=PATCH.spr
--prepare=RECIPE[,RECIPE...]        --snapshot=FILE.spr
--showupdates    --start    --stop  --enroll=mirror:NAME:HOST
--mirrors [--updates=URL]           --updates=URL --ping
steppatch's own: --home=DIR; -n or --explain (print, do not run)"""
_ACTIONS = ("apply", "prepare", "snapshot", "showupdates", "start", "stop", "mirrors", "ping",
            "enroll")
_GLOBAL = ("home", "explain")
_GOES_WITH: dict[str, tuple[str, ...]] = {
    "apply": ("hot", "local", "sync", "syncmode", "accessmode", "target", "output"),
    "prepare": ("accessmode", "target", "output"),
    "mirrors": ("updates",),
    "ping": ("updates",),
}
# What to say when an option is given to a command it does not go with.
_INSTEAD = {
    "hot": "give it with --apply (--prepare already says whether the upgrade can be applied hot)",
    "local": "give it with --apply",
    "sync": "give it with --apply",
    "syncmode": "give it with --apply and --sync",
    "updates": "give it with --ping (check that mirror) or --mirrors (select it)",
    "accessmode": "give it with --apply or --prepare",
    "target": "give it with --accessmode=offline and --apply",
    "output": "give it with --accessmode=offline and --apply",
}
_LISTS = ("apply", "prepare")  # comma lists of recipes
_SYNCMODES = ("delete", "keep")

#: the Typer context settings the ``spot`` command needs: every argument reaches :func:`translate`
SPOT_CONTEXT: dict[str, bool] = {"allow_extra_args": True, "ignore_unknown_options": True}


class SpotOptionError(InputError):
    """A SPOT argument that steppatch will not run: unknown, misplaced or not supported.

    ``option`` is the argument at fault (``None`` when no command was given at all); ``closest``
    the known option it most resembles, if any.
    """

    def __init__(self, option: str | None, problem: str, closest: str | None = None) -> None:
        where = f"spot {option}" if option else "spot"
        hint = f"; did you mean {closest}?" if closest else ""
        super().__init__(f"{where}: {problem}{hint}")
        self.option = option
        self.problem = problem
        self.closest = closest


class SpotCommand(NamedTuple):
    """The steppatch arguments a SPOT command line stands for (global options first).

    A NamedTuple, not an attrs class: the CLI defines no attrs classes at import, since attrs
    compiles each one's methods, a cost every command would pay (bench/startup_bench.py)."""

    argv: tuple[str, ...]
    #: print the command instead of running it (``--explain``, ``-n``)
    explain: bool = False

    def shell(self) -> str:
        """The command as an operator would type it."""
        return shlex.join(("steppatch", *self.argv))


def translate(
    args: Sequence[str],
    *,
    home: str | None = None,
    verbose: bool = False,
    unsupported: Mapping[str, str] | None = None,
) -> SpotCommand:
    """SPOT arguments -> the equivalent steppatch arguments.

    ``home`` and ``verbose`` are steppatch's global options given before ``spot``; they are kept.
    ``unsupported`` maps an option this steppatch cannot run to the reason. Takes ``--KEY=VALUE``
    and ``--KEY VALUE``, and joins a recipe list the manuals wrap after a comma. Raises
    :class:`SpotOptionError` (exit 2) naming the argument and the closest known option.
    """
    found = _parse(args)
    for key, why in (unsupported or {}).items():
        if key in found:
            raise SpotOptionError(f"--{key}", f"not supported by this steppatch: {why}")
    spot_home = found.get("home")
    if spot_home is not None and home is not None and spot_home != home:
        raise SpotOptionError(
            f"--home={spot_home}", f"steppatch --home {home} names another home; give one"
        )
    home = spot_home or home
    prefix = (*(["-v"] if verbose else []), *(["--home", home] if home else []))
    return SpotCommand((*prefix, *_command(found)), explain="explain" in found)


def _usage(key: str) -> str:
    metavar = _OPTIONS.get(key)
    return f"--{key}={metavar}" if metavar else f"--{key}"


def _unknown(arg: str) -> SpotOptionError:
    import difflib

    name = arg.lstrip("-").partition("=")[0]
    match = difflib.get_close_matches(name, [*_OPTIONS, "help"], n=1, cutoff=0.6)
    closest = _usage(match[0]) if match else None
    if arg.startswith("-"):
        problem = "unknown SPOT option"
    else:
        problem = "unexpected argument (SPOT options are --KEY or --KEY=VALUE)"
    if closest is None:
        problem += "; 'steppatch spot --help' lists them"
    return SpotOptionError(arg, problem, closest)


def _parse(args: Sequence[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "-n":
            key, value = "explain", None
        elif arg.startswith("--") and len(arg) > 2:
            key, eq, text = arg[2:].partition("=")
            value = text if eq else None
        else:
            raise _unknown(arg)
        if key not in _OPTIONS:
            raise _unknown(arg)
        if _OPTIONS[key] is None:
            if value is not None:
                raise SpotOptionError(arg, f"--{key} takes no value")
        else:
            if key in _LISTS and value is not None:
                value = value.strip()  # a quoted `--apply= to:...`; steppatch strips refs too
            # `--KEY VALUE`, and the offline manual's `--apply= to:...` (a space after the `=`).
            if not value:
                if i == len(args) or args[i].startswith("-"):
                    raise SpotOptionError(f"--{key}", f"needs a value: {_usage(key)}")
                value = args[i]
                i += 1
            # The manuals print long recipe lists wrapped after a comma; pasted, that is two words.
            while key in _LISTS and value.endswith(",") and i < len(args):
                if args[i].startswith("-"):
                    break
                value += args[i]
                i += 1
        if key in found:
            also = ": list several recipes with commas in one" if key in _LISTS else ""
            raise SpotOptionError(f"--{key}", f"given twice{also}")
        found[key] = value
    return found


def _command(found: Mapping[str, str | None]) -> tuple[str, ...]:
    actions = [key for key in found if key in _ACTIONS]
    if not actions:
        if "updates" in found:
            raise SpotOptionError("--updates", _INSTEAD["updates"])
        raise SpotOptionError(
            None, "no command given: one of " + ", ".join(_usage(a) for a in _ACTIONS)
        )
    if len(actions) > 1:
        raise SpotOptionError(
            f"--{actions[1]}", f"one command at a time (--{actions[0]} is already given)"
        )
    action = actions[0]
    allowed = _GOES_WITH.get(action, ())
    for key in found:
        if key not in _ACTIONS and key not in _GLOBAL and key not in allowed:
            raise SpotOptionError(f"--{key}", f"does not go with --{action}: {_INSTEAD[key]}")
    value = found[action]
    if action in _LISTS:
        assert value is not None
        return _recipes(action, value, found)
    if action == "snapshot":
        assert value is not None
        return _positional("snapshot", [value], [])
    if action == "enroll":
        return ("enroll", f"--enroll={value}")
    updates = found.get("updates")
    return (action, *(["--updates", updates] if updates else []))


def _recipes(action: str, refs: str, found: Mapping[str, str | None]) -> tuple[str, ...]:
    accessmode = found.get("accessmode") or "online"
    if accessmode not in ("online", "offline"):
        raise SpotOptionError(f"--accessmode={accessmode}", "expected online or offline")
    target, output = found.get("target"), found.get("output")
    if accessmode == "offline":
        for key in ("hot", "local", "sync", "syncmode"):
            if key in found:
                raise SpotOptionError(
                    f"--{key}",
                    "does not go with --accessmode=offline, which makes a patch file; "
                    "give it when applying the patch (--apply=PATCH.spr)",
                )
        if target is None or output is None:
            raise SpotOptionError(
                "--accessmode=offline", "needs --target=SNAPSHOT.spr and --output=PATCH.spr"
            )
        # steppatch's own spelling of the same step (`apply --accessmode offline` is its alias).
        return _positional("prepare", [refs], ["--target", target, "--output", output])
    for key, given in (("target", target), ("output", output)):
        if given is not None:
            raise SpotOptionError(f"--{key}", "goes with --accessmode=offline (making a patch)")
    options: list[str] = []
    if "hot" in found:
        options.append("--hot")
    if "sync" in found:
        options.append("--sync")
    syncmode = found.get("syncmode")
    if syncmode is not None:
        if syncmode not in _SYNCMODES:
            raise SpotOptionError(f"--syncmode={syncmode}", "expected delete or keep")
        # Without --sync, steppatch itself says that --syncmode goes with it.
        options += ["--syncmode", syncmode]
    if "local" in found:
        options.append("--local")
    return _positional(action, [refs], options)


def _positional(command: str, values: list[str], options: list[str]) -> tuple[str, ...]:
    # A value that starts with '-' would be read as an option: put it after '--'.
    if any(v.startswith("-") for v in values):
        return (command, *options, "--", *values)
    return (command, *values, *options)


def _help() -> str:
    return (
        "Run a SPOT command (the manuals' --apply=..., --prepare=..., --mirrors) as steppatch.\n\n"
        "Output, errors and exit codes are those of the equivalent steppatch command; "
        "-n prints that command instead. --KEY VALUE works as --KEY=VALUE. "
        "docs/spot.md has the table.\n\n\b\n" + _FORMS
    )


def _check_runs_here(ctx: typer.Context, argv: Sequence[str]) -> None:
    """Refuse, naming it, an option of the translated command that the command registered in
    this app does not take (a build without it): before anything runs, as a SPOT error."""
    root = ctx.find_root()
    group = root.command
    args = list(argv)
    while args and args[0].startswith("-"):  # steppatch's global options: -v, --home DIR
        args = args[2:] if args[0] == "--home" else args[1:]
    if not args or not isinstance(group, TyperGroup):
        return
    target = group.get_command(root, args[0])
    if target is None:
        return  # click names an unknown command itself
    params = {opt: p for p in target.params for opt in (*p.opts, *p.secondary_opts)}
    rest = iter(args[1:])
    for arg in rest:
        if arg == "--":
            break
        if not arg.startswith("--"):
            continue
        name, joined, _ = arg.partition("=")
        param = params.get(name)
        if param is None:
            raise SpotOptionError(
                name, f"not supported by this steppatch: 'steppatch {args[0]}' has no {name}"
            )
        if not joined and getattr(param, "is_flag", True) is False:  # an option taking a value
            next(rest, None)  # its value


def spot(ctx: typer.Context) -> None:
    """Run a SPOT command line as its steppatch equivalent (see :func:`translate`)."""
    root = ctx.find_root()
    home = root.params.get("home")
    command = translate(
        ctx.args,
        home=None if home is None else str(home),
        verbose=bool(root.params.get("verbose")),
    )
    _check_runs_here(ctx, command.argv)
    if command.explain:
        render.out.print(command.shell(), markup=False)
        return
    # A fresh parse by the same app: what runs, prints and exits is the steppatch command itself
    # (in standalone mode it ends with sys.exit, as a top-level run does).
    root.command.main(args=list(command.argv), prog_name=root.info_name)


def register(app: typer.Typer) -> None:
    """Add ``spot`` to ``app``."""
    app.command("spot", help=_help(), context_settings=SPOT_CONTEXT)(spot)
