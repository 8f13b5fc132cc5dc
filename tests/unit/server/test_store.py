"""The mirror store against file:// upstreams: verify before store, once-per-run checks,
a full disk (ENOSPC injected), failover, and a tampered store refused."""

from __future__ import annotations

import errno
import shutil
from hashlib import sha256
from pathlib import Path

import pytest
from packaging.version import Version

from steppatch import Repository, evolve
from steppatch.limits import DEFAULT_LIMITS
from steppatch.server import StoreFull, UpstreamUnavailable, parse_config
from steppatch.server._metrics import Metrics
from steppatch.server._store import FillControl, Item, MirrorStore
from steppatch.server._upstream import Upstreams
from steppatch.store import PartialObject
from steppatch.trust import ThresholdNotMet
from tests.builders import component, jar_bytes, repository


@pytest.fixture
def repo(examples_repo: Repository) -> Repository:
    return examples_repo


def upstreams(tmp_path: Path, *roots: Path) -> Upstreams:
    ups = "".join(
        f'[[upstreams]]\nid = "u{i}"\nurl = "{r.as_uri()}"\npriority = {10 - i}\n'
        for i, r in enumerate(roots)
    )
    text = ('store = "s"\ntrusted_root = "r.json"\nupstream_retry_s = 60\n'
            '[tls]\ncert = "a"\nkey = "b"\nclient_ca = "c"\n' + ups)
    return Upstreams(parse_config(text.encode(), "m.toml", tmp_path), Metrics())


def a_store(tmp_path: Path, repo: Repository) -> MirrorStore:
    return MirrorStore(tmp_path / "store", (repo.root / "root.json").read_bytes(), Metrics())


def first_object(store: MirrorStore, repo: Repository) -> Item:
    cv = next(iter(repo.index.components["restapi"].values()))
    path = cv.manifest.path
    return Item("manifest", path, cv.manifest.sha256, cv.manifest.length)


def test_fill_verifies_and_checks_once(tmp_path: Path, repo: Repository) -> None:
    ups = upstreams(tmp_path, repo.root)
    store = a_store(tmp_path, repo)
    assert store.refresh(ups) is True
    item = first_object(store, repo)
    held = store.fill(item, ups, FillControl())
    assert held.file is not None and held.file.read_bytes() == (repo.root / item.path).read_bytes()
    assert not store.needs_check(item.sha256)
    # A later process hashes it once; a damaged file is removed rather than served.
    again = a_store(tmp_path, repo)
    assert again.needs_check(item.sha256)
    held.file.chmod(0o644)
    held.file.write_bytes(b"rot")
    assert again.check(item) is False and not again.objects.has(item.sha256)


def test_wrong_bytes_fail_over(tmp_path: Path, repo: Repository) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(repo.root, bad)
    store = a_store(tmp_path, repo)
    store.refresh(upstreams(tmp_path, repo.root))
    item = first_object(store, repo)
    (bad / item.path).chmod(0o644)
    (bad / item.path).write_bytes(b"x" * item.length)
    only_bad = upstreams(tmp_path, bad)
    with pytest.raises(UpstreamUnavailable) as info:
        store.fill(item, only_bad, FillControl())
    assert "u0" in info.value.reasons
    assert not store.objects.has(item.sha256)
    assert not store.objects.partial_path(item.sha256).exists()
    store.fill(item, upstreams(tmp_path, bad, repo.root), FillControl())
    assert store.objects.has(item.sha256)


