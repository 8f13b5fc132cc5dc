"""Every command of the walking skeleton, driven as a user drives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.builders import tree
from tests.e2e.conftest import Run

RELEASE = "step/trailblazer/step-trailblazer-9.0-mp5-2018-11-08-15-54-27.spr"


tree_digest = tree  # every entry: kind, mode, content or link target


def home_digest(home: Path) -> dict[str, object]:
    """The home, its state included, less the download cache (which may gain verified objects).

    For 'nothing changed' assertions.
    """
    return {
        path: value
        for path, value in tree_digest(home).items()
        if not path.startswith(".steppatch/cache")
    }


@pytest.fixture
def repo(tmp_path: Path, sources: Path, run: Run) -> Path:
    repo = tmp_path / "repo"
    run("repo", "init", repo)
    run("repo", "add", repo, *sorted(sources.iterdir()))
    run(
        "repo", "release", repo, RELEASE, "--pin", "step-core==9.0.0", "--pin", "restapi==7.0.39"
    )
    return repo


@pytest.fixture
def installed(repo: Path, run: Run, home: Path) -> Path:
    run("init", "--updates", repo.as_uri(), "--root", repo / "root.json", "--system", "test-env")
    run("apply", f"to:{RELEASE},to:acme-addon/7.0/acme-addon-7.0.1.spr")
    return home


def current_index(repo: Path) -> dict[str, Any]:
    """The payload of the index the repository's timestamp pins."""
    pin = json.loads((repo / "timestamp.json").read_text())["signed"]["index"]
    signed = json.loads((repo / f"indexes/{pin['version']}.index.json").read_text())["signed"]
    payload: dict[str, Any] = signed["index"]
    return payload


def status(run: Run) -> dict[str, str]:
    return json.loads(run("status", "--json").out)["components"]


def test_repository_layout(repo: Path) -> None:
    assert (repo / "restapi/7.0/restapi-7.0.40.spr").is_file()
    assert (repo / RELEASE).is_file()
    latest = json.loads((repo / "restapi/latest.spr").read_text())
    assert latest["components"] == {"restapi": "==7.0.40"}
    index = current_index(repo)
    assert sorted(index["components"]["step-core"]) == ["9.0.0", "9.0.5"]


def test_adding_the_same_version_again_is_a_no_op(repo: Path, sources: Path, run: Run) -> None:
    before = tree_digest(repo)
    result = run("repo", "add", repo, sources / "restapi-7.0.40")
    assert "unchanged" in result.out
    assert tree_digest(repo) == before


def test_adding_the_same_version_with_other_content_is_refused(
    repo: Path, sources: Path, run: Run
) -> None:
    before = tree_digest(repo)
    (sources / "restapi-7.0.40/files/lib/restapi/VERSION").write_text("tampered\n")
    result = run("repo", "add", repo, sources / "restapi-7.0.40", expect=3)
    assert "restapi 7.0.40 is already published with different files" in result.err
    assert tree_digest(repo) == before


def test_release_refuses_unknown_pins_and_broken_ranges(repo: Path, run: Run) -> None:
    before = tree_digest(repo)
    result = run("repo", "release", repo, "x/r.spr", "--pin", "restapi==9.9", expect=2)
    assert "restapi==9.9 is not in the repository" in result.err
    result = run(
        "repo", "release", repo, "x/r.spr", "--pin", "restapi==7.0.40",
        "--pin", "step-core==9.0.0", expect=2,
    )
    assert "step-core" in result.err and "restapi" in result.err
    result = run("repo", "release", repo, "x/r.spr", "--pin", "restapi==7.0.40", expect=2)
    assert "does not pin step-core" in result.err
    assert tree_digest(repo) == before


