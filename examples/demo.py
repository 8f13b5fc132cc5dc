"""The steppatch demo: a signed repository, an origin and a private mirror over HTTPS with client
certificates, a home installed, upgraded, checked and rolled back, a fallback to a snapshot, a
cluster of two nodes patched together, and an air-gapped installation patched with the offline
three-step method.

Run from the project root (README's first command does): ``python examples/demo.py [WORKDIR]``.
Every step runs the real ``steppatch`` command line, as an operator would, and says what it does.
The servers listen on 127.0.0.1 only and are stopped at the end.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPONENTS = HERE / "components"
RELEASE = "step/trailblazer/step-trailblazer-9.0-mp5-2018-11-08-15-54-27.spr"
# $STEPPATCH_CMD runs the demo through another steppatch, e.g. "python3 steppatch.pyz" (a foothold).
CLI = shlex.split(os.environ.get("STEPPATCH_CMD", "")) or [sys.executable, "-m", "steppatch_cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_config(work: Path, name: str, ports: tuple[int, int], body: str) -> Path:
    path = work / f"{name}.toml"
    path.write_text(
        f'listen = "127.0.0.1:{ports[0]}"\n'
        f'admin_listen = "127.0.0.1:{ports[1]}"\n'
        f'store = "{work / (name + "-store")}"\n'
        f"{body}"
    )
    return path


def wait_healthy(admin_port: int, proc: subprocess.Popen[bytes], deadline: float = 30) -> None:
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        if proc.poll() is not None:
            raise SystemExit(f"demo failed: a server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("demo failed: a server did not become healthy")


def main() -> int:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out").absolute()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    repo, home, ca = work / "repo", work / "home", work / "ca"
    env = {**os.environ, "STEPPATCH_HOME": str(home)}
    started = time.monotonic()
    servers: list[subprocess.Popen[bytes]] = []

    def step(text: str, *args: str, expect: int = 0) -> None:
        print(f"\n== {text}")
        print(f"$ steppatch {' '.join(shlex.quote(a) for a in args)}", flush=True)
        done = subprocess.run([*CLI, *args], env=env, check=False)
        if done.returncode != expect:
            print(f"demo failed: exit code {done.returncode}, expected {expect}", file=sys.stderr)
            raise SystemExit(1)

    def serve(text: str, config: Path, admin_port: int) -> None:
        print(f"\n== {text}")
        print(f"$ steppatch mirror serve --config {config} &", flush=True)
        log = (work / f"{config.stem}.log").open("wb")
        proc = subprocess.Popen([*CLI, "mirror", "serve", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT)
        servers.append(proc)
        wait_healthy(admin_port, proc)
        print(f"   healthy: http://127.0.0.1:{admin_port}/health")

    print(f"steppatch demo in {work}")
    try:
        step(
            "The release engineer makes an empty repository, signed with new keys",
            "repo", "init", str(repo),
        )
        step(
            "... publishes component versions from their source directories",
            "repo", "add", str(repo), *sorted(str(p) for p in COMPONENTS.iterdir()),
        )
        step(
            "... and a release: step-core 9.0.0 with restapi 7.0.39",
            "repo", "release", str(repo), RELEASE, "--pin", "step-core==9.0.0",
            "--pin", "restapi==7.0.39",
        )
        step("A private CA for the servers and the installations", "ca", "init", str(ca))
        for name in ("origin", "mirror"):
            step(f"... the {name}'s server certificate", "ca", "issue", str(ca),
                 "--server", "localhost", "--server", "127.0.0.1", "--out", str(work / name))
        step("... a client certificate for the mirror (it is a client of the origin)",
             "ca", "issue", str(ca), "--client", "demo-mirror",
             "--out", str(work / "mirror-client"))
        step("... and one for the installation, carrying its system name",
             "ca", "issue", str(ca), "--client", "demo-prod", "--out", str(work / "prod"))

        origin_ports, mirror_ports = (free_port(), free_port()), (free_port(), free_port())
        origin = server_config(work, "origin", origin_ports, (
            f'[tls]\ncert = "{work / "origin.crt"}"\nkey = "{work / "origin.key"}"\n'
            f'client_ca = "{ca / "ca.crt"}"\n[origin]\nrepository = "{repo}"\n'
        ))
        mirror = server_config(work, "mirror", mirror_ports, (
            f'trusted_root = "{repo / "root.json"}"\ndownload = "ON_DEMAND"\n'
            f'[tls]\ncert = "{work / "mirror.crt"}"\nkey = "{work / "mirror.key"}"\n'
            f'client_ca = "{ca / "ca.crt"}"\n'
            f'[[upstreams]]\nid = "origin"\nurl = "https://127.0.0.1:{origin_ports[0]}"\n'
            f'priority = 10\n[upstream_tls]\ncert = "{work / "mirror-client.crt"}"\n'
            f'key = "{work / "mirror-client.key"}"\nca = "{ca / "ca.crt"}"\n'
        ))
        serve("The origin serves the repository over HTTPS (client certificates required)",
              origin, origin_ports[1])
        serve("A private mirror relays the origin: it verifies everything, signs nothing",
              mirror, mirror_ports[1])
        mirror_url = f"https://127.0.0.1:{mirror_ports[0]}"

        step(
            "The operator makes a home that reads from the mirror and trusts the repository's "
            "root keys (given out of band)",
            "init", "--updates", mirror_url, "--mirror-id", "dk-mirror",
            "--root", str(repo / "root.json"), "--ca", str(ca / "ca.crt"),
            "--cert", str(work / "prod.crt"), "--key", str(work / "prod.key"),
            "--system", "demo-prod",
        )
        step("... with the origin as a fallback mirror",
             "mirrors", "add", "origin", f"https://127.0.0.1:{origin_ports[0]}",
             "--priority", "10")
        step("The mirrors, in the order they are tried", "mirrors")
        step("Is the mirror reachable, who is it, does its metadata verify?", "ping")
        step(
            "Install the release together with the customer's add-on (a comma list)",
            "apply", f"to:{RELEASE},to:acme-addon/7.0/acme-addon-7.0.1.spr",
        )
        step("What is installed", "status")
        snap = work / "before-upgrade.spr"
        step("Take a thin snapshot before patching", "snapshot", str(snap))
        step("Which updates are available, with their release notes", "showupdates")
        step(
            "Prepare the restapi 7.0.40 patch: download ahead, no downtime (step-core's engine "
            "changed in 2 KB of its 200 KB: it comes as a delta from the version installed)",
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
        step("Roll back to the state before the upgrade", "rollback")
        step("Back where we started", "status")
        print("\n== Someone edits an installed file by hand, and leaves another one behind ...")
        (home / "current/lib/restapi/VERSION").write_text("patched by hand\n")
        (home / "current/lib/restapi/hotfix.jar").write_text("not from any release\n")
        step("... verify finds both by hash (exit code 6: drift)", "verify", expect=6)
        step(
            "Fall back to the snapshot, making the tree exactly what it lists",
            "apply", str(snap), "--sync", "--syncmode", "delete",
        )
        step("Nothing drifts now", "verify")
        step("Disk stays bounded: what no kept state needs would go (gc also runs after every "
             "apply)", "gc", "--dry-run")

        app2 = work / "home-app2"
        step("A second application server of the same installation (a cluster node): a home "
             "with the same trust and certificate", "--home", str(app2), "init",
             "--updates", mirror_url, "--root", str(repo / "root.json"),
             "--ca", str(ca / "ca.crt"), "--cert", str(work / "prod.crt"),
             "--key", str(work / "prod.key"), "--system", "demo-prod")
        step("... brought to the same release as the first (from its snapshot)",
             "--home", str(app2), "apply", str(snap))
        step("The first home names itself and lists the other node", "nodes", "name", "app1")
        step("...", "nodes", "add", "app2", str(app2))
        step("Every node's versions, and whether they agree", "status", "--cluster")
        step("Patch the cluster: every node is staged (downloaded, verified, built) before any "
             "is switched", "apply", "to:restapi/7.0/restapi-7.0.40.spr")
        step("Both nodes moved together", "status", "--cluster")
        step("The SPOT manuals' commands work too (here: spot --showupdates)",
             "spot", "--showupdates")

        air = work / "air-gapped"
        air_env = {**env, "STEPPATCH_HOME": str(air)}

        def air_step(text: str, *args: str) -> None:
            print(f"\n== {text}")
            print(f"$ STEPPATCH_HOME={air} steppatch {' '.join(shlex.quote(a) for a in args)}",
                  flush=True)
            if subprocess.run([*CLI, *args], env=air_env, check=False).returncode != 0:
                raise SystemExit("demo failed")

        air_step("An air-gapped installation: no mirror it could reach, only the root it trusts",
                 "init", "--updates", (work / "no-network").as_uri(),
                 "--root", str(repo / "root.json"), "--system", "demo-vault")
        air_snap, air_patch = work / "vault.snapshot.spr", work / "vault.patch.spr"
        air_step("Offline step 1, on the installation: a snapshot to carry out",
                 "snapshot", str(air_snap))
        step("Offline step 2, on a host that reaches the mirror: a patch file for exactly that "
             "installation", "prepare", f"to:{RELEASE},to:acme-addon/7.0/acme-addon-7.0.1.spr",
             "--target", str(air_snap), "--output", str(air_patch))
        step("... what the patch file holds", "inspect", str(air_patch))
        air_step("Offline step 3, back on the installation, with no network at all",
                 "apply", str(air_patch))
        air_step("The air-gapped installation now", "status")
        step("The mirror's view: what it holds", "mirror", "status", "--config", str(mirror))
        step("... and its fleet: every installation that sent its thin snapshot, what it runs "
             "and what it lacks (the same as web pages on the admin port, /)",
             "mirror", "fleet", "--config", str(mirror))
    finally:
        for proc in servers:
            proc.send_signal(signal.SIGTERM)
        for proc in servers:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"\nDemo finished in {time.monotonic() - started:.1f} s. Look around in {work}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
