"""The fleet pages in a real browser: Debian's chromium, headless, loads each page (HTTP Basic
with the admin token), saves a screenshot at phone and desktop width (test artifacts under
``tmp_path/screenshots``; also copied to ``$STEPPATCH_SCREENSHOTS`` when set), and the DOM it
built shows the rows a person reads, with the hostile release note as text."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.server.conftest import Pki, Servers
from tests.integration.server.fleet_setup import (
    HOSTILE,
    TOKEN,
    build_fleet,
    make_certs,
    parse_page,
)

pytestmark = pytest.mark.slow


def chromium() -> str:
    """The chromium binary, installed through apt when missing; skips when that is impossible."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except (subprocess.SubprocessError, OSError) as e:
            pytest.skip(f"chromium could not be installed: {' '.join(cmd)}: {e}")
        if done.returncode != 0:
            pytest.skip(f"chromium could not be installed: {' '.join(cmd)}: {done.stderr[-300:]}")
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("apt-get installed chromium but it is not on PATH")
    return found


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_certs(tmp_path_factory.mktemp("fleet-pki"))


def browse(binary: str, profile: Path, url: str, *args: str) -> str:
    done = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--hide-scrollbars",
         *args, url],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_each_page_in_chromium(tmp_path: Path, servers: Servers, certs: Pki) -> None:
    binary = chromium()
    fleet = build_fleet(tmp_path, servers, certs)
    base = f"http://anyone:{TOKEN}@{fleet.server.admin_listen}"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    profile = tmp_path / "profile"
    expected = {
        "/": ("systems", [("cluster-eu", "behind"), ("old-eu", "stale"), ("prod-eu", "behind"),
                          ("test-eu", "up-to-date")]),
        "/systems/prod-eu": ("components", [("app", "1.0"), ("lib", "1.0")]),
        "/systems/cluster-eu": ("nodes", [("node-a", "app 1.0, lib 1.0"),
                                          ("node-b", "app 1.0, lib 1.0")]),
        "/store": (None, []),
    }
    for path, (table, rows) in expected.items():
        page = parse_page(browse(binary, profile, base + path, "--dump-dom"))
        assert page.scripts == 0
        if table is not None:
            assert [tuple(r[:2]) for r in page.tables[table]] == rows, path
        else:
            assert "Health" in page.text and "origin" in "".join(page.text)
        if path == "/systems/prod-eu":
            # What the browser built from the note: text, no element.
            assert HOSTILE in "".join(page.text)
        slug = path.strip("/").replace("/", "-") or "fleet"
        for width, height, label in ((390, 900, "phone"), (1100, 700, "desktop")):
            shot = shots / f"{slug}-{label}.png"
            browse(binary, profile, base + path, f"--screenshot={shot}",
                   f"--window-size={width},{height}")
            data = shot.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    # The token is asked for: without it the browser gets the 401, not the fleet.
    denied = browse(binary, profile, f"http://{fleet.server.admin_listen}/", "--dump-dom")
    assert "prod-eu" not in denied
    target = os.environ.get("STEPPATCH_SCREENSHOTS")
    if target:
        shutil.copytree(shots, target, dirs_exist_ok=True)
