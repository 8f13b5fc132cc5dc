"""Deltas and compressed forms: the codec on real files, and what ``repo add`` publishes."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import zstandard

from steppatch.delta import decode, encode
from steppatch.errors import DeltaError, MalformedDocument
from steppatch.formats import index_from_json, index_to_json, parse_transfers
from steppatch.limits import Limits
from steppatch.repo import Repository
from steppatch.store import hash_file
from tests.builders import component, repository


def _changed(data: bytes, places: int, width: int, seed: int = 1) -> bytes:
    r = random.Random(seed)
    out = bytearray(data)
    for _ in range(places):
        p = r.randrange(len(out) - width)
        out[p : p + width] = os.urandom(width)
    return bytes(out)


def _pair(tmp_path: Path, size: int = 1 << 20) -> tuple[Path, Path]:
    base = os.urandom(size)
    (tmp_path / "base").write_bytes(base)
    (tmp_path / "target").write_bytes(_changed(base, 10, 500))
    return tmp_path / "base", tmp_path / "target"


def test_a_delta_round_trips_and_is_small(tmp_path: Path) -> None:
    base, target = _pair(tmp_path)
    length = encode(target, tmp_path / "d", base=base, max_length=1 << 20)
    assert length is not None and length < 20_000
    decode(tmp_path / "d", tmp_path / "out", base=base, length=1 << 20)
    assert (tmp_path / "out").read_bytes() == target.read_bytes()


def test_a_compressed_form_round_trips(tmp_path: Path) -> None:
    text = b"".join(b"line %d\n" % i for i in range(50_000))
    (tmp_path / "t").write_bytes(text)
    length = encode(tmp_path / "t", tmp_path / "c", base=None, max_length=len(text))
    assert length is not None and length < len(text) // 4
    decode(tmp_path / "c", tmp_path / "out", base=None, length=len(text))
    assert (tmp_path / "out").read_bytes() == text


def test_encoding_gives_up_past_the_cap(tmp_path: Path) -> None:
    (tmp_path / "t").write_bytes(os.urandom(100_000))
    assert encode(tmp_path / "t", tmp_path / "c", base=None, max_length=90_000) is None
    assert not (tmp_path / "c").exists()


def test_a_wrong_base_never_gives_the_target(tmp_path: Path) -> None:
    base, target = _pair(tmp_path)
    encode(target, tmp_path / "d", base=base, max_length=1 << 20)
    (tmp_path / "other").write_bytes(os.urandom(1 << 20))
    try:
        decode(tmp_path / "d", tmp_path / "out", base=tmp_path / "other", length=1 << 20)
    except DeltaError:
        return
    assert hash_file(tmp_path / "out") != hash_file(target)


def test_a_bomb_is_refused_at_the_declared_length(tmp_path: Path) -> None:
    # 64 MiB of zeros in a few KiB, published as if it held 1000 bytes: refused unread...
    bomb = zstandard.ZstdCompressor().compress(bytes(64 << 20))
    (tmp_path / "bomb").write_bytes(bomb)
    with pytest.raises(DeltaError, match="declares"):
        decode(tmp_path / "bomb", tmp_path / "out", base=None, length=1000)
    # ...and a frame without its content size, decoded into exactly the declared length only.
    cobj = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    (tmp_path / "bomb2").write_bytes(cobj.compress(bytes(64 << 20)) + cobj.flush())
    with pytest.raises(DeltaError):
        decode(tmp_path / "bomb2", tmp_path / "out", base=None, length=1000)
    out = tmp_path / "out"
    assert not out.exists() or out.stat().st_size <= 1000


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-5],
        lambda b: b + b"\0\0\0\0",
        lambda b: b + zstandard.ZstdCompressor().compress(b"x"),
        lambda b: b[:20] + bytes([b[20] ^ 0xFF]) + b[21:],
        lambda b: b"",
    ],
)
def test_damaged_frames_are_refused(tmp_path: Path, damage: object) -> None:
    base, target = _pair(tmp_path)
    encode(target, tmp_path / "d", base=base, max_length=1 << 20)
    data = (tmp_path / "d").read_bytes()
    (tmp_path / "d").write_bytes(damage(data))  # type: ignore[operator]
    try:
        decode(tmp_path / "d", tmp_path / "out", base=base, length=1 << 20)
    except DeltaError:
        return
    # A flip inside literal bytes may decode: to other bytes, which the caller's hash refuses.
    assert hash_file(tmp_path / "out") != hash_file(target)


# --- repo add ---------------------------------------------------------------------------------


def _versions(tmp_path: Path, n: int) -> tuple[Repository, list[bytes]]:
    contents = [os.urandom(300_000)]
    for _ in range(n - 1):
        contents.append(_changed(contents[-1], 3, 200))
    sources = [
        component(tmp_path / "src", "app", f"1.{i}", {"lib/app.bin": c, "small": b"tiny"})
        for i, c in enumerate(contents)
    ]
    return repository(tmp_path, *sources), contents


def _transfers(repo: Repository, version: str) -> dict[str, object]:
    from packaging.version import Version

    ref = repo.index.components["app"][Version(version)].transfers
    assert ref is not None
    return json.loads(repo.read(ref.path))["objects"]  # type: ignore[no-any-return]


def test_repo_add_publishes_deltas_from_the_previous_versions(tmp_path: Path) -> None:
    repo, contents = _versions(tmp_path, 5)
    import hashlib

    shas = [hashlib.sha256(c).hexdigest() for c in contents]
    objects = _transfers(repo, "1.4")
    assert set(objects) == {shas[4]}  # "small" is under delta_min_object_bytes
    item = objects[shas[4]]
    assert isinstance(item, dict)
    assert "compressed" not in item  # random bytes: compressing does not pay
    bases = [d["base"] for d in item["deltas"]]
    assert bases == [shas[3], shas[2], shas[1]]  # the previous 3, newest first; not 1.0
    for d in item["deltas"]:
        assert d["length"] < 300_000 // 2
        stored = repo.root / "deltas" / d["sha256"][:2] / d["sha256"]
        assert hash_file(stored) == (d["sha256"], d["length"])
        decode(stored, tmp_path / "out", base=repo.objects.path(d["base"]), length=300_000)
        assert (tmp_path / "out").read_bytes() == contents[4]
    # The first version has nothing to start from, and nothing compresses.
    assert repo.index.components["app"][min(repo.index.components["app"])].transfers is None


def test_repo_add_again_is_a_no_op_and_the_index_round_trips(tmp_path: Path) -> None:
    repo, _contents = _versions(tmp_path, 2)
    again = repo.add(tmp_path / "src" / "app-1.1")
    assert not again.added
    assert index_from_json(index_to_json(repo.index), "i") == repo.index
    ref = repo.index.components["app"][max(repo.index.components["app"])].transfers
    assert ref is not None
    parsed = parse_transfers(repo.read(ref.path), ref.path)
    assert parsed.component == "app" and len(parsed.objects) == 1


def test_no_deltas_when_history_is_zero(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "repo", limits=Limits(delta_history_versions=0))
    a = os.urandom(100_000)
    repo.add(component(tmp_path / "src", "app", "1.0", {"f": a}))
    repo.add(component(tmp_path / "src", "app", "1.1", {"f": _changed(a, 1, 10)}))
    assert all(cv.transfers is None for cv in repo.index.components["app"].values())


def test_an_old_reader_ignores_the_transfers_field(tmp_path: Path) -> None:
    # What a reader before transfers does: it reads the fields it knows. So does this one with
    # any other unknown field; and the index format tag did not change.
    repo, _ = _versions(tmp_path, 2)
    doc = index_to_json(repo.index)
    assert doc["format"] == "steppatch-index/1"
    for versions in doc["components"].values():
        for cv in versions.values():
            cv["some-later-field"] = {"x": 1}
    parsed = index_from_json(doc, "i")
    assert parsed == repo.index


def test_a_bad_transfers_document_is_refused(tmp_path: Path) -> None:
    repo, _ = _versions(tmp_path, 2)
    ref = repo.index.components["app"][max(repo.index.components["app"])].transfers
    assert ref is not None
    doc = json.loads(repo.read(ref.path))
    (item,) = doc["objects"].values()
    item["deltas"][0]["length"] = item["size"]  # a "delta" as long as the object
    with pytest.raises(MalformedDocument, match="not shorter"):
        parse_transfers(json.dumps(doc).encode(), "t.json")
