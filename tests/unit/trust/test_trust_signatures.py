"""Signature counting: threshold, repeats, unknown keys, keys of other roles."""

from __future__ import annotations

import pytest

from steppatch.trust import (
    BadSignature,
    SigningKey,
    ThresholdNotMet,
    TrustedMetadataSet,
    make_timestamp,
)
from tests.unit.trust.trust_helpers import state
from tests.unit.trust.trust_simulator import RepositorySimulator


@pytest.fixture
def repo() -> RepositorySimulator:
    return RepositorySimulator(
        key_counts={"timestamp": 3, "root": 3}, thresholds={"timestamp": 2, "root": 2}
    )


def _timestamp_signed(repo: RepositorySimulator) -> dict[str, object]:
    return make_timestamp(
        repo.index, repo.index_version, repo.timestamp_version + 1, repo.expires["timestamp"]
    )


def test_threshold_of_signatures_is_accepted(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    signed = _timestamp_signed(repo)
    data = repo.envelope(signed, repo.signature_entries(signed, repo.keys["timestamp"][:2]))
    assert trusted.update_timestamp(data).version == repo.timestamp_version + 1


def test_threshold_minus_one_fails_with_the_counts(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    before = state(trusted)
    signed = _timestamp_signed(repo)
    data = repo.envelope(signed, repo.signature_entries(signed, repo.keys["timestamp"][:1]))
    with pytest.raises(ThresholdNotMet) as caught:
        trusted.update_timestamp(data)
    error = caught.value
    assert (error.role, error.threshold, error.counted) == ("timestamp", 2, 1)
    assert error.keyids == {repo.keys["timestamp"][0].keyid}
    assert error.keyring == "root version 1"
    assert "1 valid signature(s)" in str(error) and "2 required" in str(error)
    assert isinstance(error, BadSignature)
    assert state(trusted) == before


def test_one_keys_signature_repeated_counts_once(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    signed = _timestamp_signed(repo)
    key = repo.keys["timestamp"][0]
    data = repo.envelope(signed, repo.signature_entries(signed, [key, key, key]))
    with pytest.raises(ThresholdNotMet) as caught:
        trusted.update_timestamp(data)
    assert caught.value.counted == 1


def test_unknown_keys_and_keys_of_other_roles_are_ignored(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    signed = _timestamp_signed(repo)
    strangers = [SigningKey.generate(), *repo.keys["root"], *repo.keys["index"]]
    data = repo.envelope(
        signed, repo.signature_entries(signed, [*strangers, repo.keys["timestamp"][0]])
    )
    with pytest.raises(ThresholdNotMet) as caught:
        trusted.update_timestamp(data)
    assert caught.value.counted == 1


def test_a_bad_signature_next_to_good_ones_does_not_hurt(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    signed = _timestamp_signed(repo)
    entries = repo.signature_entries(signed, repo.keys["timestamp"][:2])
    forged = {"keyid": repo.keys["timestamp"][2].keyid, "sig": "00" * 64}
    data = repo.envelope(signed, [forged, *entries])
    assert trusted.update_timestamp(data).version == repo.timestamp_version + 1


def test_a_bad_then_a_good_signature_of_one_key_counts_once(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    signed = _timestamp_signed(repo)
    first, second = repo.keys["timestamp"][:2]
    forged = {"keyid": first.keyid, "sig": "00" * 64}
    data = repo.envelope(signed, [forged, *repo.signature_entries(signed, [first, second])])
    assert trusted.update_timestamp(data).version == repo.timestamp_version + 1


def test_no_signatures_fail(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    with pytest.raises(ThresholdNotMet) as caught:
        trusted.update_timestamp(repo.envelope(_timestamp_signed(repo), []))
    assert caught.value.counted == 0


def test_a_signature_over_other_content_does_not_count(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    signed = _timestamp_signed(repo)
    entries = repo.signature_entries(signed, repo.keys["timestamp"][:2])
    signed["expires"] = "2099-01-01T00:00:00Z"  # an attacker extends the freshness
    with pytest.raises(ThresholdNotMet):
        trusted.update_timestamp(repo.envelope(signed, entries))


def test_initial_root_must_meet_its_own_threshold(repo: RepositorySimulator) -> None:
    signed = repo.signed_of(repo.roots[0])
    one = repo.envelope(signed, repo.signature_entries(signed, repo.keys["root"][:1]))
    with pytest.raises(ThresholdNotMet) as caught:
        TrustedMetadataSet(one, repo.now)
    assert (caught.value.role, caught.value.threshold, caught.value.counted) == ("root", 2, 1)
