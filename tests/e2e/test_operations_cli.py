"""Issue 6 through the CLI: service control, hot apply, config checks, verify, rollback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.builders import component, repository, tree
from tests.e2e.conftest import Run
from tests.e2e.test_walking_skeleton import home_digest, one_line

HOT_NOTICE = "This upgrade can be applied without restarting. To do so, rerun with --hot."


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    repo = repository(
        tmp_path,
        component(src, "core", "1.0", {"core.txt": b"core 1\n"}),
        component(src, "core", "1.1", {"core.txt": b"core 1.1\n"}, hot=True),
        component(src, "core", "2.0", {"core.txt": b"core 2\n"}),
        component(
            src, "ui", "1.0", {"ui/index.html": b"<p>1</p>"}, deps={"core": ">=1.0"}, hot=True
        ),
        component(
            src, "ui", "1.1", {"ui/index.html": b"<p>1.1</p>"}, deps={"core": ">=1.0"},
            extra_toml=(
                '[config]\ndeprecated = ["ui.legacy"]\n[config.renamed]\n"ui.port" = "ui.http.port"'
            ),
        ),
    )
    return repo.root


@pytest.fixture
def home_with_service(repo: Path, run: Run, home: Path) -> Path:
    run("init", "--updates", repo.as_uri(), "--root", repo / "root.json")
    log = home / "service.log"
    config = home / "steppatch.toml"
    text = config.read_text()
    text = text.replace('start = ""', f'start = "echo start >> {log}"')
    text = text.replace('stop = ""', f'stop = "echo stop >> {log}"')
    text = text.replace('status = ""', 'status = "true"')
    config.write_text(text)
    run("apply", "to:core/1.0/core-1.0.spr,to:ui/1.0/ui-1.0.spr")
    log.write_text("")
    return home


def service_log(home: Path) -> list[str]:
    return (home / "service.log").read_text().split()


def test_a_normal_apply_stops_and_starts_the_application(
    home_with_service: Path, run: Run
) -> None:
    run("apply", "to:core/2.0/core-2.0.spr")
    assert service_log(home_with_service) == ["stop", "start"]


def test_prepare_offers_hot_and_hot_apply_does_not_restart(
    home_with_service: Path, run: Run
) -> None:
    assert HOT_NOTICE in run("prepare", "to:core/1.1/core-1.1.spr").out
    run("apply", "--hot", "to:core/1.1/core-1.1.spr")
    assert service_log(home_with_service) == []
    assert (home_with_service / "current/core.txt").read_text() == "core 1.1\n"


def test_hot_is_refused_before_anything_happens_when_a_change_needs_a_restart(
    home_with_service: Path, run: Run
) -> None:
    assert HOT_NOTICE not in run("prepare", "to:core/2.0/core-2.0.spr").out
    cache = sorted(p.name for p in (home_with_service / ".steppatch/cache").rglob("*"))
    before = home_digest(home_with_service)
    line = one_line(run("apply", "--hot", "to:ui/1.1/ui-1.1.spr", expect=2).err)
    assert "cannot be applied hot" in line and "ui" in line
    assert home_digest(home_with_service) == before
    assert sorted(p.name for p in (home_with_service / ".steppatch/cache").rglob("*")) == cache


def test_a_failed_stop_leaves_the_home_unchanged(home_with_service: Path, run: Run) -> None:
    config = home_with_service / "steppatch.toml"
    config.write_text(config.read_text().replace('stop = "echo', 'stop = "exit 1; echo'))
    before = tree(home_with_service / "current")
    line = one_line(run("apply", "to:core/2.0/core-2.0.spr", expect=5).err)
    assert "stop command" in line and "exit code 1" in line
    assert tree(home_with_service / "current") == before
    assert json.loads(run("status", "--json").out)["components"]["core"] == "1.0"


def test_a_failed_start_says_how_to_go_back(home_with_service: Path, run: Run) -> None:
    config = home_with_service / "steppatch.toml"
    config.write_text(config.read_text().replace('start = "echo', 'start = "exit 1; echo'))
    result = run("apply", "to:core/2.0/core-2.0.spr", expect=5)
    assert "did not start" in result.err and "steppatch rollback" in result.err
    assert json.loads(run("status", "--json").out)["components"]["core"] == "2.0"
    config.write_text(config.read_text().replace('start = "exit 1; echo', 'start = "echo'))
    run("rollback")
    assert json.loads(run("status", "--json").out)["components"]["core"] == "1.0"


def test_start_stop_restart(home_with_service: Path, run: Run) -> None:
    run("stop")
    run("start")
    run("restart")
    assert service_log(home_with_service) == ["stop", "start", "stop", "start"]


def test_config_checks_are_listed_and_block_start(home_with_service: Path, run: Run) -> None:
    (home_with_service / "config.properties").write_text(
        "# settings\nui.port = 8080\nui.legacy=true\nother=1\n"
    )
    result = run("apply", "to:ui/1.1/ui-1.1.spr")
    assert "line 2: ui.port: renamed by ui: rename it to ui.http.port" in result.out
    assert "line 3: ui.legacy: deprecated by ui: remove it" in result.out
    line = one_line(run("start", expect=5).err)
    assert "2 correction(s)" in line and "--force" in line
    run("start", "--force")
    (home_with_service / "config.properties").write_text("ui.http.port = 8080\n")
    run("start")


def test_verify_lists_drift_by_hash_and_exits_6(home_with_service: Path, run: Run) -> None:
    assert run("verify").code == 0
    core = home_with_service / "current/core.txt"
    stat = core.stat()
    core.write_text("core X\n")  # same size, same mtime: only the hash tells
    os.utime(core, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (home_with_service / "current/ui/index.html").unlink()
    (home_with_service / "current/extra.log").write_text("x")
    result = run("verify", "--json", expect=6)
    assert json.loads(result.out) == {
        "changed": ["core.txt"], "missing": ["ui/index.html"], "extra": ["extra.log"],
        "drift": True,
    }
    run("apply", "--sync", "--syncmode", "delete", "to:core/1.0/core-1.0.spr")
    assert run("verify").code == 0


def test_full_snapshot_lists_every_file(home_with_service: Path, run: Run, tmp_path: Path) -> None:
    snap = tmp_path / "full.spr"
    run("snapshot", "--full", snap)
    files = {e["path"]: e for e in json.loads(snap.read_text())["files"]}
    assert files["core.txt"]["type"] == "file" and len(files["core.txt"]["sha256"]) == 64
    (home_with_service / "current/core.txt").write_text("edited\n")
    result = run("verify", "--against", snap, "--json", expect=6)
    assert json.loads(result.out)["changed"] == ["core.txt"]


def test_syncmode_needs_sync(home_with_service: Path, run: Run) -> None:
    line = one_line(
        run("apply", "--syncmode", "delete", "to:core/1.0/core-1.0.spr", expect=2).err
    )
    assert "--syncmode goes with --sync" in line


def test_rollback_without_history(repo: Path, run: Run) -> None:
    run("init", "--updates", repo.as_uri(), "--root", repo / "root.json")
    assert "nothing to roll back" in one_line(run("rollback", expect=5).err)
