"""Offline patch size against what changed and against the whole component.

Run: ``.venv/bin/python bench/patch_bench.py [--files 500] [--size 65536] [--changed 0.05]``.

An installation holds version 1 of a component of N files; version 2 changes a fraction of them.
The patch file made for that upgrade is compared with the bytes of the changed files (the
ideal: the target lacks nothing else) and with the whole component (what a naive bundle ships).
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
from pathlib import Path

from steppatch import Home, Repository


def source(root: Path, version: str, files: int, size: int, changed: set[int]) -> Path:
    src = root / f"src-{version}"
    for i in range(files):
        path = src / "files" / f"d{i % 10}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(random.Random(i + (10**6 if i in changed else 0)).randbytes(size))
    (src / "component.toml").write_text(f'name = "big"\nversion = "{version}"\n')
    return src


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--size", type=int, default=64 * 1024)
    parser.add_argument("--changed", type=float, default=0.05)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="steppatch-patch-"))
    try:
        changed = set(random.Random(3).sample(range(args.files), int(args.files * args.changed)))
        repo = Repository.init(work / "repo")
        repo.add(source(work, "1.0", args.files, args.size, set()))
        repo.add(source(work, "2.0", args.files, args.size, changed))
        root = (repo.root / "root.json").read_bytes()
        desk = Home.init(work / "desk", repo.root.as_uri(), root=root)
        inst = Home.init(work / "inst", (work / "nowhere").as_uri(), root=root, system="bench")
        desk.prepare_offline(["to:big/1.0/big-1.0.spr"], inst.snapshot(), work / "p1.spr")
        inst.apply_patch(work / "p1.spr")
        _info, size = desk.prepare_offline(
            ["to:big/latest.spr"], inst.snapshot(), work / "p2.spr"
        )
        ideal = len(changed) * args.size
        whole = args.files * args.size
        print(f"# {args.files} files x {args.size} bytes, {len(changed)} changed")
        print(f"{'':32} {'bytes':>12} {'patch / this':>13}")
        print(f"{'patch file':32} {size:>12} {1.0:>13.3f}")
        print(f"{'changed files (ideal)':32} {ideal:>12} {size / ideal:>13.3f}")
        print(f"{'whole component':32} {whole:>12} {size / whole:>13.3f}")
        print(f"{'patch - changed (metadata etc.)':32} {size - ideal:>12}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
