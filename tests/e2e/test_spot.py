"""`steppatch spot ...` against its steppatch equivalent, for every row of docs/spot.md.

Each row runs twice, in two identical copies of one prepared home: the SPOT form in one, the
steppatch command of the table in the other, each as a subprocess. The exit code, stdout, stderr
and the effect (installed versions, managed tree, service log, config, files written) must match.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from packaging.version import Version

from steppatch import Home, Repository
from steppatch.config import NodeEntry
from tests.builders import component, tree
from tests.conftest import COMPONENTS
from tests.e2e.conftest import Result
from tests.e2e.test_walking_skeleton import one_line
from tests.unit.test_spot_args import (
    MANUALS,
    NOT_SUPPORTED,
    equivalent,
    spot_args,
    spot_table,
)

RELEASE = "step/trailblazer/step-trailblazer-9.0-mp5-2018-11-08-15-54-27.spr"
# The manuals' mirror is a host on the internet; the tests reach nothing beyond this machine, so
# the rows that name it use a second copy of the repository, served from a file:// URL.
MANUAL_MIRROR = "https://mirror.customer.com"
SNAPSHOT = "snapshot-prod-2017-02-28.spr"  # the files the docs' rows read
TARGET = "prod-thin.spr"
PATCH = "prod-patch.spr"
SERVICE = {"start": "echo start >> service.log", "stop": "echo stop >> service.log",
           "status": "true"}


@attrs.frozen
class World:
    root: Path
    mirror: Path
    desk: Path  # a home at step-core 9.0.5 and restapi 7.0.39, with a service (most rows)
    inst: Path  # an air-gapped home, system prod-1, nothing installed (offline step 3)


def with_service(home: Path) -> None:
    config = home / "steppatch.toml"
    text = config.read_text()
    for key, command in SERVICE.items():
        text = text.replace(f'{key} = ""', f'{key} = "{command}"', 1)
    config.write_text(text)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("spot")
    repo = Repository.init(root / "repo")
    for source in sorted(COMPONENTS.iterdir()):
        repo.add(source)
    repo.add(component(root / "src", "updates-mirror", "1.0", {"mirror/VERSION": b"1.0\n"}))
    repo.release(RELEASE, {"step-core": Version("9.0.5"), "restapi": Version("7.0.40")})
    repo.release("updates/mirror/latest.spr", {"updates-mirror": Version("1.0")})
    mirror = Path(shutil.copytree(repo.root, root / "mirror"))
    trusted = (repo.root / "root.json").read_bytes()

    desk = Home.init(root / "desk", updates=repo.root.as_uri(), root=trusted)
    with_service(desk.path)
    desk.apply(["to:step-core/9.0/step-core-9.0.5.spr", "to:restapi/7.0/restapi-7.0.39.spr"])
    (desk.path / "service.log").write_text("")

    inst = Home.init(
        root / "inst", updates=(root / "nowhere").as_uri(), root=trusted, system="prod-1"
    )
    with_service(inst.path)
    snapshot = inst.snapshot(root / TARGET)
    desk.prepare_offline([f"to:{RELEASE}"], snapshot, root / PATCH)
    return World(root, mirror, desk.path, inst.path)


def prepare_base(form: str, w: World, base: Path) -> None:
    """The directory a row runs in: ``home/`` and the files the row reads."""
    if form == f"spot --apply={PATCH}":  # offline step 3: on the installation
        shutil.copytree(w.inst, base / "home", symlinks=True)
        shutil.copy(w.root / PATCH, base)
        return
    shutil.copytree(w.desk, base / "home", symlinks=True)
    if f"--target={TARGET}" in form:  # offline step 2: on the desktop, with the snapshot
        shutil.copy(w.root / TARGET, base)
    if form.endswith(" --local"):  # a cluster of two: this node and node2
        shutil.copytree(w.desk, base / "node2", symlinks=True)
        Home.open(base / "home").add_node(NodeEntry("node2", str(base / "node2")))
    if f"--apply={SNAPSHOT} --sync" in form:  # fallback: a snapshot, then a patch, then drift
        home = Home.open(base / "home")
        home.snapshot(base / SNAPSHOT)
        home.apply(["to:restapi/7.0/restapi-7.0.40.spr"])
        (base / "home/current/stray.log").write_text("left by a failed patch session\n")
        (base / "home/service.log").write_text("")


def run(side: Path, args: list[str]) -> Result:
    env = {**os.environ, "STEPPATCH_HOME": str(side / "home"), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "steppatch_cli", *args],
        capture_output=True, text=True, env=env, cwd=side, timeout=60, check=False,
    )
    # The two sides differ only in where they are.
    out, err = (text.replace(str(side), "SIDE") for text in (done.stdout, done.stderr))
    return Result(done.returncode, out, err)


def versions(home: Path) -> dict[str, str]:
    return {n: str(v) for n, v in Home.open(home).status().versions().items()}


def effect(side: Path) -> dict[str, object]:
    """What a command can change: each home's versions, managed tree, service log and config,
    and the files written beside them.

    Leaves out what differs by the clock: tree and history names, the download cache, and the
    time a snapshot was taken.
    """
    found: dict[str, object] = {}
    homes = sorted(p.parent.name for p in side.glob("*/steppatch.toml"))
    for name in homes:
        home = side / name
        found[f"{name} state"] = {
            "versions": versions(home),
            "current": tree(home / "current") if (home / "current").exists() else None,
            # Keys are random: their names say what enroll made.
            "tls": sorted(p.name for p in (home / ".steppatch/tls").glob("*")),
        }
    for path, entry in tree(side).items():
        top, _, rest = path.partition("/")
        if top in homes and rest.startswith((".steppatch/", "current")):
            continue
        if isinstance(entry, tuple) and entry[0] == "file":
            _, mode, data = entry
            data = data.replace(str(side).encode(), b"SIDE")  # a cluster's node locations
            if path.endswith(".spr") and data[:1] == b"{":
                document = json.loads(data)
                document.pop("created", None)
                data = document
            entry = ("file", mode, data)
        found[path] = entry
    return found


def read_only(args: list[str]) -> bool:
    """Whether the steppatch command must leave the home as it was."""
    command = args[0]
    return command in ("showupdates", "ping", "spot") or args == ["mirrors"] or (
        command == "prepare" and "--output" not in args
    )


def sides(form: str, w: World, tmp_path: Path) -> tuple[Path, Path, Path]:
    """The prepared directory for ``form``, and two identical copies to run in."""
    base = tmp_path / "base"
    base.mkdir(parents=True)
    prepare_base(form, w, base)
    a, b = (Path(shutil.copytree(base, tmp_path / n, symlinks=True)) for n in ("spot", "steppatch"))
    for side in (a, b):  # a cluster's node locations are absolute: move them along
        config = side / "home/steppatch.toml"
        config.write_text(config.read_text().replace(str(base), str(side)))
    return base, a, b


def local_mirror(args: list[str], w: World) -> list[str]:
    return [a.replace(MANUAL_MIRROR, w.mirror.as_uri()) for a in args]


ROWS = spot_table(MANUALS)


@pytest.mark.parametrize(("form", "cell"), ROWS, ids=[form for form, _ in ROWS])
def test_the_spot_form_does_what_its_equivalent_does(
    form: str, cell: str, world: World, tmp_path: Path
) -> None:
    spot, steppatch = local_mirror(spot_args(form), world), local_mirror(equivalent(cell), world)
    base, a, b = sides(form, world, tmp_path)
    before = effect(base)
    by_spot = run(a, ["spot", *spot])
    by_steppatch = run(b, steppatch)
    assert by_spot == by_steppatch
    assert by_spot.code == 0, by_spot  # in this world every form of the manuals succeeds
    assert effect(a) == effect(b)
    assert (effect(a) == before) == read_only(steppatch), "the row does not test its effect"
    if spot == ["--help"]:
        assert "docs/spot.md" in by_spot.out


def test_the_rows_do_what_the_manuals_say(world: World, tmp_path: Path) -> None:
    """A few rows checked against what they are for, not only against their equivalent."""
    by_form = dict(ROWS)
    fallback = f"spot --apply={SNAPSHOT} --sync --syncmode=delete"
    assert fallback in by_form
    _, a, _ = sides(fallback, world, tmp_path / "fallback")
    run(a, ["spot", *spot_args(fallback)])
    assert versions(a / "home") == {"restapi": "7.0.39", "step-core": "9.0.5"}
    assert not (a / "home/current/stray.log").exists()
    assert (a / "home/service.log").read_text().split() == ["stop", "start"]

    hot = "spot --apply=to:restapi/7.0/restapi-7.0.40.spr --hot"
    assert hot in by_form
    _, a, _ = sides(hot, world, tmp_path / "hot")
    run(a, ["spot", *spot_args(hot)])
    assert versions(a / "home") == {"restapi": "7.0.40", "step-core": "9.0.5"}
    assert (a / "home/service.log").read_text() == ""  # not restarted


@pytest.mark.parametrize(
    ("form", "why"), spot_table(NOT_SUPPORTED), ids=[f for f, _ in spot_table(NOT_SUPPORTED)]
)
def test_an_unsupported_form_is_refused_naming_it(
    form: str, why: str, world: World, tmp_path: Path
) -> None:
    base, a, _ = sides(form, world, tmp_path)
    before = effect(base)
    result = run(a, ["spot", *spot_args(form)])
    assert result.code == 2
    line = one_line(result.err)
    assert line.startswith("error: spot --")
    assert line.split()[2].rstrip(":") in form
    assert effect(a) == before


def test_key_value_with_a_space_home_and_explain(world: World, tmp_path: Path) -> None:
    base, a, b = sides("spot --showupdates", world, tmp_path)
    restapi = "to:restapi/7.0/restapi-7.0.40.spr"
    by_spot = run(a, ["spot", "--home", str(a / "home"), "--apply", restapi])
    by_steppatch = run(b, ["--home", str(b / "home"), "apply", restapi])
    assert by_spot == by_steppatch and by_spot.code == 0
    assert effect(a) == effect(b) != effect(base)

    explained = run(base, ["--home", "elsewhere", "spot", "-n", "--accessmode=offline",
                           "--apply=", f"to:{RELEASE}", f"--target={TARGET}", f"--output={PATCH}"])
    assert explained == Result(
        0, f"steppatch --home elsewhere prepare to:{RELEASE} --target {TARGET} --output {PATCH}\n",
        "",
    )
    assert not (base / PATCH).exists()


def test_errors_of_the_equivalent_are_its_own(world: World, tmp_path: Path) -> None:
    base, a, b = sides("spot --showupdates", world, tmp_path)
    unknown, restapi = "to:restapi/7.0/restapi-7.0.99.spr", "to:restapi/7.0/restapi-7.0.40.spr"
    for spot, steppatch, code in [
        ([f"--apply={unknown}"], ["apply", unknown], 3),
        ([f"--apply={restapi}", "--syncmode=delete"],
         ["apply", restapi, "--syncmode", "delete"], 2),
        (["--updates=file:///nowhere", "--ping"], ["ping", "--updates", "file:///nowhere"], 4),
    ]:
        by_spot, by_steppatch = run(a, ["spot", *spot]), run(b, steppatch)
        assert by_spot == by_steppatch and by_spot.code == code, (spot, by_spot)
    assert effect(a) == effect(b) == effect(base)


def test_an_unknown_option_names_it_and_the_closest(tmp_path: Path) -> None:
    result = run(tmp_path, ["spot", "--showupdate"])
    assert result.code == 2
    assert one_line(result.err) == (
        "error: spot --showupdate: unknown SPOT option; did you mean --showupdates?"
    )
