"""What the demo does, as a Python script using the library (docs/api.md shows it).

Run: ``python examples/api_demo.py [WORKDIR]``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from packaging.version import Version

from steppatch import Home, Repository, ResolutionImpossible

COMPONENTS = Path(__file__).resolve().parent / "components"
RELEASE = "step/trailblazer/step-trailblazer-9.0-mp5-2018-11-08-15-54-27.spr"


def main(work: Path) -> None:
    # The release side: a repository with every example component and one release.
    repo = Repository.init(work / "repo")
    for source in sorted(COMPONENTS.iterdir()):
        result = repo.add(source)
        print(f"published {result.name} {result.version}")
    repo.release(RELEASE, {"step-core": Version("9.0.0"), "restapi": Version("7.0.39")})

    # The operator's side: a home, the release plus an add-on, an upgrade, a fallback.
    root = (repo.root / "root.json").read_bytes()  # handed to operators out of band
    home = Home.init(work / "home", updates=repo.root.as_uri(), root=root, system="api-demo")
    home.apply([f"to:{RELEASE}", "to:acme-addon/7.0/acme-addon-7.0.1.spr"])
    print("installed:", {n: str(v) for n, v in home.status().versions().items()})

    before = home.snapshot(work / "before.spr")
    plan = home.prepare(["to:restapi/7.0/restapi-7.0.40.spr"])
    for change in plan.changes:
        print(f"plan: {change} ({change.reason.value})")
    home.apply(["to:restapi/7.0/restapi-7.0.40.spr"])
    print("upgraded:", {n: str(v) for n, v in home.status().versions().items()})

    try:
        home.apply(["to:restapi/7.0/restapi-7.0.40.spr", "to:step-core/9.0/step-core-9.0.0.spr"])
    except ResolutionImpossible as e:
        print("refused, as it must be:", str(e).splitlines()[-1])

    home.apply([str(work / "before.spr")])
    after = home.status().versions()
    assert {n: f"=={v}" for n, v in after.items()} == {
        n: str(s) for n, s in before.components.items()
    }
    print("restored:", {n: str(v) for n, v in after.items()})


if __name__ == "__main__":
    if len(sys.argv) > 1:
        target = Path(sys.argv[1])
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        main(target)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
