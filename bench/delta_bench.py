"""Deltas side by side: steppatch's delta (``steppatch.delta``) against the whole file, rsync
(``--no-whole-file --stats`` between two directories: the rsync algorithm, as over a network)
and ``zstd --patch-from``. Bytes and seconds, medians of ``--runs``.

"apply cpu s": the CPU seconds of the apply, all threads and child processes (wall seconds
depend on what else the machine runs; this much less). Cases: (a) a random file of
``--size-mib`` (256 MiB) with 1% changed in one run, and in 100 scattered places; (b) two
consecutive releases of large wheels (``pip download --no-deps``, cached under
``bench/.cache``), each wheel taken as one component file; (c) text: the ``.py`` files of the
two pandas wheels, concatenated (a text file of a release and its successor).

``--memory-gib N`` instead measures the peak anonymous memory (RssAnon, sampled) of a delta
between two random files of N GiB, made and applied in a child process.

Run: ``.venv/bin/python bench/delta_bench.py`` (about 5 minutes; needs rsync and zstd).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from steppatch import evolve
from steppatch.delta import decode, encode
from steppatch.limits import Limits
from steppatch.repo._deltas import redeflate_budget, zip_frame_levels
from steppatch.zipdelta import apply_zip_delta, expand, is_zip, make_delta, rebuild

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
MiB = 1024 * 1024
WHEELS = [
    ("botocore", "1.35.0", "1.35.1"),
    ("numpy", "2.2.4", "2.2.5"),
    ("pandas", "2.2.2", "2.2.3"),
]


def wheel(name: str, version: str) -> Path:
    """The wheel of ``name==version`` for CPython 3.11 on x86_64 Linux, downloaded once."""
    CACHE.mkdir(exist_ok=True)
    found = sorted(CACHE.glob(f"{name}-{version}-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
             "-d", str(CACHE), f"{name}=={version}"],
            check=True,
        )  # fmt: skip
        found = sorted(CACHE.glob(f"{name}-{version}-*.whl"))
    return found[0]


def text_of(whl: Path) -> bytes:
    with zipfile.ZipFile(whl) as z:
        return b"".join(z.read(n) for n in sorted(z.namelist()) if n.endswith(".py"))


#: the CPU seconds (this process's threads and its children) of the last ``timed`` call
LAST_CPU = [0.0]


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], object]) -> float:
    t0, c0 = time.perf_counter(), _cpu()
    fn()
    LAST_CPU[0] = _cpu() - c0
    return time.perf_counter() - t0


def drop(path: Path) -> None:
    path.unlink(missing_ok=True)


def ours(old: Path, new: Path, work: Path) -> tuple[int, float, float]:
    size = new.stat().st_size
    out = work / "delta"
    level = Limits().delta_level  # what repo add uses
    enc = timed(lambda: encode(new, out, base=old, max_length=size + 1, level=level))
    length = out.stat().st_size
    dec = timed(lambda: decode(out, work / "rebuilt", base=old, length=size))
    assert (work / "rebuilt").read_bytes() == new.read_bytes()
    drop(work / "rebuilt")
    drop(out)
    return length, enc, dec


def zstd_patch(old: Path, new: Path, work: Path) -> tuple[int, float, float]:
    out = work / "p.zst"
    enc = timed(lambda: subprocess.run(
        ["zstd", "-q", "-f", "-3", f"--patch-from={old}", str(new), "-o", str(out)], check=True,
        stderr=subprocess.DEVNULL,  # "long mode automatically triggered", every run
    ))  # fmt: skip
    length = out.stat().st_size
    dec = timed(lambda: subprocess.run(
        ["zstd", "-q", "-f", "-d", "--memory=2048MB", f"--patch-from={old}", str(out),
         "-o", str(work / "rebuilt")], check=True,
    ))  # fmt: skip
    assert (work / "rebuilt").read_bytes() == new.read_bytes()
    drop(work / "rebuilt")
    drop(out)
    return length, enc, dec


def stat(text: str, name: str) -> int:
    m = re.search(rf"{name}: ([\d,.]+)", text)
    assert m is not None, text
    return int(m.group(1).replace(",", "").replace(".", ""))


def rsync(old: Path, new: Path, work: Path) -> tuple[int, float, float]:
    src, dst = work / "src", work / "dst"
    for d in (src, dst):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    shutil.copyfile(new, src / "f")
    shutil.copyfile(old, dst / "f")
    os.utime(src / "f", (1, 1))  # differs from dst's: rsync must look at the content
    t0 = time.perf_counter()
    done = subprocess.run(
        ["rsync", "-a", "--no-whole-file", "--stats", f"{src}/", f"{dst}/"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    sent, received = (stat(done.stdout, f"Total bytes {w}") for w in ("sent", "received"))
    assert (dst / "f").read_bytes() == new.read_bytes()
    shutil.rmtree(src)
    shutil.rmtree(dst)
    # Both directions cross the link: the receiver's block checksums and the sender's data.
    return sent + received, seconds, 0.0


def ours_zip(old: Path, new: Path, work: Path) -> tuple[int, float, float]:
    """The version 2 zip delta ``repo add`` also publishes for archives: make (choose the
    members to re-deflate within the budget, two frames) and apply as a home does
    (``apply_zip_delta``: inflate the old members re-deflated ones are made from, decode,
    deflate those members in threads)."""
    if not (is_zip(old) and is_zip(new)):
        return 0, 0.0, 0.0
    limits, size = Limits(), new.stat().st_size
    if ZIP_FRACTION is not None:
        limits = evolve(limits, zip_redeflate_fraction=ZIP_FRACTION)
    made: list[tuple[int, int] | None] = []
    enc = timed(lambda: made.append(make_delta(
        old, new, work / "zd", max_length=size, max_member_bytes=limits.max_zip_member_bytes,
        budget=redeflate_budget(size, limits), level=limits.delta_level,
        frame_levels=zip_frame_levels(size, limits),
    )))  # fmt: skip
    assert made[0] is not None
    length, expanded = made[0]
    dec = timed(lambda: apply_zip_delta(
        work / "zd", old, work / "rebuilt", length=size, expanded=expanded,
        max_member_bytes=limits.max_zip_member_bytes, max_expanded=limits.max_zip_expanded_bytes,
        threads=limits.zip_rebuild_threads, max_pending_bytes=limits.zip_rebuild_pending_bytes,
    ))  # fmt: skip
    assert (work / "rebuilt").read_bytes() == new.read_bytes()
    for p in ("zd", "rebuilt"):
        drop(work / p)
    return length, enc, dec


def ours_zip_v1(old: Path, new: Path, work: Path) -> tuple[int, float, float]:
    """The version 1 zip delta (published before 2026-12-06, still applied): make (expand
    both, delta) and apply (expand the base, decode, deflate every changed member again)."""
    if not (is_zip(old) and is_zip(new)):
        return 0, 0.0, 0.0
    size, level, member = new.stat().st_size, Limits().delta_level, Limits().max_zip_member_bytes

    def make() -> None:
        expand(old, work / "eb", max_member_bytes=member, levels=False)
        expand(new, work / "et", max_member_bytes=member)
        encode(work / "et", work / "zd", base=work / "eb", max_length=size, level=level)

    enc = timed(make)
    length, expanded = (work / "zd").stat().st_size, (work / "et").stat().st_size
    for p in ("eb", "et"):
        drop(work / p)

    def apply() -> None:
        expand(old, work / "eb", max_member_bytes=member, levels=False)
        decode(work / "zd", work / "et", base=work / "eb", length=expanded)
        rebuild(work / "et", work / "rebuilt", size, old)

    dec = timed(apply)
    assert (work / "rebuilt").read_bytes() == new.read_bytes()
    for p in ("eb", "et", "zd", "rebuilt"):
        drop(work / p)
    return length, enc, dec


#: ``--zip-fraction``: another ``Limits.zip_redeflate_fraction`` for the zip delta
ZIP_FRACTION: float | None = None

METHODS = {
    "steppatch delta": ours,
    "steppatch zip delta": ours_zip,
    "zip delta v1": ours_zip_v1,
    "zstd --patch-from": zstd_patch,
    "rsync": rsync,
}


def run_case(name: str, old: Path, new: Path, work: Path, runs: int) -> list[str]:
    size = new.stat().st_size
    results = {}
    for method, fn in METHODS.items():
        samples = []
        for _ in range(runs):
            length, enc, dec = fn(old, new, work)
            # the apply is each method's last timed call (rsync's is in its make)
            samples.append((length, enc, dec, LAST_CPU[0] if dec else 0.0))
        results[method] = (
            statistics.median(s[0] for s in samples),
            statistics.median(s[1] for s in samples),
            statistics.median(s[2] for s in samples),
            statistics.median(s[3] for s in samples),
        )
    base = results["rsync"][0]
    lines = [f"{name}  ({size / MiB:.1f} MiB)"]
    lines.append(f"  {'method':22}{'bytes':>12}{'x rsync':>9}{'make s':>9}{'apply s':>9}"
                 f"{'apply MB/s':>12}{'apply cpu s':>12}")  # fmt: skip
    lines.append(f"  {'whole file':22}{size:>12}{size / base:>9.2f}")
    for method, (length, enc, dec, cpu) in results.items():
        if not length:
            continue  # not an archive
        rate = f"{size / dec / 1e6:>12.0f}" if dec else f"{'':>12}"
        apply = f"{dec:>9.3f}" if dec else f"{'(in make)':>9}"
        used = f"{cpu:>12.3f}" if dec else ""
        lines.append(f"  {method:22}{int(length):>12}{length / base:>9.2f}{enc:>9.3f}{apply}{rate}"
                     f"{used}")  # fmt: skip
    return lines


def random_case(work: Path, size: int, places: int) -> tuple[Path, Path]:
    rng = random.Random(places)
    old = work / f"old-{places}"
    new = work / f"new-{places}"
    data = bytearray(os.urandom(size))
    old.write_bytes(data)
    width = size // 100 // places
    for i in range(places):
        p = (i * size // places) + rng.randrange(size // places - width)
        data[p : p + width] = rng.randbytes(width)
    new.write_bytes(data)
    return old, new


def memory(gib: int) -> None:
    with tempfile.TemporaryDirectory(dir=HERE / ".cache") as tmp:
        work = Path(tmp)
        old, new = random_case(work, gib * 1024 * MiB, 100)
        code = (
            "import sys; from pathlib import Path; from steppatch.delta import encode, decode\n"
            "w = Path(sys.argv[1]); n = (w / sys.argv[3]).stat().st_size\n"
            "if sys.argv[4] == 'make':\n"
            "    encode(w / sys.argv[3], w / 'd', base=w / sys.argv[2], max_length=n)\n"
            "else:\n"
            "    decode(w / 'd', w / 'out', base=w / sys.argv[2], length=n)\n"
        )
        for step in ("make", "apply"):
            proc = subprocess.Popen([sys.executable, "-c", code, str(work), old.name, new.name,
                                     step])  # fmt: skip
            peak_anon = peak_rss = 0
            while proc.poll() is None:
                try:
                    status = Path(f"/proc/{proc.pid}/status").read_text()
                except OSError:
                    break
                anon = re.search(r"RssAnon:\s+(\d+)", status)
                rss = re.search(r"VmRSS:\s+(\d+)", status)
                if anon and rss:
                    peak_anon = max(peak_anon, int(anon.group(1)))
                    peak_rss = max(peak_rss, int(rss.group(1)))
                time.sleep(0.005)
            assert proc.wait() == 0
            print(f"{gib} GiB {step}: peak anonymous memory {peak_anon / 1024:.0f} MiB, "
                  f"peak resident (with mapped files) {peak_rss / 1024:.0f} MiB")  # fmt: skip
        print(f"delta {(work / 'd').stat().st_size} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--memory-gib", type=int, default=0)
    parser.add_argument("--only", default="", help="a, b or c")
    parser.add_argument("--zip-fraction", type=float, default=None,
                        help="Limits.zip_redeflate_fraction for the zip delta (default: Limits())")
    args = parser.parse_args()
    global ZIP_FRACTION
    ZIP_FRACTION = args.zip_fraction
    for tool in ("rsync", "zstd"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (apt-get install {tool})")
    if args.memory_gib:
        memory(args.memory_gib)
        return
    report: list[str] = []
    with tempfile.TemporaryDirectory(dir=CACHE if CACHE.is_dir() else None) as tmp:
        work = Path(tmp)
        if args.only in ("", "a"):
            for places in (1, 100):
                old, new = random_case(work, args.size_mib * MiB, places)
                where = "one run" if places == 1 else f"{places} places"
                report += run_case(f"(a) random, 1% changed in {where}", old, new, work, args.runs)
                drop(old)
                drop(new)
        if args.only in ("", "b", "c"):
            pairs = [(n, wheel(n, a), wheel(n, b)) for n, a, b in WHEELS]
        if args.only in ("", "b"):
            for _name, old, new in pairs:
                report += run_case(f"(b) {old.name} -> {new.name}", old, new, work, args.runs)
        if args.only in ("", "c"):
            _name, old_whl, new_whl = pairs[-1]
            (work / "old.txt").write_bytes(text_of(old_whl))
            (work / "new.txt").write_bytes(text_of(new_whl))
            report += run_case(
                "(c) text: the .py files of pandas 2.2.2 -> 2.2.3",
                work / "old.txt", work / "new.txt", work, args.runs,
            )  # fmt: skip
    out = io.StringIO()
    print("\n".join(report), file=out)
    print(out.getvalue())


if __name__ == "__main__":
    main()
