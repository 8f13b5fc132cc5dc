"""Cluster nodes over SSH, against a real sshd on 127.0.0.1 started by the test.

Debian's openssh-server is installed if missing and we may (root, apt-get); the keys are made
here. Skipped, with the reason, only where sshd cannot be installed or started.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from packaging.version import Version

from steppatch import Home, Repository, evolve
from steppatch.cluster import Cluster, SshNode
from steppatch.config import Location, MirrorEntry, NodeEntry, ServiceConfig
from steppatch.errors import ClusterPartiallyApplied, NodeError, NodeFailed
from steppatch.home import HomeDir
from tests.builders import component, home_for, repository, tree
from tests.integration.tls.servers import free_ports, wait_listening

V1 = {"app": Version("1.0")}
V2 = {"app": Version("2.0")}
#: the steppatch a node runs: this interpreter, so the node has exactly the code under test
NODE_COMMAND = f"{sys.executable} -m steppatch_cli"


def _install_sshd() -> str | None:
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "openssh-server"],
    ):
        try:
            subprocess.run(cmd, env=env, capture_output=True, timeout=600, check=True)
        except (subprocess.SubprocessError, OSError):
            return None
    return "/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None


@attrs.frozen
class Sshd:
    port: int
    ssh_command: str  # what STEPPATCH_SSH is set to

    def url(self, path: Path) -> str:
        return f"ssh://{getpass.getuser()}@127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    binary = _install_sshd()
    if binary is None:
        pytest.skip("sshd is not installed and cannot be installed here (needs root, apt-get)")
    if not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.skip("the ssh client (ssh, ssh-keygen) is not installed")
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True
        )
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    (port,) = free_ports(1)
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
        f"PidFile {d / 'sshd.pid'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
    )
    host_key = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    (d / "ssh_config").write_text(
        f"Host 127.0.0.1\n  IdentityFile {d / 'client_key'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {d / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
        "  LogLevel ERROR\n  ConnectTimeout 5\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation directory
    log = (d / "sshd.log").open("wb")
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(d / "sshd_config")], stderr=log)
    try:
        if not wait_listening(port):
            proc.kill()
            pytest.skip(f"sshd did not start: {(d / 'sshd.log').read_text()[-500:]}")
        yield Sshd(port, f"ssh -F {d / 'ssh_config'}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture
def ssh_env(sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> Sshd:
    monkeypatch.setenv("STEPPATCH_SSH", sshd.ssh_command)
    return sshd


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    src = tmp_path / "src"
    return repository(
        tmp_path,
        component(src, "app", "1.0", {"app/a.txt": b"one", "app/bin": ("dir", 0o755)}),
        component(src, "app", "2.0", {"app/a.txt": b"two", "app/new.txt": b"new"}),
    )


@pytest.fixture
def pair(repo: Repository, tmp_path: Path, ssh_env: Sshd) -> tuple[Path, Path]:
    """Home a (this node) and home b, reached from a over SSH."""
    a, b = tmp_path / "a", tmp_path / "b"
    for path in (a, b):
        home_for(repo, path).apply(["to:app/1.0/app-1.0.spr"])
    home = Home.open(a)
    home.name_node("a")
    home.add_node(NodeEntry("b", ssh_env.url(b), NODE_COMMAND))
    return a, b


def versions(path: Path) -> dict[str, Version]:
    return Home.open(path).status().versions()


def test_status_over_ssh(pair: tuple[Path, Path]) -> None:
    status = Cluster(Home.open(pair[0])).status()
    assert [(n.name, n.versions) for n in status.nodes] == [("a", V1), ("b", V1)]
    assert status.nodes[1].location.startswith("ssh://")
    assert status.consistent


def test_apply_over_ssh_switches_both_nodes(pair: tuple[Path, Path]) -> None:
    report = Cluster(Home.open(pair[0])).apply(["to:app/latest.spr"])
    assert [(o.name, o.switched) for o in report.nodes] == [("a", True), ("b", True)]
    assert versions(pair[0]) == versions(pair[1]) == V2
    assert tree(pair[0] / "current") == tree(pair[1] / "current")


def test_ssh_node_failing_during_prepare_switches_nothing(pair: tuple[Path, Path]) -> None:
    a, b = pair
    gone = (b.parent / "gone").as_uri()
    files = HomeDir.open(b)
    files.write_config(
        evolve(files.config, updates=gone, mirrors=(MirrorEntry("primary", gone),))
    )
    before = tree(a / "current"), tree(b / "current")
    with pytest.raises(NodeFailed) as caught:
        Cluster(Home.open(a)).apply(["to:app/latest.spr"])
    assert caught.value.node == "b" and caught.value.phase == "prepare"
    assert "gone" in caught.value.reason  # the node's own message came back over ssh
    assert (tree(a / "current"), tree(b / "current")) == before
    assert not list((a / ".steppatch" / "staged").glob("*"))


def test_ssh_node_failing_during_switch(pair: tuple[Path, Path]) -> None:
    a, b = pair
    files = HomeDir.open(b)
    files.write_config(evolve(files.config, service=ServiceConfig(stop="exit 7")))
    with pytest.raises(ClusterPartiallyApplied) as caught:
        Cluster(Home.open(a)).apply(["to:app/latest.spr"])
    assert caught.value.failed == "b" and caught.value.switched == ("a",)
    assert caught.value.nodes == (("a", "app 2.0"), ("b", "app 1.0"))
    assert versions(b) == V1
    assert not list((b / ".steppatch" / "staged").glob("*"))  # discarded over ssh


def test_unreachable_ssh_node(tmp_path: Path, ssh_env: Sshd) -> None:
    (closed,) = free_ports(1)
    node = SshNode("z", Location(str(tmp_path), "127.0.0.1", getpass.getuser(), closed))
    with pytest.raises(NodeError) as caught:
        node.status()
    assert caught.value.exit_code == 4
    assert "unreachable over ssh" in str(caught.value)


def test_a_node_command_error_keeps_its_message_and_exit_code(
    tmp_path: Path, ssh_env: Sshd
) -> None:
    where = Location(str(tmp_path / "not-a-home"), "127.0.0.1", getpass.getuser(), ssh_env.port)
    node = SshNode("y", where, NODE_COMMAND)
    with pytest.raises(NodeError) as caught:
        node.status()
    assert caught.value.exit_code == 5
    assert "not a steppatch home" in str(caught.value)
