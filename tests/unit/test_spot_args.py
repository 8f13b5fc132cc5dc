"""The SPOT argument translator: every row of docs/spot.md, and every way a SPOT line is wrong."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from steppatch_cli.spot import SpotCommand, SpotOptionError, register, translate

DOCS = Path(__file__).resolve().parents[2] / "docs" / "spot.md"
MANUALS = "Every form in the manuals"
NOT_SUPPORTED = "Not supported"
OWN = "steppatch's own additions"


def spot_table(heading: str) -> list[tuple[str, str]]:
    """``(SPOT form, second cell)`` of the rows of the table under ``## heading`` (docs/spot.md)."""
    sections = DOCS.read_text().split(f"\n## {heading}\n")
    assert len(sections) == 2, f"docs/spot.md has no single '## {heading}'"
    rows = []
    for line in sections[1].split("\n## ")[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0].startswith("`spot "):
            rows.append((cells[0].strip("`"), cells[1]))
    assert rows, f"no `spot ...` rows under '## {heading}'"
    return rows


def spot_args(form: str) -> list[str]:
    """``spot --apply=...`` as the operator types it -> the arguments after ``spot``."""
    words = shlex.split(form)
    assert words[0] == "spot"
    return words[1:]


def equivalent(cell: str) -> list[str]:
    """The steppatch command a table cell names -> its arguments after ``steppatch``."""
    match = re.search(r"`steppatch ([^`]*)`", cell)
    assert match, cell
    return shlex.split(match[1])


def translated(
    *args: str, home: str | None = None, verbose: bool = False,
    unsupported: dict[str, str] | None = None,
) -> list[str]:
    command = translate(args, home=home, verbose=verbose, unsupported=unsupported)
    assert not command.explain
    return list(command.argv)


def refused(
    *args: str, home: str | None = None, unsupported: dict[str, str] | None = None
) -> SpotOptionError:
    with pytest.raises(SpotOptionError) as info:
        translate(args, home=home, unsupported=unsupported)
    assert info.value.exit_code == 2
    return info.value


# --- the table in docs/spot.md -------------------------------------------------------------------


def manual_rows() -> list[tuple[str, str]]:
    # `--help` never reaches the translator: Typer answers it (tested below).
    return [row for row in spot_table(MANUALS) if row[0] != "spot --help"]


@pytest.mark.parametrize(("form", "cell"), manual_rows(), ids=[f for f, _ in manual_rows()])
def test_each_form_of_the_manuals_translates_as_the_table_says(form: str, cell: str) -> None:
    assert translated(*spot_args(form)) == equivalent(cell)


@pytest.mark.parametrize(("form", "cell"), spot_table(OWN), ids=[f for f, _ in spot_table(OWN)])
def test_each_addition_translates_as_the_table_says(form: str, cell: str) -> None:
    command = translate(spot_args(form))
    assert list(command.argv) == equivalent(cell)
    assert command.explain == cell.startswith("prints")


@pytest.mark.parametrize(
    ("form", "why"), spot_table(NOT_SUPPORTED), ids=[f for f, _ in spot_table(NOT_SUPPORTED)]
)
def test_each_unsupported_form_is_refused_naming_its_option(form: str, why: str) -> None:
    error = refused(*spot_args(form))
    assert error.option is not None and error.option in form


def test_the_table_covers_every_spot_option() -> None:
    forms = " ".join(form for form, _ in spot_table(MANUALS) + spot_table(OWN))
    options = set(re.findall(r"--([a-z]+)", forms))
    assert options >= {
        "apply", "prepare", "snapshot", "showupdates", "mirrors", "updates", "ping", "hot",
        "local", "sync", "syncmode", "accessmode", "target", "output", "start", "stop", "enroll",
        "home", "help",
    }


