"""Signing keys never inside the repository, by resolved paths (issue #14, item 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from steppatch import Repository
from steppatch.errors import ConfigError, KeysInsideRepository
from steppatch.repo import check_outside, default_key_dir


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _refused_init(root: Path, keys: Path | str, base: Path) -> KeysInsideRepository:
    before = _listing(base)
    with pytest.raises(KeysInsideRepository) as e:
        Repository.init(root, keys=keys)
    assert isinstance(e.value, ConfigError)  # the CLI's exit code for input errors
    assert e.value.keys == str(Path(keys).absolute())
    assert e.value.repository == str(Path(root).absolute())
    assert _listing(base) == before  # nothing made: no repository, no keys
    return e.value


def test_relative_keys_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "repo init /X/repo --keys ../repo/keys" run from /X/other: the text differs, the place not.
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    _refused_init(tmp_path / "repo", "../repo/keys", tmp_path)
    _refused_init(tmp_path / "repo", "../repo", tmp_path)


def test_repository_given_with_dotdot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    _refused_init(Path("../repo"), tmp_path / "repo" / "k", tmp_path)


def test_key_directory_symlinked_into_the_repository(tmp_path: Path) -> None:
    (tmp_path / "repo" / "keys").mkdir(parents=True)
    (tmp_path / "keys").symlink_to(tmp_path / "repo" / "keys")
    _refused_init(tmp_path / "repo", tmp_path / "keys", tmp_path)


def test_repository_reached_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "repo")
    _refused_init(tmp_path / "alias", tmp_path / "repo" / "keys", tmp_path)
    _refused_init(tmp_path / "repo", tmp_path / "alias" / "keys", tmp_path)


def test_default_key_dir_through_a_symlink_into_the_repository(tmp_path: Path) -> None:
    # REPO.keys beside the repository, but a symlink that leads back into it.
    (tmp_path / "repo" / "k").mkdir(parents=True)
    (tmp_path / "repo.keys").symlink_to(tmp_path / "repo" / "k")
    before = _listing(tmp_path)
    with pytest.raises(KeysInsideRepository):
        Repository.init(tmp_path / "repo")
    assert _listing(tmp_path) == before


def test_default_key_dir_of_dotdot_is_beside_it(tmp_path: Path) -> None:
    assert default_key_dir(tmp_path / "a" / "..") == tmp_path.with_name(tmp_path.name + ".keys")
    check_outside(default_key_dir(tmp_path / "a" / ".."), tmp_path)


def test_keys_beside_with_a_similar_name_are_fine(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "repo", keys=tmp_path / "repo-keys")
    assert any((tmp_path / "repo-keys").glob("root-*.pem"))
    assert not any(p.suffix == ".pem" for p in repo.root.rglob("*"))


@pytest.fixture
def moved_in(tmp_path: Path) -> tuple[Path, Path]:
    """A repository whose key directory was then moved into it (as an old steppatch allowed)."""
    repo = Repository.init(tmp_path / "repo")
    inside = repo.root / "keys"
    shutil.move(repo.key_dir, inside)
    return repo.root, inside


def test_open_refuses_keys_inside(moved_in: tuple[Path, Path]) -> None:
    root, inside = moved_in
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(KeysInsideRepository) as e:
        Repository.open(root, keys=inside)
    assert e.value.keys == str(inside)
    # ... and by a relative path with "..", or a symlink beside the repository.
    (root.parent / "repo.keys").symlink_to(inside)
    with pytest.raises(KeysInsideRepository):
        Repository.open(root)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_rotate_keys_refuses_a_key_dir_that_became_a_link_into_the_repository(
    tmp_path: Path,
) -> None:
    repo = Repository.init(tmp_path / "repo")
    opened = Repository.open(repo.root)
    # After open(): the key directory is swapped for a symlink into the repository.
    shutil.move(repo.key_dir, repo.root / "k")
    repo.key_dir.symlink_to(repo.root / "k")
    before = {p: p.read_bytes() for p in repo.root.rglob("*") if p.is_file()}
    for act in (lambda: opened.rotate_keys("timestamp"), opened.sign):
        with pytest.raises(KeysInsideRepository):
            act()
    assert {p: p.read_bytes() for p in repo.root.rglob("*") if p.is_file()} == before
    assert not (repo.root / "k" / "retired").exists()
