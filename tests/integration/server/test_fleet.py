"""The fleet on a real server: three homes upload over HTTPS (one then a cluster snapshot), one
system went silent; ``mirror fleet --json`` and each admin page show them, escaped, behind the
admin token."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.server.conftest import Pki, Server, Servers
from tests.integration.server.fleet_setup import (
    HOSTILE,
    TOKEN,
    FleetServer,
    build_fleet,
    make_certs,
    parse_page,
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_certs(tmp_path_factory.mktemp("fleet-pki"))


@pytest.fixture
def fleet(tmp_path: Path, servers: Servers, certs: Pki) -> FleetServer:
    return build_fleet(tmp_path, servers, certs)


def get(server: Server, path: str, auth: str | None = "bearer") -> tuple[int, dict[str, str], str]:
    headers = {}
    if auth == "bearer":
        headers["Authorization"] = f"Bearer {TOKEN}"
    elif auth == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    elif auth is not None:
        headers["Authorization"] = auth
    request = urllib.request.Request(f"http://{server.admin_listen}{path}", None, headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def test_mirror_fleet_json_lists_every_system(fleet: FleetServer) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "steppatch_cli", "mirror", "fleet", "--config",
         str(fleet.server.config), "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    doc = json.loads(out.stdout)
    assert doc["format"] == "steppatch-fleet/1"
    assert doc["counts"] == {"up-to-date": 1, "behind": 2, "stale": 1}
    systems = {s["name"]: s for s in doc["systems"]}
    assert sorted(systems) == ["cluster-eu", "old-eu", "prod-eu", "test-eu"]
    prod = systems["prod-eu"]
    assert prod["state"] == "behind"
    assert {n: c["installed"] for n, c in prod["components"].items()} == {"app": "1.0",
                                                                          "lib": "1.0"}
    assert prod["components"]["app"] == {"installed": "1.0", "listed": True, "patch": "1.0.1",
                                         "latest": "2.0"}
    assert doc["available"]["app"]["1.0.1"] == {
        "hot": True, "recipe": "app/1.0/app-1.0.1.spr",
        "apply": "steppatch apply --hot to:app/1.0/app-1.0.1.spr"}
    assert prod["releases"] == [{
        "path": "releases/2026.12.spr", "name": "2026.12", "status": "trails",
        "behind": ["app", "lib"], "apply": "steppatch apply to:releases/2026.12.spr"}]
    test = systems["test-eu"]
    assert test["state"] == "up-to-date" and test["uploads"] == 2
    assert [r["status"] for r in test["releases"]] == ["matches"]
    cluster = systems["cluster-eu"]
    assert [(n["name"], n["versions"], n["differs"]) for n in cluster["nodes"]] == [
        ("node-a", {"app": "1.0", "lib": "1.0"}, []), ("node-b", {"app": "1.0", "lib": "1.0"}, [])]
    # What the cluster sent: names and versions, nothing else of the installation.
    sent = json.loads((fleet.store / "snapshots/cluster-eu/latest.spr").read_bytes())
    assert set(sent) == {"format", "kind", "components", "system", "nodes"}
    assert [set(n) for n in sent["nodes"]] == [{"name", "components"}] * 2
    assert systems["old-eu"]["state"] == "stale"
    assert systems["old-eu"]["last_upload"] == "2026-11-01T08:00:00Z"
    assert doc["unreadable"] == []
    # The text form says the same, one line per system.
    text = subprocess.run(
        [sys.executable, "-m", "steppatch_cli", "mirror", "fleet", "--config",
         str(fleet.server.config)], capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert "1 up-to-date, 2 behind, 1 stale" in text
    assert "steppatch apply --hot to:app/1.0/app-1.0.1.spr" in text


def test_each_page_shows_the_rows_a_person_reads(fleet: FleetServer) -> None:
    status, headers, body = get(fleet.server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src" not in headers["Content-Security-Policy"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    page = parse_page(body)
    rows = page.tables["systems"]
    assert [(r[0], r[1]) for r in rows] == [
        ("cluster-eu", "behind"), ("old-eu", "stale"), ("prod-eu", "behind"),
        ("test-eu", "up-to-date")]
    assert rows[0][4] == "2"  # the cluster's nodes
    assert '<meta name="viewport"' in body and page.scripts == 0

    status, _, body = get(fleet.server, "/systems/prod-eu", auth="basic")
    assert status == 200
    page = parse_page(body)
    assert page.tables["components"] == [
        ["app", "1.0", "1.0.1 hot", "2.0"], ["lib", "1.0", "-", "1.1"]]
    assert page.tables["releases"] == [
        ["2026.12", "trails", "app, lib", "steppatch apply to:releases/2026.12.spr"]]
    assert [r[2] for r in page.tables["history"]] == ["(the oldest kept)"]
    # The hostile release note is text: no script element, the characters escaped.
    assert page.scripts == 0 and HOSTILE in "".join(page.text)
    assert "&lt;script&gt;alert(&#39;fleet&#39;)&lt;/script&gt; &amp; &lt;b&gt;" in body
    assert "steppatch apply --hot to:app/1.0/app-1.0.1.spr" in body

    status, _, body = get(fleet.server, "/systems/test-eu")
    history = parse_page(body).tables["history"]
    assert [r[2] for r in history] == ["app: 1.0 → 2.0 lib: 1.0 → 1.1", "(the oldest kept)"]

    status, _, body = get(fleet.server, "/systems/cluster-eu")
    page = parse_page(body)
    assert page.tables["nodes"] == [["node-a", "app 1.0, lib 1.0", "-"],
                                    ["node-b", "app 1.0, lib 1.0", "-"]]
    assert [r[2] for r in page.tables["history"]] == ["nothing", "(the oldest kept)"]

    status, _, body = get(fleet.server, "/store")
    assert status == 200
    page = parse_page(body)
    assert "origin" in "".join(page.text) and "4 uploaded a snapshot" in "".join(page.text)

    for missing in ("/systems/nobody", "/systems/..%2F..%2Fetc", "/systems/%3Cscript%3E"):
        status, _, body = get(fleet.server, missing)
        assert status == 404 and "<script>" not in body

    status, headers, css = get(fleet.server, "/fleet.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css")
    assert "@media (max-width" in css


def test_metrics_count_systems_per_state_and_components_behind(fleet: FleetServer) -> None:
    _, _, text = get(fleet.server, "/metrics")
    lines = set(text.splitlines())
    assert 'steppatch_server_fleet_systems{state="behind"} 2' in lines
    assert 'steppatch_server_fleet_systems{state="stale"} 1' in lines
    assert 'steppatch_server_fleet_components_behind{system="prod-eu"} 2' in lines
    assert 'steppatch_server_fleet_components_behind{system="test-eu"} 0' in lines


def test_pages_need_the_admin_token(fleet: FleetServer) -> None:
    for path in ("/", "/systems/prod-eu", "/store", "/fleet.css"):
        status, _, body = get(fleet.server, path, auth=None)
        assert status == 401 and "prod-eu" not in body
        wrong = "Basic " + base64.b64encode(b"anyone:not-the-token-at-all").decode()
        assert get(fleet.server, path, auth=wrong)[0] == 401
        assert get(fleet.server, path, auth="basic")[0] == 200
        assert get(fleet.server, path, auth="bearer")[0] == 200
    assert get(fleet.server, "/health", auth=None)[0] == 200


def test_a_mirror_compares_with_the_index_it_verified(
    tmp_path: Path, servers: Servers, certs: Pki
) -> None:
    from steppatch.server import fleet_report, load_config
    from tests.integration.server.conftest import https_home, wait_for
    from tests.integration.server.fleet_setup import fleet_repo

    repo = fleet_repo(tmp_path / "r")
    origin = servers.origin(repo.root)
    mirror = servers.mirror([origin], repo.root / "root.json")
    home = https_home(tmp_path / "prod", mirror, repo, certs, "prod-eu")
    assert home.apply(["to:app/1.0/app-1.0.spr"]).upload == "sent"
    config = load_config(mirror.config)
    wait_for(lambda: (config.store / "snapshots/prod-eu/latest.spr").is_file())
    fleet, unreadable = fleet_report(config)
    assert fleet.indexed and isinstance(fleet.index_version, int) and unreadable == {}
    (prod,) = fleet.systems
    assert prod.state.value == "behind" and prod.behind == 2
    # The mirror holds the release recipe only once fetched: then it is compared too.
    assert prod.releases == ()
    status, _, body = get(mirror, "/", auth=None)
    assert status == 200 and f"index version {fleet.index_version}" in body
    # A stored snapshot damaged on disk: that system is listed as unreadable, nothing else lost.
    (config.store / "snapshots/prod-eu/latest.spr").write_bytes(b"{not json")
    fleet, unreadable = fleet_report(config)
    assert fleet.systems == () and list(unreadable) == ["prod-eu"]
    status, _, body = get(mirror, "/", auth=None)
    assert status == 200 and "Unreadable" in body and "prod-eu" in body
