"""``steppatch gc`` and the sizes of ``status --json``, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.builders import component, repository
from tests.e2e.conftest import Run


def test_gc_through_the_cli(tmp_path: Path, run: Run, home: Path) -> None:
    src = tmp_path / "src"
    repo = repository(
        tmp_path,
        *(component(src, "core", f"{v}.0", {"core.txt": f"core {v}\n".encode() * 100})
          for v in range(1, 5)),
    ).root
    run("init", "--updates", repo.as_uri(), "--root", repo / "root.json")
    config = home / "steppatch.toml"
    config.write_text(config.read_text().replace("keep_history = 5", "keep_history = 2"))
    for v in range(1, 5):
        run("apply", f"to:core/{v}.0/core-{v}.0.spr")
    assert len(list((home / ".steppatch/history").glob("*.spr"))) == 2
    sizes = json.loads(run("status", "--json").out)["sizes"]
    assert set(sizes) == {"trees", "cache", "history", "manifests", "total"}
    assert sizes["cache"] > 0 and sizes["total"] == sum(
        v for k, v in sizes.items() if k != "total"
    )
    dry = json.loads(run("gc", "--keep", "0", "--dry-run", "--json").out)
    assert dry["dry_run"] and dry["removed"]["history"] == 2 and dry["freed_bytes"] > 0
    done = run("gc", "--keep", "0")
    assert done.out.startswith(f"gc: freed {dry['freed_bytes']} bytes: ")
    assert json.loads(run("gc", "--json").out)["freed_bytes"] == 0
    failed = run("rollback", expect=5)
    assert "pruned" in failed.err
    bad = run("gc", "--older-than", "soon", expect=2)
    assert "30d" in bad.err
