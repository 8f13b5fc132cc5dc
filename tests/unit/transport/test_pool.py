"""The mirror pool: priority order, failover on each fault, every mirror's reason when all fail."""

from __future__ import annotations

import hashlib

import pytest

from steppatch.errors import IntegrityError, MissingFile, SteppatchError, UnknownReference
from steppatch.transport import (
    ConnectionFailed,
    Fetcher,
    HttpStatusError,
    Mirror,
    MirrorPool,
    NoMirrorLeft,
    TimedOut,
    TlsError,
    TransportLimits,
    fetch_bytes,
)
from tests.unit.transport.fakes import FakeMirror

FILES = {"index.json": b"{}" * 3000, "a.bin": bytes(range(256)) * 40}


def pool_of(*mirrors: tuple[FakeMirror, int], retries: int = 0) -> MirrorPool:
    by_id = {m.name: m for m, _p in mirrors}
    return MirrorPool(
        [Mirror(m.name, m.url, priority) for m, priority in mirrors],
        lambda mirror: by_id[mirror.id],
        TransportLimits(retries=retries),
    )


def test_higher_priority_first_and_ties_keep_order() -> None:
    a, b, c = (FakeMirror(n, FILES) for n in "abc")
    pool = pool_of((a, 10), (b, 100), (c, 10))
    assert [m.id for m in pool.mirrors] == ["b", "a", "c"]
    assert pool.selected is not None and pool.selected.id == "b"
    assert fetch_bytes(pool, "index.json", 10**6, "index") == FILES["index.json"]
    assert (b.calls, a.calls) == ([("index.json", 0)], [])


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("refuse", ConnectionFailed),
        ("timeout", TimedOut),
        ("503", HttpStatusError),
        ("tls", TlsError),
    ],
)
def test_failover_on_network_faults(fault: str, error: type[SteppatchError]) -> None:
    bad, good = FakeMirror("bad", FILES, fault), FakeMirror("good", FILES)
    pool = pool_of((bad, 100), (good, 50))
    assert fetch_bytes(pool, "a.bin", 10**6, "a") == FILES["a.bin"]
    assert isinstance(pool.failed["bad"], error)
    assert pool.selected == pool.mirrors[1]
    # skipped for the rest of the run
    fetch_bytes(pool, "index.json", 10**6, "index")
    assert len(bad.calls) == 1


def test_all_fail_lists_every_mirror_with_its_reason() -> None:
    a = FakeMirror("a", FILES, "refuse")
    b = FakeMirror("b", FILES, "503")
    c = FakeMirror("c", FILES, "404")
    pool = pool_of((a, 3), (b, 2), (c, 1))
    with pytest.raises(NoMirrorLeft) as e:
        pool.call(lambda f: fetch_bytes(f, "a.bin", 10**6, "a"), "a.bin")
    assert list(e.value.reasons) == ["a", "b", "c"]
    assert "refused" in e.value.reasons["a"]
    assert "HTTP 503" in e.value.reasons["b"]
    assert isinstance(e.value.errors["b"], HttpStatusError)
    assert e.value.errors["b"].status == 503  # type: ignore[attr-defined]
    assert isinstance(e.value.errors["c"], MissingFile)
    assert e.value.url == "a.bin"
    assert e.value.exit_code == 4


def test_call_fails_over_on_bytes_failing_verification() -> None:
    bad, good = FakeMirror("bad", FILES, "corrupt"), FakeMirror("good", FILES)
    pool = pool_of((bad, 2), (good, 1))
    want = hashlib.sha256(FILES["a.bin"]).hexdigest()

    def verified(f: Fetcher) -> bytes:
        data = fetch_bytes(f, "a.bin", len(FILES["a.bin"]), "a")
        if hashlib.sha256(data).hexdigest() != want:
            raise IntegrityError("a.bin", want, "other")
        return data

    assert pool.call(verified, "a.bin") == FILES["a.bin"]
    assert isinstance(pool.failed["bad"], IntegrityError)


def test_404_passes_through_fetch_but_fails_a_listed_file_in_call() -> None:
    a, b = FakeMirror("a", FILES), FakeMirror("b", FILES)
    pool = pool_of((a, 2), (b, 1))
    # probing for an optional file: a 404 is an answer, not a fault
    with pytest.raises(MissingFile):
        fetch_bytes(pool, "roots/2.root.json", 100, "root")
    with pytest.raises(MissingFile):
        pool.call(lambda f: fetch_bytes(f, "roots/2.root.json", 100, "r"), "r",
                  missing_is_failure=False)
    assert pool.failed == {}
    # a listed file missing is the mirror's fault
    a.files = {}
    assert pool.call(lambda f: fetch_bytes(f, "a.bin", 10**6, "a"), "a.bin") == FILES["a.bin"]
    assert list(pool.failed) == ["a"]


def test_unknown_reference_is_not_a_mirror_fault() -> None:
    a = FakeMirror("a", FILES)
    pool = pool_of((a, 1))

    def unknown(f: Fetcher) -> None:
        raise UnknownReference("to:x.spr", f.url)

    with pytest.raises(UnknownReference):
        pool.call(unknown, "x")
    assert pool.failed == {}


def test_fetch_continues_on_the_next_mirror_where_the_first_broke_off() -> None:
    a, b = FakeMirror("a", FILES, "cut"), FakeMirror("b", FILES)
    pool = pool_of((a, 2), (b, 1))
    assert b"".join(pool.fetch("a.bin")) == FILES["a.bin"]
    half = len(FILES["a.bin"]) // 2
    assert a.calls == [("a.bin", 0)]
    assert b.calls == [("a.bin", half)]
    assert a.sent + b.sent == len(FILES["a.bin"])  # no byte twice


def test_fetch_retries_the_same_mirror_after_progress() -> None:
    a, b = FakeMirror("a", FILES, "cut_once"), FakeMirror("b", FILES)
    pool = pool_of((a, 2), (b, 1), retries=1)
    assert b"".join(pool.fetch("a.bin")) == FILES["a.bin"]
    assert a.calls == [("a.bin", 0), ("a.bin", len(FILES["a.bin"]) // 2)]
    assert b.calls == [] and pool.failed == {}


def test_a_pool_without_mirrors() -> None:
    pool = MirrorPool([], lambda m: FakeMirror("x", {}))
    with pytest.raises(NoMirrorLeft) as e:
        pool.current("index.json")
    assert e.value.reasons == {}
    with pytest.raises(ValueError):
        MirrorPool([Mirror("a", "u"), Mirror("a", "v")], lambda m: FakeMirror("x", {}))
