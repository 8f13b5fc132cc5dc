"""Timestamp updates: rollback, freeze (expiry), equivocation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from steppatch.trust import (
    ExpiredMetadata,
    RollbackAttack,
    VersionConflict,
    make_timestamp,
    sign,
)
from tests.unit.trust.trust_helpers import state
from tests.unit.trust.trust_simulator import RepositorySimulator


def test_older_validly_signed_timestamp_after_a_newer_one_is_a_rollback(
    repo: RepositorySimulator,
) -> None:
    old = repo.timestamp
    repo.publish()
    trusted = repo.client()
    trusted.update_timestamp(repo.timestamp)
    trusted.update_index(repo.index)
    before = state(trusted)

    replay = repo.client()
    replay.update_timestamp(repo.timestamp)
    with pytest.raises(RollbackAttack) as caught:
        replay.update_timestamp(old)
    assert (caught.value.role, caught.value.trusted_version, caught.value.new_version) == (
        "timestamp",
        2,
        1,
    )
    assert state(trusted) == before


def test_rollback_is_caught_across_sessions_through_the_stored_timestamp(
    repo: RepositorySimulator,
) -> None:
    old = repo.timestamp
    repo.publish()
    first = repo.refresh(repo.client())
    assert first.timestamp is not None and first.index is not None
    later = repo.now + timedelta(days=10)  # the stored timestamp has long expired: still a floor
    second = type(first).reload(repo.roots[0], first.timestamp.raw, first.index.raw, now=later)
    with pytest.raises(RollbackAttack):
        second.update_timestamp(old)


def test_timestamp_pinning_an_older_index_is_a_rollback(repo: RepositorySimulator) -> None:
    old_index = repo.index
    repo.publish()
    first = repo.refresh(repo.client())
    assert first.timestamp is not None
    # a newer, validly signed timestamp that pins index version 1 again
    data = sign(
        make_timestamp(old_index, 1, repo.timestamp_version + 1, repo.expires["timestamp"]),
        repo.keys["timestamp"],
    )
    second = type(first).reload(repo.roots[0], first.timestamp.raw, None, now=repo.now)
    with pytest.raises(RollbackAttack) as caught:
        second.update_timestamp(data)
    assert (caught.value.role, caught.value.trusted_version, caught.value.new_version) == (
        "index",
        2,
        1,
    )


def test_timestamp_pinning_an_index_older_than_the_trusted_index_is_a_rollback(
    repo: RepositorySimulator,
) -> None:
    old_index = repo.index
    repo.publish()
    first = repo.refresh(repo.client())
    assert first.index is not None
    data = sign(
        make_timestamp(old_index, 1, repo.timestamp_version + 1, repo.expires["timestamp"]),
        repo.keys["timestamp"],
    )
    # only the index is stored (say the timestamp file was lost): the index is still a floor
    second = type(first).reload(repo.roots[0], None, first.index.raw, now=repo.now)
    with pytest.raises(RollbackAttack) as caught:
        second.update_timestamp(data)
    assert caught.value.role == "index"


def test_the_same_timestamp_again_is_accepted(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    first = trusted.update_timestamp(repo.timestamp)
    pretty_differently = repo.edit(repo.timestamp, lambda document: None)
    assert pretty_differently != repo.timestamp
    assert trusted.update_timestamp(pretty_differently) == first


def test_same_version_with_other_content_is_refused(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    trusted.update_timestamp(repo.timestamp)
    before = state(trusted)
    signed = repo.signed_of(repo.timestamp)
    signed["expires"] = "2030-01-01T00:00:00Z"
    with pytest.raises(VersionConflict) as caught:
        trusted.update_timestamp(sign(signed, repo.keys["timestamp"]))
    assert (caught.value.role, caught.value.version) == ("timestamp", 1)
    assert state(trusted) == before


def test_new_timestamp_pinning_the_trusted_index_version_with_another_hash_is_refused(
    repo: RepositorySimulator,
) -> None:
    trusted = repo.client()
    trusted.update_timestamp(repo.timestamp)
    signed = repo.signed_of(repo.timestamp)
    signed["version"] = 2
    signed["index"]["sha256"] = "0" * 64
    with pytest.raises(VersionConflict) as caught:
        trusted.update_timestamp(sign(signed, repo.keys["timestamp"]))
    assert caught.value.role == "index"


def test_expired_timestamp_is_refused_and_says_since_when(repo: RepositorySimulator) -> None:
    later = repo.now + timedelta(days=2)
    trusted = repo.client(now=later)
    with pytest.raises(ExpiredMetadata) as caught:
        trusted.update_timestamp(repo.timestamp)
    error = caught.value
    assert error.role == "timestamp"
    assert error.expires == repo.expires["timestamp"]
    assert error.now == later
    assert "expired since 2026-06-02T12:00:00Z" in str(error)
    assert trusted.timestamp is None


def test_timestamp_expiring_exactly_now_is_expired(repo: RepositorySimulator) -> None:
    trusted = repo.client(now=repo.expires["timestamp"])
    with pytest.raises(ExpiredMetadata):
        trusted.update_timestamp(repo.timestamp)


def test_freeze_a_mirror_replaying_the_last_timestamp_is_caught_when_it_expires(
    repo: RepositorySimulator,
) -> None:
    first = repo.refresh(repo.client())
    assert first.timestamp is not None and first.index is not None
    # the repository moves on, but the mirror keeps serving what it had
    frozen_timestamp = repo.timestamp
    repo.publish()
    later = type(first).reload(
        repo.roots[0],
        first.timestamp.raw,
        first.index.raw,
        now=repo.now + timedelta(days=3),
    )
    with pytest.raises(ExpiredMetadata):
        later.update_timestamp(frozen_timestamp)
    with pytest.raises(ExpiredMetadata):
        later.current_index()


def test_naive_clock_is_refused(repo: RepositorySimulator) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        repo.client(now=repo.now.replace(tzinfo=None))
