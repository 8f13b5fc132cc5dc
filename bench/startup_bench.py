"""What every command pays before it does anything, against the framework's own floor.

Run: ``.venv/bin/python bench/startup_bench.py [--runs 15] [--files 20000]``.

Three tables, each side by side in one run, medians of ``--runs`` (the big ones of
``--big-runs``):

1. Commands that read only local files (``--version``, ``--help``, ``status`` in and outside a
   home, ``verify``, ``snapshot``, ``inspect``, ``mirrors``, ``nodes``), each a fresh process of
   the installed console script, against ``python -c "import typer"``: the floor of any Typer
   command line. Goal: each within 1.5x the floor.
2. ``steppatch verify`` of ``--files`` files of 1-30 KB (about 260 MB at 20,000), start-up
   included, against ``rsync -a -n --delete --checksum`` of the same tree against a pristine copy.
   Goal: no slower.
3. A fresh install from a warm cache (``prepare`` ran before, untimed): ``steppatch apply`` as a
   process against ``cp -a`` of the same files. Goal: within 1.3x.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from steppatch import Home, Repository

BIN = Path(sys.executable).parent
STEPPATCH = str(BIN / "steppatch")


def run(argv: Sequence[str], env: dict[str, str] | None = None, ok: Sequence[int] = (0,)) -> None:
    done = subprocess.run(argv, capture_output=True, env=env)
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()}")


def median_seconds(fn: Callable[[], object], runs: int, before: Callable[[], object] | None = None
                   ) -> float:
    times = []
    for _ in range(runs):
        if before is not None:
            before()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def children_cpu() -> float:
    """CPU seconds (user + system) of the children waited for so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def make_source(root: Path, name: str, version: str, files: int, sizes: tuple[int, int]) -> Path:
    src = root / f"{name}-{version}"
    rng = random.Random(f"{name}{version}")
    for i in range(files):
        path = src / "files" / f"d{i % 100:03d}" / f"f{i:06d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(*sizes)))
    (src / "component.toml").write_text(f'name = "{name}"\nversion = "{version}"\n')
    return src


