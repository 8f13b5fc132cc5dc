"""The steppatch demo: a repository, a home, a release, an upgrade, a rollback to a snapshot.

Run from the project root (README's first command does): ``python examples/demo.py [WORKDIR]``.
Every step runs the real ``steppatch`` command line, as an operator would, and says what it does.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPONENTS = HERE / "components"
RELEASE = "step/trailblazer/step-trailblazer-9.0-mp5-2018-11-08-15-54-27.spr"


def main() -> int:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out").absolute()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    repo, home = work / "repo", work / "home"
    env = {**os.environ, "STEPPATCH_HOME": str(home)}
    started = time.monotonic()

    def step(text: str, *args: str, expect: int = 0) -> None:
        print(f"\n== {text}")
        print(f"$ steppatch {' '.join(shlex.quote(a) for a in args)}", flush=True)
        done = subprocess.run([sys.executable, "-m", "steppatch_cli", *args], env=env, check=False)
        if done.returncode != expect:
            print(f"demo failed: exit code {done.returncode}, expected {expect}", file=sys.stderr)
            raise SystemExit(1)

    print(f"steppatch demo in {work}")
    step(
        "The release engineer makes an empty repository, signed with new keys",
        "repo", "init", str(repo),
    )
    step(
        "... and publishes component versions from their source directories",
        "repo", "add", str(repo), *sorted(str(p) for p in COMPONENTS.iterdir()),
    )
    step(
        "... and a release: step-core 9.0.0 with restapi 7.0.39",
        "repo", "release", str(repo), RELEASE, "--pin", "step-core==9.0.0",
        "--pin", "restapi==7.0.39",
    )
    step(
        "The operator makes a home that trusts the repository's root keys (given out of band)",
        "init", "--updates", repo.as_uri(), "--root", str(repo / "root.json"),
        "--system", "demo-prod",
    )
    step(
        "Install the release together with the customer's add-on (a comma list)",
        "apply", f"to:{RELEASE},to:acme-addon/7.0/acme-addon-7.0.1.spr",
    )
    step("What is installed", "status")
    snap = work / "before-upgrade.spr"
    step("Take a thin snapshot before patching", "snapshot", str(snap))
    step("Which updates are available, with their release notes", "showupdates")
    step(
        "Prepare the restapi 7.0.40 patch: download ahead, no downtime",
        "prepare", "to:restapi/7.0/restapi-7.0.40.spr",
    )
    step(
        "Apply it: restapi moves, step-core follows its dependency, the add-on stays",
        "apply", "to:restapi/7.0/restapi-7.0.40.spr",
    )
    step("What is installed now", "status")
    step(
        "A request that cannot be met is explained and changes nothing",
        "apply", "to:restapi/7.0/restapi-7.0.40.spr,to:step-core/9.0/step-core-9.0.0.spr",
        expect=2,
    )
    step("Fall back to the snapshot taken before the upgrade", "apply", str(snap))
    step("Back where we started", "status", "--json")
    print(f"\nDemo finished in {time.monotonic() - started:.1f} s. Look around in {work}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