def test_install_upgrade_and_restore_a_snapshot(
    installed: Path, run: Run, tmp_path: Path
) -> None:
    home = installed
    assert status(run) == {"acme-addon": "7.0.1", "restapi": "7.0.39", "step-core": "9.0.0"}
    current = home / "current"
    assert (current / "bin/step").read_text() == '#!/bin/sh\necho "step-core 9.0.0"\n'
    assert os.stat(current / "bin/step").st_mode & 0o777 == 0o755
    assert os.readlink(current / "lib/restapi/current.bin") == "restapi.bin"
    assert (current / "lib/addons/acme/rules.toml").is_file()

    snap = tmp_path / "before.spr"
    run("snapshot", snap)
    assert json.loads(snap.read_text())["kind"] == "snapshot"

    before_prepare = tree_digest(current)
    result = run("prepare", "to:restapi/7.0/restapi-7.0.40.spr")
    assert "restapi" in result.out and "7.0.40" in result.out
    assert "moved by a dependency" in result.out  # step-core follows restapi's range
    assert tree_digest(current) == before_prepare

    result = run("apply", "to:restapi/7.0/restapi-7.0.40.spr")
    assert status(run) == {"acme-addon": "7.0.1", "restapi": "7.0.40", "step-core": "9.0.5"}
    assert (current / "lib/restapi/VERSION").read_text() == "restapi 7.0.40\n"

    run("apply", snap)
    assert status(run) == {"acme-addon": "7.0.1", "restapi": "7.0.39", "step-core": "9.0.0"}
    assert tree_digest(current) == before_prepare


def test_a_snapshot_removes_components_it_does_not_list(
    installed: Path, run: Run, tmp_path: Path
) -> None:
    snap = tmp_path / "core-only.spr"
    snap.write_text(
        json.dumps(
            {"format": "steppatch-recipe/1", "kind": "snapshot",
             "components": {"step-core": "==9.0.0"}}
        )
    )
    run("apply", snap)
    assert status(run) == {"step-core": "9.0.0"}
    assert not (installed / "current/lib/restapi").exists()


def test_showupdates_lists_newer_versions_with_notes(installed: Path, run: Run) -> None:
    data = json.loads(run("showupdates", "--json").out)["components"]
    assert [a["version"] for a in data["restapi"]["available"]] == ["7.0.40"]
    assert "Fixes paging" in data["restapi"]["available"][0]["notes"]
    assert data["acme-addon"]["available"] == []
    text = run("showupdates").out
    assert "steppatch apply to:restapi/7.0/restapi-7.0.40.spr" in text


def test_the_home_flag_and_the_current_directory(repo: Path, run: Run, tmp_path: Path) -> None:
    other = tmp_path / "other"
    run("--home", other, "init", "--updates", repo.as_uri(), "--trust-on-first-use")
    run("--home", other, "apply", "to:step-core/latest.spr")
    assert json.loads(run("--home", other, "status", "--json").out)["components"] == {
        "step-core": "9.0.5"
    }
    # without --home and STEPPATCH_HOME pointing elsewhere the flag wins; cwd is the last resort
    assert (other / "current/VERSION").read_text() == "STEP core 9.0.5\n"


# --- bad input: one line on stderr, a non-zero exit, nothing changed ---------------------------


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda t: t.replace('name = "restapi"\n', ""), "'name'"),
        (lambda t: t.replace('version = "7.0.40"', 'version = "seven"'), "'version'"),
        (lambda t: t.replace('name = "restapi"', 'name = "Rest API"'), "'name'"),
        (lambda t: t.replace('">=9.0.5,<10"', '"=>9"'), "'dependencies.step-core'"),
        (lambda t: t.replace("hot = true", 'hot = "yes"'), "'hot'"),
        (lambda t: "colour = 1\n" + t, "'colour'"),
    ],
)
def test_bad_component_toml_names_file_and_field(
    repo: Path, sources: Path, run: Run, edit: object, field: str
) -> None:
    toml = sources / "restapi-7.0.40/component.toml"
    toml.write_text(edit(toml.read_text()))  # type: ignore[operator]
    before = tree_digest(repo)
    line = one_line(run("repo", "add", repo, sources / "restapi-7.0.40", expect=2).err)
    assert str(toml) in line and field in line
    assert tree_digest(repo) == before


def test_symlink_out_of_the_source_tree_is_refused(repo: Path, sources: Path, run: Run) -> None:
    bad = sources / "acme-addon-7.0.1"
    (bad / "component.toml").write_text(
        (bad / "component.toml").read_text().replace("7.0.1", "7.0.2")
    )
    os.symlink("../../../../../etc/passwd", bad / "files/lib/addons/acme/passwd")
    before = tree_digest(repo)
    line = one_line(run("repo", "add", repo, bad, expect=2).err)
    assert "points outside files/" in line
    assert tree_digest(repo) == before


