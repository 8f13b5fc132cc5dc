"""Collecting a home (``steppatch gc``) against ``rm -rf`` of the same files.

Run: ``.venv/bin/python bench/gc_bench.py [--files N] [--versions V] [--changed F] [--keep K]
[--runs R]``.

A home with ``V`` versions of one ``N``-file component applied in turn (``gc = "manual"``, so all
``V - 1`` replaced states stay in its history, their files in the cache; ``F`` of the files
change at every version) is copied, untimed, before every run. Then, side by side:

- ``steppatch gc --keep K`` (the command, a new process) and ``Home.gc`` (the library call):
  read the live state and the kept states' manifests, decide, remove the pruned history entries,
  their stored manifests and the objects no kept state needs;
- ``rm -rf`` of a directory holding exactly the files that collection removed (moved there,
  untimed, in a second copy): the least any removal of those bytes costs.

Medians of ``R`` runs; dirty pages are flushed before each. The issue's target: within 2x
``rm -rf``, for 50 states of a 20,000-file component (``--files 20000 --versions 51``).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from steppatch import Home, Repository


def write_source(src: Path, version: int, files: int, size: int, changed: float) -> None:
    """The component's source at ``version``: ``changed`` of the files differ from the last."""
    step = max(int(files * changed), 1)
    if not src.exists():
        for i in range(files):
            path = src / "files" / f"d{i % 50:02d}" / f"f{i:05d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(random.Random(i).randbytes(size))
    else:
        rng = random.Random(version)
        for i in rng.sample(range(files), step):
            path = src / "files" / f"d{i % 50:02d}" / f"f{i:05d}.bin"
            path.write_bytes(rng.randbytes(size))
    (src / "component.toml").write_text(f'name = "bench"\nversion = "{version}.0"\n')


def build_home(root: Path, files: int, size: int, versions: int, changed: float) -> Path:
    repo = Repository.init(root / "repo")
    src = root / "src"
    home = Home.init(
        root / "home", updates=repo.root.as_uri(), root=(repo.root / "root.json").read_bytes()
    )
    config = home.path / "steppatch.toml"
    config.write_text(config.read_text().replace('gc = "auto"', 'gc = "manual"'))
    for v in range(1, versions + 1):
        write_source(src, v, files, size, changed)
        repo.add(src)
        # A new Home each time: one update session (one index) per repository client.
        Home.open(home.path).apply([f"to:bench/{v}.0/bench-{v}.0.spr"])
        if v % 10 == 0:
            print(f"  built {v} of {versions} versions", flush=True)
    return home.path


def listing(root: Path) -> set[str]:
    found = set()
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


def sync() -> None:
    os.sync()


def timed(fn: Callable[[], object], setup: Callable[[], None], runs: int) -> float:
    times = []
    for _ in range(runs):
        setup()
        sync()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--versions", type=int, default=51, help="versions applied (states: -1)")
    parser.add_argument("--changed", type=float, default=0.1, help="files changed per version")
    parser.add_argument("--keep", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--build", type=Path, default=None,
        help="keep the built home in this directory and reuse it when it is there",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gc-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        build = args.build.absolute() if args.build is not None else root / "build"
        if (build / "home" / "steppatch.toml").is_file():
            base = build / "home"
            print(f"reusing the home built in {build}", flush=True)
        else:
            print(f"building a home: {args.versions} versions of {args.files} files "
                  f"({args.changed:.0%} changed each) ...", flush=True)
            base = build_home(build, args.files, args.size, args.versions, args.changed)
            print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
        work = root / "work"

        def fresh() -> None:
            if work.exists():
                subprocess.run(["rm", "-rf", str(work)], check=True)
            subprocess.run(["cp", "-a", str(base), str(work)], check=True)

        # What one collection removes (files and bytes), to give rm -rf the same work.
        fresh()
        before = listing(work)
        collected = Home.open(work).gc(keep=args.keep)
        gone = sorted(before - listing(work))
        gone_bytes = sum((base / p).lstat().st_size for p in gone)
        trash = work / "trash"

        def with_trash() -> None:
            fresh()
            for rel in gone:
                target = trash / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(work / rel, target)

        cli = [sys.executable, "-m", "steppatch_cli", "--home", str(work), "gc",
               "--keep", str(args.keep)]
        rows = {
            "steppatch gc (command)": timed(
                lambda: subprocess.run(cli, check=True, stdout=subprocess.DEVNULL), fresh,
                args.runs,
            ),
            "Home.gc (library call)": timed(
                lambda: Home.open(work).gc(keep=args.keep), fresh, args.runs
            ),
            "rm -rf (the same files)": timed(
                lambda: subprocess.run(["rm", "-rf", str(trash)], check=True), with_trash,
                args.runs,
            ),
        }
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"home: {args.versions - 1} history states of a {args.files}-file component, "
          f"keep {args.keep}")
    print(f"removed: {len(gone)} files, {gone_bytes} bytes "
          f"({collected.history} history entries, {collected.manifests} stored manifests, "
          f"{collected.objects} objects)")
    print()
    base_time = rows["rm -rf (the same files)"]
    print(f"{'':32} {'seconds':>8} {'ratio to rm -rf':>16}")
    for label, seconds in rows.items():
        print(f"{label:32} {seconds:8.3f} {seconds / base_time:16.2f}")


if __name__ == "__main__":
    main()