def table(title: str, rows: dict[str, float], base: str) -> None:
    print(f"\n{title:<44} {'seconds':>9} {'ratio to ' + base:>24}")
    for label, seconds in rows.items():
        print(f"{label:<44} {seconds:>9.4f} {seconds / rows[base]:>24.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--big-runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--commands-only", action="store_true",
                        help="only the first table (the commands' start-up)")
    args = parser.parse_args()
    # As installed: bytecode written and used (a shell with PYTHONDONTWRITEBYTECODE would have
    # every command compile steppatch's sources again; an installed wheel has its .pyc files).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    import steppatch
    import steppatch_cli

    for package in (steppatch, steppatch_cli):
        run([sys.executable, "-m", "compileall", "-q", str(Path(package.__file__).parent)])
    work = Path(tempfile.mkdtemp(prefix="steppatch-startup-"))
    try:
        small = make_source(work, "small", "1.0", 50, (1024, 4096))
        repo = Repository.init(work / "repo")
        repo.add(small)
        url, root = repo.root.as_uri(), (repo.root / "root.json").read_bytes()
        home = Home.init(work / "home", updates=url, root=root)
        home.apply(["to:small/latest.spr"])
        home.snapshot(work / "snap.spr")
        patch = work / "patch.spz"
        other = Home.init(work / "other", updates=url, root=root)
        other.prepare_offline(["to:small/latest.spr"], home.snapshot(), patch)
        env = {**os.environ, "STEPPATCH_HOME": str(home.path)}
        outside = {**os.environ, "STEPPATCH_HOME": str(work / "nowhere")}
        commands: dict[str, tuple[list[str], dict[str, str], tuple[int, ...]]] = {
            'python -c "import typer" (floor)': ([sys.executable, "-c", "import typer"], env,
                                                 (0,)),
            "steppatch --version": ([STEPPATCH, "--version"], env, (0,)),
            "steppatch --help": ([STEPPATCH, "--help"], env, (0,)),
            "steppatch status (outside a home)": ([STEPPATCH, "status"], outside, (5,)),
            "steppatch status": ([STEPPATCH, "status"], env, (0,)),
            "steppatch verify (50 files)": ([STEPPATCH, "verify"], env, (0,)),
            "steppatch snapshot": ([STEPPATCH, "snapshot", str(work / "s.spr")], env, (0,)),
            "steppatch inspect": ([STEPPATCH, "inspect", str(patch)], env, (0,)),
            "steppatch mirrors": ([STEPPATCH, "mirrors"], env, (0,)),
            "steppatch nodes": ([STEPPATCH, "nodes"], env, (0,)),
        }
        for argv, e, ok in commands.values():  # warm the page cache and the bytecode
            run(argv, e, ok)
        rows = {}
        # interleaved rounds, so that a busy moment of the machine hits every command alike
        samples: dict[str, list[float]] = {label: [] for label in commands}
        # CPU seconds (user + system) too: on a shared machine a busy moment moves the wall
        # time of a run, much less the work it does
        cpu: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(args.runs):
            for label, (argv, e, ok) in commands.items():
                before = children_cpu()
                samples[label].append(median_seconds(lambda a=argv, e=e, ok=ok: run(a, e, ok), 1))
                cpu[label].append(children_cpu() - before)
        rows = {label: statistics.median(s) for label, s in samples.items()}
        print(f"# start-up, median of {args.runs} interleaved runs: wall time")
        table("command", rows, 'python -c "import typer" (floor)')
        print("\n# the same runs: CPU time (user + system)")
        table("command", {label: statistics.median(s) for label, s in cpu.items()},
              'python -c "import typer" (floor)')

        if args.commands_only:
            return
        big = make_source(work, "big", "1.0", args.files, (1024, 30 * 1024))
        size = sum(f.stat().st_size for f in (big / "files").rglob("*") if f.is_file())
        repo.add(big)
        big_home = Home.init(work / "big-home", updates=url, root=root)
        big_home.apply(["to:big/latest.spr"])
        live = big_home.path / "current"
        pristine = work / "pristine"
        shutil.copytree(live, pristine, symlinks=True)
        for i in random.Random(1).sample(range(args.files), args.files // 100):
            (live / f"d{i % 100:03d}" / f"f{i:06d}.bin").write_bytes(b"edited")
        big_env = {**os.environ, "STEPPATCH_HOME": str(big_home.path)}
        rsync = shutil.which("rsync")
        verify_rows = {
            "steppatch verify (a process)": median_seconds(
                lambda: run([STEPPATCH, "verify"], big_env, (6,)), args.big_runs,
            ),
        }
        if rsync:
            verify_rows["rsync -a -n --delete --checksum"] = median_seconds(
                lambda: run([rsync, "-a", "-n", "--delete", "--checksum",
                             f"{pristine}/", f"{live}/"]),
                args.big_runs,
            )
        print(f"\n# verify: {args.files} files of 1-30 KB ({size / 1e6:.0f} MB), 1% edited, "
              f"warm cache, median of {args.big_runs}")
        table("tool", verify_rows, "steppatch verify (a process)")

        counter = iter(range(10**6))
        fresh: list[Path] = []

        def prepared_home() -> None:
            for old in fresh:
                shutil.rmtree(old, ignore_errors=True)
            fresh.clear()
            h = Home.init(work / f"fresh-{next(counter)}", updates=url, root=root)
            h.prepare(["to:big/latest.spr"])
            fresh.append(h.path)

        dest = work / "dest"
        install_rows = {
            "steppatch apply (a process, warm cache)": median_seconds(
                lambda: run([STEPPATCH, "--home", str(fresh[-1]), "apply", "to:big/latest.spr"]),
                args.big_runs, prepared_home,
            ),
            "cp -a": median_seconds(
                lambda: run(["cp", "-a", str(pristine), str(dest)]),
                args.big_runs, lambda: shutil.rmtree(dest, ignore_errors=True),
            ),
        }
        print(f"\n# fresh install of the same {args.files} files, median of {args.big_runs}")
        table("tool", install_rows, "steppatch apply (a process, warm cache)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
