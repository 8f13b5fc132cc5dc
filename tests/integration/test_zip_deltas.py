"""Zip deltas: archives compared through their inflated members, rebuilt byte for byte."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from steppatch import Home
from steppatch.delta import encode
from steppatch.errors import DeltaError
from steppatch.formats import parse_transfers
from steppatch.model import ObjectTransfers
from steppatch.repo import Repository
from steppatch.zipdelta import (
    DELTA_MAGIC,
    MAGIC,
    apply_zip_delta,
    expand,
    is_delta2,
    rebuild,
)
from tests.builders import component, home_for, jar_bytes, repository, zip_delta_between


def test_expand_and_rebuild_give_the_archive_back(tmp_path: Path) -> None:
    data = jar_bytes(1)
    (tmp_path / "a.zip").write_bytes(data)
    length = expand(tmp_path / "a.zip", tmp_path / "x", max_member_bytes=1 << 20)
    assert length is not None and length > len(data)  # inflated members
    rebuild(tmp_path / "x", tmp_path / "out", len(data))
    assert (tmp_path / "out").read_bytes() == data
    (tmp_path / "b").write_bytes(b"not a zip")
    assert expand(tmp_path / "b", tmp_path / "y", max_member_bytes=1 << 20) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-10],  # truncated body
        lambda b: b[:10] + b"\xff" * 6 + b[16:],  # header length beyond the file
        lambda b: b.replace(b'"size":', b'"size":1', 1),  # another size
        lambda b: b.replace(b'["z",', b'["q",', 1),  # unknown segment
        lambda b: b"XXXXX\n" + b[len(MAGIC):],  # not an expanded form
    ],
)
def test_a_malformed_expanded_form_is_refused(tmp_path: Path, damage: object) -> None:
    data = jar_bytes(2)
    (tmp_path / "a.zip").write_bytes(data)
    expand(tmp_path / "a.zip", tmp_path / "x", max_member_bytes=1 << 20)
    (tmp_path / "x").write_bytes(damage((tmp_path / "x").read_bytes()))  # type: ignore[operator]
    with pytest.raises(DeltaError):
        rebuild(tmp_path / "x", tmp_path / "out", len(data))
    assert (tmp_path / "out").stat().st_size <= len(data)


def published_jar_upgrade(
    tmp_path: Path, old: bytes, new: bytes
) -> tuple[Repository, ObjectTransfers]:
    """A repository with app 1.0 and 1.1 holding ``old`` and ``new`` as lib/app.jar, and the
    transfers entry of 1.1's jar (its deltas)."""
    src = tmp_path / "src"
    repo = repository(
        tmp_path,
        component(src, "app", "1.0", {"lib/app.jar": old}),
        component(src, "app", "1.1", {"lib/app.jar": new}),
    )
    cv = repo.index.components["app"][Version("1.1")]
    assert cv.transfers is not None
    (item,) = parse_transfers(repo.read(cv.transfers.path), "t").objects.values()
    return repo, item


def test_a_home_upgrades_an_archive_by_its_zip_delta(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    new = jar_bytes(3, changed=7)
    repo, item = published_jar_upgrade(tmp_path, jar_bytes(3), new)
    zipped = [d for d in item.deltas if d.expanded is not None]
    plain = [d for d in item.deltas if d.expanded is None]
    assert zipped and plain and zipped[0].length < plain[0].length / 3
    home = home_for(repo, tmp_path / "home")
    home.apply(["to:app/1.0/app-1.0.spr"])
    plan = home.prepare(["to:app/1.1/app-1.1.spr"])
    assert plan.routes["delta"] == (1, zipped[0].length) and plan.fallbacks == 0
    sha = hashlib.sha256(new).hexdigest()
    cached = tmp_path / "home/.steppatch/cache/objects" / sha[:2] / sha
    assert cached.read_bytes() == new
    # A home whose zlib deflates differently cannot rebuild it: the plain delta is taken.
    cached.unlink()
    import steppatch.zipdelta as zd

    monkeypatch.setattr(zd, "_deflated", lambda data, level: zlib_other(data, level))
    with caplog.at_level(logging.INFO, logger="steppatch.routes"):
        plan = home.prepare(["to:app/1.1/app-1.1.spr"])
    assert plan.fallbacks == 1 and plan.routes["delta"] == (1, plain[0].length)
    assert "took delta instead" in caplog.text
    assert cached.read_bytes() == new


def zlib_other(data: bytes, level: int) -> bytes:
    import zlib

    c = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_FILTERED)
    return c.compress(data) + c.flush()


