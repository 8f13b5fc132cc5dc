"""The signing commands and the trust options of init, as an operator runs them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Run
from tests.e2e.test_walking_skeleton import home_digest, one_line


@pytest.fixture
def repo(tmp_path: Path, sources: Path, run: Run) -> Path:
    repo = tmp_path / "repo"
    result = run("repo", "init", repo)
    assert f"{tmp_path / 'repo.keys'}" in result.out
    run("repo", "add", repo, sources / "step-core-9.0.0", sources / "step-core-9.0.5")
    return repo


def test_init_needs_a_root_or_an_explicit_trust_on_first_use(
    repo: Path, run: Run, home: Path
) -> None:
    line = one_line(run("init", "--updates", repo.as_uri(), expect=2).err)
    assert "--root" in line and "--trust-on-first-use" in line
    assert not home.exists()


def test_trust_on_first_use_prints_the_root_key_ids(repo: Path, run: Run) -> None:
    err = run("init", "--updates", repo.as_uri(), "--trust-on-first-use").err
    keyid = json.loads((repo / "root.json").read_text())["signed"]["roles"]["root"]["keyids"][0]
    assert "trusting root version 1 on first use" in err
    assert keyid in err


def test_a_root_that_is_not_root_metadata_is_refused(
    repo: Path, run: Run, home: Path, tmp_path: Path
) -> None:
    line = one_line(
        run("init", "--updates", repo.as_uri(), "--root", repo / "timestamp.json", expect=3).err
    )
    assert "root" in line
    assert not home.exists()


def test_sign_rotate_and_apply(repo: Path, run: Run, home: Path) -> None:
    run("init", "--updates", repo.as_uri(), "--root", repo / "root.json")
    run("apply", "to:step-core/9.0/step-core-9.0.0.spr")
    assert "Signed index version" in run("repo", "sign", repo, "--expires", "30d").out
    out = run("repo", "rotate-keys", repo, "--role", "root").out
    assert "Published root version 2" in out
    run("repo", "rotate-keys", repo, "--role", "index")
    run("apply", "to:step-core/latest.spr")
    assert json.loads(run("status", "--json").out)["components"] == {"step-core": "9.0.5"}
    stored = json.loads((home / ".steppatch/metadata/root.json").read_text())
    assert stored["signed"]["version"] == 3


def test_expired_repository_is_refused_saying_since_when(
    repo: Path, run: Run, home: Path
) -> None:
    run("init", "--updates", repo.as_uri(), "--root", repo / "root.json")
    run("repo", "sign", repo, "--expires", "2026-01-01T00:00:00Z")
    before = home_digest(home)
    line = one_line(run("apply", "to:step-core/latest.spr", expect=3).err)
    assert "expired since 2026-01-01T00:00:00Z" in line
    assert home_digest(home) == before


def test_altered_object_is_named(repo: Path, run: Run, home: Path) -> None:
    run("init", "--updates", repo.as_uri(), "--root", repo / "root.json")
    run("apply", "to:step-core/9.0/step-core-9.0.0.spr")
    # What the home holds (in its cache, or moved out of it into the live tree) is not fetched.
    held = {p.name for p in (home / ".steppatch/cache").rglob("*")} | {
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (home / "current").resolve().rglob("*")
        if p.is_file() and not p.is_symlink()
    }
    victim = min(p for p in (repo / "objects").rglob("*") if p.is_file() and p.name not in held)
    victim.chmod(0o644)
    victim.write_bytes(b"altered after signing")
    # The deltas and compressed forms too: a home takes those first and falls back to the object.
    for other in (p for p in (repo / "deltas").rglob("*") if p.is_file()):
        other.chmod(0o644)
        other.write_bytes(b"altered after signing")
    before = home_digest(home)
    line = one_line(run("apply", "to:step-core/latest.spr", expect=3).err)
    assert victim.name in line
    assert home_digest(home) == before


def test_bad_expiry_and_role_are_input_errors(repo: Path, run: Run) -> None:
    assert "--expires" in one_line(run("repo", "sign", repo, "--expires", "soon", expect=2).err)
    assert "--role" in one_line(run("repo", "rotate-keys", repo, "--role", "x", expect=2).err)


def test_missing_keys_say_where_they_were_looked_for(repo: Path, run: Run, tmp_path: Path) -> None:
    line = one_line(run("repo", "sign", repo, "--keys", tmp_path / "nokeys", expect=2).err)
    assert str(tmp_path / "nokeys") in line


def test_bad_mirror_edits_are_refused_and_change_nothing(
    repo: Path, run: Run, home: Path
) -> None:
    run("init", "--updates", repo.as_uri(), "--root", repo / "root.json")
    config = (home / "steppatch.toml").read_bytes()
    assert "already" in one_line(run("mirrors", "add", "primary", repo.as_uri(), expect=2).err)
    assert "plain http" in one_line(
        run("mirrors", "add", "web", "http://127.0.0.1:9/", expect=2).err
    )
    assert "https://" in one_line(run("mirrors", "--updates", "ftp://x/", expect=2).err)
    assert (home / "steppatch.toml").read_bytes() == config
    checks = json.loads(run("ping", "--updates", "gopher://x/", "--json", expect=4).out)
    assert checks["checks"][0]["name"] == "configuration"


def test_repo_init_refuses_relative_keys_inside_the_repository_from_another_cwd(
    tmp_path: Path, run: Run
) -> None:
    # Issue #14: "repo init /X/repo --keys ../repo/keys" run from /X/other.
    (tmp_path / "other").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    for keys in ("../repo/keys", "../other/../repo", "./../repo/./keys"):
        result = run("repo", "init", tmp_path / "repo", "--keys", keys, expect=2,
                     cwd=tmp_path / "other")
        line = one_line(result.err)
        assert "must not live inside the repository" in line
        assert str(tmp_path / "repo") in line
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created
        assert not list((tmp_path / "other").iterdir())
    # The same key directory, beside the repository: accepted.
    run("repo", "init", tmp_path / "repo", "--keys", "../repo-keys", cwd=tmp_path / "other")
    assert list((tmp_path / "repo-keys").glob("root-*.pem"))
    assert not any(p.suffix == ".pem" for p in (tmp_path / "repo").rglob("*"))
