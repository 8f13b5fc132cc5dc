"""Index updates: it must be exactly what the trusted timestamp pins."""

from __future__ import annotations

from datetime import timedelta

import pytest

from steppatch.trust import (
    ExpiredMetadata,
    MixAndMatch,
    RollbackAttack,
    ThresholdNotMet,
    VersionConflict,
    make_index,
    make_timestamp,
    sign,
)
from tests.unit.trust.trust_helpers import state
from tests.unit.trust.trust_simulator import RepositorySimulator


def test_happy_path_gives_the_payload(repo: RepositorySimulator) -> None:
    repo.publish({"components": {"restapi": ["7.0.40"]}, "recipes": {}})
    trusted = repo.refresh(repo.client())
    assert trusted.current_index().payload == {"components": {"restapi": ["7.0.40"]}, "recipes": {}}
    assert trusted.index is not None and trusted.index.version == 2


def test_payload_is_a_copy(repo: RepositorySimulator) -> None:
    trusted = repo.refresh(repo.client())
    assert trusted.index is not None
    trusted.index.payload["components"]["evil"] = "1"
    assert trusted.index.payload == {"components": {}, "recipes": {}}


def test_index_other_than_the_pinned_version_is_mix_and_match(repo: RepositorySimulator) -> None:
    old_index = repo.index
    repo.publish()
    trusted = repo.client()
    trusted.update_timestamp(repo.timestamp)
    before = state(trusted)
    with pytest.raises(MixAndMatch) as caught:
        trusted.update_index(old_index)
    # bytes differ, so the length or the hash catches it before any parsing
    assert caught.value.field in {"length", "sha256"}
    assert state(trusted) == before


def test_index_with_the_pinned_hash_but_another_version_is_mix_and_match(
    repo: RepositorySimulator,
) -> None:
    # a timestamp key holder pins index bytes whose version is not the version it names
    trusted = repo.client()
    bad = make_timestamp(repo.index, 1, 2, repo.expires["timestamp"])
    bad["index"]["version"] = 7
    trusted.update_timestamp(sign(bad, repo.keys["timestamp"]))
    with pytest.raises(MixAndMatch) as caught:
        trusted.update_index(repo.index)
    assert (caught.value.field, caught.value.expected, caught.value.actual) == ("version", "7", "1")


def test_index_one_byte_longer_is_mix_and_match_on_length(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    trusted.update_timestamp(repo.timestamp)
    with pytest.raises(MixAndMatch) as caught:
        trusted.update_index(repo.index + b" ")
    assert caught.value.field == "length"
    assert caught.value.expected == str(len(repo.index))


def test_index_with_one_byte_changed_is_mix_and_match_on_hash(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    trusted.update_timestamp(repo.timestamp)
    tampered = repo.index.replace(b'"components"', b'"componentz"')
    assert len(tampered) == len(repo.index)
    with pytest.raises(MixAndMatch) as caught:
        trusted.update_index(tampered)
    assert caught.value.field == "sha256"


def test_pinned_index_must_still_be_signed_by_index_keys(repo: RepositorySimulator) -> None:
    # a timestamp key alone cannot make an index: its signature is checked too
    forged = sign(
        make_index({"components": {"evil": 1}}, 2, repo.expires["index"]), repo.keys["timestamp"]
    )
    timestamp = sign(
        make_timestamp(forged, 2, 2, repo.expires["timestamp"]), repo.keys["timestamp"]
    )
    trusted = repo.client()
    trusted.update_timestamp(timestamp)
    with pytest.raises(ThresholdNotMet) as caught:
        trusted.update_index(forged)
    assert caught.value.role == "index"


def test_older_validly_signed_index_after_a_newer_one_is_a_rollback(
    repo: RepositorySimulator,
) -> None:
    old_index = repo.index
    repo.publish()
    first = repo.refresh(repo.client())
    assert first.index is not None
    # the stored timestamp was lost, a timestamp pinning index 1 shows up: the index floor holds
    timestamp = sign(
        make_timestamp(old_index, 1, 1, repo.expires["timestamp"]), repo.keys["timestamp"]
    )
    second = type(first).reload(repo.roots[0], None, first.index.raw, now=repo.now)
    with pytest.raises(RollbackAttack):
        second.update_timestamp(timestamp)


def test_index_rollback_is_caught_in_update_index_too(repo: RepositorySimulator) -> None:
    # defence in depth: a trusted timestamp pinning index 1 while index 2 is already trusted
    old_index = repo.index
    old_timestamp = repo.timestamp
    repo.publish()
    first = repo.refresh(repo.client())
    assert first.index is not None
    second = type(first).reload(repo.roots[0], old_timestamp, first.index.raw, now=repo.now)
    with pytest.raises(RollbackAttack) as caught:
        second.update_index(old_index)
    assert (caught.value.trusted_version, caught.value.new_version) == (2, 1)


def test_same_index_version_with_other_content_is_refused(repo: RepositorySimulator) -> None:
    first = repo.refresh(repo.client())
    assert first.index is not None
    other = sign(
        make_index({"components": {"other": 1}}, 1, repo.expires["index"]), repo.keys["index"]
    )
    timestamp = sign(make_timestamp(other, 1, 1, repo.expires["timestamp"]), repo.keys["timestamp"])
    second = type(first).reload(repo.roots[0], None, first.index.raw, now=repo.now)
    second.update_timestamp(timestamp)
    with pytest.raises(VersionConflict):
        second.update_index(other)


def test_expired_index_is_refused_and_says_since_when(repo: RepositorySimulator) -> None:
    repo.expires["index"] = repo.now - timedelta(hours=1)
    repo.publish()
    trusted = repo.client()
    trusted.update_timestamp(repo.timestamp)
    with pytest.raises(ExpiredMetadata) as caught:
        trusted.update_index(repo.index)
    assert caught.value.role == "index"
    assert "expired since 2026-06-01T11:00:00Z" in str(caught.value)
    assert trusted.index is None


def test_index_needs_a_timestamp_first(repo: RepositorySimulator) -> None:
    with pytest.raises(RuntimeError):
        repo.client().update_index(repo.index)


def test_timestamp_cannot_be_updated_after_the_index(repo: RepositorySimulator) -> None:
    trusted = repo.refresh(repo.client())
    with pytest.raises(RuntimeError):
        trusted.update_timestamp(repo.timestamp)


def test_current_index_needs_both(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    with pytest.raises(RuntimeError):
        trusted.current_index()
    trusted.update_timestamp(repo.timestamp)
    with pytest.raises(RuntimeError):
        trusted.current_index()


def test_current_index_refuses_a_stored_index_the_new_timestamp_does_not_pin(
    repo: RepositorySimulator,
) -> None:
    first = repo.refresh(repo.client())
    assert first.index is not None
    repo.publish()
    second = type(first).reload(repo.roots[0], None, first.index.raw, now=repo.now)
    second.update_timestamp(repo.timestamp)
    with pytest.raises(MixAndMatch):
        second.current_index()
    # the stored index is refused for the new pin; the fetched one is accepted
    with pytest.raises(MixAndMatch):
        second.update_index(first.index.raw)
    second.update_index(repo.index)
    assert second.current_index().version == 2


def test_stored_index_still_pinned_needs_no_download(repo: RepositorySimulator) -> None:
    first = repo.refresh(repo.client())
    assert first.index is not None
    repo.publish_timestamp()  # a new timestamp, same index
    second = type(first).reload(repo.roots[0], None, first.index.raw, now=repo.now)
    second.update_timestamp(repo.timestamp)
    assert second.current_index() == first.index
