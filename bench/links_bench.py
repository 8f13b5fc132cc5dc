"""The symlink check of a planned tree against resolving the same links on disk.

A synthetic 100,000-entry tree (directories three levels deep, files, 10,000 symlinks: a tenth of
them directory links that others lead through, some chained) is checked by
``plan.check_symlinks`` in memory, then materialised in a scratch directory and every link
resolved with ``os.path.realpath``: what one would otherwise do to check the tree, and only after
writing it. Prints medians and the ratio.

    .venv/bin/python bench/links_bench.py --entries 100000 --links 10000 --runs 5
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from packaging.version import Version

from steppatch.limits import DEFAULT_LIMITS
from steppatch.model import EntryKind, FileEntry, Manifest
from steppatch.plan import check_symlinks, merge_manifests


def synthetic(entries: int, links: int, seed: int = 14) -> Manifest:
    rng = random.Random(seed)
    dirs = [f"t{a:02d}/s{b:02d}/u{c:02d}" for a in range(10) for b in range(10) for c in range(10)]
    out: list[FileEntry] = []
    seen: set[str] = set()
    for d in dirs:
        parts = d.split("/")
        for i in range(1, 4):
            p = "/".join(parts[:i])
            if p not in seen:
                seen.add(p)
                out.append(FileEntry(p, EntryKind.DIR, 0o755))
    files = entries - len(out) - links
    for i in range(files):
        out.append(FileEntry(f"{dirs[i % len(dirs)]}/f{i}", EntryKind.FILE, 0o644, 1, "a" * 64))
    ups: list[str] = []
    across: list[str] = []
    for i in range(links):
        d = dirs[rng.randrange(len(dirs))]
        path = f"{d}/l{i}"
        if i % 20 == 0:  # a directory link up to the root
            target = "../../.."
            ups.append(path)
        elif i % 10 == 0:  # a directory link across to another directory
            target = f"../../../{dirs[rng.randrange(len(dirs))]}"
            across.append(path)
        elif i % 10 < 4 and ups and across:  # through directory links, then out and down again
            up = ups[rng.randrange(len(ups))]
            via = across[rng.randrange(len(across))]
            target = f"../../../{up}/{via}/../../../{dirs[rng.randrange(len(dirs))]}/f{i}"
        elif i % 10 < 6 and i > 1:  # a chain: to another link
            target = f"../../../{rng.choice(out[-rng.randrange(1, 50) :]).path}"
        else:
            target = f"../../../{dirs[rng.randrange(len(dirs))]}/f{rng.randrange(files)}"
        out.append(FileEntry(path, EntryKind.SYMLINK, 0o777, target=target))
    out.sort(key=lambda e: e.path)
    return Manifest("big", Version("1.0"), tuple(out))


def in_memory(manifest: Manifest) -> tuple[float, float]:
    t0 = time.perf_counter()
    tree = merge_manifests({"big": manifest})
    t1 = time.perf_counter()
    check_symlinks(tree, {"big": manifest.version}, DEFAULT_LIMITS.max_symlink_hops)
    return t1 - t0, time.perf_counter() - t1


def on_disk(manifest: Manifest, scratch: Path) -> tuple[float, float]:
    root = scratch / "tree"
    t0 = time.perf_counter()
    for e in manifest.entries:
        p = root / e.path
        if e.kind is EntryKind.DIR:
            p.mkdir(parents=True, exist_ok=True)
        elif e.kind is EntryKind.SYMLINK:
            assert e.target is not None
            os.symlink(e.target, p)
        else:
            p.touch()
    t1 = time.perf_counter()
    real = os.path.realpath(root)
    for e in manifest.entries:
        if e.kind is EntryKind.SYMLINK:
            resolved = os.path.realpath(root / e.path)
            assert resolved == real or resolved.startswith(real + "/"), e
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--links", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    manifest = synthetic(args.entries, args.links)
    targets = [e.target for e in manifest.entries if e.target]
    segments = sum(t.count("/") + 1 for t in targets)
    print(f"{len(manifest.entries)} entries, {len(targets)} symlinks, {segments} target segments")
    merge, check = zip(*(in_memory(manifest) for _ in range(args.runs)), strict=True)
    write, resolve = [], []
    for _ in range(1):  # slow on a shared disk; one run is enough for the ratio
        with tempfile.TemporaryDirectory() as tmp:
            w, r = on_disk(manifest, Path(tmp))
            write.append(w)
            resolve.append(r)
    base = statistics.median(check)
    print(f"{'':40} seconds  ratio to check_symlinks")
    for name, values in [
        ("check_symlinks (in memory)", check),
        ("merge_manifests (for scale)", merge),
        ("os.path.realpath of each link on disk", resolve),
        ("materialising the tree first", write),
    ]:
        median = statistics.median(values)
        print(f"{name:40} {median:7.3f}  {median / base:10.1f}")


if __name__ == "__main__":
    main()
