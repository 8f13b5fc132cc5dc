"""The foothold's parts in one process: choosing wheels, unpacking them, the hermetic path, the
bytecode, the launcher, the lock holder, and what a build refuses before it starts."""

from __future__ import annotations

import fcntl
import importlib.metadata
import marshal
import os
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from steppatch.errors import InputError
from steppatch.foothold import BadWheel, build_foothold
from steppatch.foothold._bootstrap import (
    FootholdBootError,
    choose_wheels,
    hermetic_path,
    install_wheel,
    wheel_bytes,
)
from steppatch.foothold._build import _bytecode, _compress_tags
from steppatch.selfupdate import (
    TOOL_HOME_VARIABLE,
    lock_holder,
    tool_home_path,
    write_launcher,
)
from tests.foothold_helpers import make_wheel


def _wheel(name: str, tags: list[str], file: str) -> dict[str, object]:
    return {"name": name, "version": "1.0", "file": file, "tags": tags}


def test_choose_wheels_takes_the_best_ranked_tag_per_distribution() -> None:
    build = {"wheels": [
        _wheel("a", ["cp311-cp311-manylinux_2_17_x86_64"], "a-old.whl"),
        _wheel("a", ["cp311-cp311-manylinux_2_28_x86_64"], "a-new.whl"),
        _wheel("a", ["cp311-cp311-manylinux_2_17_aarch64"], "a-arm.whl"),
        _wheel("b", ["cp311-abi3-manylinux_2_17_x86_64"], "b.whl"),
    ]}
    host = ["cp311-cp311-manylinux_2_28_x86_64", "cp311-cp311-manylinux_2_17_x86_64",
            "cp311-abi3-manylinux_2_17_x86_64"]
    assert [w["file"] for w in choose_wheels(build, host)] == ["a-new.whl", "b.whl"]


def test_choose_wheels_names_every_distribution_without_a_wheel_for_the_host() -> None:
    build = {"wheels": [
        _wheel("a", ["cp311-cp311-manylinux_2_17_aarch64"], "a.whl"),
        _wheel("b", ["cp312-cp312-manylinux_2_17_x86_64"], "b.whl"),
        _wheel("c", ["cp311-cp311-manylinux_2_17_x86_64"], "c.whl"),
    ]}
    with pytest.raises(FootholdBootError) as caught:
        choose_wheels(build, ["cp311-cp311-manylinux_2_17_x86_64"])
    assert "a 1.0, b 1.0" in str(caught.value)
    assert "--wheels" in str(caught.value)


def test_install_wheel_unpacks_checked_files_and_purelib_data(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0", "cp311-cp311-linux_x86_64", {
        "demo/__init__.py": b"X = 1\n",
        "demo-1.0.data/purelib/demo_extra.py": b"Y = 2\n",
        "demo-1.0.data/scripts/demo": b"#!/bin/sh\n",
    })
    site = tmp_path / "site"
    site.mkdir()
    written = install_wheel(wheel.read_bytes(), wheel.name, str(site))
    assert (site / "demo/__init__.py").read_bytes() == b"X = 1\n"
    assert (site / "demo_extra.py").read_bytes() == b"Y = 2\n"
    assert not (site / "demo").joinpath("demo").exists()
    assert written == 5  # two modules, METADATA, WHEEL, RECORD; no script
    assert sorted(p.name for p in site.iterdir()) == ["demo", "demo-1.0.dist-info", "demo_extra.py"]


