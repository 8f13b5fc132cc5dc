"""A home getting objects by their cheapest route, and falling back to whole objects whenever a
delta or compressed form fails. Real repository on disk, real home."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from steppatch import Home, Repository
from steppatch.formats import parse_transfers
from tests.builders import component, home_for, repository

V1 = "to:app/1.0/app-1.0.spr"
V2 = "to:app/1.1/app-1.1.spr"
SIZE = 400_000


def _contents(seed: int = 7) -> tuple[bytes, bytes, bytes]:
    rng = random.Random(seed)
    old = rng.randbytes(SIZE)
    new = bytearray(old)
    for _ in range(5):
        p = rng.randrange(SIZE - 300)
        new[p : p + 300] = rng.randbytes(300)
    text = b"".join(b"entry %d = value %d\n" % (i, i * 7) for i in range(30_000))
    return old, bytes(new), text


def _setup(tmp_path: Path) -> tuple[Repository, Home, bytes, bytes, bytes]:
    old, new, text = _contents()
    src = tmp_path / "src"
    repo = repository(
        tmp_path,
        component(src, "app", "1.0", {"lib/app.bin": old, "etc/a.txt": b"a\n"}),
        component(src, "app", "1.1", {"lib/app.bin": new, "etc/a.txt": b"a\n",
                                      "share/new.txt": text}),
    )  # fmt: skip
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    return repo, home, old, new, text


def _encoded_paths(repo: Repository) -> dict[str, list[Path]]:
    cv = repo.index.components["app"][Version("1.1")]
    assert cv.transfers is not None
    t = parse_transfers(repo.read(cv.transfers.path), "t")
    found: dict[str, list[Path]] = {"delta": [], "compressed": []}
    for ot in t.objects.values():
        for d in ot.deltas:
            found["delta"].append(repo.root / d.path)
        if ot.compressed is not None:
            found["compressed"].append(repo.root / ot.compressed.path)
    return found


def _cache_holds(home: Home, data: bytes) -> bool:
    sha = hashlib.sha256(data).hexdigest()
    return (home.files.root / ".steppatch/cache/objects" / sha[:2] / sha).exists()


def test_an_upgrade_downloads_a_delta_and_a_compressed_form(tmp_path: Path) -> None:
    _repo, home, _old, new, text = _setup(tmp_path)
    plan = home.prepare([V2])
    delta_objects, delta_bytes = plan.routes["delta"]
    assert delta_objects == 1 and delta_bytes < SIZE // 20
    comp_objects, comp_bytes = plan.routes["compressed"]
    assert comp_objects == 1 and comp_bytes < len(text) // 4
    assert plan.routes["whole"] == (0, 0) and plan.fallbacks == 0
    assert plan.download_bytes == SIZE + len(text)  # what the cache gains, as before
    assert _cache_holds(home, new) and _cache_holds(home, text)
    report = home.apply([V2])
    assert (home.files.root / "current/lib/app.bin").read_bytes() == new
    assert (home.files.root / "current/share/new.txt").read_bytes() == text
    assert report.plan.changes
    # Nothing of the deltas is left in the home.
    scratch = home.files.root / ".steppatch/cache/deltas"
    assert not scratch.exists() or not [p for p in scratch.rglob("*") if p.is_file()]


def _damage(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fault", ["damaged", "missing", "no-transfers", "drifted-base"])
def test_every_failure_falls_back_to_whole_objects(
    tmp_path: Path, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    repo, home, old, new, text = _setup(tmp_path)
    encoded = _encoded_paths(repo)
    if fault == "damaged":
        for p in encoded["delta"] + encoded["compressed"]:
            _damage(p)
    elif fault == "missing":
        shutil.rmtree(repo.root / "deltas")
    elif fault == "no-transfers":
        shutil.rmtree(repo.root / "transfers")
    elif fault == "drifted-base":
        live = home.files.root / "current/lib/app.bin"
        live.chmod(0o644)
        live.write_bytes(b"edited by hand" + old[14:])
    with caplog.at_level(logging.INFO, logger="steppatch.routes"):
        plan = home.prepare([V2])
    assert _cache_holds(home, new) and _cache_holds(home, text)
    if fault == "no-transfers":
        assert plan.routes["whole"] == (2, SIZE + len(text))
        assert "not used" in caplog.text
    elif fault == "drifted-base":
        assert plan.routes["compressed"][0] == 1
        assert plan.fallbacks == 1 and plan.routes["whole"] == (1, SIZE)
        assert "downloading it whole" in caplog.text
    else:
        assert plan.fallbacks == 2 and plan.routes["whole"] == (2, SIZE + len(text))
        assert "downloading it whole" in caplog.text
    home.apply([V2], sync=None)
    assert (home.files.root / "current/share/new.txt").read_bytes() == text


def test_a_failed_delta_falls_back_to_the_compressed_form(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A text file changed between versions: a delta and a compressed form are both offered.
    text = b"".join(b"line %d of the settings\n" % i for i in range(40_000))
    src = tmp_path / "src"
    repo = repository(
        tmp_path,
        component(src, "app", "1.0", {"t.txt": text}),
        component(src, "app", "1.1", {"t.txt": text.replace(b"line 7 ", b"LINE 7 ")}),
    )
    home = home_for(repo, tmp_path / "home")
    home.apply([V1])
    cv = repo.index.components["app"][Version("1.1")]
    assert cv.transfers is not None
    (item,) = parse_transfers(repo.read(cv.transfers.path), "t").objects.values()
    assert item.compressed is not None and item.deltas
    _damage(repo.root / item.deltas[0].path)
    with caplog.at_level(logging.INFO, logger="steppatch.routes"):
        plan = home.prepare([V2])
    assert plan.routes["compressed"] == (1, item.compressed.length)
    assert plan.routes["whole"] == (0, 0) and plan.fallbacks == 1
    assert "took compressed instead" in caplog.text


def test_a_base_held_only_in_the_cache_serves(tmp_path: Path) -> None:
    _repo, home, old, new, _text = _setup(tmp_path)
    home.files.cache_live_file("lib/app.bin", hashlib.sha256(old).hexdigest(), SIZE)
    live = home.files.root / "current/lib/app.bin"
    live.unlink()  # the live tree no longer holds the base; the cache does
    plan = home.prepare([V2])
    assert plan.routes["delta"][0] == 1 and plan.fallbacks == 0
    assert _cache_holds(home, new)


_KILL_SCRIPT = """
import sys
from steppatch import Home
Home.open(sys.argv[1]).apply([sys.argv[2]])
"""


def test_sigkill_while_reconstructing_leaves_old_or_new(tmp_path: Path) -> None:
    _repo, home, old, new, _text = _setup(tmp_path)
    env = {**os.environ, "STEPPATCH_TEST_KILL_AT": "reconstructed"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_SCRIPT, str(home.files.root), V2],
        env=env, capture_output=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    again = Home.open(home.files.root)
    assert again.status().versions() == {"app": Version("1.0")}
    assert (home.files.root / "current/lib/app.bin").read_bytes() == old
    assert not again.verify().changed
    partial = home.files.root / ".steppatch/cache/objects/.partial"
    assert list(partial.glob("*.decode-*"))  # killed with its output whole but not adopted
    # The reconstruction left no object: the cache holds only verified ones.
    for p in (home.files.root / ".steppatch/cache/objects").rglob("*"):
        if p.is_file() and ".partial" not in p.parts:
            assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name
    again.apply([V2])
    assert (home.files.root / "current/lib/app.bin").read_bytes() == new
    assert not partial.exists() or not list(partial.glob("*.decode-*"))
