"""Partial objects in the store: resume offsets, re-hashing the prefix, verification on finish."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from steppatch.errors import IntegrityError, LockedError, TooLarge
from steppatch.store import ObjectStore

DATA = bytes(range(256)) * 100
SHA = hashlib.sha256(DATA).hexdigest()


def test_resume_from_the_bytes_held(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    with store.open_partial(SHA, len(DATA), "x") as part:
        assert part.offset == 0
        part.write(DATA[:1000])
    assert not store.has(SHA)
    with store.open_partial(SHA, len(DATA), "x") as part:
        assert part.offset == 1000
        part.write(DATA[1000:])
        assert part.complete
        final = part.finish()
    assert final == store.path(SHA) and final.read_bytes() == DATA
    assert final.stat().st_mode & 0o777 == 0o444
    assert not store.partial_path(SHA).exists()


def test_wrong_bytes_are_never_stored(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    with store.open_partial(SHA, len(DATA), "obj") as part:
        part.write(b"?" + DATA[1:])
        with pytest.raises(IntegrityError) as e:
            part.finish()
    assert e.value.what == "obj"
    assert not store.has(SHA) and not store.partial_path(SHA).exists()


def test_short_and_long(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    with store.open_partial(SHA, len(DATA), "obj") as part:
        part.write(DATA[:-1])
        with pytest.raises(IntegrityError):
            part.finish()
    with store.open_partial(SHA, len(DATA), "obj") as part:
        with pytest.raises(TooLarge) as e:
            part.write(DATA + b"!")
        assert e.value.limit == len(DATA)
    assert not store.has(SHA) and not store.partial_path(SHA).exists()


def test_a_partial_longer_than_the_object_starts_over(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    store.partial_path(SHA).parent.mkdir(parents=True)
    store.partial_path(SHA).write_bytes(DATA + b"more")
    with store.open_partial(SHA, len(DATA), "x") as part:
        assert part.offset == 0
    assert not store.partial_path(SHA).exists()


def test_one_writer_per_partial(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    with store.open_partial(SHA, len(DATA), "x"), pytest.raises(LockedError):
        store.open_partial(SHA, len(DATA), "x")


def test_partials_are_not_objects(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    with store.open_partial(SHA, len(DATA), "x") as part:
        part.write(DATA)
    assert not store.has(SHA)
    assert store.partial_path(SHA).parent.name == ".partial"
