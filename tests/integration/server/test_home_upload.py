"""The thin snapshot a home sends after an apply carries names, versions and the system name only
(invariant 7: no customer data upstream)."""

from __future__ import annotations

import json
from pathlib import Path

from steppatch import Repository
from tests.integration.server.conftest import Pki, Servers, https_home, wait_for


def test_apply_sends_names_versions_and_the_system_name_only(
    repo: Repository, servers: Servers, certs: Pki, tmp_path: Path
) -> None:
    origin = servers.origin(repo.root)
    home = https_home(tmp_path / "home", origin, repo, certs, "prod-eu")
    report = home.apply([f"to:{sorted(repo.index.recipes)[0]}"])
    assert report.upload == "sent"
    stored = origin.config.parent / "store/snapshots/prod-eu/latest.spr"
    wait_for(stored.is_file)
    sent = json.loads(stored.read_text())
    assert set(sent) == {"format", "kind", "components", "system"}
    assert sent["kind"] == "snapshot" and sent["system"] == "prod-eu"
    assert sent["components"] == {n: f"=={v}" for n, v in home.status().versions().items()}
