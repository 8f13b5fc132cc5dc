"""Malformed documents raise BadMetadata naming the field; oversized ones MetadataTooLarge."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from steppatch.errors import TooLarge
from steppatch.trust import (
    BadMetadata,
    MetadataTooLarge,
    SigningKey,
    TrustedMetadataSet,
    TrustLimits,
    make_index,
    make_root,
    make_timestamp,
    sign,
)
from tests.unit.trust.trust_helpers import state
from tests.unit.trust.trust_simulator import RepositorySimulator

Edit = Callable[[dict[str, Any]], object]


def _set(path: str, value: object) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = document
        for name in parents:
            target = target[name]
        target[last] = value

    return edit


def _delete(path: str) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = document
        for name in parents:
            target = target[name]
        del target[last]

    return edit


def _first_keyid(document: dict[str, Any]) -> str:
    return str(document["signed"]["roles"]["root"]["keyids"][0])


ROOT_CASES: list[tuple[str, Edit, str]] = [
    ("missing signatures", _delete("signatures"), "document.signatures"),
    ("extra top-level field", _set("extra", 1), "document.extra"),
    ("signed not an object", _set("signed", []), "signed"),
    ("wrong _type", _set("signed._type", "index"), "signed._type"),
    ("missing _type", _delete("signed._type"), "signed._type"),
    ("wrong spec", _set("signed.spec", "tuf/1.0"), "signed.spec"),
    ("missing version", _delete("signed.version"), "signed.version"),
    ("version a string", _set("signed.version", "1"), "signed.version"),
    ("version a boolean", _set("signed.version", True), "signed.version"),
    ("version zero", _set("signed.version", 0), "signed.version"),
    ("missing expires", _delete("signed.expires"), "signed.expires"),
    ("expires not a time", _set("signed.expires", "tomorrow"), "signed.expires"),
    ("expires with offset", _set("signed.expires", "2026-12-01T00:00:00+00:00"), "signed.expires"),
    ("expires a number", _set("signed.expires", 1767225600), "signed.expires"),
    ("missing keys", _delete("signed.keys"), "signed.keys"),
    ("keys a list", _set("signed.keys", []), "signed.keys"),
    (
        "unknown signed field",
        _set("signed.consistent_snapshot", True),
        "signed.consistent_snapshot",
    ),
    ("missing role", _delete("signed.roles.index"), "signed.roles.index"),
    (
        "extra role",
        _set("signed.roles.targets", {"keyids": [], "threshold": 1}),
        "signed.roles.targets",
    ),
    ("threshold zero", _set("signed.roles.root.threshold", 0), "signed.roles.root.threshold"),
    ("threshold above keys", _set("signed.roles.root.threshold", 2), "signed.roles.root.threshold"),
    ("missing threshold", _delete("signed.roles.root.threshold"), "signed.roles.root.threshold"),
    ("keyids empty", _set("signed.roles.root.keyids", []), "signed.roles.root.keyids"),
    ("keyids unknown", _set("signed.roles.root.keyids", ["ab" * 32]), "signed.roles.root.keyids"),
    ("keyids not strings", _set("signed.roles.root.keyids", [[1]]), "signed.roles.root.keyids"),
    ("signatures an object", _set("signatures", {}), "signatures"),
    ("signature without sig", lambda d: d["signatures"][0].pop("sig"), "signatures[0].sig"),
    (
        "signature uppercase hex",
        lambda d: d["signatures"][0].update(sig=d["signatures"][0]["sig"].upper()),
        "signatures[0].sig",
    ),
    (
        "signature keyid short",
        lambda d: d["signatures"][0].update(keyid="ab"),
        "signatures[0].keyid",
    ),
]


@pytest.mark.parametrize(
    ("edit", "field"), [c[1:] for c in ROOT_CASES], ids=[c[0] for c in ROOT_CASES]
)
def test_malformed_root_names_the_field(repo: RepositorySimulator, edit: Edit, field: str) -> None:
    data = repo.edit(repo.roots[0], edit)
    with pytest.raises(BadMetadata) as caught:
        TrustedMetadataSet(data, repo.now)
    assert caught.value.field == field, caught.value
    assert caught.value.role == "root"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (_set("signed._type", "timestamp"), "signed._type"),
        (_delete("signed.roles.timestamp"), "signed.roles.timestamp"),
        (_set("signed.roles.index.threshold", 5), "signed.roles.index.threshold"),
    ],
)
def test_malformed_new_root_names_the_field(
    repo: RepositorySimulator, edit: Edit, field: str
) -> None:
    repo.publish_root()
    trusted = repo.client()
    with pytest.raises(BadMetadata) as caught:
        trusted.update_root(repo.edit(repo.roots[1], edit))
    assert caught.value.field == field
    assert trusted.root.version == 1


def test_huge_untrusted_values_are_cut_in_messages(repo: RepositorySimulator) -> None:
    huge = "x" * 100_000
    for edit in (
        _set("signed._type", huge),
        _set(f"signed.{huge}", 1),
        _set("signed.version", huge),
    ):
        with pytest.raises(BadMetadata) as caught:
            TrustedMetadataSet(repo.edit(repo.roots[0], edit), repo.now)
        assert len(str(caught.value)) < 300


def test_duplicated_keyid_in_a_role_is_refused(repo: RepositorySimulator) -> None:
    def dup(document: dict[str, Any]) -> None:
        keyids = document["signed"]["roles"]["root"]["keyids"]
        keyids.append(keyids[0])

    with pytest.raises(BadMetadata) as caught:
        TrustedMetadataSet(repo.edit(repo.roots[0], dup), repo.now)
    assert caught.value.field == "signed.roles.root.keyids"


def test_key_listed_under_another_keyid_is_refused(repo: RepositorySimulator) -> None:
    # listing one key under two ids would let it count twice towards a threshold
    def alias(document: dict[str, Any]) -> None:
        keyid = _first_keyid(document)
        document["signed"]["keys"]["ab" * 32] = document["signed"]["keys"][keyid]

    with pytest.raises(BadMetadata) as caught:
        TrustedMetadataSet(repo.edit(repo.roots[0], alias), repo.now)
    assert caught.value.field == f"signed.keys.{'ab' * 32}"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not JSON"),
        (b"\xfe\xff", "not UTF-8"),
        (b"[]", "expected an object"),
        (b'{"signed": {}, "signed": {}, "signatures": []}', "appears twice"),
        (b'{"signed": {"version": 1.0}, "signatures": []}', "not JSON"),
    ],
)
def test_broken_json_is_bad_metadata(repo: RepositorySimulator, data: bytes, problem: str) -> None:
    with pytest.raises(BadMetadata, match=problem):
        TrustedMetadataSet(data, repo.now)
    trusted = repo.client()
    with pytest.raises(BadMetadata, match=problem):
        trusted.update_timestamp(data)


TIMESTAMP_CASES: list[tuple[str, Edit, str]] = [
    ("wrong _type", _set("signed._type", "root"), "signed._type"),
    ("missing pin", _delete("signed.index"), "signed.index"),
    ("pin not an object", _set("signed.index", "x"), "signed.index"),
    ("missing sha256", _delete("signed.index.sha256"), "signed.index.sha256"),
    ("short sha256", _set("signed.index.sha256", "abc"), "signed.index.sha256"),
    ("negative length", _set("signed.index.length", -1), "signed.index.length"),
    ("version zero", _set("signed.index.version", 0), "signed.index.version"),
    ("extra pin field", _set("signed.index.sha512", "00"), "signed.index.sha512"),
    ("unknown signed field", _set("signed.snapshot", {}), "signed.snapshot"),
]


@pytest.mark.parametrize(
    ("edit", "field"), [c[1:] for c in TIMESTAMP_CASES], ids=[c[0] for c in TIMESTAMP_CASES]
)
def test_malformed_timestamp_names_the_field(
    repo: RepositorySimulator, edit: Edit, field: str
) -> None:
    trusted = repo.client()
    before = state(trusted)
    with pytest.raises(BadMetadata) as caught:
        trusted.update_timestamp(repo.edit(repo.timestamp, edit))
    assert (caught.value.role, caught.value.field) == ("timestamp", field)
    assert state(trusted) == before


INDEX_CASES: list[tuple[str, Edit, str]] = [
    ("wrong _type", _set("signed._type", "timestamp"), "signed._type"),
    ("missing payload", _delete("signed.index"), "signed.index"),
    ("payload a list", _set("signed.index", []), "signed.index"),
    ("unknown signed field", _set("signed.targets", {}), "signed.targets"),
]


@pytest.mark.parametrize(
    ("edit", "field"), [c[1:] for c in INDEX_CASES], ids=[c[0] for c in INDEX_CASES]
)
def test_malformed_index_names_the_field(repo: RepositorySimulator, edit: Edit, field: str) -> None:
    data = repo.edit(repo.index, edit)
    # a timestamp key holder pins the malformed bytes, so it gets past the hash check
    signed = repo.signed_of(repo.timestamp)
    signed["version"] = 2
    signed["index"] = {"version": 1, "length": len(data), "sha256": _sha(data)}
    trusted = repo.client()
    trusted.update_timestamp(sign(signed, repo.keys["timestamp"]))
    with pytest.raises(BadMetadata) as caught:
        trusted.update_index(data)
    assert (caught.value.role, caught.value.field) == ("index", field)
    assert trusted.index is None


def _sha(data: bytes) -> str:
    from steppatch.trust import sha256_hex

    return sha256_hex(data)


# --- size caps ---------------------------------------------------------------------------------


def test_oversized_root_is_refused_before_parsing(repo: RepositorySimulator) -> None:
    limits = TrustLimits(max_root_bytes=len(repo.roots[0]) - 1)
    with pytest.raises(MetadataTooLarge) as caught:
        TrustedMetadataSet(repo.roots[0], repo.now, limits)
    assert (caught.value.role, caught.value.size, caught.value.limit) == (
        "root",
        len(repo.roots[0]),
        len(repo.roots[0]) - 1,
    )
    assert isinstance(caught.value, TooLarge)


def test_oversized_new_root_is_refused(repo: RepositorySimulator) -> None:
    repo.publish_root()
    trusted = repo.client(limits=TrustLimits(max_root_bytes=len(repo.roots[0])))
    padded = repo.roots[1] + b" " * (len(repo.roots[0]) + 1 - len(repo.roots[1]))
    with pytest.raises(MetadataTooLarge):
        trusted.update_root(padded)
    assert trusted.root.version == 1


def test_oversized_timestamp_is_refused(repo: RepositorySimulator) -> None:
    trusted = repo.client(limits=TrustLimits(max_timestamp_bytes=100))
    with pytest.raises(MetadataTooLarge) as caught:
        trusted.update_timestamp(repo.timestamp)
    assert caught.value.role == "timestamp"
    assert trusted.timestamp is None


def test_endless_data_timestamp_of_junk_is_refused_without_parsing(
    repo: RepositorySimulator,
) -> None:
    trusted = repo.client()
    with pytest.raises(MetadataTooLarge):
        trusted.update_timestamp(b"[" * (TrustLimits().max_timestamp_bytes + 1))


def test_oversized_index_is_refused_before_the_hash(repo: RepositorySimulator) -> None:
    trusted = repo.client(limits=TrustLimits(max_index_bytes=len(repo.index) - 1))
    trusted.update_timestamp(repo.timestamp)
    with pytest.raises(MetadataTooLarge) as caught:
        trusted.update_index(repo.index)
    assert caught.value.role == "index"


def test_oversized_stored_documents_are_refused(repo: RepositorySimulator) -> None:
    limits = TrustLimits(max_index_bytes=10)
    with pytest.raises(MetadataTooLarge):
        TrustedMetadataSet.reload(
            repo.roots[0], repo.timestamp, repo.index, now=repo.now, limits=limits
        )


@pytest.mark.parametrize("value", [0, -1, True, "5"])
def test_limits_must_be_positive_integers(value: Any) -> None:
    with pytest.raises(ValueError):
        TrustLimits(max_root_rotations=value)


# --- the release side refuses to make what a client would refuse -------------------------------


def test_make_root_checks_its_arguments(repo: RepositorySimulator) -> None:
    key = SigningKey.generate().public
    keys = {"root": [key], "timestamp": [key], "index": [key]}
    with pytest.raises(ValueError, match="threshold of root"):
        make_root(keys, {"root": 2, "timestamp": 1, "index": 1}, 1, repo.now)
    with pytest.raises(ValueError, match="keys_by_role"):
        make_root({"root": [key]}, {"root": 1, "timestamp": 1, "index": 1}, 1, repo.now)
    with pytest.raises(ValueError, match="version"):
        make_root(keys, {"root": 1, "timestamp": 1, "index": 1}, 0, repo.now)
    with pytest.raises(ValueError, match="timezone-aware"):
        make_root(keys, {"root": 1, "timestamp": 1, "index": 1}, 1, datetime(2027, 1, 1))


def test_make_index_refuses_floats(repo: RepositorySimulator) -> None:
    with pytest.raises(ValueError):
        make_index({"size": 1.5}, 1, repo.now)


def test_make_timestamp_checks_the_index_version(repo: RepositorySimulator) -> None:
    with pytest.raises(ValueError, match="not 2"):
        make_timestamp(repo.index, 2, 1, repo.now)
    with pytest.raises(ValueError, match="not an index"):
        make_timestamp(repo.timestamp, 1, 1, repo.now)


def test_sign_refuses_no_keys_and_malformed_documents(repo: RepositorySimulator) -> None:
    signed = repo.signed_of(repo.index)
    with pytest.raises(ValueError):
        sign(signed, [])
    del signed["expires"]
    with pytest.raises(BadMetadata) as caught:
        sign(signed, repo.keys["index"])
    assert caught.value.field == "signed.expires"
    with pytest.raises(BadMetadata):
        sign({"_type": "targets"}, repo.keys["index"])


def test_published_form_is_pretty_json_with_a_final_newline(repo: RepositorySimulator) -> None:
    assert repo.index.endswith(b"}\n")
    assert json.loads(repo.index)["signed"]["_type"] == "index"
