"""Parallel downloads into the store: verified before kept, failover per object, resumable."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from steppatch.errors import IntegrityError, TooLarge
from steppatch.store import ObjectStore
from steppatch.transport import (
    HttpStatusError,
    Mirror,
    MirrorPool,
    NoMirrorLeft,
    ObjectRequest,
    TransportLimits,
    download_objects,
)
from tests.unit.transport.fakes import FakeMirror, objects, requests_for

FILES = objects(40, 5000)


def pool_of(*mirrors: FakeMirror, retries: int = 0, parallel: int = 4) -> MirrorPool:
    by_id = {m.name: m for m in mirrors}
    return MirrorPool(
        [Mirror(m.name, m.url, len(mirrors) - i) for i, m in enumerate(mirrors)],
        lambda mirror: by_id[mirror.id],
        TransportLimits(retries=retries, parallel_downloads=parallel),
    )


def stored(store: ObjectStore) -> dict[str, bytes]:
    """Every object file in the store (partial files excluded), checked to hash to its name."""
    found = {}
    for p in store.root.glob("??/*"):
        data = p.read_bytes()
        assert hashlib.sha256(data).hexdigest() == p.name
        found[p.name] = data
    return found


def partials(store: ObjectStore) -> list[Path]:
    return sorted((store.root / ".partial").glob("*"))


def expected() -> dict[str, bytes]:
    return {hashlib.sha256(d).hexdigest(): d for d in FILES.values()}


def test_downloads_everything_in_parallel_with_progress(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    seen: list[tuple[str, int, int]] = []
    threads: set[str] = set()
    mirror = FakeMirror("a", FILES)
    original = mirror.fetch

    def tracking(path: str, offset: int = 0):  # type: ignore[no-untyped-def]
        threads.add(threading.current_thread().name)
        return original(path, offset)

    mirror.fetch = tracking  # type: ignore[method-assign]
    reqs = requests_for(FILES)
    result = download_objects(
        pool_of(mirror), reqs + reqs[:5], store,
        limits=TransportLimits(parallel_downloads=4), progress=lambda *a: seen.append(a),
    )
    assert stored(store) == expected()
    assert (result.downloaded, result.present, result.resumed_bytes) == (40, 0, 0)
    assert result.received_bytes == 40 * 5000
    total = 40 * 5000
    assert seen[0] == ("download", 0, total) and seen[-1] == ("download", total, total)
    assert [d for _s, d, _t in seen] == sorted(d for _s, d, _t in seen)
    assert len(threads) > 1
    assert partials(store) == []
    # a second run finds everything present and downloads nothing
    again = download_objects(pool_of(FakeMirror("b", {})), reqs, store)
    assert (again.downloaded, again.present, again.received_bytes) == (0, 40, 0)


@pytest.mark.parametrize("fault", ["refuse", "timeout", "503", "404", "corrupt", "long", "cut"])
def test_faulty_primary_same_result_from_the_next(tmp_path: Path, fault: str) -> None:
    store = ObjectStore(tmp_path / "s")
    primary, backup = FakeMirror("primary", FILES, fault), FakeMirror("backup", FILES)
    pool = pool_of(primary, backup)
    download_objects(pool, requests_for(FILES), store)
    assert stored(store) == expected()
    assert list(pool.failed) == ["primary"]
    assert partials(store) == []
    if fault == "cut":
        # the backup continued where the primary broke off: no byte was fetched twice
        started = {p for p, _o in primary.calls}
        assert all(offset > 0 for p, offset in backup.calls if p in started)
        assert primary.sent + backup.sent == 40 * 5000
    if fault == "corrupt":
        assert isinstance(pool.failed["primary"], IntegrityError)
    if fault == "long":
        assert isinstance(pool.failed["primary"], TooLarge)


def test_all_mirrors_fail_nothing_unverified_is_stored(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    pool = pool_of(FakeMirror("a", FILES, "corrupt"), FakeMirror("b", FILES, "503"))
    with pytest.raises(NoMirrorLeft) as e:
        download_objects(pool, requests_for(FILES), store)
    assert set(e.value.reasons) == {"a", "b"}
    assert isinstance(e.value.errors["a"], IntegrityError)
    assert isinstance(e.value.errors["b"], HttpStatusError)
    assert stored(store) == {}
    # Downloads stopped midway keep their (unverified) partial files, outside the objects; the
    # next run resumes them, finds the wrong bytes when it verifies, and fetches those again.
    good = FakeMirror("good", FILES)
    download_objects(pool_of(good), requests_for(FILES), store)
    assert stored(store) == expected()
    assert partials(store) == []


def test_cut_everywhere_keeps_the_partial_and_resumes_without_refetching(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    files = dict(list(FILES.items())[:1])
    (req,) = requests_for(files)
    with pytest.raises(NoMirrorLeft):
        download_objects(pool_of(FakeMirror("a", files, "cut")), [req], store)
    assert stored(store) == {}
    (partial,) = partials(store)
    assert partial.stat().st_size == 2500
    mirror = FakeMirror("a", files)
    result = download_objects(pool_of(mirror), [req], store)
    assert mirror.calls == [(req.path, 2500)]
    assert (result.resumed_bytes, result.received_bytes) == (2500, 2500)
    assert stored(store) == {req.sha256: files[req.path]}
    assert partials(store) == []


def test_a_bad_partial_from_an_earlier_run_is_fetched_again_once(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    (req,) = requests_for(dict(list(FILES.items())[:1]))
    store.partial_path(req.sha256).parent.mkdir(parents=True)
    store.partial_path(req.sha256).write_bytes(b"x" * 1000)  # not a prefix of the object
    mirror = FakeMirror("a", FILES)
    pool = pool_of(mirror)
    download_objects(pool, [req], store)
    assert mirror.calls == [(req.path, 1000), (req.path, 0)]
    assert pool.failed == {}  # the mirror was not blamed for our old bytes
    assert stored(store) == {req.sha256: FILES[req.path]}


def test_the_same_mirror_is_retried_after_progress(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    files = dict(list(FILES.items())[:1])
    mirror = FakeMirror("a", files, "cut_once")
    pool = pool_of(mirror, retries=1)
    download_objects(pool, requests_for(files), store)
    assert [o for _p, o in mirror.calls] == [0, 2500]
    assert pool.failed == {}


def test_a_plain_fetcher_is_one_mirror(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    download_objects(FakeMirror("a", FILES), requests_for(FILES), store)
    assert stored(store) == expected()


def test_one_object_with_two_lengths_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        download_objects(
            FakeMirror("a", {}),
            [ObjectRequest("p", "a" * 64, 1), ObjectRequest("p", "a" * 64, 2)],
            ObjectStore(tmp_path / "s"),
        )