def test_a_home_older_than_version_2_falls_back_to_the_whole_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A home that knows only version 1 zip deltas refuses a version 2 one (``DeltaError``)
    and, the plain delta being gone from the repository, downloads the whole archive."""
    new = jar_bytes(4, changed=3)
    repo, item = published_jar_upgrade(tmp_path, jar_bytes(4), new)
    (zipped,) = [d for d in item.deltas if d.expanded is not None]
    assert (repo.root / zipped.path).read_bytes().startswith(DELTA_MAGIC)
    for d in item.deltas:
        if d.expanded is None:
            (repo.root / d.path).unlink()
    home = home_for(repo, tmp_path / "home")
    home.apply(["to:app/1.0/app-1.0.spr"])
    import steppatch.zipdelta as zd

    monkeypatch.setattr(zd, "is_delta2", lambda path: False)  # a version 1 reader
    with caplog.at_level(logging.INFO, logger="steppatch.routes"):
        plan = home.prepare(["to:app/1.1/app-1.1.spr"])
    assert plan.fallbacks == 1 and plan.routes["whole"] == (1, len(new))
    assert plan.routes["delta"] == (0, 0)
    sha = hashlib.sha256(new).hexdigest()
    cached = tmp_path / "home/.steppatch/cache/objects" / sha[:2] / sha
    assert cached.read_bytes() == new
    transfers = repo.index.components["app"][Version("1.1")].transfers
    assert transfers is not None
    (item2,) = parse_transfers(repo.read(transfers.path), "t").objects.values()
    assert item2 == item  # the repository is as it was published


def test_a_version_1_zip_delta_still_applies(tmp_path: Path) -> None:
    """Repositories published before version 2 hold version 1 zip deltas: a bare zstd frame
    between expanded forms. ``apply_zip_delta`` applies them as before."""
    old, new = jar_bytes(5), jar_bytes(5, changed=11)
    (tmp_path / "old.zip").write_bytes(old)
    (tmp_path / "new.zip").write_bytes(new)
    assert expand(tmp_path / "old.zip", tmp_path / "eb", max_member_bytes=1 << 20, levels=False)
    expanded = expand(tmp_path / "new.zip", tmp_path / "et", max_member_bytes=1 << 20)
    assert expanded is not None
    length = encode(tmp_path / "et", tmp_path / "v1", base=tmp_path / "eb", max_length=len(new))
    assert length is not None and not is_delta2(tmp_path / "v1")
    _apply(tmp_path / "v1", tmp_path / "old.zip", tmp_path / "out", len(new), expanded)
    assert (tmp_path / "out").read_bytes() == new
    # its work files are gone
    assert not list(tmp_path.glob("out.*"))
    # and a version 1 delta against the wrong base is refused, typed
    (tmp_path / "other.zip").write_bytes(jar_bytes(6))
    with pytest.raises(DeltaError):
        _apply(tmp_path / "v1", tmp_path / "other.zip", tmp_path / "out2", len(new), expanded)
    assert not list(tmp_path.glob("out2.*"))


def _apply(delta: Path, base: Path, out: Path, length: int, expanded: int) -> None:
    apply_zip_delta(
        delta, base, out, length=length, expanded=expanded, max_member_bytes=1 << 20,
        max_expanded=1 << 30, threads=2, max_pending_bytes=1 << 20,
    )  # fmt: skip


def _v2(tmp_path: Path) -> tuple[bytes, dict[str, object], bytes, int]:
    """A version 2 delta between two jars: the old jar, its header, its frames, expanded."""
    old, new = jar_bytes(7), jar_bytes(7, changed=5)
    made = zip_delta_between(tmp_path, old, new)
    assert made is not None
    header, frames = _read_v2(tmp_path / "d")
    assert header["members"] and header["pieces"]
    return new, header, frames, made[1]


def _read_v2(delta: Path) -> tuple[dict[str, Any], bytes]:
    """A version 2 delta's header, decoded, and the frames that follow it."""
    import json

    import zstandard

    data = delta.read_bytes()
    n = int.from_bytes(data[len(DELTA_MAGIC) : len(DELTA_MAGIC) + 8], "big")
    head = data[len(DELTA_MAGIC) + 8 : len(DELTA_MAGIC) + 8 + n]
    header = json.loads(zstandard.ZstdDecompressor().decompress(head))
    return header, data[len(DELTA_MAGIC) + 8 + n :]