def test_unknown_reference_names_it_and_the_repository(installed: Path, run: Run) -> None:
    before = home_digest(installed)
    line = one_line(run("apply", "to:restapi/7.0/restapi-7.0.99.spr", expect=3).err)
    assert "to:restapi/7.0/restapi-7.0.99.spr" in line
    assert (installed.parent / "repo").as_uri() in line
    assert home_digest(installed) == before


def test_unsatisfiable_dependency_names_components_and_ranges(installed: Path, run: Run) -> None:
    before = home_digest(installed)
    err = run(
        "apply", "to:restapi/7.0/restapi-7.0.40.spr,to:step-core/9.0/step-core-9.0.0.spr",
        expect=2,
    ).err
    assert "Traceback" not in err
    assert "restapi" in err and "step-core" in err and ">=9.0.5" in err
    assert home_digest(installed) == before


def test_tampered_object_is_refused_and_the_cache_entry_removed(
    installed: Path, run: Run
) -> None:
    repo = installed.parent / "repo"
    listed = current_index(repo)["components"]["restapi"]["7.0.40"]
    manifest = json.loads((repo / listed["manifest"]["path"]).read_text())
    version_file = next(e for e in manifest["entries"] if e["path"] == "lib/restapi/VERSION")
    obj = repo / "objects" / version_file["sha256"][:2] / version_file["sha256"]
    os.chmod(obj, 0o644)
    obj.write_bytes(b"restapi 7.0.66\n")  # same length, other bytes
    before = home_digest(installed)
    line = one_line(run("apply", "to:restapi/7.0/restapi-7.0.40.spr", expect=3).err)
    assert version_file["sha256"] in line
    assert home_digest(installed) == before
    cache = installed / ".steppatch/cache/objects"
    assert not (cache / version_file["sha256"][:2] / version_file["sha256"]).exists()


def test_corrupt_cache_entry_is_removed_and_nothing_installed(installed: Path, run: Run) -> None:
    cache = installed / ".steppatch/cache/objects"
    cached_before = {p for p in cache.rglob("*") if p.is_file()}
    run("prepare", "to:restapi/7.0/restapi-7.0.40.spr")
    victim = min(p for p in cache.rglob("*") if p.is_file() and p not in cached_before)
    os.chmod(victim, 0o644)
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    before = home_digest(installed)
    line = one_line(run("apply", "to:restapi/7.0/restapi-7.0.40.spr", expect=3).err)
    assert "cached object" in line
    assert home_digest(installed) == before
    assert not victim.exists()
    run("apply", "to:restapi/7.0/restapi-7.0.40.spr")  # fetched anew, then installed
    assert status(run)["restapi"] == "7.0.40"


@pytest.mark.parametrize(
    "content", [b"hello", b'{"format": "steppatch-recipe/1", "kind": "release"}', b"\x00\xff"]
)
def test_a_file_that_is_not_a_recipe_is_refused(
    installed: Path, run: Run, tmp_path: Path, content: bytes
) -> None:
    bad = tmp_path / "bad.spr"
    bad.write_bytes(content)
    before = home_digest(installed)
    line = one_line(run("apply", bad, expect=2).err)
    assert str(bad) in line and "not a valid recipe" in line
    assert home_digest(installed) == before


def test_verbose_shows_the_traceback(installed: Path, run: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.spr"
    bad.write_bytes(b"hello")
    assert "Traceback" in run("-v", "apply", bad, expect=2).err


def test_commands_outside_a_home_say_so(run: Run, tmp_path: Path) -> None:
    line = one_line(run("--home", tmp_path / "nowhere", "status", expect=5).err)
    assert "not a steppatch home" in line


def test_python_m_and_console_script_agree(installed: Path, run: Run) -> None:
    exe = Path(sys.executable).with_name("steppatch")
    done = subprocess.run(
        [exe, "--home", str(installed), "status", "--json"], capture_output=True, text=True,
        check=True,
    )
    assert json.loads(done.stdout) == json.loads(run("status", "--json").out)


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_is_the_installed_distributions(flag: str, run: Run) -> None:
    from importlib.metadata import version

    result = run(flag)
    assert result.out == f"steppatch {version('steppatch')}\n"
    assert result.err == ""
