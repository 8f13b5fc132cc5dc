"""``max_object_bytes`` (issue 14, item 9): refused when publishing, naming the file, with nothing
published; refused when downloading, before any byte reaches the cache. A small limit through
``Limits`` stands in for huge files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from steppatch import Home, Repository
from steppatch.errors import ComponentSourceError, TooLarge
from steppatch.limits import Limits
from steppatch.remote import MetadataStore, RepositoryClient
from steppatch.store import ObjectStore
from steppatch.transport import FileFetcher
from tests.e2e.test_walking_skeleton import home_digest
from tests.integration.server.conftest import make_component

LIMIT = 1000


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


class CountingFetcher(FileFetcher):
    """Reads a directory and records every path asked for."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.asked: list[str] = []

    def fetch(self, path: str, offset: int = 0) -> Iterator[bytes]:
        self.asked.append(path)
        return super().fetch(path, offset)


def test_repo_add_refuses_a_file_over_the_limit_naming_it(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "repo", limits=Limits(max_object_bytes=LIMIT))
    small = make_component(tmp_path / "src", "app", "1.0", {"bin/ok": b"x" * LIMIT})
    repo.add(small)  # exactly the limit is allowed
    before = tree(repo.root)
    big = make_component(tmp_path / "src", "app", "2.0",
                         {"bin/ok": b"x", "lib/huge.bin": b"y" * (LIMIT + 1)})
    with pytest.raises(ComponentSourceError) as caught:
        Repository.open(repo.root, limits=Limits(max_object_bytes=LIMIT)).add(big)
    assert caught.value.path == str(big / "files/lib/huge.bin")
    assert caught.value.field is None
    assert str(LIMIT) in caught.value.problem
    assert tree(repo.root) == before  # no object, manifest, recipe or index written


@pytest.fixture
def published(tmp_path: Path) -> Repository:
    """app 1.0 (small) and app 2.0, whose ``data/big.bin`` is over :data:`LIMIT`."""
    repo = Repository.init(tmp_path / "repo")
    repo.add(make_component(tmp_path / "src", "app", "1.0", {"bin/app": b"one"}))
    repo.add(make_component(tmp_path / "src", "app", "2.0",
                            {"bin/app": b"two", "data/big.bin": b"z" * (LIMIT * 3)}))
    return repo


def test_home_refuses_a_manifest_naming_an_object_over_the_limit(
    tmp_path: Path, published: Repository
) -> None:
    root = (published.root / "root.json").read_bytes()
    home = Home.init(tmp_path / "home", updates=published.root.as_uri(), root=root)
    home.apply(["to:app/1.0/app-1.0.spr"])
    before = home_digest(home.path)
    cache = home.path / ".steppatch/cache"
    cached = tree(cache) if cache.exists() else {}
    fetcher = CountingFetcher(published.root)
    limited = Home.open(home.path, limits=Limits(max_object_bytes=LIMIT), fetcher=fetcher)
    with pytest.raises(TooLarge) as caught:
        limited.apply(["to:app/2.0/app-2.0.spr"])
    assert (caught.value.what, caught.value.limit) == ("file data/big.bin of app 2.0", LIMIT)
    assert not [p for p in fetcher.asked if p.startswith("objects/")]  # not one object asked
    assert home_digest(home.path) == before
    assert (tree(cache) if cache.exists() else {}) == cached


def test_fetch_objects_refuses_an_object_over_the_limit_before_any_download(
    tmp_path: Path, published: Repository
) -> None:
    meta = MetadataStore(tmp_path / "meta")
    meta.write("root", (published.root / "root.json").read_bytes())
    fetcher = CountingFetcher(published.root)
    client = RepositoryClient(fetcher, meta, Limits(max_object_bytes=LIMIT))
    cv = client.index().components["app"][max(client.index().components["app"])]
    manifest = RepositoryClient(fetcher, meta).manifest(cv)  # the default limit reads it
    objects = sorted((e.sha256, e.size) for e in manifest.files() if e.sha256)
    store = ObjectStore(tmp_path / "cache")
    big = next(sha for sha, size in objects if size > LIMIT)
    with pytest.raises(TooLarge) as caught:
        client.fetch_objects(objects, store)
    assert (caught.value.what, caught.value.limit) == (f"object {big}", LIMIT)
    assert not [p for p in fetcher.asked if p.startswith("objects/")]
    assert not (tmp_path / "cache").exists() or tree(tmp_path / "cache") == {}
