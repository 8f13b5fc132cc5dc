"""Deltas through the CLI: ``prepare --json`` reports bytes per route, ``-v`` says when a delta
fell back to the whole object."""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.builders import component, repository
from tests.e2e.conftest import Run


def _repo(tmp_path: Path) -> Path:
    rng = random.Random(3)
    old = rng.randbytes(300_000)
    new = old[:1000] + rng.randbytes(500) + old[1500:]
    src = tmp_path / "src"
    return repository(
        tmp_path,
        component(src, "app", "1.0", {"app.bin": old}),
        component(src, "app", "1.1", {"app.bin": new}),
    ).root


def test_prepare_json_reports_bytes_per_route(tmp_path: Path, run: Run) -> None:
    repo = _repo(tmp_path)
    run("init", "--updates", repo.as_uri(), "--root", repo / "root.json")
    run("apply", "to:app/1.0/app-1.0.spr")
    plan = json.loads(run("prepare", "--json", "to:app/1.1/app-1.1.spr").out)
    assert plan["routes"]["delta"]["objects"] == 1
    assert 0 < plan["routes"]["delta"]["bytes"] < 10_000
    assert plan["routes"]["whole"] == {"objects": 0, "bytes": 0}
    assert plan["fallbacks"] == 0 and plan["download_bytes"] == 300_000


def test_verbose_says_a_damaged_delta_fell_back(tmp_path: Path, run: Run) -> None:
    repo = _repo(tmp_path)
    run("init", "--updates", repo.as_uri(), "--root", repo / "root.json")
    run("apply", "to:app/1.0/app-1.0.spr")
    (delta,) = [p for p in (repo / "deltas").rglob("*") if p.is_file()]
    delta.chmod(0o644)
    delta.write_bytes(delta.read_bytes()[:-3])
    result = run("-v", "prepare", "to:app/1.1/app-1.1.spr")
    assert "downloading it whole" in result.err
    assert "fell back to whole objects" in result.out
    run("apply", "to:app/1.1/app-1.1.spr")
    assert run("verify").code == 0
