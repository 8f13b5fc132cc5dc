"""The console script loads the command line with the collector off, and runs the command with
it on (steppatch_cli.launch)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from steppatch_cli import app, launch


@pytest.fixture
def collector_restored() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


class _Command:
    def __init__(self) -> None:
        self.seen: list[tuple[bool, int, list[str]]] = []

    def __call__(self, args: list[str]) -> None:
        self.seen.append((gc.isenabled(), gc.get_freeze_count(), args))


def test_the_command_runs_with_the_collector_on_and_the_loaded_objects_frozen(
    monkeypatch: pytest.MonkeyPatch, collector_restored: None
) -> None:
    command = _Command()
    during_load: list[bool] = []

    def command_for() -> tuple[_Command, list[str]]:
        during_load.append(gc.isenabled())
        return command, ["status"]

    monkeypatch.setattr(app, "command_for", command_for)
    gc.enable()
    launch.main()
    assert during_load == [False]
    [(enabled, frozen, args)] = command.seen
    assert enabled and frozen > 0 and args == ["status"]


def test_a_collector_the_caller_turned_off_stays_off(
    monkeypatch: pytest.MonkeyPatch, collector_restored: None
) -> None:
    command = _Command()
    monkeypatch.setattr(app, "command_for", lambda: (command, []))
    gc.disable()
    launch.main()
    assert command.seen[0][0] is False


def test_a_failure_while_loading_turns_the_collector_back_on(
    monkeypatch: pytest.MonkeyPatch, collector_restored: None
) -> None:
    def broken() -> None:
        raise RuntimeError("no command line")

    monkeypatch.setattr(app, "command_for", broken)
    gc.enable()
    with pytest.raises(RuntimeError):
        launch.main()
    assert gc.isenabled()
