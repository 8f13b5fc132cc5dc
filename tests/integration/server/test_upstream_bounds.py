"""Reads of upstream bytes are capped while reading (issue 14, items 4 and 9): a hostile upstream
on 127.0.0.1 streams without end, and the reader stops at the cap with a typed error, its memory
bounded, nothing stored. Snapshot forwarding goes through the pinned transport."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest
import requests

from steppatch import Repository
from steppatch.errors import TooLarge
from steppatch.limits import Limits
from steppatch.remote import MetadataStore, RepositoryClient
from steppatch.server import UpstreamUnavailable, parse_config
from steppatch.server._metrics import Metrics
from steppatch.server._store import MirrorStore
from steppatch.server._upstream import Upstreams
from steppatch.transport import HttpsFetcher, NoMirrorLeft, TlsConfig
from tests.integration.server.conftest import Pki, Servers, client, free_port, wait_for
from tests.integration.server.hostile import Hostile, hostile_upstream
from tests.integration.server.test_snapshots import snapshot

# Loopback socket buffers (both sides) can hold a few MiB the reader never asked for; past that,
# the server is blocked until the reader takes more, which it does not.
SOCKET_SLACK = 16 * 1024 * 1024
# Streamed if nobody stopped reading: far beyond the cap and any buffering.
ENDLESS = 1 << 40
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")


def upstreams(tmp_path: Path, certs: Pki, url: str) -> Upstreams:
    cert, key = certs.client("your-mirror")
    text = (
        'store = "s"\ntrusted_root = "r.json"\nupstream_retry_s = 60\n'
        '[tls]\ncert = "a"\nkey = "b"\nclient_ca = "c"\n'
        f'[upstream_tls]\ncert = "{cert}"\nkey = "{key}"\nca = "{certs.ca}"\n'
        f'[[upstreams]]\nid = "u0"\nurl = "{url}"\npriority = 10\n'
    )
    return Upstreams(parse_config(text.encode(), "m.toml", tmp_path), Metrics())


def settled(hostile: Hostile, path: str, timeout: float = 10.0) -> int:
    """The bytes sent for ``path`` once the server has stopped sending (the reader hung up)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        now = hostile.sent.get(path, 0)
        if now == last:
            return now
        last = now
        time.sleep(0.3)
    raise AssertionError(f"the server kept sending {path}: {last} bytes")


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_old_root_from_an_endless_upstream_stops_at_the_cap(
    tmp_path: Path, repo: Repository, certs: Pki
) -> None:
    repo.rotate_keys("root")
    limits = Limits()
    store = MirrorStore(
        tmp_path / "store", (repo.root / "roots/2.root.json").read_bytes(), Metrics(), limits
    )
    before = files(tmp_path / "store")
    path = "roots/1.root.json"
    with hostile_upstream(certs.server_cert, certs.server_key, repo.root,
                          frozenset({path}), limit=ENDLESS) as hostile:
        ups = upstreams(tmp_path, certs, hostile.url)
        tracemalloc.start()
        try:
            with pytest.raises(UpstreamUnavailable) as caught:
                store.fill_old_root(1, ups)
            _size, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            ups.close()
        sent = settled(hostile, path)
    cause = caught.value.__cause__
    assert isinstance(cause, NoMirrorLeft)
    error = cause.errors["u0"]
    assert isinstance(error, TooLarge)
    assert (error.what, error.limit) == ("root metadata", limits.max_root_bytes)
    # Read stopped at the cap: the server could send no more than the cap and the buffers.
    assert limits.max_root_bytes < sent < limits.max_root_bytes + SOCKET_SLACK
    assert peak < 4 * limits.max_root_bytes
    # Nothing stored, nothing held.
    assert files(tmp_path / "store") == before
    assert set(store.meta.root_versions) == {2}


def _client(tmp_path: Path, repo: Repository, certs: Pki, url: str,
            limits: Limits) -> RepositoryClient:
    meta = MetadataStore(tmp_path / "meta")
    meta.write("root", (repo.root / "root.json").read_bytes())
    cert, key = certs.client("prod-eu")
    return RepositoryClient(HttpsFetcher(url, TlsConfig(certs.ca, cert, key)), meta, limits)