def test_install_wheel_only_checks_without_a_target(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0", "py3-none-any", {"demo.py": b""})
    assert install_wheel(wheel.read_bytes(), wheel.name, None) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [wheel.name]


@pytest.mark.parametrize("case", ["lying record", "unlisted member", "listed but absent",
                                  "unsafe name", "not a zip"])
def test_install_wheel_refuses_a_damaged_wheel(tmp_path: Path, case: str) -> None:
    files = {"demo.py": b"X = 1\n"}
    record: dict[str, str] = {}
    if case == "lying record":
        record = {"demo.py": "sha256=AAAA"}
    wheel = make_wheel(tmp_path, "demo", "1.0", "py3-none-any", files, record=record)
    data = wheel.read_bytes()
    if case in ("unlisted member", "unsafe name"):
        with zipfile.ZipFile(wheel, "a") as z:
            z.writestr("../evil.py" if case == "unsafe name" else "demo/extra.py", b"")
        data = wheel.read_bytes()
    elif case == "listed but absent":
        rebuilt = tmp_path / "absent.whl"
        with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(rebuilt, "w") as dst:
            for item in src.infolist():
                if item.filename != "demo.py":
                    dst.writestr(item, src.read(item))
        data = rebuilt.read_bytes()
    elif case == "not a zip":
        data = b"PK\x03\x04 not really"
    site = tmp_path / "site"
    site.mkdir()
    with pytest.raises(FootholdBootError):
        install_wheel(data, "demo.whl", str(site))
    assert not (tmp_path / "evil.py").exists()


def test_a_wheel_beside_the_archive_must_match_the_archive_list(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "a.whl").write_bytes(b"wheel bytes")
    import hashlib

    listed = {"file": "a.whl", "where": "beside", "size": 11,
              "sha256": hashlib.sha256(b"wheel bytes").hexdigest()}
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w"):
        pass
    with zipfile.ZipFile(archive) as z:
        assert wheel_bytes(z, str(tmp_path), listed) == b"wheel bytes"
        (tmp_path / "wheels" / "a.whl").write_bytes(b"wheel bytez")
        with pytest.raises(FootholdBootError, match="does not match"):
            wheel_bytes(z, str(tmp_path), listed)
        (tmp_path / "wheels" / "a.whl").unlink()
        with pytest.raises(FootholdBootError, match="cannot be read"):
            wheel_bytes(z, str(tmp_path), listed)


def test_hermetic_path_keeps_the_archive_the_standard_library_and_pythonpath(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stdlib = sysconfig.get_paths()["stdlib"]
    dynload = os.path.join(sysconfig.get_paths()["platstdlib"], "lib-dynload")
    site_packages = sysconfig.get_paths()["purelib"]
    explicit = str(tmp_path / "explicit")
    monkeypatch.setenv("PYTHONPATH", explicit)
    path = ["/x/steppatch.pyz", stdlib, dynload, site_packages, "/work/src", explicit]
    assert hermetic_path(path, "/proc/self/fd/3") == ["/proc/self/fd/3", stdlib, dynload, explicit]


def test_compressed_wheel_tags() -> None:
    assert _compress_tags(
        ["cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-manylinux2014_x86_64"]
    ) == "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"
    assert _compress_tags(["py2-none-any", "py3-none-any"]) == "py2.py3-none-any"


def test_bytecode_runs_as_the_source_does_and_does_not_depend_on_the_process() -> None:
    source = b"def f(x):\n    return [x, 'interned', (1, 2)]\nVALUE = f(3)\n"
    first = _bytecode("pkg/mod.py", source)
    import rich.table  # noqa: F401 - more interned strings and references in this process

    assert first is not None and _bytecode("pkg/mod.py", source) == first
    namespace: dict[str, object] = {}
    exec(marshal.loads(first[16:]), namespace)
    assert namespace["VALUE"] == [3, "interned", (1, 2)]
    assert _bytecode("pkg/bad.py", b"def (:\n") is None


def test_build_refuses_bad_arguments_before_any_work(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("x")
    with pytest.raises(InputError, match="must not exist yet or be empty"):
        build_foothold(taken)
    with pytest.raises(InputError, match="not a PEP 440 version"):
        build_foothold(tmp_path / "f.pyz", version="latest")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "cffi", "0.1", "cp311-cp311-manylinux_2_17_aarch64", {"cffi/x.py": b""})
    with pytest.raises(BadWheel, match="but the foothold carries cffi"):
        build_foothold(tmp_path / "f.pyz", wheels=wheels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken", "wheels"]


def test_a_lying_given_wheel_is_refused(tmp_path: Path) -> None:
    version = importlib.metadata.version("cffi")
    make_wheel(tmp_path, "cffi", version, "cp311-cp311-manylinux_2_17_aarch64",
               {"cffi/x.py": b"1"}, record={"cffi/x.py": "sha256=AAAA"})
    with pytest.raises(BadWheel, match="does not match the wheel's RECORD"):
        build_foothold(tmp_path / "f.pyz", wheels=tmp_path)


def test_launcher_runs_current_with_the_interpreter_given(tmp_path: Path) -> None:
    path = write_launcher(tmp_path / "tool home", "/usr/bin/python3")
    text = path.read_text()
    assert os.access(path, os.X_OK)
    assert f"exec /usr/bin/python3 '{tmp_path}/tool home/current/steppatch.pyz' \"$@\"" in text
    assert f"STEPPATCH_FOOTHOLD_ENVS='{tmp_path}/tool home/envs'" in text
    mtime = path.stat().st_mtime_ns
    write_launcher(tmp_path / "tool home", "/usr/bin/python3")
    assert path.stat().st_mtime_ns == mtime  # unchanged: not rewritten


def test_tool_home_comes_from_the_option_then_the_launcher(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(TOOL_HOME_VARIABLE, raising=False)
    with pytest.raises(InputError, match="--tool-home"):
        tool_home_path(None)
    monkeypatch.setenv(TOOL_HOME_VARIABLE, str(tmp_path / "a"))
    assert tool_home_path(None) == tmp_path / "a"
    assert tool_home_path(tmp_path / "b") == tmp_path / "b"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/locks")
def test_lock_holder_finds_the_process_holding_a_flock(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    lock.touch()
    assert lock_holder(lock) is None
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert lock_holder(lock) == os.getpid()
        other = tmp_path / "other"
        other.touch()
        assert lock_holder(other) is None
    finally:
        os.close(fd)
    assert lock_holder(lock) is None