def test_full_disk_is_store_full_and_leaves_nothing(
    tmp_path: Path, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: the filesystem says ENOSPC on the first write of a fill.
    ups = upstreams(tmp_path, repo.root)
    store = a_store(tmp_path, repo)
    store.refresh(ups)
    item = first_object(store, repo)

    def full(self: PartialObject, chunk: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PartialObject, "write", full)
    with pytest.raises(StoreFull) as info:
        store.fill(item, ups, FillControl())
    assert "space" in info.value.cause
    assert not store.objects.has(item.sha256)
    assert not store.objects.partial_path(item.sha256).exists()


def test_unreachable_upstream_fails_fast_afterwards(tmp_path: Path, repo: Repository) -> None:
    gone = tmp_path / "gone"
    store = a_store(tmp_path, repo)
    store.refresh(upstreams(tmp_path, repo.root))
    ups = upstreams(tmp_path, gone)
    item = first_object(store, repo)
    with pytest.raises(UpstreamUnavailable):
        store.refresh(ups)
    # A missing directory is "no such file" (not a network error): it does not mark the
    # upstream down, but every try fails with its reason.
    with pytest.raises(UpstreamUnavailable) as info:
        store.fill(item, ups, FillControl())
    assert info.value.reasons


def test_tampered_stored_metadata_is_refused(tmp_path: Path, repo: Repository) -> None:
    store = a_store(tmp_path, repo)
    store.refresh(upstreams(tmp_path, repo.root))
    ts = tmp_path / "store/metadata/timestamp.json"
    ts.write_text(ts.read_text().replace('"version": ', '"version": 1', 1))
    with pytest.raises(ThresholdNotMet):
        a_store(tmp_path, repo)


def test_bulk_plans(tmp_path: Path, repo: Repository) -> None:
    ups = upstreams(tmp_path, repo.root)
    store = a_store(tmp_path, repo)
    store.refresh(ups)
    assert store.bulk_items("released") == []
    # Rounds: the documents first (recipes, manifests, and the transfers documents of the
    # versions that published deltas: step-core 9.0.5's engine), then the objects they name and
    # the deltas the transfers documents offer; then nothing.
    rounds = []
    while items := store.bulk_items("historic"):
        rounds.append({i.kind for i in items})
        for item in items:
            store.fill(item, ups, FillControl())
        assert len(rounds) <= 3, rounds
    assert rounds[0] == {"recipe", "manifest", "transfers"}
    assert "object" in rounds[1] and rounds[1] <= {"object", "delta"}
    assert all(r <= {"object", "delta"} for r in rounds[2:])


def test_bad_trusted_root(tmp_path: Path, repo: Repository) -> None:
    from steppatch.trust import MetadataError

    with pytest.raises(MetadataError):
        MirrorStore(tmp_path / "store", b"{}", Metrics())


def test_fill_refuses_content_over_its_limit_before_fetching(
    tmp_path: Path, repo: Repository
) -> None:
    from steppatch.errors import TooLarge
    from steppatch.limits import Limits

    ups = upstreams(tmp_path, repo.root)
    store = MirrorStore(
        tmp_path / "store", (repo.root / "root.json").read_bytes(), Metrics(),
        Limits(max_object_bytes=10),
    )
    store.refresh(ups)
    store.complete_catalogue(ups, FillControl())
    sha, size = max(store.catalogue.items(), key=lambda kv: kv[1])
    assert size > 10
    fetches = store.metrics.total("upstream_fetches_total")
    before = sorted(p for p in (tmp_path / "store").rglob("*"))
    item = Item("object", f"objects/{sha[:2]}/{sha}", sha, size)
    with pytest.raises(TooLarge) as caught:
        store.fill(item, ups, FillControl())
    assert (caught.value.what, caught.value.limit) == (f"object {item.path}", 10)
    assert sorted(p for p in (tmp_path / "store").rglob("*")) == before  # no partial file
    assert not store.objects.has(sha)
    assert store.metrics.total("upstream_fetches_total") == fetches  # not even asked


def test_a_zip_delta_over_the_expanded_bound_is_passed_over_for_the_plain_delta(
    tmp_path: Path,
) -> None:
    """Bulk sync: the shortest delta of an archive is its zip delta; one whose expanded form is
    over ``Limits.max_zip_expanded_bytes`` is refused before anything is decoded,
    and the plain delta rebuilds the archive; nothing is left beside the store's objects."""
    old, new = jar_bytes(3), jar_bytes(3, changed=7)
    src = tmp_path / "src"
    repo = repository(
        tmp_path,
        component(src, "app", "1.0", {"lib/app.jar": old}),
        component(src, "app", "1.1", {"lib/app.jar": new}),
    )
    metrics = Metrics()
    store = MirrorStore(
        tmp_path / "store", (repo.root / "root.json").read_bytes(), metrics,
        limits=evolve(DEFAULT_LIMITS, max_zip_expanded_bytes=1024),
    )  # fmt: skip
    ups = upstreams(tmp_path, repo.root)
    assert store.refresh(ups) is True
    transfers = repo.index.components["app"][Version("1.1")].transfers
    assert transfers is not None
    store.fill(Item("transfers", transfers.path, transfers.sha256, transfers.length), ups,
               FillControl())  # fmt: skip
    old_sha, new_sha = sha256(old).hexdigest(), sha256(new).hexdigest()
    store.fill(Item("object", f"objects/{old_sha[:2]}/{old_sha}", old_sha, len(old)), ups,
               FillControl())  # fmt: skip
    item = Item("object", f"objects/{new_sha[:2]}/{new_sha}", new_sha, len(new))
    assert any(e is not None for *_, e in store.delta_routes[new_sha])  # a zip delta offered
    held = store._fill_by_delta(item, ups, FillControl())
    assert held is not None and held.file is not None and held.file.read_bytes() == new
    assert metrics.total("objects_from_deltas_total") == 1
    assert metrics.total("objects_from_zip_deltas_total") == 0
    partial = store.objects.partial_path(new_sha).parent
    assert not partial.exists() or not list(partial.iterdir())
