"""The object store on a real disk: verified on write, verified on use."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from steppatch.errors import IntegrityError, TooLarge
from steppatch.store import ObjectStore

DATA = b"hello objects\n"
SHA = hashlib.sha256(DATA).hexdigest()


def test_add_and_copy_out(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    store.add([DATA[:5], DATA[5:]], SHA, len(DATA), "x")
    assert store.has(SHA)
    store.copy_out(SHA, len(DATA), tmp_path / "out", 0o640)
    assert (tmp_path / "out").read_bytes() == DATA
    assert os.stat(tmp_path / "out").st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    ("chunks", "error"),
    [
        ([DATA + b"x"], TooLarge),
        ([DATA[:-1]], IntegrityError),
        ([DATA[:-1] + b"?"], IntegrityError),
    ],
)
def test_bad_bytes_are_never_stored(tmp_path: Path, chunks: list[bytes], error: type) -> None:
    store = ObjectStore(tmp_path / "s")
    with pytest.raises(error):
        store.add(chunks, SHA, len(DATA), "x")
    assert not store.has(SHA)
    assert [p for p in (tmp_path / "s").rglob("*") if p.is_file()] == []


def test_longer_stream_is_not_read_past_its_length(tmp_path: Path) -> None:
    read = []

    def endless() -> object:
        while True:
            read.append(1)
            yield b"x" * 10

    with pytest.raises(TooLarge):
        ObjectStore(tmp_path / "s").add(endless(), SHA, 25, "x")  # type: ignore[arg-type]
    assert len(read) == 3  # stopped at length + 1 byte's chunk


def test_corrupt_entry_is_removed_on_use(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    path = store.add([DATA], SHA, len(DATA), "x")
    os.chmod(path, 0o644)
    path.write_bytes(b"HELLO objects\n")
    with pytest.raises(IntegrityError):
        store.copy_out(SHA, len(DATA), tmp_path / "out", 0o644)
    assert not store.has(SHA)
    assert not (tmp_path / "out").exists()


def test_copy_out_never_follows_a_symlink_at_the_destination(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "s")
    store.add([DATA], SHA, len(DATA), "x")
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    os.symlink(victim, tmp_path / "out")
    with pytest.raises(FileExistsError):
        store.copy_out(SHA, len(DATA), tmp_path / "out", 0o644)
    assert victim.read_bytes() == b"keep"
