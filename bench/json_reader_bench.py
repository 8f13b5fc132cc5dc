"""The bounded JSON reader against plain ``json.loads``, on a large manifest.

Run: ``.venv/bin/python bench/json_reader_bench.py [ENTRIES]`` (default 300,000 entries).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable

from steppatch._json import _depth_within, parse_json


def best(f: Callable[[], object], n: int = 5) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    entries = [
        {"path": f"dir{i // 100}/sub/file-{i}.txt", "type": "file", "mode": "0644",
         "size": i * 13, "sha256": hashlib.sha256(str(i).encode()).hexdigest()}
        for i in range(count)
    ]  # fmt: skip
    doc = {"format": "steppatch-manifest/1", "component": "x", "version": "1.0", "entries": entries}
    data = json.dumps(doc, indent=2).encode()
    base = best(lambda: json.loads(data.decode()))
    print(f"{len(data) / 2**20:.1f} MiB, {count} entries")
    print(f"{'reader':40} {'best ms':>8} {'ratio':>6}")
    for name, f in [
        ("json.loads", lambda: json.loads(data.decode())),
        ("depth pre-scan alone", lambda: _depth_within(data, 64)),
        ("parse_json (pre-scan + bounded ints)", lambda: parse_json(data)),
    ]:
        t = best(f)
        print(f"{name:40} {t * 1000:8.0f} {t / base:6.2f}")


if __name__ == "__main__":
    main()