# --- value forms ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--snapshot", "s.spr"], ["snapshot", "s.spr"]),
        (["--apply", "to:a.spr", "--sync", "--syncmode", "keep"],
         ["apply", "to:a.spr", "--sync", "--syncmode", "keep"]),
        (["--accessmode", "offline", "--apply", "to:a.spr", "--target", "s.spr", "--output",
          "p.spr"], ["prepare", "to:a.spr", "--target", "s.spr", "--output", "p.spr"]),
        (["--updates", "file:///m", "--ping"], ["ping", "--updates", "file:///m"]),
        (["--enroll", "mirror:n:h"], ["enroll", "--enroll=mirror:n:h"]),
        (["--apply=", "to:a.spr"], ["apply", "to:a.spr"]),
        (["--apply= to:a.spr"], ["apply", "to:a.spr"]),
        (["--prepare=to:a.spr,", "to:b.spr,", "to:c.spr"],
         ["prepare", "to:a.spr,to:b.spr,to:c.spr"]),
        (["--apply=to:a.spr, to:b.spr"], ["apply", "to:a.spr, to:b.spr"]),  # steppatch strips
        (["--accessmode=online", "--apply=to:a.spr"], ["apply", "to:a.spr"]),
        (["--hot", "--apply=to:a.spr"], ["apply", "to:a.spr", "--hot"]),
        (["--apply=to:a.spr", "--local", "--hot"], ["apply", "to:a.spr", "--hot", "--local"]),
        (["--mirrors"], ["mirrors"]),
        (["--ping"], ["ping"]),
        (["--start"], ["start"]),
        # Without --sync steppatch itself says that --syncmode goes with it.
        (["--apply=to:a.spr", "--syncmode=delete"], ["apply", "to:a.spr", "--syncmode", "delete"]),
        # A value that looks like an option goes after '--', where steppatch reads it as a file.
        (["--snapshot=-x.spr"], ["snapshot", "--", "-x.spr"]),
        (["--apply=-p.spr", "--hot"], ["apply", "--hot", "--", "-p.spr"]),
    ],
)
def test_value_forms(args: list[str], expected: list[str]) -> None:
    assert translated(*args) == expected


def test_a_wrapped_list_stops_at_the_next_option() -> None:
    assert translated("--apply=to:a.spr,", "--hot") == ["apply", "to:a.spr,", "--hot"]


# --- the home, -v and --explain ------------------------------------------------------------------


def test_global_options_are_kept_in_front() -> None:
    assert translated("--stop", home="/h", verbose=True) == ["-v", "--home", "/h", "stop"]
    assert translated("--home=/h", "--stop") == ["--home", "/h", "stop"]
    assert translated("--home", "/h", "--stop", home="/h") == ["--home", "/h", "stop"]


def test_two_different_homes_are_refused() -> None:
    error = refused("--home=/a", "--stop", home="/b")
    assert error.option == "--home=/a" and "/b" in str(error)


@pytest.mark.parametrize("flag", ["-n", "--explain"])
def test_explain(flag: str) -> None:
    command = translate([flag, "--apply=to:a b.spr", "--hot"], home="/opt/stibo/step")
    assert command == SpotCommand(
        ("--home", "/opt/stibo/step", "apply", "to:a b.spr", "--hot"), explain=True
    )
    assert command.shell() == "steppatch --home /opt/stibo/step apply 'to:a b.spr' --hot"


# --- refusals: exit 2, the argument at fault, the closest option ---------------------------------


@pytest.mark.parametrize(
    ("args", "option", "closest"),
    [
        (["--aply=to:a.spr"], "--aply=to:a.spr", "--apply=RECIPE[,RECIPE...]"),
        (["--showupdate"], "--showupdate", "--showupdates"),
        (["--restart"], "--restart", "--start"),
        (["--apply=to:a.spr", "--syncMode=delete"], "--syncMode=delete", "--syncmode=delete|keep"),
        (["--accesmode=offline"], "--accesmode=offline", "--accessmode=online|offline"),
        (["apply", "to:a.spr"], "apply", "--apply=RECIPE[,RECIPE...]"),
        (["-showupdates"], "-showupdates", "--showupdates"),
        (["--hlep"], "--hlep", "--help"),
        (["--frobnicate"], "--frobnicate", None),
        (["-h"], "-h", None),
        (["--hot", "to:a.spr"], "to:a.spr", None),
    ],
)
def test_unknown_arguments_name_themselves_and_the_closest_option(
    args: list[str], option: str, closest: str | None
) -> None:
    error = refused(*args)
    assert (error.option, error.closest) == (option, closest)
    assert str(error).startswith(f"spot {option}: ")
    if closest is None:
        assert "steppatch spot --help" in str(error)


@pytest.mark.parametrize(
    ("args", "option", "words"),
    [
        ([], None, "no command given"),
        (["--hot=yes", "--apply=to:a.spr"], "--hot=yes", "takes no value"),
        (["--snapshot"], "--snapshot", "needs a value: --snapshot=FILE.spr"),
        (["--apply=", "--hot"], "--apply", "needs a value"),
        (["--apply=to:a.spr", "--apply=to:b.spr"], "--apply", "commas"),
        (["--start", "--stop"], "--stop", "one command at a time"),
        (["--updates=file:///m"], "--updates", "--ping"),
        (["--apply=to:a.spr", "--updates=file:///m"], "--updates", "--mirrors"),
        (["--prepare=to:a.spr", "--hot"], "--hot", "--apply"),
        (["--showupdates", "--local"], "--local", "--apply"),
        (["--snapshot=s.spr", "--sync"], "--sync", "--apply"),
        (["--apply=to:a.spr", "--target=s.spr", "--output=p.spr"], "--target",
         "--accessmode=offline"),
        (["--accessmode=offline", "--apply=to:a.spr", "--target=s.spr"],
         "--accessmode=offline", "--output=PATCH.spr"),
        (["--accessmode=offline", "--apply=to:a.spr", "--target=s.spr", "--output=p.spr",
          "--hot"], "--hot", "patch file"),
        (["--accessmode=sideways", "--apply=to:a.spr"], "--accessmode=sideways", "offline"),
        (["--apply=to:a.spr", "--sync", "--syncmode=all"], "--syncmode=all", "delete or keep"),
        (["--explain=yes", "--stop"], "--explain=yes", "takes no value"),
    ],
)
def test_lines_that_cannot_run_are_refused(
    args: list[str], option: str | None, words: str
) -> None:
    error = refused(*args)
    assert error.option == option
    assert words in error.problem


