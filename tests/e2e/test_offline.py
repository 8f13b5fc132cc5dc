"""Issue 7: the offline three-step method, and every way a patch file can be wrong."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from steppatch import Home
from steppatch.errors import StalePatch, WrongEnvironment
from steppatch.offline import PatchError
from tests.builders import tree
from tests.conftest import COMPONENTS
from tests.e2e.conftest import Run
from tests.e2e.test_walking_skeleton import home_digest, one_line

RELEASE = "to:step/r.spr,to:acme-addon/7.0/acme-addon-7.0.1.spr"
UPGRADE = "to:restapi/7.0/restapi-7.0.40.spr"


@pytest.fixture
def world(tmp_path: Path, run: Run) -> dict[str, Path]:
    """A repository, a desktop home that reaches it, and an installation that reaches nothing."""
    repo, desk, inst = tmp_path / "repo", tmp_path / "desk", tmp_path / "inst"
    run("repo", "init", repo)
    run("repo", "add", repo, *sorted(COMPONENTS.iterdir()))
    run("repo", "release", repo, "step/r.spr", "--pin", "step-core==9.0.0",
        "--pin", "restapi==7.0.39")
    run("--home", desk, "init", "--updates", repo.as_uri(), "--root", repo / "root.json")
    # The installation has no mirror it could reach: everything comes in the patch file.
    run("--home", inst, "init", "--updates", (tmp_path / "nowhere").as_uri(),
        "--root", repo / "root.json", "--system", "prod-1")
    return {"repo": repo, "desk": desk, "inst": inst, "tmp": tmp_path}


def three_steps(run: Run, w: dict[str, Path], refs: str, name: str) -> Path:
    """Snapshot on the installation, patch on the desktop, apply on the installation."""
    snap, patch = w["tmp"] / f"{name}.snapshot.spr", w["tmp"] / f"{name}.patch.spr"
    run("--home", w["inst"], "snapshot", snap)
    run("--home", w["desk"], "prepare", refs, "--target", snap, "--output", patch)
    run("--home", w["inst"], "apply", patch)
    return patch


def versions(run: Run, home: Path) -> dict[str, str]:
    return json.loads(run("--home", home, "status", "--json").out)["components"]


def test_three_steps_install_and_upgrade_without_network(
    world: dict[str, Path], run: Run
) -> None:
    three_steps(run, world, RELEASE, "install")
    assert versions(run, world["inst"]) == {
        "acme-addon": "7.0.1", "restapi": "7.0.39", "step-core": "9.0.0",
    }
    patch = three_steps(run, world, UPGRADE, "upgrade")
    assert versions(run, world["inst"]) == {
        "acme-addon": "7.0.1", "restapi": "7.0.40", "step-core": "9.0.5",
    }
    assert (world["inst"] / ".steppatch/metadata/index.json").is_file()  # verified, kept
    # The same patch again changes nothing and writes nothing.
    before = home_digest(world["inst"])
    assert "Nothing to do" in run("--home", world["inst"], "apply", patch).out
    assert home_digest(world["inst"]) == before
    info = json.loads(run("inspect", patch, "--json").out)
    assert info["system"] == "prod-1"
    assert {c["name"]: c["to"] for c in info["changes"]} == {
        "restapi": "7.0.40", "step-core": "9.0.5",
    }


def test_the_alias_and_determinism(world: dict[str, Path], run: Run) -> None:
    three_steps(run, world, RELEASE, "install")
    snap = world["tmp"] / "s.spr"
    run("--home", world["inst"], "snapshot", snap)
    a, b = world["tmp"] / "a.spr", world["tmp"] / "b.spr"
    run("--home", world["desk"], "prepare", UPGRADE, "--target", snap, "--output", a)
    run("--home", world["desk"], "apply", "--accessmode", "offline", UPGRADE,
        "--target", snap, "--output", b)
    assert a.read_bytes() == b.read_bytes()


def test_only_the_objects_the_target_lacks_travel(world: dict[str, Path], run: Run) -> None:
    three_steps(run, world, RELEASE, "install")
    snap = world["tmp"] / "s.spr"
    run("--home", world["inst"], "snapshot", snap)
    patch = world["tmp"] / "p.spr"
    run("--home", world["desk"], "prepare", UPGRADE, "--target", snap, "--output", patch)
    info = json.loads(run("inspect", patch, "--json").out)
    changed = 0
    for old, new in (("restapi-7.0.39", "restapi-7.0.40"), ("step-core-9.0.0", "step-core-9.0.5")):
        before = {p.relative_to(COMPONENTS / old).as_posix(): p.read_bytes()
                  for p in (COMPONENTS / old / "files").rglob("*") if p.is_file()}
        for p in (COMPONENTS / new / "files").rglob("*"):
            if p.is_file() and not p.is_symlink():
                key = p.relative_to(COMPONENTS / new).as_posix()
                if before.get(key) != p.read_bytes():
                    changed += p.stat().st_size
    assert info["object_bytes"] == changed
    assert info["size"] < changed * 1.05 + 64 * 1024  # objects plus metadata


def test_a_patch_for_another_environment_is_refused_naming_both(
    world: dict[str, Path], run: Run
) -> None:
    other = world["tmp"] / "other"
    run("--home", other, "init", "--updates", (world["tmp"] / "nowhere").as_uri(),
        "--root", world["repo"] / "root.json", "--system", "test-2")
    snap, patch = world["tmp"] / "s.spr", world["tmp"] / "p.spr"
    run("--home", world["inst"], "snapshot", snap)
    run("--home", world["desk"], "prepare", RELEASE, "--target", snap, "--output", patch)
    before = home_digest(other)
    line = one_line(run("--home", other, "apply", patch, expect=2).err)
    assert "prod-1" in line and "test-2" in line
    assert home_digest(other) == before


def test_a_stale_snapshot_is_refused_saying_what_changed_unless_forced(
    world: dict[str, Path], run: Run
) -> None:
    three_steps(run, world, RELEASE, "install")
    snap, patch = world["tmp"] / "old.spr", world["tmp"] / "p.spr"
    run("--home", world["inst"], "snapshot", snap)
    run("--home", world["desk"], "prepare", "to:acme-addon/7.0/acme-addon-7.0.1.spr",
        "--target", snap, "--output", patch)  # a patch that changes nothing but is old
    three_steps(run, world, UPGRADE, "upgrade")
    stale = world["tmp"] / "stale.spr"
    run("--home", world["desk"], "prepare", "to:step-core/9.0/step-core-9.0.5.spr",
        "--target", snap, "--output", stale)
    before = home_digest(world["inst"])
    line = one_line(run("--home", world["inst"], "apply", stale, expect=2).err)
    assert "no longer current" in line and "restapi: 7.0.39 -> 7.0.40" in line
    assert home_digest(world["inst"]) == before
    run("--home", world["inst"], "apply", "--force", stale)  # re-resolved: already satisfied
    assert versions(run, world["inst"])["step-core"] == "9.0.5"


def test_offline_options_are_checked(world: dict[str, Path], run: Run) -> None:
    line = one_line(run("--home", world["desk"], "prepare", UPGRADE, "--target",
                        world["tmp"] / "x.spr", expect=2).err)
    assert "--output" in line
    line = one_line(run("--home", world["desk"], "apply", "--accessmode", "sideways", UPGRADE,
                        expect=2).err)
    assert "--accessmode" in line
    thin = world["tmp"] / "release.spr"
    thin.write_text(json.dumps({"format": "steppatch-recipe/1", "kind": "release",
                                "components": {"restapi": "==7.0.40"}}))
    line = one_line(run("--home", world["desk"], "prepare", UPGRADE, "--target", thin,
                        "--output", world["tmp"] / "p.spr", expect=2).err)
    assert "--target must be a snapshot" in line


def test_100_bit_flips_and_truncations_are_refused_before_the_home_is_touched(
    world: dict[str, Path], run: Run
) -> None:
    snap, patch = world["tmp"] / "s.spr", world["tmp"] / "p.spr"
    run("--home", world["inst"], "snapshot", snap)
    run("--home", world["desk"], "prepare", RELEASE, "--target", snap, "--output", patch)
    data = patch.read_bytes()
    home = Home.open(world["inst"])
    before = tree(world["inst"])
    rng = random.Random(7)
    damaged = world["tmp"] / "damaged.spr"
    for i in range(100):
        if i % 4 == 3:
            bad = data[: rng.randrange(len(data))]
        else:
            bit = rng.randrange(len(data) * 8)
            bad = bytearray(data)
            bad[bit // 8] ^= 1 << (bit % 8)
            bad = bytes(bad)
        damaged.write_bytes(bad)
        with pytest.raises((PatchError, WrongEnvironment, StalePatch)):
            home.apply_patch(damaged)
        assert tree(world["inst"]) == before
    home.apply_patch(patch)  # the intact one still applies
    assert versions(run, world["inst"])["restapi"] == "7.0.39"


def test_a_patch_carries_deltas_from_what_the_target_holds(tmp_path: Path, run: Run) -> None:
    """Issue 18: a changed large file travels as a delta from the object the target's snapshot
    says it holds; the patch is far smaller than the object, and applies without network."""
    rng = random.Random(18)
    old = rng.randbytes(400_000)
    new = old[:9000] + rng.randbytes(600) + old[9600:]
    src = tmp_path / "src"
    for version, data in (("1.0", old), ("1.1", new)):
        d = src / f"app-{version}"
        (d / "files").mkdir(parents=True)
        (d / "component.toml").write_text(f'name = "app"\nversion = "{version}"\n')
        (d / "files/app.bin").write_bytes(data)
    repo, desk, inst = tmp_path / "repo", tmp_path / "desk", tmp_path / "inst"
    run("repo", "init", repo)
    run("repo", "add", repo, src / "app-1.0", src / "app-1.1")
    run("--home", desk, "init", "--updates", repo.as_uri(), "--root", repo / "root.json")
    run("--home", inst, "init", "--updates", (tmp_path / "nowhere").as_uri(),
        "--root", repo / "root.json", "--system", "prod-1")
    w = {"repo": repo, "desk": desk, "inst": inst, "tmp": tmp_path}
    three_steps(run, w, "to:app/1.0/app-1.0.spr", "install")
    patch = three_steps(run, w, "to:app/1.1/app-1.1.spr", "upgrade")
    assert (inst / "current/app.bin").read_bytes() == new
    info = json.loads(run("inspect", patch, "--json").out)
    assert info["objects"] == 1 and info["object_bytes"] == 400_000
    assert info["delta_objects"] == 1 and 0 < info["delta_bytes"] < 5_000
    assert info["size"] < 40_000  # metadata and the delta; not the 400 kB object
    assert run("--home", inst, "verify").code == 0