def _container(header: object, frames: bytes, raw_head: bytes | None = None) -> bytes:
    import json

    import zstandard

    head = raw_head if raw_head is not None else zstandard.ZstdCompressor().compress(
        json.dumps(header).encode()
    )
    return DELTA_MAGIC + len(head).to_bytes(8, "big") + head + frames


def _edit(key: str, fn: object) -> object:
    def edit(h: dict[str, object]) -> dict[str, object]:
        return {**h, key: fn(h[key])}  # type: ignore[operator]

    return edit


@pytest.mark.parametrize(
    "damage",
    [
        _edit("frames", lambda f: [f[0] + 1, f[1]]),  # frames do not add up
        _edit("frames", lambda f: [f[0], 0]),  # members but no frame 2
        _edit("members", lambda m: m + m),  # overlapping members
        _edit("members", lambda m: [[m[0][0], m[0][1], 10, m[0][3]], *m[1:]]),  # level 10
        _edit("members", lambda m: [[m[0][0], m[0][1] + 1, m[0][2], m[0][3]], *m[1:]]),  # size
        _edit("pieces", lambda p: [[p[0][0] + 10**9, p[0][1], p[0][2]]]),  # beyond the base
        _edit("pieces", lambda p: [[p[0][0] + 1, p[0][1], p[0][2]]]),  # does not inflate
        _edit("pieces", lambda p: [[p[0][0], p[0][1], True]]),  # not a number
        _edit("members", lambda m: "x"),  # not a list
        lambda h: [h],  # not an object
        "bomb",  # a header frame declaring 100 MiB
        "garbage",  # a header that is no zstd frame
    ],
)
def test_a_malformed_version_2_zip_delta_is_refused(tmp_path: Path, damage: object) -> None:
    import zstandard

    new, header, frames, expanded = _v2(tmp_path)
    if damage == "bomb":
        data = _container(None, frames, zstandard.ZstdCompressor().compress(b" " * (100 << 20)))
    elif damage == "garbage":
        data = _container(None, frames, b"\x00" * 40)
    else:
        data = _container(damage(header), frames)  # type: ignore[operator]
    (tmp_path / "bad").write_bytes(data)
    with pytest.raises(DeltaError):
        _apply(tmp_path / "bad", tmp_path / "old.zip", tmp_path / "out", len(new), expanded)
    # nothing left beside the output (which the caller removes), nothing else touched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "out") == [
        "bad", "d", "new.zip", "old.zip"
    ]
    # the undamaged container applies
    (tmp_path / "good").write_bytes(_container(header, frames))
    _apply(tmp_path / "good", tmp_path / "old.zip", tmp_path / "out", len(new), expanded)
    assert (tmp_path / "out").read_bytes() == new


def test_the_budget_counts_deflated_bytes_not_inflated_ones(tmp_path: Path) -> None:
    """zlib's time goes with what it writes: a member that inflates to 40 times its length
    costs its deflated length, so it fits a budget its inflated length would not."""
    import io
    import random
    import zipfile

    def archive(edit: bytes) -> bytes:
        rng = random.Random(5)
        text = b"".join(b"line %d of a log that repeats\n" % (i % 50) for i in range(8000))
        noise = bytes(rng.randrange(48, 58) for _ in range(20_000))  # deflates to about half
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(zipfile.ZipInfo("text", (2020, 1, 1, 0, 0, 0)), edit + text,
                       zipfile.ZIP_DEFLATED)  # fmt: skip
            z.writestr(zipfile.ZipInfo("noise", (2020, 1, 1, 0, 0, 0)), edit + noise,
                       zipfile.ZIP_DEFLATED)  # fmt: skip
        return buf.getvalue()

    old, new = archive(b"v1"), archive(b"version two, longer")
    infos = {i.filename: i for i in zipfile.ZipFile(io.BytesIO(new)).infolist()}
    text, noise = infos["text"], infos["noise"]
    assert text.file_size > 20 * text.compress_size and noise.compress_size > 4 * text.compress_size
    made = zip_delta_between(
        tmp_path, old, new, max_length=len(new) * 2, budget=text.compress_size + 100
    )
    assert made is not None
    # Only the text member is re-deflated: its deflated length fits, the noise's does not.
    assert [m[1] for m in _read_v2(tmp_path / "d")[0]["members"]] == [text.file_size]
    _apply(tmp_path / "d", tmp_path / "old.zip", tmp_path / "out", len(new), made[1])
    assert (tmp_path / "out").read_bytes() == new