def test_index_capped_at_max_index_bytes_below_its_pinned_length(
    tmp_path: Path, repo: Repository, certs: Pki
) -> None:
    timestamp = json.loads((repo.root / "timestamp.json").read_bytes())["signed"]
    pinned = timestamp["index"]
    path = f"indexes/{pinned['version']}.index.json"
    limits = Limits(max_index_bytes=pinned["length"] // 2)
    with hostile_upstream(certs.server_cert, certs.server_key, repo.root,
                          frozenset({path}), limit=ENDLESS) as hostile:
        home = _client(tmp_path, repo, certs, hostile.url, limits)
        with pytest.raises(TooLarge) as caught:
            home.refresh()
        sent = settled(hostile, path)
    # The smaller of the two caps, enforced while reading (not the core's check afterwards).
    assert (caught.value.what, caught.value.limit) == ("index metadata", limits.max_index_bytes)
    assert sent < limits.max_index_bytes + SOCKET_SLACK
    assert MetadataStore(tmp_path / "meta").read("index") is None


def test_real_index_larger_than_max_index_bytes_is_refused_while_reading(
    tmp_path: Path, repo: Repository, certs: Pki
) -> None:
    length = json.loads((repo.root / "timestamp.json").read_bytes())["signed"]["index"]["length"]
    limits = Limits(max_index_bytes=length - 1)
    with hostile_upstream(certs.server_cert, certs.server_key, repo.root) as hostile:
        home = _client(tmp_path, repo, certs, hostile.url, limits)
        with pytest.raises(TooLarge) as caught:
            home.refresh()
    assert (caught.value.what, caught.value.limit) == ("index metadata", length - 1)
    assert MetadataStore(tmp_path / "meta").read("index") is None


@pytest.fixture
def hostile_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A proxy on a closed port and a .netrc with credentials for 127.0.0.1, in the environment
    (both honoured by a bare ``requests`` call)."""
    proxy = f"http://127.0.0.1:{free_port()}"
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login intruder password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    return netrc


def test_upstream_put_ignores_proxy_and_netrc(
    tmp_path: Path, certs: Pki, hostile_env: Path
) -> None:
    with hostile_upstream(certs.server_cert, certs.server_key) as hostile:
        url = f"{hostile.url}/snapshots/your-mirror/prod-eu.spr"
        # The environment is hostile indeed: a bare requests call goes to the closed proxy.
        with pytest.raises(requests.exceptions.ProxyError):
            requests.put(url, data=b"x", verify=str(certs.ca), timeout=5)
        ups = upstreams(tmp_path, certs, hostile.url)
        try:
            assert ups.put("snapshots/your-mirror/prod-eu.spr", b"body") == 201
        finally:
            ups.close()
    (put,) = [r for r in hostile.requests if r[0] == "PUT"]
    assert put[1] == "snapshots/your-mirror/prod-eu.spr"
    assert "Authorization" not in put[2]


def test_mirror_forwards_snapshots_past_a_hostile_environment(
    tmp_path: Path, repo: Repository, servers: Servers, certs: Pki, hostile_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The upstream serves the repository as static files and records every request.
    with hostile_upstream(certs.server_cert, certs.server_key, repo.root) as hostile:
        mirror = servers.mirror([hostile.url], repo.root / "root.json")  # inherits the env
        for name in PROXY_VARIABLES:
            monkeypatch.delenv(name)  # for this test's own admin calls, not the mirror's
        s = client(certs, "prod-eu")
        url = f"{mirror.url}/snapshots/prod-eu.spr"
        assert s.put(url, data=snapshot("prod-eu")).status_code == 201
        mirror.admin("/sync", method="POST")

        def forwarded() -> list[tuple[str, str, dict[str, str]]]:
            return [r for r in hostile.requests if r[0] == "PUT"]

        (put,) = wait_for(forwarded)
        assert put[1] == "snapshots/your-mirror/prod-eu.spr"
        assert "Authorization" not in put[2]
        wait_for(lambda: mirror.health()["snapshots_pending"] == 0)
