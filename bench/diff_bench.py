"""Drift check of a managed tree against ``rsync -a -n --delete --checksum``.

Run: ``.venv/bin/python bench/diff_bench.py [--files 100000] [--size 4096] [--runs 3]``.

A home with one component of N files is installed; 1% of its files are then edited, and the
drift is found by ``steppatch verify`` (library call: hash every file of the live tree, compare
with the manifests) and by rsync comparing the live tree with a pristine copy of the release
(``--checksum`` so that neither trusts size and time). Warm page cache: both read the files once
before timing. Cold: ``echo 3 > /proc/sys/vm/drop_caches`` before each run when allowed (root).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from steppatch import Home, Repository


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(fn: Callable[[], object], runs: int, cold: bool) -> float:
    times = []
    for _ in range(runs):
        if cold:
            drop_caches()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rsync = shutil.which("rsync")
    if rsync is None:
        raise SystemExit("rsync is needed for this benchmark: apt-get install rsync")
    work = Path(tempfile.mkdtemp(prefix="steppatch-diff-"))
    try:
        src = work / "src"
        for i in range(args.files):
            path = src / "files" / f"d{i % 100:03d}" / f"f{i:06d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(random.Random(i).randbytes(args.size))
        (src / "component.toml").write_text('name = "big"\nversion = "1.0"\n')
        repo = Repository.init(work / "repo")
        repo.add(src)
        home = Home.init(
            work / "home", updates=repo.root.as_uri(),
            root=(repo.root / "root.json").read_bytes(),
        )
        home.apply(["to:big/latest.spr"])
        live = home.path / "current"
        for i in random.Random(1).sample(range(args.files), args.files // 100):
            (live / f"d{i % 100:03d}" / f"f{i:06d}.bin").write_bytes(b"edited")
        pristine = src / "files"

        def ours() -> object:
            drift = Home.open(home.path).verify()
            assert len(drift.changed) == args.files // 100
            return drift

        def theirs() -> object:
            done = subprocess.run(
                [rsync, "-a", "-n", "--delete", "--checksum", "--out-format=%n",
                 f"{pristine}/", f"{live}/"],
                capture_output=True, text=True, check=True,
            )
            assert len(done.stdout.splitlines()) >= args.files // 100
            return done

        ours()
        theirs()  # warm both
        rows = {"warm": {}, "cold": {}}
        rows["warm"]["steppatch verify"] = timed(ours, args.runs, cold=False)
        rows["warm"]["rsync -a -n --delete --checksum"] = timed(theirs, args.runs, cold=False)
        cold = drop_caches()
        if cold:
            rows["cold"]["steppatch verify"] = timed(ours, args.runs, cold=True)
            rows["cold"]["rsync -a -n --delete --checksum"] = timed(theirs, args.runs, cold=True)
        print(f"# {args.files} files x {args.size} bytes, 1% edited; median of {args.runs} runs")
        for cache, row in rows.items():
            if not row:
                print(f"\n({cache} page cache: cannot drop caches here)")
                continue
            base = row["steppatch verify"]
            print(f"\n{cache + ' page cache':<34} {'seconds':>9} {'ratio to steppatch':>19}")
            for tool, seconds in row.items():
                print(f"{tool:<34} {seconds:>9.3f} {seconds / base:>19.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