def test_both_frames_take_the_zip_delta_level_up_to_its_bound() -> None:
    from steppatch import evolve
    from steppatch.limits import Limits
    from steppatch.repo._deltas import zip_frame_levels

    limits = evolve(Limits(), zip_delta_level=17, delta_level=4, zip_delta_level_max_bytes=1000)
    assert zip_frame_levels(1000, limits) == (17, 17)
    assert zip_frame_levels(1001, limits) == (4, 4)


_KILL_SCRIPT = """
import sys
from steppatch import Home
Home.open(sys.argv[1]).apply([sys.argv[2]])
"""


def test_sigkill_while_rebuilding_an_archive_leaves_old_or_new(tmp_path: Path) -> None:
    """Killed with members deflating in threads and the rebuild's work files on disk: the home
    is still on the old version, and the next apply rebuilds and leaves nothing behind."""
    old, new = jar_bytes(4), jar_bytes(4, changed=9)
    repo, item = published_jar_upgrade(tmp_path, old, new)
    assert any(d.expanded is not None for d in item.deltas)
    home = home_for(repo, tmp_path / "home")
    home.apply(["to:app/1.0/app-1.0.spr"])
    root = home.files.root
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_SCRIPT, str(root), "to:app/1.1/app-1.1.spr"],
        env={**os.environ, "STEPPATCH_TEST_KILL_AT": "zip-rebuilding"},
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    partial = root / ".steppatch/cache/objects/.partial"
    left = sorted(p.name.rsplit(".", 1)[-1] for p in partial.glob("*.decode-*"))
    assert "prefix" in left and "plain" in left  # killed mid-rebuild, its work files there
    again = Home.open(root)
    assert again.status().versions() == {"app": Version("1.0")}
    assert (root / "current/lib/app.jar").read_bytes() == old
    assert not again.verify().changed
    again.apply(["to:app/1.1/app-1.1.spr"])
    assert (root / "current/lib/app.jar").read_bytes() == new
    assert not partial.exists() or not list(partial.glob("*.decode-*"))


def test_repo_add_reports_the_deltas_it_makes_as_progress(tmp_path: Path) -> None:
    """Making an archive's zip delta takes seconds at level 19: ``repo add`` says how far it
    is, in bytes of new objects, ending at the total (each object once, however many paths)."""
    src = tmp_path / "src"
    old, new = jar_bytes(5), jar_bytes(5, changed=3)
    repo = repository(tmp_path, component(src, "app", "1.0", {"lib/app.jar": old, "x": b"s"}))
    same = b"same bytes " * 1000
    calls: list[tuple[str, int, int]] = []
    repo.add(
        component(src, "app", "1.1", {"lib/app.jar": new, "lib/copy.jar": new, "x": b"s",
                                       "y": same, "tiny": b"t"}),
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )  # fmt: skip
    total = len(new) + len(same)  # new objects of 4 KiB or more, each once
    assert calls[0] == ("deltas", 0, total) and calls[-1] == ("deltas", total, total)
    assert [c[1] for c in calls] == sorted(c[1] for c in calls) and len(calls) == 3
    assert {c[0] for c in calls} == {"deltas"} and {c[2] for c in calls} == {total}


def test_each_frame_keeps_the_shortest_of_its_levels(tmp_path: Path) -> None:
    """Level 19 can lose to level 9 (it looks only 8 MiB back): both are tried, the shorter
    kept, nothing else left beside it; ``None`` when no level is short enough."""
    from steppatch.zipdelta import _encode_shortest

    base, data = tmp_path / "base", tmp_path / "data"
    base.write_bytes(jar_bytes(8))
    data.write_bytes(jar_bytes(8, changed=1))
    lengths: dict[int, int] = {}
    for lv in (1, 19):
        n = encode(data, tmp_path / f"at{lv}", base=base, max_length=1 << 30, level=lv)
        assert n is not None
        lengths[lv] = n
    assert lengths[1] != lengths[19]
    best = min(lengths, key=lengths.__getitem__)
    for levels in ((19, 1), (1, 19)):  # the shorter wins, first or second
        out = tmp_path / "out"
        n = _encode_shortest(data, out, prefix=base, max_length=1 << 30, levels=levels)
        assert n == min(lengths.values()) == out.stat().st_size
        assert out.read_bytes() == (tmp_path / f"at{best}").read_bytes()
    none = _encode_shortest(data, tmp_path / "o2", prefix=base, max_length=5, levels=(19, 1))
    assert none is None
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("out", "o2"))) == ["out"]
