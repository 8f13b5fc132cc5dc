"""Mirror failover over real TLS: a faulty primary in front of nginx, nginx itself as the backup.

Each fault ends with the same verified objects as a healthy download, the primary skipped for the
rest of the run with its reason, and nothing unverified in the store.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from steppatch.errors import IntegrityError
from steppatch.store import ObjectStore
from steppatch.transport import (
    ConnectionFailed,
    HttpsFetcher,
    HttpStatusError,
    Mirror,
    MirrorPool,
    NoMirrorLeft,
    ObjectRequest,
    TimedOut,
    download_objects,
)
from tests.integration.tls.conftest import FAST, Pki, Published
from tests.integration.tls.servers import FaultProxy, Nginx, free_ports


def objects_in(store: ObjectStore) -> dict[str, bytes]:
    found = {}
    for p in store.root.glob("??/*"):
        data = p.read_bytes()
        assert hashlib.sha256(data).hexdigest() == p.name  # nothing unverified
        found[p.name] = data
    return found


def expected(published: Published, reqs: list[ObjectRequest]) -> dict[str, bytes]:
    return {r.sha256: (published.root / r.path).read_bytes() for r in reqs}


def pool(test_pki: Pki, mirrors: list[tuple[str, str, int]]) -> MirrorPool:
    return MirrorPool(
        [Mirror(i, url, prio) for i, url, prio in mirrors],
        lambda m: HttpsFetcher(m.url, test_pki.client(), FAST),
        FAST,
    )


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("down", ConnectionFailed),
        ("503", HttpStatusError),
        ("404", Exception),
        ("corrupt", IntegrityError),
        ("cut", ConnectionFailed),
        ("trickle", TimedOut),
    ],
)
def test_faulty_primary_completes_from_the_next(
    test_pki: Pki, nginx: Nginx, proxy: FaultProxy, published: Published, tmp_path: Path,
    fault: str, error: type[Exception],
) -> None:
    reqs = list(published.small[:8])
    primary_url = proxy.url
    if fault == "down":
        (port,) = free_ports(1)
        primary_url = f"https://127.0.0.1:{port}"
    else:
        proxy.mode = fault
    p = pool(test_pki, [("backup", nginx.url("main"), 50), ("primary", primary_url, 100)])
    store = ObjectStore(tmp_path / "cache")
    seen: list[int] = []
    download_objects(p, reqs, store, progress=lambda _s, done, _t: seen.append(done))
    assert objects_in(store) == expected(published, reqs)
    assert list(p.failed) == ["primary"]
    assert isinstance(p.failed["primary"], error)
    assert p.selected is not None and p.selected.id == "backup"
    assert seen[-1] == sum(r.length for r in reqs)
    assert not list((store.root / ".partial").glob("*"))
    if fault == "trickle":
        # every byte came within the read timeout: the overall deadline ended it
        assert p.failed["primary"].phase == "deadline"  # type: ignore[attr-defined]
    if fault == "cut":
        # the object cut midway continued from where it broke off: no byte twice from nginx
        (path, _range), *_ = proxy.requests
        sha = path.rsplit("/", 1)[1]
        length = next(r.length for r in reqs if r.sha256 == sha)
        backup = nginx.requests_for("main", path)[-1]
        assert backup == (206, f"bytes={length // 2}-", length - length // 2)


def test_every_mirror_fails_each_with_its_reason(
    test_pki: Pki, nginx: Nginx, proxy: FaultProxy, published: Published, tmp_path: Path
) -> None:
    proxy.mode = "corrupt"
    (port,) = free_ports(1)
    p = pool(test_pki, [
        ("bad-bytes", proxy.url, 100),
        ("down", f"https://127.0.0.1:{port}", 90),
        ("wrong-host", nginx.url("wrong-host"), 80),
    ])
    store = ObjectStore(tmp_path / "cache")
    with pytest.raises(NoMirrorLeft) as e:
        download_objects(p, published.small[:4], store)
    assert list(e.value.reasons) == ["bad-bytes", "down", "wrong-host"]
    assert isinstance(e.value.errors["bad-bytes"], IntegrityError)
    assert isinstance(e.value.errors["down"], ConnectionFailed)
    assert "does not name this host" in e.value.reasons["wrong-host"]
    assert all(reason in str(e.value) for reason in e.value.reasons.values())
    assert objects_in(store) == {}
