"""Apply against what an operator would use instead: ``cp -a`` and ``rsync -a``.

Run: ``.venv/bin/python bench/apply_bench.py [--files N] [--size BYTES] [--runs R]``.

Two tasks, each timed R times (median reported), all tools side by side in one run:

- install: put version 1 of a component (N files) into an empty place (steppatch from a warm
  cache: ``prepare`` ran before, untimed).
- upgrade: bring that place from version 1 to version 2 (``--changed``, 10% by default, of the
  files changed), with the bytes each writes.

steppatch's times include what the others do not do: hashing every byte it installs (twice on
install: into the cache, then out of it), making the tree durable, an atomic switch. The
``; sync`` row shows ``cp -a`` made durable too. Dirty pages are flushed before every run. The
last table compares the bytes an upgrade downloads with the bytes that changed.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from steppatch import Home, Repository


def make_source(root: Path, version: str, files: int, size: int, changed: set[int]) -> Path:
    src = root / f"src-{version}"
    for i in range(files):
        path = src / "files" / f"d{i % 20:02d}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = i + (1_000_000 if i in changed else 0)
        path.write_bytes(random.Random(seed).randbytes(size))
        # Equal content, equal times: rsync's quick check then sees only the changed files.
        os.utime(path, (1_000_000_000 + seed, 1_000_000_000 + seed))
    (src / "component.toml").write_text(f'name = "bench"\nversion = "{version}"\n')
    return src


WRITTEN: dict[str, float] = {}


def _written() -> int:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_oublock
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock
    return (own + children) * 512


def timed(
    fn: Callable[[], object], runs: int, setup: Callable[[], None], label: str = ""
) -> float:
    """Median seconds of ``fn`` over ``runs``; with ``label``, also the median bytes written."""
    times, written = [], []
    for _ in range(runs):
        setup()
        os.sync()  # no run pays for the dirty pages of the one before
        before = _written()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
        written.append(_written() - before)
    if label:
        WRITTEN[label] = statistics.median(written)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32 * 1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--changed", type=float, default=0.10, help="fraction changed by v2")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="steppatch-bench-"))
    try:
        changed = set(
            random.Random(7).sample(range(args.files), max(1, int(args.files * args.changed)))
        )
        v1 = make_source(work, "1.0", args.files, args.size, set())
        v2 = make_source(work, "2.0", args.files, args.size, changed)
        repo = Repository.init(work / "repo")
        repo.add(v1)
        repo.add(v2)
        url = repo.root.as_uri()
        root = (repo.root / "root.json").read_bytes()
        rsync = shutil.which("rsync")
        dest = work / "dest"
        results: dict[str, dict[str, float]] = {"install": {}, "upgrade": {}}
        counter = iter(range(10**6))

        def fresh_home() -> Home:
            return Home.init(work / f"home-{next(counter)}", updates=url, root=root)

        def clear() -> None:
            shutil.rmtree(dest, ignore_errors=True)

        homes: list[Home] = []

        def new_home() -> None:
            homes.append(fresh_home())

        def fresh_prepared() -> None:
            for old in homes:
                shutil.rmtree(old.path, ignore_errors=True)
            homes.clear()
            new_home()
            homes[-1].prepare(["to:bench/1.0/bench-1.0.spr"])

        # steppatch: into an empty home from a warm cache (prepare ran before; not timed)
        results["install"]["steppatch apply"] = timed(
            lambda: homes[-1].apply(["to:bench/1.0/bench-1.0.spr"]), args.runs, fresh_prepared
        )
        results["install"]["cp -a"] = timed(
            lambda: subprocess.run(["cp", "-a", str(v1 / "files"), str(dest)], check=True),
            args.runs, clear,
        )
        results["install"]["cp -a; sync (durable, as steppatch)"] = timed(
            lambda: (
                subprocess.run(["cp", "-a", str(v1 / "files"), str(dest)], check=True),
                os.sync(),
            ),
            args.runs, clear,
        )
        if rsync:
            results["install"]["rsync -a"] = timed(
                lambda: subprocess.run(
                    [rsync, "-a", f"{v1 / 'files'}/", f"{dest}/"], check=True
                ),
                args.runs, clear,
            )

        def home_at_v1() -> None:
            for old in homes:
                shutil.rmtree(old.path, ignore_errors=True)
            homes.clear()
            new_home()
            homes[-1].apply(["to:bench/1.0/bench-1.0.spr"])

        plans = []
        results["upgrade"]["steppatch apply"] = timed(
            lambda: plans.append(homes[-1].apply(["to:bench/latest.spr"]).plan), args.runs,
            home_at_v1, label="steppatch apply",
        )

        def dest_at_v1() -> None:
            clear()
            subprocess.run(["cp", "-a", str(v1 / "files"), str(dest)], check=True)

        results["upgrade"]["cp -a (whole new tree)"] = timed(
            lambda: subprocess.run(["cp", "-a", str(v2 / "files"), str(work / "dest2")],
                                   check=True),
            args.runs, lambda: shutil.rmtree(work / "dest2", ignore_errors=True),
        )
        if rsync:
            results["upgrade"]["rsync -a --delete (in place)"] = timed(
                lambda: subprocess.run(
                    [rsync, "-a", "--delete", f"{v2 / 'files'}/", f"{dest}/"], check=True
                ),
                args.runs, dest_at_v1, label="rsync -a --delete (in place)",
            )
            results["upgrade"]["rsync -a --delete --checksum"] = timed(
                lambda: subprocess.run(
                    [rsync, "-a", "--delete", "--checksum", f"{v2 / 'files'}/", f"{dest}/"],
                    check=True,
                ),
                args.runs, dest_at_v1,
            )
        total = args.files * args.size
        print(f"# {args.files} files x {args.size} bytes = {total / 2**20:.1f} MiB; "
              f"upgrade changes {len(changed)} files; median of {args.runs} runs")
        for task, row in results.items():
            base = row["steppatch apply"]
            print(f"\n{task:<34} {'seconds':>9} {'ratio to steppatch':>19}")
            for tool, seconds in row.items():
                print(f"{tool:<34} {seconds:>9.3f} {seconds / base:>19.2f}")
        plan = plans[-1]
        print(f"\n{'upgrade: bytes written':<34} {'bytes':>12}")
        for tool, value in WRITTEN.items():
            print(f"{tool:<34} {int(value):>12}")
        print(f"\n{'upgrade: bytes downloaded':<34} {'bytes':>12}")
        print(f"{'changed bytes (ideal)':<34} {len(changed) * args.size:>12}")
        print(f"{'steppatch downloaded':<34} {plan.download_bytes:>12}")
        print(f"{'ratio':<34} {plan.download_bytes / (len(changed) * args.size):>12.2f}")
        if not rsync:
            print("\n(rsync not installed: its rows are missing)")
    finally:
        for dirpath, dirnames, _ in os.walk(work):
            for d in dirnames:
                os.chmod(Path(dirpath) / d, 0o755)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
