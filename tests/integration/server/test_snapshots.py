"""Thin snapshot uploads: own system name only, stored, forwarded upstream by a mirror."""

from __future__ import annotations

from pathlib import Path

from steppatch import Repository
from steppatch.model import RecipeKind
from steppatch.recipe import dump_recipe, pinned_recipe
from tests.integration.server.conftest import Pki, Servers, client, wait_for


def snapshot(system: str, kind: RecipeKind = RecipeKind.SNAPSHOT) -> bytes:
    from packaging.version import Version

    return dump_recipe(pinned_recipe(kind, {"restapi": Version("7.0.40")},
                                     name=f"snapshot-{system}", system=system,
                                     created="2026-11-22T05:00:00Z"))


def test_own_snapshot_only(repo: Repository, servers: Servers, certs: Pki) -> None:
    origin = servers.origin(repo.root)
    s = client(certs, "prod-eu")
    url = f"{origin.url}/snapshots/prod-eu.spr"
    r = s.put(url, data=snapshot("prod-eu"))
    assert r.status_code == 201, r.text
    store = origin.config.parent / "store/snapshots/prod-eu"
    assert (store / "latest.spr").read_bytes() == snapshot("prod-eu")
    assert s.get(url).content == snapshot("prod-eu")
    # Another system's name, in the path or in the document: refused, nothing stored.
    assert s.put(f"{origin.url}/snapshots/test-eu.spr", data=snapshot("test-eu")).status_code == 403
    assert s.put(url, data=snapshot("test-eu")).status_code == 400
    assert client(certs, "test-eu").get(url).status_code == 403
    assert not (origin.config.parent / "store/snapshots/test-eu").exists()
    # Not a thin snapshot, not a recipe, too large.
    assert s.put(url, data=snapshot("prod-eu", RecipeKind.RELEASE)).status_code == 400
    assert s.put(url, data=b"{not json").status_code == 400
    assert s.put(url, data=b" " * (5 * 1024 * 1024)).status_code == 413
    assert s.put(f"{origin.url}/snapshots/../x.spr", data=snapshot("prod-eu")).status_code in (
        400, 403, 404, 405)
    assert len(list(store.glob("*.spr"))) == 2  # one upload and latest.spr


def test_mirror_forwards_snapshots_upstream(
    repo: Repository, servers: Servers, certs: Pki
) -> None:
    origin = servers.origin(repo.root)
    mirror = servers.mirror([origin], repo.root / "root.json")
    s = client(certs, "prod-eu")
    assert s.put(f"{mirror.url}/snapshots/prod-eu.spr", data=snapshot("prod-eu")).status_code == 201
    mirror.admin("/sync", method="POST")
    # Upstream, under the mirror's own name (the first segment is always the uploader's).
    forwarded = origin.config.parent / "store/snapshots/your-mirror/prod-eu/latest.spr"
    wait_for(forwarded.exists)
    assert forwarded.read_bytes() == snapshot("prod-eu")
    assert mirror.health()["snapshots_pending"] == 0


def test_snapshot_kept_while_upstream_down(
    repo: Repository, servers: Servers, certs: Pki
) -> None:
    origin = servers.origin(repo.root)
    mirror = servers.mirror([origin], repo.root / "root.json")
    client(certs).get(f"{mirror.url}/timestamp.json")
    origin.stop()
    s = client(certs, "prod-eu")
    assert s.put(f"{mirror.url}/snapshots/prod-eu.spr", data=snapshot("prod-eu")).status_code == 201
    mirror.admin("/sync", method="POST")
    assert mirror.health()["snapshots_pending"] == 1
    restarted = servers.start(origin.config)
    text = mirror.config.read_text().replace(origin.url, restarted.url)
    mirror.stop()
    mirror.config.write_text(text)
    again = servers.start(mirror.config)
    again.admin("/sync", method="POST")
    forwarded = restarted.config.parent / "store/snapshots/your-mirror/prod-eu/latest.spr"
    wait_for(forwarded.exists)
    assert again.health()["snapshots_pending"] == 0


def test_snapshots_refused_when_disabled(
    tmp_path: Path, repo: Repository, servers: Servers, certs: Pki
) -> None:
    origin = servers.origin(repo.root, accept_snapshots=False)
    r = client(certs).put(f"{origin.url}/snapshots/prod-eu.spr", data=snapshot("prod-eu"))
    assert r.status_code == 403
