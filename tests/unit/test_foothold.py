"""The foothold's parts in one process: choosing wheels, unpacking them, the hermetic path, the
bytecode, the launcher, the lock holder, and what a build refuses before it starts."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import marshal
import os
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest

from steppatch.errors import InputError
from steppatch.foothold import (
    INFO_FORMAT,
    BadFootholdInfo,
    BadWheel,
    EnvironmentDrift,
    FootholdInfo,
    FootholdSummary,
    InfoCheck,
    build_foothold,
    check_env,
    foothold_info,
    info_to_json,
    parse_foothold_info,
)
from steppatch.foothold._bootstrap import (
    ARCHIVE_WHEELS,
    ENV_MARKER,
    ENV_RECORD,
    FootholdBootError,
    choose_wheels,
    ensure_env,
    env_drift,
    hermetic_path,
    install_wheel,
    read_env_record,
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


# --- the private environment's record -------------------------------------------------------------


def _one_wheel_foothold(tmp_path: Path, *, beside: bool = False) -> tuple[str, dict[str, Any]]:
    """A foothold archive carrying one wheel (in the archive, or in ``wheels/`` beside it) and
    its build description, as :func:`ensure_env` reads them."""
    wheel = make_wheel(tmp_path, "demo", "1.0", "py3-none-any", {
        "demo/__init__.py": b"VALUE = 1\n", "demo/util.py": b"def f():\n    return 2\n",
    })
    data = wheel.read_bytes()
    listed = {"name": "demo", "version": "1.0", "file": wheel.name, "tags": ["py3-none-any"],
              "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
              "where": "beside" if beside else "archive"}
    archive = tmp_path / "steppatch.pyz"
    with zipfile.ZipFile(archive, "w") as z:
        if not beside:
            z.writestr(ARCHIVE_WHEELS + wheel.name, data)
    if beside:
        (tmp_path / "wheels").mkdir()
        wheel.rename(tmp_path / "wheels" / wheel.name)
    else:
        wheel.unlink()
    return str(archive), {"build": "b" * 64, "version": "1.0", "wheels": [listed]}


def _ensure(tmp_path: Path, archive: str, build: dict[str, Any]) -> tuple[Path, list[str]]:
    said: list[str] = []
    env = ensure_env(archive, str(tmp_path), build, build["wheels"], str(tmp_path / "envs"),
                     said.append)
    return Path(env), said


def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_the_private_environment_is_compiled_and_recorded_file_by_file(tmp_path: Path) -> None:
    archive, build = _one_wheel_foothold(tmp_path)
    env, said = _ensure(tmp_path, archive, build)
    assert len(said) == 1 and "first run" in said[0]
    recorded = read_env_record(str(env))
    assert recorded is not None
    files, dirs = recorded
    on_disk = {str(p.relative_to(env)) for p in env.rglob("*") if p.is_file()} - {ENV_RECORD}
    assert set(files) == on_disk
    assert ENV_MARKER in files and "site-packages/demo/__init__.py" in files
    # Bytecode comes with it (the process writes none), so an import leaves the tree as recorded.
    assert [p for p in files if p.startswith("site-packages/demo/__pycache__/util.")]
    assert "site-packages/demo/__pycache__" in dirs
    size, mtime, sha256 = files["site-packages/demo/util.py"]
    util = env / "site-packages/demo/util.py"
    assert (size, mtime) == (util.stat().st_size, util.stat().st_mtime_ns)
    assert sha256 == hashlib.sha256(util.read_bytes()).hexdigest()
    assert env_drift(str(env)) == [] and env_drift(str(env), hashes=True) == []
    assert check_env(env) == len(files)
    again, said = _ensure(tmp_path, archive, build)
    assert again == env and said == []  # as recorded: used as it is, nothing said


def _change(env: Path, how: str) -> tuple[str, str]:
    """Tamper with ``env`` as ``how`` says; return the (path, kind) a check must report."""
    site = env / "site-packages"
    module = site / "demo" / "__init__.py"
    if how == "size":
        module.write_bytes(b"import os; os.system('id'); VALUE = 1\n")
    elif how == "mtime":
        module.write_bytes(b"VALUE = 6\n")  # same size, a new mtime
        os.utime(module, ns=(module.stat().st_atime_ns, module.stat().st_mtime_ns + 10**9))
    elif how == "missing":
        module.unlink()
    elif how == "pth":
        (site / "evil.pth").write_text("import os; os.system('id')\n")
        return "site-packages/evil.pth", "extra"
    elif how == "shadow":
        (site / "uuid.py").write_text("raise SystemExit('shadowed')\n")
        return "site-packages/uuid.py", "extra"
    elif how == "directory":
        (site / "evil").mkdir()
        return "site-packages/evil", "extra"
    elif how == "symlink":
        (site / "demo" / "link.py").symlink_to("/etc/passwd")
        return "site-packages/demo/link.py", "extra"
    elif how == "record":
        (env / ENV_RECORD).write_text("{not json")
        return ENV_RECORD, "record"
    elif how == "marker":
        (env / ENV_MARKER).unlink()
        return ENV_MARKER, "missing"
    return "site-packages/demo/__init__.py", "missing" if how == "missing" else "changed"


@pytest.mark.parametrize(
    "how",
    ["size", "mtime", "missing", "pth", "shadow", "directory", "symlink", "record", "marker"],
)
def test_a_start_installs_a_differing_environment_again_from_the_wheels(
    tmp_path: Path, how: str
) -> None:
    archive, build = _one_wheel_foothold(tmp_path)
    env, _ = _ensure(tmp_path, archive, build)
    made = _tree(env)
    expected = _change(env, how)
    assert expected in env_drift(str(env))  # one stat per file finds it
    with pytest.raises(EnvironmentDrift) as caught:
        check_env(env)
    assert caught.value.env == str(env) and expected in caught.value.drift
    again, said = _ensure(tmp_path, archive, build)
    assert again == env
    [line] = said
    assert "differs from its record" in line and f"{expected[0]} {expected[1]}" in line
    # Made again whole: the same files as the first time (new mtimes), nothing else left.
    assert {k: v[0] for k, v in _tree(env).items() if k != ENV_RECORD} == {
        k: v[0] for k, v in made.items() if k != ENV_RECORD
    }
    assert env_drift(str(env), hashes=True) == []
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == [env.name]


def test_a_link_in_place_of_the_environment_is_replaced_not_followed(tmp_path: Path) -> None:
    archive, build = _one_wheel_foothold(tmp_path)
    env, _ = _ensure(tmp_path, archive, build)
    elsewhere = tmp_path / "elsewhere"
    env.rename(elsewhere)  # a whole environment, record and all, as the link's target
    env.symlink_to(elsewhere)
    again, said = _ensure(tmp_path, archive, build)
    assert again == env and not env.is_symlink() and env.is_dir()
    assert "foothold-env.json missing" in said[0]
    assert env_drift(str(env), hashes=True) == []
    assert (elsewhere / ENV_MARKER).is_file()  # the link's target is not touched


def test_a_change_that_keeps_size_and_mtime_is_found_by_hash(tmp_path: Path) -> None:
    archive, build = _one_wheel_foothold(tmp_path)
    env, _ = _ensure(tmp_path, archive, build)
    module = env / "site-packages" / "demo" / "util.py"
    before = module.stat()
    module.write_bytes(b"def f():\n    return 3\n")
    os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert env_drift(str(env)) == []  # what a start checks cannot see it ...
    assert env_drift(str(env), hashes=True) == [("site-packages/demo/util.py", "changed")]
    with pytest.raises(EnvironmentDrift) as caught:  # ... foothold info --check does
        check_env(env)
    assert caught.value.drift == (("site-packages/demo/util.py", "changed"),)
    assert "site-packages/demo/util.py changed" in str(caught.value)
    assert module.read_bytes() == b"def f():\n    return 3\n"  # a check changes nothing


def test_a_differing_environment_is_refused_when_its_wheels_are_gone(tmp_path: Path) -> None:
    archive, build = _one_wheel_foothold(tmp_path, beside=True)
    env, _ = _ensure(tmp_path, archive, build)
    (env / "site-packages" / "evil.pth").write_text("import os\n")
    tampered = _tree(env)
    wheel = tmp_path / "wheels" / build["wheels"][0]["file"]
    wheel.unlink()
    with pytest.raises(FootholdBootError) as caught:
        _ensure(tmp_path, archive, build)
    message = str(caught.value)
    assert "differs from its record (site-packages/evil.pth extra)" in message
    assert "cannot be made again" in message and wheel.name in message
    # Refused, and left as found for the operator to look at; no temporary directory left.
    assert _tree(env) == tampered
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == [env.name]


def test_an_unreadable_record_is_drift(tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.mkdir()
    assert env_drift(str(env)) == [(ENV_RECORD, "record")]
    for text in ('{"format": "other"}', "[]", '{"format": "steppatch-foothold-files/1", '
                 '"dirs": [], "files": {"a": [1, "x", "y"]}}'):
        (env / ENV_RECORD).write_text(text)
        assert read_env_record(str(env)) is None
        assert env_drift(str(env)) == [(ENV_RECORD, "record")]
    assert check_env(None) == 0  # a foothold that needs no private environment


# --- foothold info: the steppatch-foothold-info/1 value ------------------------------------------


def test_foothold_info_round_trips_with_its_format_tag() -> None:
    said = FootholdInfo(
        FootholdSummary("/t/current/steppatch.pyz", "2.0", "cd" * 32, "2.0", "directory", None,
                        ("a-1-py3-none-any.whl",)),
        "2.0", "3.11.7", "/usr/bin/python3", "cp311-cp311-linux_x86_64", InfoCheck(7, 0),
    )  # fmt: skip
    doc = info_to_json(said)
    assert doc["format"] == INFO_FORMAT == "steppatch-foothold-info/1"
    assert parse_foothold_info(json.dumps(doc).encode()) == said
    # the untagged form earlier versions printed reads as the same shape
    untagged = {k: v for k, v in doc.items() if k != "format"}
    assert parse_foothold_info(json.dumps(untagged).encode()) == said


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"format": "steppatch-foothold-info/2"}, "format: expected"),
        ({"python": 3}, "python: expected str"),
        ({"foothold": {"version": "1"}}, "foothold.archive: missing"),
        ({"check": {"ok": False, "modules": 1, "files": 0}}, "check.ok: expected true"),
        ({"platform": None}, "platform: expected str"),
    ],
)
def test_a_bad_foothold_info_is_refused_by_field(change: dict[str, object], words: str) -> None:
    doc = {**info_to_json(foothold_info()), **change}
    with pytest.raises(BadFootholdInfo) as caught:
        parse_foothold_info(json.dumps(doc).encode(), "new steppatch")
    assert words in caught.value.problem and caught.value.source == "new steppatch"
    with pytest.raises(BadFootholdInfo, match="not a JSON object"):
        parse_foothold_info(b"[]")


def test_foothold_info_of_an_installed_steppatch() -> None:
    said = foothold_info(check=True)
    assert said.foothold is None  # the test suite runs from an installed steppatch
    assert said.check is not None and said.check.modules >= 4 and said.check.files == 0
    assert said.executable == sys.executable
