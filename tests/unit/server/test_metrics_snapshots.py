"""Prometheus text rendering; the thin-snapshot upload rules."""

from __future__ import annotations

import pytest
from packaging.version import Version

from steppatch import evolve
from steppatch.model import Recipe, RecipeKind
from steppatch.recipe import dump_recipe, pinned_recipe
from steppatch.server import SnapshotRefused
from steppatch.server._metrics import Metrics
from steppatch.server._snapshots import check_snapshot


def test_metrics_render() -> None:
    m = Metrics()
    m.describe("requests_total", "counter", "requests")
    m.inc("requests_total", method="GET", status="200")
    m.inc("requests_total", 2, method="GET", status="200")
    m.set("bulk_pending", 1.5, process='we"ird')
    m.gauge_fn("up", lambda: 1)
    text = m.render()
    assert "# TYPE steppatch_server_requests_total counter" in text
    assert 'steppatch_server_requests_total{method="GET",status="200"} 3' in text
    assert 'steppatch_server_bulk_pending{process="we\\"ird"} 1.5' in text
    assert "steppatch_server_up 1" in text
    assert m.total("requests_total") == 3


def snap(system: str = "prod-eu", **changes: object) -> bytes:
    recipe = pinned_recipe(RecipeKind.SNAPSHOT, {"restapi": Version("7.0.40")},
                           name="s", system=system)
    if changes:
        recipe = evolve(recipe, **changes)
    return dump_recipe(recipe)


def test_own_system_accepted() -> None:
    names, recipe = check_snapshot("prod-eu.spr", "prod-eu", snap())
    assert names == ["prod-eu"] and recipe.system == "prod-eu"
    names, _ = check_snapshot("your-mirror/prod-eu.spr", "your-mirror", snap())
    assert names == ["your-mirror", "prod-eu"]


@pytest.mark.parametrize(
    ("path", "owner", "body", "status"),
    [
        ("prod-eu.spr", None, snap(), 403),
        ("test-eu.spr", "prod-eu", snap("test-eu"), 403),
        ("prod-eu.spr", "prod-eu", snap("test-eu"), 400),
        ("prod-eu.json", "prod-eu", snap(), 400),
        ("a/b/c/d/e/f/g/h/prod-eu.spr", "a", snap(), 400),
        ("../prod-eu.spr", "prod-eu", snap(), 400),
        ("prod-eu.spr", "prod-eu", b"{}", 400),
        ("prod-eu.spr", "prod-eu", snap(kind=RecipeKind.RELEASE), 400),
        ("prod-eu.spr", "prod-eu", b" " * (5 * 1024 * 1024), 413),
    ],
)
def test_refused(path: str, owner: str | None, body: bytes, status: int) -> None:
    with pytest.raises(SnapshotRefused) as info:
        check_snapshot(path, owner, body)
    assert info.value.status == status


def test_ranges_are_not_thin_snapshots() -> None:
    from packaging.specifiers import SpecifierSet

    recipe = Recipe(kind=RecipeKind.SNAPSHOT, components={"restapi": SpecifierSet(">=7")},
                    system="prod-eu")
    with pytest.raises(SnapshotRefused) as info:
        check_snapshot("prod-eu.spr", "prod-eu", dump_recipe(recipe))
    assert info.value.status == 400
