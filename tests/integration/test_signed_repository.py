"""Issue 4 end to end: a repository signed by the release engineer, a home that trusts only that.

Each test plays the attacker on a real repository directory (the channel a mirror would be) and
asserts the typed error and that the home did not change. The core's own attack tests are in
tests/unit/trust/.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from steppatch import Home, Repository
from steppatch.errors import IntegrityError, TooLarge
from steppatch.trust import (
    BadMetadata,
    ExpiredMetadata,
    MixAndMatch,
    RollbackAttack,
    ThresholdNotMet,
)
from tests.e2e.test_walking_skeleton import home_digest

RESTAPI = "to:restapi/7.0/restapi-7.0.40.spr"


@pytest.fixture
def repo(examples_repo: Repository) -> Repository:
    return examples_repo


@pytest.fixture
def home(tmp_path: Path, repo: Repository) -> Home:
    home = Home.init(
        tmp_path / "home", updates=repo.root.as_uri(), root=(repo.root / "root.json").read_bytes()
    )
    home.apply(["to:restapi/7.0/restapi-7.0.39.spr"])
    return home


def refused(home: Home, error: type[Exception], ref: str = RESTAPI) -> Exception:
    """Apply ``ref`` on a fresh session; assert it fails with ``error`` and changes nothing.

    A newer timestamp that verified may be stored before the index it pins is refused, as TUF
    does; the stored index and root, the managed tree and the state may not change.
    """
    metadata = home.path / ".steppatch/metadata"
    before = without_timestamp(home_digest(home.path))
    stored = {name: (metadata / name).read_bytes() for name in ("root.json", "index.json")}
    with pytest.raises(error) as info:
        Home.open(home.path).apply([ref])
    assert without_timestamp(home_digest(home.path)) == before
    assert stored == {name: (metadata / name).read_bytes() for name in stored}
    return info.value


def without_timestamp(digest: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in digest.items() if k != ".steppatch/metadata/timestamp.json"}


def pinned_index(repo: Repository) -> Path:
    pin = json.loads((repo.root / "timestamp.json").read_text())["signed"]["index"]
    return repo.root / f"indexes/{pin['version']}.index.json"


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value, indent=2))


def test_index_altered_after_signing_is_mix_and_match(repo: Repository, home: Home) -> None:
    repo.sign()  # a new index, which the home does not hold yet
    index = pinned_index(repo)
    data = index.read_bytes()
    assert b"Fixes paging" in data
    index.write_bytes(data.replace(b"Fixes paging", b"Fixes PAGING"))  # same length
    error = refused(home, MixAndMatch)
    assert error.field == "sha256"  # type: ignore[attr-defined]
    assert error.role == "index"  # type: ignore[attr-defined]
    assert "index" in str(error)


def test_index_longer_than_pinned_is_not_read_past_its_length(
    repo: Repository, home: Home
) -> None:
    repo.sign()
    with pinned_index(repo).open("ab") as f:
        f.write(b" " * 1_000_000)
    error = refused(home, TooLarge)
    assert error.what == "index metadata"  # type: ignore[attr-defined]


def test_timestamp_with_its_signature_removed(repo: Repository, home: Home) -> None:
    edit_json(repo.root / "timestamp.json", lambda doc: doc.update(signatures=[]))
    error = refused(home, ThresholdNotMet)
    assert error.threshold == 1 and error.counted == 0  # type: ignore[attr-defined]


def test_timestamp_signed_by_a_key_the_root_does_not_list(
    repo: Repository, home: Home, tmp_path: Path
) -> None:
    other = Repository.init(tmp_path / "other")
    shutil.copy(other.root / "timestamp.json", repo.root / "timestamp.json")
    refused(home, ThresholdNotMet)


def test_rollback_to_an_older_timestamp_and_index(
    repo: Repository, home: Home, sources: Path
) -> None:
    old_timestamp = (repo.root / "timestamp.json").read_bytes()
    repo.sign()
    Home.open(home.path).prepare([RESTAPI])  # the home now trusts the newer versions
    (repo.root / "timestamp.json").write_bytes(old_timestamp)
    error = refused(home, RollbackAttack)
    assert error.role == "timestamp"  # type: ignore[attr-defined]


def test_expired_metadata_says_since_when(repo: Repository, home: Home) -> None:
    repo.sign(expires=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    error = refused(home, ExpiredMetadata)
    assert "2026-01-02T03:04:05Z" in str(error)


def test_a_frozen_repository_is_refused_once_its_timestamp_expires(
    repo: Repository, home: Home
) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=8)  # the default timestamp lasts 7 days
    before = home_digest(home.path)
    with pytest.raises(ExpiredMetadata):
        Home.open(home.path, clock=lambda: later).apply([RESTAPI])
    assert home_digest(home.path) == before


def test_recipe_and_manifest_must_match_the_index(repo: Repository, home: Home) -> None:
    recipe = repo.root / "restapi/7.0/restapi-7.0.40.spr"
    recipe.write_text(recipe.read_text().replace("7.0.40", "7.0.39"))
    error = refused(home, IntegrityError)
    assert error.what == "recipe restapi/7.0/restapi-7.0.40.spr"  # type: ignore[attr-defined]


def test_manifest_must_match_the_index(repo: Repository, home: Home) -> None:
    listed = repo.index.components["restapi"]
    manifest = repo.root / listed[max(listed)].manifest.path
    manifest.chmod(0o644)
    manifest.write_text(manifest.read_text().replace('"0644"', '"0755"'))
    error = refused(home, IntegrityError)
    assert error.what == "manifest of restapi 7.0.40"  # type: ignore[attr-defined]


def test_key_rotation_fast_forwards_the_home(repo: Repository, home: Home) -> None:
    for role in ("timestamp", "index", "root"):
        repo.rotate_keys(role)
    assert repo.trusted_root.version == 4
    Home.open(home.path).apply([RESTAPI])
    assert Home.open(home.path).trusted_root.version == 4
    retired = sorted(p.name.partition("-")[0] for p in (repo.key_dir / "retired").iterdir())
    assert retired == ["index", "root", "timestamp"]


def test_a_root_version_cannot_be_skipped(repo: Repository, home: Home) -> None:
    repo.rotate_keys("root")
    repo.rotate_keys("timestamp")
    (repo.root / "roots/2.root.json").unlink()  # the home trusts 1 and may only move to 2
    refused(home, ThresholdNotMet)


def test_tampered_stored_root_is_refused(home: Home) -> None:
    stored = home.path / ".steppatch/metadata/root.json"
    edit_json(stored, lambda doc: doc["signed"].update(version=7))
    refused(home, ThresholdNotMet)


def test_garbage_stored_root_is_refused(home: Home) -> None:
    (home.path / ".steppatch/metadata/root.json").write_bytes(b"{not json")
    refused(home, BadMetadata)


def test_private_keys_never_enter_the_published_tree(repo: Repository) -> None:
    assert repo.key_dir.parent == repo.root.parent
    published = [p.read_bytes() for p in repo.root.rglob("*") if p.is_file()]
    assert not any(b"PRIVATE KEY" in data for data in published)
    assert all(p.stat().st_mode & 0o077 == 0 for p in repo.key_dir.glob("*.pem"))


def test_keys_inside_the_repository_are_refused(tmp_path: Path) -> None:
    from steppatch.errors import ConfigError

    with pytest.raises(ConfigError):
        Repository.init(tmp_path / "r", keys=tmp_path / "r" / "keys")
    assert not (tmp_path / "r" / "keys").exists()


def test_existing_keys_are_reused(tmp_path: Path, repo: Repository) -> None:
    again = Repository.init(tmp_path / "second", keys=repo.key_dir)
    assert again.trusted_root.root_role.keyids == repo.trusted_root.root_role.keyids
