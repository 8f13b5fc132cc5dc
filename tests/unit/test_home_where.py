"""Finding a home without loading the library: the one "is this a home" test
(:func:`steppatch.home.require_home`), the node's own name read from the config alone, and what a
command outside a home, or one that reads only the config, loads (start-up,
``bench/startup_bench.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steppatch.config import CONFIG_NAME, HomeConfig
from steppatch.errors import HomeError
from steppatch.home import HomeDir, require_home
from steppatch.paths import STATE_DIR


def _made(tmp_path: Path, node: str = "") -> HomeDir:
    return HomeDir.create(tmp_path / "home", HomeConfig("file:///nowhere", node=node))


@pytest.mark.parametrize("made", ["nothing", "state dir only", "config only"])
def test_a_directory_that_is_not_a_whole_home_is_refused_and_left_as_it_was(
    tmp_path: Path, made: str
) -> None:
    if made in ("state dir only",):
        (tmp_path / STATE_DIR).mkdir()
    if made in ("config only",):
        (tmp_path / CONFIG_NAME).write_text('updates = "file:///nowhere"\n')
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(HomeError, match="not a steppatch home") as caught:
        require_home(tmp_path)
    assert str(tmp_path) in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(HomeError, match="not a steppatch home"):
        HomeDir.open(tmp_path)  # the same test opens a home


def test_a_home_is_found_and_its_path_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _made(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert require_home(Path("home")) == home.root == (tmp_path / "home").absolute()
    assert HomeDir.open(Path("home")).root == home.root


def test_the_node_name_is_the_configs_else_the_host_name(tmp_path: Path) -> None:
    import socket

    assert _made(tmp_path / "a", node="app1").node_name() == "app1"
    assert _made(tmp_path / "b").node_name() == socket.gethostname() == os.uname().nodename


def _loaded_by(args: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
    """Run the CLI's ``main(args)`` in a fresh interpreter; its exit code and the steppatch
    modules it loaded."""
    script = (
        "import json, sys\n"
        "from steppatch_cli.app import main\n"
        "code = 0\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as e:\n"
        "    code = e.code or 0\n"
        "mods = sorted(m for m in sys.modules if m.startswith('steppatch'))\n"
        "print(json.dumps([code, mods]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    code, mods = json.loads(done.stderr.strip().splitlines()[-1])
    return code, mods


def test_outside_a_home_a_command_says_so_before_loading_the_home_facade(tmp_path: Path) -> None:
    env = {**os.environ, "STEPPATCH_HOME": str(tmp_path / "nowhere")}
    code, mods = _loaded_by(["status"], env)
    assert code == HomeError.exit_code
    assert "steppatch.updater" not in mods and "steppatch.home._layout" not in mods
    assert not (tmp_path / "nowhere").exists()


def test_commands_that_read_the_config_load_no_formats_model_or_cluster(tmp_path: Path) -> None:
    home = _made(tmp_path, node="app1")
    env = {**os.environ, "STEPPATCH_HOME": str(home.root)}
    for command in (["mirrors"], ["nodes"]):
        code, mods = _loaded_by(command, env)
        assert code == 0, command
        for heavy in ("steppatch.formats", "steppatch.model", "steppatch.plan",
                      "steppatch.store", "steppatch.cluster._cluster"):
            assert heavy not in mods, (command, heavy)
    code, mods = _loaded_by(["status"], env)
    assert code == 0
    assert "steppatch.formats" in mods  # it reads the state
    assert "steppatch.plan" not in mods and "steppatch.links" not in mods
