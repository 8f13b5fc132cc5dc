"""What a home's records say about it, without the apply pipeline: its snapshot, and the
settings of ``config.properties`` its components deprecate. ``steppatch snapshot`` and
``status``-like commands need these, and not the solver or the transport."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from steppatch.clock import snapshot_stamp
from steppatch.configcheck import ConfigFinding, check_config
from steppatch.home._layout import HomeDir
from steppatch.model import FileEntry, HomeState, Recipe, RecipeKind
from steppatch.recipe import pinned_recipe

__all__ = ["config_findings", "thin_snapshot"]


def thin_snapshot(
    home: HomeDir,
    state: HomeState,
    now: dt.datetime,
    files: Mapping[str, FileEntry] | None = None,
) -> Recipe:
    """The snapshot of ``state`` on ``home`` made at ``now``: thin (component versions), or
    full with ``files`` (every managed entry)."""
    return pinned_recipe(
        RecipeKind.SNAPSHOT,
        state.versions(),
        name=f"snapshot-{home.config.system or 'home'}",
        system=home.config.system,
        created=snapshot_stamp(now),
        files=files,
        environment=home.environment_id(),
        fingerprint=state.fingerprint(),
    )


def config_findings(home: HomeDir, state: HomeState) -> list[ConfigFinding]:
    """Settings in ``home``'s ``config.properties`` the components of ``state`` deprecate or
    renamed."""
    text = home.config_properties()
    if text is None:
        return []
    return check_config(text, {n: c.config for n, c in state.components.items() if c.config})
