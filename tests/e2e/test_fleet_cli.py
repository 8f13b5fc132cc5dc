"""``steppatch mirror fleet``: the fleet of a store on disk, as lines and as steppatch-fleet/1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.version import Version

from steppatch import Repository
from steppatch.model import RecipeKind
from steppatch.recipe import dump_recipe, pinned_recipe
from tests.e2e.conftest import Run


@pytest.fixture
def repo(examples_repo: Repository) -> Repository:
    """The example components, published."""
    return examples_repo


def origin_config(tmp_path: Path, repo: Repository, store: str = "store") -> Path:
    config = tmp_path / "mirror.toml"
    config.write_text(
        f'store = "{store}"\n[tls]\ncert = "s.crt"\nkey = "s.key"\nclient_ca = "ca.crt"\n'
        f'[origin]\nrepository = "{repo.root}"\n'
    )
    return config


def stored(store: Path, system: str, stamp: str, versions: dict[str, str]) -> None:
    folder = store / "snapshots" / system
    folder.mkdir(parents=True, exist_ok=True)
    body = dump_recipe(pinned_recipe(
        RecipeKind.SNAPSHOT, {n: Version(v) for n, v in versions.items()}, system=system))
    (folder / f"{stamp}.000000Z-0123abcd.spr").write_bytes(body)
    (folder / "latest.spr").write_bytes(body)


def test_fleet_lines_and_json(run: Run, tmp_path: Path, repo: Repository) -> None:
    config = origin_config(tmp_path, repo)
    stored(tmp_path / "store", "prod-eu", "20261206T080000",
           {"restapi": "7.0.39", "step-core": "9.0.0"})
    stored(tmp_path / "store", "old-eu", "20250101T000000", {"step-core": "9.0.5"})
    text = run("mirror", "fleet", "--config", config).out
    assert text.splitlines()[0].startswith("0 up-to-date, 1 behind, 1 stale")
    assert "prod-eu: behind, 2 component(s), 2 behind" in text
    # step-core 9.0.5 is not hot: the one line that takes both is not --hot
    assert "  steppatch apply to:restapi/7.0/restapi-7.0.40.spr to:step-core/9.0/" in text
    doc = json.loads(run("mirror", "fleet", "--config", config, "--json").out)
    assert doc["format"] == "steppatch-fleet/1" and doc["indexed"] is True
    assert [(s["name"], s["state"]) for s in doc["systems"]] == [
        ("old-eu", "stale"), ("prod-eu", "behind")]


def test_a_store_that_does_not_exist_is_an_error_and_is_not_made(
    run: Run, tmp_path: Path, repo: Repository
) -> None:
    config = origin_config(tmp_path, repo, store="nowhere")
    result = run("mirror", "fleet", "--config", config, "--json", expect=2)
    assert "store" in result.err and "does not exist" in result.err and result.out == ""
    assert not (tmp_path / "nowhere").exists()


def test_an_unreadable_snapshot_is_reported_the_rest_listed(
    run: Run, tmp_path: Path, repo: Repository
) -> None:
    config = origin_config(tmp_path, repo)
    stored(tmp_path / "store", "prod-eu", "20261206T080000", {"restapi": "7.0.40",
                                                              "step-core": "9.0.5"})
    broken = tmp_path / "store/snapshots/broken-eu"
    broken.mkdir()
    (broken / "latest.spr").write_bytes(b'{"format": "steppatch-recipe/1", "kind": "release"}')
    result = run("mirror", "fleet", "--config", config)
    assert "prod-eu: up-to-date" in result.out
    assert "broken-eu: unreadable" in result.err and "kind" in result.err
    doc = json.loads(run("mirror", "fleet", "--config", config, "--json").out)
    assert [u["name"] for u in doc["unreadable"]] == ["broken-eu"]
    assert (broken / "latest.spr").read_bytes().startswith(b'{"format"')  # left as it was
