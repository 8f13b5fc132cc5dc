"""Durable atomic writes from many threads at once (issue 14, item 7)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from steppatch._fs import atomic_write, temp_path
from steppatch.store import ObjectStore, hash_file

THREADS = 32


def test_temporary_names_are_unique_per_call(tmp_path: Path) -> None:
    target = tmp_path / "latest.spr"
    names = {temp_path(target) for _ in range(1000)}
    assert len(names) == 1000
    assert all(n.parent == tmp_path and n.name.startswith(".latest.spr.tmp-") for n in names)


def test_concurrent_atomic_writes_of_one_path(tmp_path: Path) -> None:
    target = tmp_path / "latest.spr"
    bodies = [bytes([i]) * (64 * 1024 + i) for i in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def write(body: bytes) -> None:
        start.wait()
        try:
            for _ in range(5):
                atomic_write(target, body, 0o640)
        except BaseException as e:  # collected: a thread's exception is otherwise lost
            errors.append(e)

    threads = [threading.Thread(target=write, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_bytes() in bodies  # one whole body, never a mix
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["latest.spr"]  # no temporary left


def test_concurrent_adds_of_one_object(tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(256 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    store = ObjectStore(tmp_path / "objects")
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def add() -> None:
        start.wait()
        try:
            store.add(iter([data[: len(data) // 2], data[len(data) // 2 :]]), sha, len(data), "x")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=add) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert hash_file(store.path(sha)) == (sha, len(data))
    assert os.listdir(store.path(sha).parent) == [sha]
