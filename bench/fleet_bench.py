"""The fleet: the overview of 1,000 systems x 50 components, and ``mirror fleet --json``.

A published repository of 50 components x 4 versions (two minors and a major) and a release; a
store holding 1,000 systems, each with 5 uploads kept (the layout the server writes) at random
versions of all 50 components. Measured side by side, medians of ``--runs``:

- the overview page, server side: what the ``/`` handler runs (the snapshots scanned, the fleet
  computed, the template rendered), warm (the server keeps what it parsed) and cold (the first
  request after a start); against ``json.dumps`` of the same fleet (what a JSON endpoint would
  cost) and against a plain loop that reads every ``latest.spr`` with ``json.loads`` and compares
  nothing (the floor: the bytes alone);
- the same page over HTTP from a running ``steppatch mirror serve`` (client side, so an upper
  bound of the server's share);
- ``steppatch mirror fleet --json`` as a process (start-up included), against a Python process
  doing the plain loop above.

Run: ``.venv/bin/python bench/fleet_bench.py [--systems 1000] [--components 50] [--runs 7]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from packaging.version import Version

from steppatch import Repository, pki
from steppatch.fleet import fleet_to_json
from steppatch.model import RecipeKind
from steppatch.recipe import dump_recipe, pinned_recipe
from steppatch.server import load_config
from steppatch.server._fleet import fleet_source
from steppatch.server._pages import page_environment

VERSIONS = ["1.0.0", "1.0.1", "1.1.0", "2.0.0"]
PLAIN_LOOP = """
import json, os, sys
root = sys.argv[1]
out = []
for name in sorted(os.listdir(root)):
    if name.startswith("."):
        continue
    with open(os.path.join(root, name, "latest.spr"), "rb") as f:
        doc = json.loads(f.read())
    out.append({"name": name, "versions": {k: v.lstrip("=") for k, v in doc["components"].items()}})
sys.stdout.write(json.dumps(out))
"""


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def build(d: Path, systems: int, components: int) -> Path:
    src = d / "src"
    repo = Repository.init(d / "repo")
    rng = random.Random(7)
    for i in range(components):
        for v in VERSIONS:
            c = src / f"comp-{i:02d}-{v}"
            (c / "files").mkdir(parents=True)
            (c / "files" / f"comp-{i:02d}.txt").write_text(v)
            notes = f"- fixes issue {rng.randrange(10000)} in comp-{i:02d}\n- faster start"
            (c / "component.toml").write_text(
                f'name = "comp-{i:02d}"\nversion = "{v}"\nsummary = "component {i}"\n'
                f"notes = {json.dumps(notes)}\nhot = {'true' if v == '1.0.1' else 'false'}\n"
            )
            repo.add(c)
    repo.release("releases/2026.12.spr",
                 {f"comp-{i:02d}": Version("1.1.0") for i in range(components)})
    store = d / "store"
    snaps = store / "snapshots"
    start = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    for s in range(systems):
        folder = snaps / f"sys-{s:04d}"
        folder.mkdir(parents=True)
        body = b""
        for u in range(5):
            versions = {f"comp-{i:02d}": Version(rng.choice(VERSIONS)) for i in range(components)}
            body = dump_recipe(pinned_recipe(RecipeKind.SNAPSHOT, versions, system=folder.name))
            when = start + dt.timedelta(days=u * 3, seconds=s)
            stamp = when.strftime("%Y%m%dT%H%M%S") + f".{s:06d}Z-{u:08x}.spr"
            (folder / stamp).write_bytes(body)
        (folder / "latest.spr").write_bytes(body)
    ca = pki.make_ca()
    kc = pki.issue_server_cert(ca, ["127.0.0.1"])
    (d / "ca.crt").write_bytes(ca.cert_pem)
    (d / "server.crt").write_bytes(kc.cert_pem)
    (d / "server.key").write_bytes(kc.key_pem)
    config = d / "mirror.toml"
    config.write_text(
        'listen = "127.0.0.1:0"\nadmin_listen = "127.0.0.1:0"\nstore = "store"\n'
        '[tls]\ncert = "server.crt"\nkey = "server.key"\nclient_ca = "ca.crt"\n'
        '[origin]\nrepository = "repo"\n'
    )
    return config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--systems", type=int, default=1000)
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        config_path = build(d, args.systems, args.components)
        print(f"setup: {args.systems} systems x {args.components} components, "
              f"{time.perf_counter() - t:.1f} s", file=sys.stderr)
        # The server keeps nothing it read of a file changed in the last 2 s (file times are
        # coarse): uploads in a real store are older than that.
        time.sleep(2.1)
        config = load_config(config_path)
        env = page_environment()
        overview = env.get_template("overview.html")
        source = fleet_source(config)

        def page() -> str:
            fleet, unreadable = source.fleet()
            return overview.render(title="Fleet", fleet=fleet, counts=fleet.counts(),
                                   unreadable=unreadable, states=[])

        def cold() -> str:
            nonlocal source
            source = fleet_source(config)
            return page()

        def as_json() -> str:
            fleet, unreadable = source.fleet()
            return json.dumps(fleet_to_json(fleet, unreadable))

        snaps = str(config.store / "snapshots")

        def plain() -> list[object]:
            out = []
            for name in sorted(os.listdir(snaps)):
                if not name.startswith("."):
                    with open(os.path.join(snaps, name, "latest.spr"), "rb") as f:
                        out.append(json.loads(f.read()))
            return out

        cold_ms = median_ms(cold, max(args.runs // 2, 3))
        page()  # warm
        rows = [
            ("overview page, warm (server side)", median_ms(page, args.runs)),
            ("overview page, cold (first request)", cold_ms),
            ("same fleet as json.dumps (warm)", median_ms(as_json, args.runs)),
            ("plain loop: json.loads of every latest.spr", median_ms(plain, args.runs)),
        ]
        size = len(page())

        # Over HTTP, from a running server.
        proc = subprocess.Popen(
            [sys.executable, "-m", "steppatch_cli", "mirror", "serve", "--config",
             str(config_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            url = f"http://{ready['admin_listen']}/"

            def http() -> bytes:
                with urllib.request.urlopen(url, timeout=60) as r:
                    return bytes(r.read())

            http()
            rows.append(("overview over HTTP (running server, warm)", median_ms(http, args.runs)))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)

        cli = [sys.executable, "-m", "steppatch_cli", "mirror", "fleet", "--config",
               str(config_path), "--json"]
        loop = [sys.executable, "-c", PLAIN_LOOP, snaps]

        def run(cmd: list[str]) -> Callable[[], object]:
            return lambda: subprocess.run(cmd, check=True, capture_output=True)

        out = subprocess.run(cli, check=True, capture_output=True).stdout
        rows.append(("steppatch mirror fleet --json (process)", median_ms(run(cli), args.runs)))
        rows.append(("python plain loop (process)", median_ms(run(loop), args.runs)))
        base = rows[0][1]
        print(f"{args.systems} systems x {args.components} components; page {size} bytes, "
              f"fleet JSON {len(out)} bytes; medians of {args.runs} runs")
        print(f"{'':46}{'ms':>9}{'ratio':>8}")
        for label, ms in rows:
            print(f"{label:46}{ms:9.1f}{ms / base:8.2f}")


if __name__ == "__main__":
    main()