def test_an_option_this_build_lacks_is_refused_saying_so() -> None:
    error = refused("--apply=to:a.spr", "--local", unsupported={"local": "no clusters here"})
    assert error.option == "--local"
    assert "not supported by this steppatch: no clusters" in str(error)
    assert translated("--apply=to:a.spr", unsupported={"local": "no clusters here"}) == [
        "apply", "to:a.spr",
    ]


# --- the command: it runs the translation through the app it is registered in --------------------


def small_app(calls: list[tuple[str, ...]], *, local: bool) -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root(home: str | None = typer.Option(None, "--home")) -> None:
        calls.append(("home", str(home)))

    if local:
        @app.command("apply")
        def apply_local(refs: list[str], hot: bool = False, local: bool = False) -> None:
            calls.append(("apply", *refs, f"hot={hot}", f"local={local}"))
    else:
        @app.command("apply")
        def apply(refs: list[str], hot: bool = False) -> None:
            calls.append(("apply", *refs, f"hot={hot}"))

    register(app)
    return app


def test_the_command_runs_the_equivalent_through_the_same_app() -> None:
    calls: list[tuple[str, ...]] = []
    app = small_app(calls, local=True)
    result = CliRunner().invoke(app, ["--home", "/h", "spot", "--apply", "to:a.spr", "--local"])
    assert result.exit_code == 0, result.output
    assert calls == [("home", "/h"), ("home", "/h"), ("apply", "to:a.spr", "hot=False",
                                                      "local=True")]
    calls.clear()
    result = CliRunner().invoke(app, ["spot", "-n", "--apply=to:a.spr", "--hot"])
    assert result.output == "steppatch apply to:a.spr --hot\n"
    assert calls == [("home", "None")]  # nothing ran


def test_local_is_refused_when_apply_has_no_local() -> None:
    calls: list[tuple[str, ...]] = []
    result = CliRunner().invoke(small_app(calls, local=False), ["spot", "--apply=x", "--local"])
    assert isinstance(result.exception, SpotOptionError)
    assert result.exception.option == "--local" and "not supported" in str(result.exception)
    assert calls == [("home", "None")]


def test_help_lists_every_form() -> None:
    result = CliRunner().invoke(small_app([], local=True), ["spot", "--help"], terminal_width=100)
    assert result.exit_code == 0
    for option in ("apply", "prepare", "snapshot", "showupdates", "mirrors", "updates", "ping",
                   "hot", "local", "sync", "syncmode", "accessmode", "target", "output", "start",
                   "stop", "enroll", "home", "explain"):
        assert f"--{option}" in result.output, option
    assert "docs/spot.md" in result.output


def test_any_option_the_registered_command_lacks_is_refused_before_it_runs() -> None:
    calls: list[tuple[str, ...]] = []
    app = typer.Typer()

    @app.callback()
    def root(home: str | None = typer.Option(None, "--home")) -> None:
        calls.append(("home", str(home)))

    @app.command("apply")
    def apply(refs: list[str], syncmode: str = typer.Option("delete", "--syncmode")) -> None:
        calls.append(("apply", *refs, syncmode))

    @app.command("enroll")
    def enroll(system_name: str) -> None:
        calls.append(("enroll", system_name))

    register(app)
    # an option taking a value: its value is not mistaken for an option
    result = CliRunner().invoke(app, ["--home", "/h", "spot", "--apply=x", "--syncmode=keep"])
    assert result.exit_code == 0, result.output
    assert calls[-1] == ("apply", "x", "keep")
    calls.clear()
    for line, option in ((["--apply=x", "--hot"], "--hot"),
                         (["-n", "--apply=x", "--sync", "--syncmode=keep"], "--sync"),
                         (["--enroll=mirror:a:b"], "--enroll")):
        result = CliRunner().invoke(app, ["spot", *line])
        assert isinstance(result.exception, SpotOptionError), result.output
        assert result.exception.option == option
        assert f"has no {option}" in str(result.exception)
        assert calls == [("home", "None")]  # nothing ran, nothing printed as the command
        calls.clear()
