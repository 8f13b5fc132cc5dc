"""Property: every parser of bytes from outside returns a value or raises a SteppatchError.

For each kind of document a valid one is built, then hypothesis mutates it: byte flips, inserted
and deleted bytes, truncation; any JSON (or TOML) value replaced by a list, an object, a huge
integer, deep nesting, a value of the wrong type, or a string that has crashed a parser before
(``https://[``); fields deleted and unknown fields added. Whatever comes out, the parser must either
accept it or refuse it with a typed error; any other exception fails the test.

Profiles: the default (``parsers-ci``) keeps the file well under a minute on one core;
``STEPPATCH_FUZZ=long`` selects ``parsers-long`` for local runs. Add ``-s`` to see the calls per
parser, ``--hypothesis-show-statistics`` for hypothesis' own counts.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.version import Version

from steppatch import pki
from steppatch.cluster._core import NODE_FORMAT
from steppatch.cluster._nodes import SshNode
from steppatch.collect import parse_age
from steppatch.config import Location, parse_home_config, parse_location
from steppatch.errors import SteppatchError
from steppatch.fleet import parse_stored_snapshot
from steppatch.foothold import (
    FootholdInfo,
    FootholdSummary,
    InfoCheck,
    info_to_json,
    parse_foothold_info,
)
from steppatch.formats import (
    dump_home_state,
    dump_manifest,
    dump_state,
    dump_stored_manifest,
    dump_transfers,
    index_from_json,
    parse_home_state,
    parse_manifest,
    parse_state,
    parse_stored_manifest,
    parse_transfers,
    plan_to_json,
    stored_manifest_entries,
)
from steppatch.home._staged import read_staged_record as _read_staged_record
from steppatch.model import (
    Encoded,
    EntryKind,
    FileEntry,
    HomeState,
    InstalledComponent,
    Manifest,
    ObjectTransfers,
    RecipeKind,
    Transfers,
)
from steppatch.offline import PatchFile, PatchInfo, dump_patch_info, parse_patch_info, write_patch
from steppatch.plan import ChangeReason, ComponentChange, Plan
from steppatch.recipe import dump_recipe, parse_recipe, pinned_recipe
from steppatch.server._snapshots import check_snapshot
from steppatch.server.config import parse_config
from steppatch.trust import (
    ROLES,
    SigningKey,
    TrustedMetadataSet,
    make_index,
    make_root,
    make_timestamp,
    sign,
)
from steppatch.trust.canonical import canonical_bytes, published_bytes

settings.register_profile(
    "parsers-ci",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "parsers-long",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: applied to these tests only, so that the other property tests keep their own settings
FUZZ = settings.get_profile(
    "parsers-long" if os.environ.get("STEPPATCH_FUZZ") == "long" else "parsers-ci"
)

#: calls per parser and how they ended ("accepted" or the error's class), printed at the end
CALLS: Counter[tuple[str, str]] = Counter()


def _call(name: str, parse: Callable[[], object]) -> None:
    """Run ``parse``: a value or a SteppatchError pass, anything else fails the example."""
    try:
        parse()
    except SteppatchError as e:
        CALLS[(name, type(e).__name__)] += 1
    else:
        CALLS[(name, "accepted")] += 1


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    names = sorted({name for name, _ in CALLS})
    for name in names:
        outcomes = {o: n for (p, o), n in CALLS.items() if p == name}
        total = sum(outcomes.values())
        detail = ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items(), key=lambda i: -i[1]))
        print(f"\nparser {name}: {total} calls ({detail})", end="")


# --- mutations ----------------------------------------------------------------------------------

#: raw text put in place of a value after serialization: what json.dumps cannot write
RAW_JSON = {
    "huge-int": "9" * 5000,
    "long-int": "-" + "1" * 25,
    "deep-100000": "[" * 100_000 + "]" * 100_000,
    "deep-65": "[" * 65 + "]" * 65,
    "deep-objects": '{"a":' * 70 + "1" + "}" * 70,
    "nan": "NaN",
    "float": "1e999",
}
RAW_TOML = {
    "huge-int": "9" * 5000,
    "huge-hex": "0x" + "f" * 5000,
    "deep-100000": "[" * 100_000 + "]" * 100_000,
    "deep-tables": "{a = " * 5000 + "1" + "}" * 5000,
    "nan": "nan",
    "inf": "-inf",
    "datetime": "1979-05-27T07:32:00Z",
    "date": "1979-05-27",
}
_MARK = "\u0001raw:"
RAW = {"json": RAW_JSON, "toml": RAW_TOML, "none": {}}

#: plain values that have crashed parsers, or that sit on a type's edge
ODD = [
    [], {}, [1], ["x"], [[]], {"k": "v"}, {"": {}}, "", "x", "https://[", "https://[::1", "ssh://[",
    "https://h:99999", "https://h:x", "..", "../..", "/etc/passwd", "a/../b", "\u0000", "²", "0777",
    "04755", "==", "1.0", "not a version", "=>1", 0, -1, 1, 2**63, 2**64 + 1, True, False, None,
    0.5, -0.0, "a" * 300,
]  # fmt: skip

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=20),
    st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip
json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*at, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*at, i))


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@st.composite
def _structural(draw: st.DrawFn, doc: Any, raw: str, scalars: Any) -> Any:
    """``doc`` (a deep copy) with one to three values replaced, removed or added; ``raw`` names
    the texts of :data:`RAW` that may stand in for a value."""
    doc = copy.deepcopy(doc)
    marks = [_MARK + name for name in sorted(RAW[raw])] or [""]
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        siblings = [_get(doc, p) for p in paths]
        replacement = draw(
            st.one_of(
                st.sampled_from(ODD),
                st.sampled_from(marks),
                scalars,
                st.sampled_from(siblings).map(copy.deepcopy),  # a value of another field's type
                st.just([copy.deepcopy(_get(doc, path))]),  # wrapped in a list
                st.just({"k": copy.deepcopy(_get(doc, path))}),  # wrapped in an object
            ).map(copy.deepcopy)  # never share ODD's lists and objects between examples
        )
        if not path:
            doc = replacement
            continue
        parent, last = _get(doc, path[:-1]), path[-1]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = replacement
        else:
            parent[last] = replacement
    return doc


def _with_raw(text: str, raw: dict[str, str], quote: Callable[[str], str]) -> str:
    for name, value in raw.items():
        text = text.replace(quote(_MARK + name), value)
    return text


@st.composite
def byte_edits(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with one to four bytes flipped, bytes inserted or deleted, or cut short."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        action = draw(st.sampled_from(["flip", "flip", "insert", "delete", "truncate"]))
        if action == "flip" and out:
            out[at] ^= draw(st.integers(1, 255))
        elif action == "insert":
            out[at:at] = draw(st.sampled_from([b"[", b"{", b'"', b"\\", b"\x00", b"\xff", b"9"]))
        elif action == "delete":
            del out[at : at + draw(st.integers(1, 16))]
        else:
            del out[at:]
    return bytes(out)


def _dump_json(value: Any) -> bytes:
    text = json.dumps(value, indent=1, sort_keys=True)
    return _with_raw(text, RAW_JSON, json.dumps).encode()


def mutated_json(doc: Any, valid: bytes | None = None) -> st.SearchStrategy[bytes]:
    """Bytes from ``doc`` (published as ``valid``, if given): structurally or bytewise changed."""
    valid = valid if valid is not None else _dump_json(doc)
    structural = _structural(doc, "json", json_values).map(_dump_json)
    return st.one_of(structural, byte_edits(valid), structural.flatmap(byte_edits), st.just(valid))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (
            f"{json.dumps(k, ensure_ascii=False)} = {_toml_value(v)}" for k, v in value.items()
        )
        return "{" + ", ".join(items) + "}"
    return '""'  # None: TOML has no null; an empty string stands in


def _dump_toml(doc: Any) -> bytes:
    if not isinstance(doc, dict):
        text = f"x = {_toml_value(doc)}\n"
    else:
        text = "".join(
            f"{json.dumps(k, ensure_ascii=False)} = {_toml_value(v)}\n" for k, v in doc.items()
        )
    return _with_raw(text, RAW_TOML, lambda s: json.dumps(s, ensure_ascii=False)).encode(
        "utf-8", "surrogatepass"
    )


_toml_scalars = st.one_of(
    st.booleans(), st.integers(), st.text(max_size=20), st.floats(),
    st.lists(st.integers(), max_size=3),
)  # fmt: skip


def mutated_toml(doc: dict[str, Any]) -> st.SearchStrategy[bytes]:
    valid = _dump_toml(doc)
    structural = _structural(doc, "toml", _toml_scalars).map(_dump_toml)
    return st.one_of(structural, byte_edits(valid), structural.flatmap(byte_edits), st.just(valid))


def mutated_text(text: str) -> st.SearchStrategy[str]:
    edits = byte_edits(text.encode()).map(lambda b: b.decode("utf-8", "replace"))
    return st.one_of(edits, st.sampled_from([s for s in ODD if isinstance(s, str)]))


# --- valid documents ----------------------------------------------------------------------------

HEX = "ab" * 32
NOW = datetime(2026, 6, 1, tzinfo=UTC)
EXPIRES = NOW + timedelta(days=7)

MANIFEST = Manifest(
    "restapi",
    Version("7.0.40"),
    (
        FileEntry("bin", EntryKind.DIR, 0o755),
        FileEntry("bin/run", EntryKind.FILE, 0o755, 12, HEX),
        FileEntry("bin/start", EntryKind.SYMLINK, 0o777, target="run"),
        FileEntry("lib/x.jar", EntryKind.FILE, 0o644, 0, "cd" * 32),
    ),
)
STATE = HomeState({"restapi": InstalledComponent(MANIFEST, HEX, hot=True)})
SNAPSHOT = pinned_recipe(
    RecipeKind.SNAPSHOT, {"restapi": Version("7.0.40")}, name="snapshot-bob", system="bob",
    created="2026-11-22T05:00:00Z", files={e.path: e for e in MANIFEST.entries},
)  # fmt: skip
THIN = pinned_recipe(RecipeKind.SNAPSHOT, {"restapi": Version("7.0.40")}, system="bob")
RELEASE = pinned_recipe(
    RecipeKind.RELEASE, {"restapi": Version("7.0.40"), "step-core": Version("9.0.5")},
    name="step-9.0",
)  # fmt: skip
COMPONENT_RECIPE = {
    "format": "steppatch-recipe/1", "kind": "component", "name": "restapi-7.0.40",
    "components": {"restapi": "==7.0.40", "step-core": ">=9.0,<10"},
}  # fmt: skip
NODES_SNAPSHOT = {
    **json.loads(dump_recipe(SNAPSHOT)),
    "nodes": [{"name": "n2", "components": {"restapi": "7.0.40"}, "environment": "e",
               "fingerprint": "f"}],
}  # fmt: skip

PLAN = Plan(
    target={"restapi": Version("7.0.41")},
    changes=(ComponentChange("restapi", Version("7.0.40"), Version("7.0.41"),
                             ChangeReason.REQUESTED),),
    hot=False, download_objects=3, download_bytes=1024, repairs=0,
)  # fmt: skip
NODE_ANSWERS = {
    "status": {"format": NODE_FORMAT, "versions": {"restapi": "7.0.40"}, "environment": "e",
               "fingerprint": "f"},
    "stage": {"format": NODE_FORMAT, "token": "t" * 8, "plan": plan_to_json(PLAN)},
    "switch": {"format": NODE_FORMAT, "restarted": True},
}  # fmt: skip

PATCH_INFO = PatchInfo(
    environment="env-1", system="bob", fingerprint="f" * 16,
    base={"restapi": Version("7.0.40")}, target={"restapi": Version("7.0.41")},
    refs=("to:step/9.0.spr", "local:local/0.spr"), objects=1, object_bytes=3,
)  # fmt: skip

STAGED = {
    "format": "steppatch-staged/1", "tree": "t" * 16, "base": "f" * 64, "hot": False,
    "requested": ["restapi"], "repairs": 0, "displaced": ["old/x"],
}  # fmt: skip

FOOTHOLD_INFO = info_to_json(FootholdInfo(
    FootholdSummary("/opt/steppatch/current/steppatch.pyz", "1.2.0", "ab" * 32, "1.2.0",
                    "directory", "/opt/steppatch/envs/abab", ("cffi-1.17-cp311.whl",)),
    "1.2.0", "3.11.7", "/usr/bin/python3", "cp311-cp311-manylinux_2_17_x86_64",
    InfoCheck(modules=40, files=1200),
))  # fmt: skip

HOME_TOML = {
    "updates": "https://dk1.example:8443", "system": "bob", "node": "n1",
    "keep_history": 5, "gc": "manual",
    "service": {"start": "./start", "stop": "./stop", "status": "./status"},
    "mirrors": [{"id": "dk1", "url": "https://dk1.example:8443", "priority": 20, "name": "DK"}],
    "nodes": [{"name": "n2", "location": "ssh://step@n2:22/srv/step", "command": "steppatch"}],
}  # fmt: skip
MIRROR_TOML = {
    "store": "/var/lib/m", "download": "historic", "listen": "0.0.0.0:443",
    "admin_listen": "127.0.0.1:8080", "bulk_download_mbit_per_s": 10.5, "workers": 4,
    "poll_interval_s": 300, "accept_snapshots": True, "trusted_root": "root.json",
    "keep_indexes": 10, "gc_interval_s": 3600,
    "tls": {"cert": "s.crt", "key": "s.key", "client_ca": "ca.crt"},
    "upstreams": [{"id": "dk1", "url": "https://dk1.example:8443", "priority": 20},
                  {"id": "dk2", "url": "file:///srv/repo", "name": "local"}],
    "upstream_tls": {"cert": "m.crt", "key": "m.key", "ca": "ca.crt"},
}  # fmt: skip
ORIGIN_TOML = {
    "store": "st", "tls": {"cert": "s.crt", "key": "s.key", "client_ca": "ca.crt"},
    "origin": {"repository": "/srv/repo"},
}  # fmt: skip


# --- one test per kind of document ---------------------------------------------------------------


@FUZZ
@given(st.one_of(
    mutated_json(json.loads(dump_recipe(RELEASE))), mutated_json(COMPONENT_RECIPE),
    mutated_json(NODES_SNAPSHOT),
))  # fmt: skip
def test_recipe(data: bytes) -> None:
    _call("recipe (parse_recipe)", lambda: parse_recipe(data, "r.spr"))


@FUZZ
@given(mutated_json(json.loads(dump_recipe(THIN))))
def test_snapshot_upload(data: bytes) -> None:
    _call("snapshot upload (check_snapshot)", lambda: check_snapshot("bob.spr", "bob", data))


@FUZZ
@given(st.one_of(mutated_json(json.loads(dump_recipe(THIN))), mutated_json(NODES_SNAPSHOT)))
def test_stored_snapshot(data: bytes) -> None:
    _call(
        "stored snapshot (parse_stored_snapshot)",
        lambda: parse_stored_snapshot(data, "s.spr", datetime(2026, 12, 6, tzinfo=UTC)),
    )


@FUZZ
@given(mutated_json(json.loads(dump_manifest(MANIFEST)), dump_manifest(MANIFEST)))
def test_manifest(data: bytes) -> None:
    _call("manifest (parse_manifest)", lambda: parse_manifest(data, "m.json"))


TRANSFERS = Transfers("restapi", Version("7.0.41"), {
    HEX: ObjectTransfers(5000, Encoded("ab" * 32, 900), (
        Encoded("cd" * 32, 40, "ef" * 32), Encoded("12" * 32, 30, "ef" * 32, 9000),
    )),
})  # fmt: skip


@FUZZ
@given(mutated_json(json.loads(dump_transfers(TRANSFERS)), dump_transfers(TRANSFERS)))
def test_transfers(data: bytes) -> None:
    _call("transfers (parse_transfers)", lambda: parse_transfers(data, "t.json"))


_STORED_JSON = json.loads(gzip.decompress(dump_stored_manifest(MANIFEST)))


@FUZZ
@given(st.one_of(
    mutated_json(_STORED_JSON).map(lambda b: gzip.compress(b, mtime=0)),
    byte_edits(dump_stored_manifest(MANIFEST)),
))  # fmt: skip
def test_stored_manifest(data: bytes) -> None:
    # Named by the sha256 of the bytes given, so the damage check passes and the parse is reached.
    stored = hashlib.sha256(data).hexdigest()
    _call(
        "stored manifest (parse_stored_manifest)",
        lambda: parse_stored_manifest(data, stored, "home"),
    )
    _call(
        "stored manifest (stored_manifest_entries)",
        lambda: stored_manifest_entries(data, stored, "home"),
    )


@FUZZ
@given(st.one_of(
    mutated_json(json.loads(dump_state(STATE))),
    mutated_json(json.loads(dump_home_state(STATE, {"restapi": HEX}))),
))  # fmt: skip
def test_home_state(data: bytes) -> None:
    _call("state (parse_home_state)", lambda: parse_home_state(data, "state.json"))
    _call("state/1 (parse_state)", lambda: parse_state(data, "state.json"))


@FUZZ
@given(mutated_json(STAGED))
def test_staged_record(data: bytes) -> None:
    def fail(problem: str) -> Any:
        raise SteppatchError(problem)

    _call("staged-apply record (_read_staged_record)", lambda: _read_staged_record(data, fail))


@FUZZ
@given(mutated_json(FOOTHOLD_INFO))
def test_foothold_info(data: bytes) -> None:
    _call("foothold info (parse_foothold_info)", lambda: parse_foothold_info(data, "info"))


@FUZZ
@given(mutated_json(json.loads(dump_patch_info(PATCH_INFO))))
def test_patch_info(data: bytes) -> None:
    _call("patch.json (parse_patch_info)", lambda: parse_patch_info(data, "p.patch"))


class _Answering(SshNode):
    """A node whose every command answers ``data``: the real reading of node answers."""

    def __init__(self, data: bytes) -> None:
        super().__init__("n2", Location("/srv/step", "n2"), ssh="ssh")
        self.data = data

    def _run(self, args: list[str], *, stdin: bytes = b"", timeout: float | None = None) -> bytes:
        return self.data


@FUZZ
@given(st.one_of(*(mutated_json(doc) for doc in NODE_ANSWERS.values())))
def test_node_answer(data: bytes) -> None:
    node = _Answering(data)
    _call("node answer (status)", node.status)
    _call("node answer (stage)", lambda: node.stage(RELEASE, hot=False, sync=None))
    _call("node answer (switch)", lambda: node.switch("t" * 8))


@FUZZ
@given(st.one_of(
    mutated_text("ssh://step@n2.example:2222/srv/step"), mutated_text("ssh://[::1]/srv/step"),
    mutated_text("/srv/step"), st.text(max_size=40),
))  # fmt: skip
def test_node_location(text: str) -> None:
    _call("node location (parse_location)", lambda: parse_location(text))


@FUZZ
@given(st.one_of(mutated_text("30d"), mutated_text("12h"), st.text(max_size=20)))
def test_gc_age(text: str) -> None:
    _call("gc --older-than (parse_age)", lambda: parse_age(text))


@FUZZ
@given(mutated_toml(HOME_TOML))
def test_home_config(data: bytes) -> None:
    _call("steppatch.toml (parse_home_config)", lambda: parse_home_config(data, "steppatch.toml"))


@FUZZ
@given(st.one_of(mutated_toml(MIRROR_TOML), mutated_toml(ORIGIN_TOML)))
def test_mirror_config(data: bytes) -> None:
    _call(
        "mirror.toml (parse_config)",
        lambda: parse_config(data, "/etc/m/mirror.toml", Path("/etc/m")),
    )


# --- signed metadata: byte changes, and structural changes signed again --------------------------

KEYS = {role: SigningKey.generate() for role in ROLES}
ROOT_SIGNED = make_root({r: [k.public] for r, k in KEYS.items()}, {r: 1 for r in ROLES}, 1, EXPIRES)
ROOT = sign(ROOT_SIGNED, [KEYS["root"]])
PAYLOAD = {
    "format": "steppatch-index/1",
    "components": {"restapi": {"7.0.40": {
        "summary": "REST API", "notes": "", "hot": True, "recipe": "restapi/7.0/restapi-7.0.40.spr",
        "dependencies": {"step-core": ">=9.0,<10"},
        "manifest": {"path": "manifests/ab/x.json", "sha256": HEX, "length": 100},
        "config": {"deprecated": ["old.key"], "renamed": {"a": "b"}},
    }}},
    "recipes": {"step/9.0.spr": {"sha256": HEX, "length": 10}},
}  # fmt: skip
INDEX_SIGNED = make_index(PAYLOAD, 1, EXPIRES)
INDEX = sign(INDEX_SIGNED, [KEYS["index"]])
TIMESTAMP_SIGNED = make_timestamp(INDEX, 1, 1, EXPIRES)
TIMESTAMP = sign(TIMESTAMP_SIGNED, [KEYS["timestamp"]])


def _signed_by(role: str, signed: Any) -> bytes | None:
    """``signed`` with a valid signature of ``role``'s key, or None where it has no canonical
    form (then only the bytes, not the fields, can be tried)."""
    try:
        canonical = canonical_bytes(signed)
        signature = {"keyid": KEYS[role].keyid, "sig": KEYS[role].sign(canonical).hex()}
        return published_bytes({"signed": signed, "signatures": [signature]})
    except (ValueError, TypeError, AttributeError):
        return None


def mutated_metadata(role: str, signed: dict[str, Any], valid: bytes) -> st.SearchStrategy[bytes]:
    resigned = _structural(signed, "none", json_values).map(lambda s: _signed_by(role, s))
    return st.one_of(
        resigned.filter(lambda b: b is not None), mutated_json(json.loads(valid), valid)
    )


def _timestamp_for(index: bytes) -> bytes:
    signed = copy.deepcopy(TIMESTAMP_SIGNED)
    signed["index"]["length"] = len(index)
    signed["index"]["sha256"] = hashlib.sha256(index).hexdigest()
    result = _signed_by("timestamp", signed)
    assert result is not None
    return result


@FUZZ
@given(mutated_metadata("root", ROOT_SIGNED, ROOT))
def test_root_metadata(data: bytes) -> None:
    _call("root metadata (TrustedMetadataSet)", lambda: TrustedMetadataSet(data, NOW))

    def update() -> object:
        return TrustedMetadataSet(ROOT, NOW).update_root(data)

    _call("root metadata (update_root)", update)


@FUZZ
@given(mutated_metadata("timestamp", TIMESTAMP_SIGNED, TIMESTAMP))
def test_timestamp_metadata(data: bytes) -> None:
    _call("timestamp metadata", lambda: TrustedMetadataSet(ROOT, NOW).update_timestamp(data))


@FUZZ
@given(mutated_metadata("index", INDEX_SIGNED, INDEX))
def test_index_metadata(data: bytes) -> None:
    def update() -> object:
        trusted = TrustedMetadataSet(ROOT, NOW)
        trusted.update_timestamp(_timestamp_for(data))
        # The repository index the payload carries, as the client reads it next.
        return index_from_json(trusted.update_index(data).payload, "index")

    _call("index metadata (update_index, index_from_json)", update)


# --- patch files ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def patch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("patches")


def _valid_patch(folder: Path) -> bytes:
    path = folder / "valid.patch"
    write_patch(path, PATCH_INFO, {"timestamp.json": TIMESTAMP, "objects/ab/cd": b"abc"})
    return path.read_bytes()


def _retrailed(data: bytes) -> bytes:
    """``data`` with its trailer made to match its (changed) body, so that the parse is reached."""
    from steppatch.offline import _TRAILER_LEN, TRAILER

    body = data[:-_TRAILER_LEN] if len(data) > _TRAILER_LEN else data
    return body + TRAILER + hashlib.sha256(body).hexdigest().encode() + b"\n"


def _tar_with_info(info: bytes) -> bytes:
    import io

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        member = tarfile.TarInfo("patch.json")
        member.size = len(info)
        tar.addfile(member, io.BytesIO(info))
    return out.getvalue() + b"\0" * 88  # room for the trailer _retrailed replaces


@FUZZ
@given(data=st.data())
def test_patch_file(patch_dir: Path, data: st.DataObject) -> None:
    valid = _valid_patch(patch_dir)
    candidate = data.draw(st.one_of(
        byte_edits(valid).map(_retrailed),
        mutated_json(json.loads(dump_patch_info(PATCH_INFO))).map(_tar_with_info).map(_retrailed),
        byte_edits(valid),
    ))  # fmt: skip
    path = patch_dir / "mutated.patch"
    path.write_bytes(candidate)
    _call("patch file (PatchFile.open)", lambda: PatchFile.open(path))


# --- certificates and requests from outside -------------------------------------------------------

CA = pki.make_ca()
CLIENT = pki.issue_client_cert(CA, "bob")
REQUEST = pki.make_request("bob")


def _der_edits(pem: bytes, label: str) -> st.SearchStrategy[bytes]:
    import base64
    import textwrap

    der = base64.b64decode(b"".join(pem.strip().splitlines()[1:-1]))

    def repem(raw: bytes) -> bytes:
        body = "\n".join(textwrap.wrap(base64.b64encode(raw).decode(), 64))
        return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()

    return st.one_of(byte_edits(der).map(repem), byte_edits(pem))


@FUZZ
@given(_der_edits(CLIENT.cert_pem, "CERTIFICATE"))
def test_certificate(pem: bytes) -> None:
    _call("certificate (read_certificate)", lambda: pki.read_certificate(pem))
    _call("certificate (check_issued_by)", lambda: pki.check_issued_by(pem, CA.cert_pem))


@FUZZ
@given(_der_edits(REQUEST.csr_pem, "CERTIFICATE REQUEST"))
def test_certificate_request(pem: bytes) -> None:
    _call("certificate request (sign_request)", lambda: pki.sign_request(CA, pem))


# --- the depth pre-scan agrees with the parser ---------------------------------------------------

_tricky_text = st.text(alphabet='[]{}"\\ab\u00e9', max_size=6)
nested_values = st.recursive(
    st.one_of(st.integers(-(10**19), 10**19), _tricky_text, st.none()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_tricky_text, inner, max_size=3),
    max_leaves=40,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@FUZZ
@given(nested_values, st.integers(0, 12), st.booleans())
def test_depth_prescan_matches_the_depth(value: Any, limit: int, indent: bool) -> None:
    """Brackets, quotes and backslashes inside strings never count; every level outside does."""
    from steppatch._json import JsonLimits, JsonProblem, parse_json

    data = json.dumps(value, indent=1 if indent else None, ensure_ascii=False).encode()
    CALLS[("JSON depth pre-scan (parse_json)", "checked")] += 1
    if _depth(value) <= limit:
        assert parse_json(data, JsonLimits(max_depth=limit)) == value
    else:
        with pytest.raises(JsonProblem, match=f"nested deeper than {limit} levels"):
            parse_json(data, JsonLimits(max_depth=limit))
