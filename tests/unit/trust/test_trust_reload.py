"""Reloading what a client stored, and fast-forward recovery after key rotation."""

from __future__ import annotations

import pytest

from steppatch.trust import (
    BadMetadata,
    MetadataError,
    RollbackAttack,
    ThresholdNotMet,
    TrustedMetadataSet,
    make_index,
    make_timestamp,
    sign,
)
from tests.unit.trust.trust_simulator import RepositorySimulator


def _stored(trusted: TrustedMetadataSet) -> tuple[bytes, bytes, bytes]:
    assert trusted.timestamp is not None and trusted.index is not None
    return trusted.root.raw, trusted.timestamp.raw, trusted.index.raw


def test_reload_trusts_what_was_stored(repo: RepositorySimulator) -> None:
    first = repo.refresh(repo.client())
    root, timestamp, index = _stored(first)
    second = TrustedMetadataSet.reload(root, timestamp, index, now=repo.now)
    assert (second.root, second.timestamp, second.index) == (
        first.root,
        first.timestamp,
        first.index,
    )
    assert second.current_index() == first.index


def test_reload_with_nothing_but_a_root(repo: RepositorySimulator) -> None:
    trusted = TrustedMetadataSet.reload(repo.roots[0], None, None, now=repo.now)
    assert trusted.timestamp is None and trusted.index is None


def test_tampered_stored_root_is_refused(repo: RepositorySimulator) -> None:
    first = repo.refresh(repo.client())
    root, timestamp, index = _stored(first)

    def add_attacker_key(document: dict[str, object]) -> None:
        signed = document["signed"]
        assert isinstance(signed, dict)
        signed["roles"]["index"]["threshold"] = 1
        signed["expires"] = "2099-01-01T00:00:00Z"

    with pytest.raises(ThresholdNotMet) as caught:
        TrustedMetadataSet.reload(repo.edit(root, add_attacker_key), timestamp, index, now=repo.now)
    assert caught.value.role == "root"


def test_stored_root_with_a_flipped_signature_byte_is_refused(repo: RepositorySimulator) -> None:
    root = repo.roots[0]
    sig_at = root.index(b'"sig": "') + len(b'"sig": "')
    flipped = (
        root[:sig_at] + (b"1" if root[sig_at : sig_at + 1] != b"1" else b"2") + root[sig_at + 1 :]
    )
    with pytest.raises(ThresholdNotMet):
        TrustedMetadataSet.reload(flipped, None, None, now=repo.now)


def test_truncated_stored_root_is_refused(repo: RepositorySimulator) -> None:
    with pytest.raises(BadMetadata):
        TrustedMetadataSet.reload(repo.roots[0][:-20], None, None, now=repo.now)


@pytest.mark.parametrize("which", ["timestamp", "index"])
def test_tampered_stored_timestamp_or_index_is_refused(
    repo: RepositorySimulator, which: str
) -> None:
    first = repo.refresh(repo.client())
    root, timestamp, index = _stored(first)

    def bump(document: dict[str, object]) -> None:
        signed = document["signed"]
        assert isinstance(signed, dict)
        signed["version"] = 10**6  # an attacker with the cache tries to freeze the client

    if which == "timestamp":
        timestamp = repo.edit(timestamp, bump)
    else:
        index = repo.edit(index, bump)
    with pytest.raises(ThresholdNotMet) as caught:
        TrustedMetadataSet.reload(root, timestamp, index, now=repo.now)
    assert caught.value.role == which


def test_stored_documents_of_the_wrong_role_are_refused(repo: RepositorySimulator) -> None:
    with pytest.raises(BadMetadata) as caught:
        TrustedMetadataSet.reload(repo.roots[0], repo.index, None, now=repo.now)
    assert caught.value.field == "signed._type"


def _compromise(repo: RepositorySimulator, role: str) -> tuple[bytes, bytes]:
    """An attacker with the current ``role`` key signs a huge version; return (timestamp, index)."""
    big = 10**9
    index = repo.index
    if role == "index":
        index = sign(make_index({"components": {}}, big, repo.expires["index"]), repo.keys["index"])
    timestamp = sign(
        make_timestamp(
            index,
            big if role == "index" else repo.index_version,
            big,
            repo.expires["timestamp"],
        ),
        repo.keys["timestamp"],
    )
    return timestamp, index


@pytest.mark.parametrize("role", ["timestamp", "index"])
def test_fast_forward_recovery_after_key_rotation(repo: RepositorySimulator, role: str) -> None:
    # The attacker held the timestamp (and for "index" also the index) key and pushed a client to
    # versions the repository never reaches. The release engineer rotates the keys.
    attack_timestamp, attack_index = _compromise(repo, role)
    victim = repo.client()
    victim.update_timestamp(attack_timestamp)
    victim.update_index(attack_index)
    root, stored_timestamp, stored_index = _stored(victim)

    repo.publish()  # the honest repository: timestamp 2, index 2
    stuck = TrustedMetadataSet.reload(root, stored_timestamp, stored_index, now=repo.now)
    with pytest.raises(RollbackAttack):
        stuck.update_timestamp(repo.timestamp)

    repo.rotate("timestamp")
    if role == "index":
        repo.rotate("index")
    repo.publish()
    recovering = TrustedMetadataSet.reload(root, stored_timestamp, stored_index, now=repo.now)
    for version in range(2, repo.root_version + 1):
        recovering.update_root(repo.roots[version - 1])
    assert recovering.timestamp is None and recovering.index is None
    recovering.update_timestamp(repo.timestamp)
    recovering.update_index(repo.index)
    assert recovering.current_index().version == repo.index_version


def test_rotation_of_only_the_root_keys_keeps_the_floors(repo: RepositorySimulator) -> None:
    old_timestamp = repo.timestamp
    repo.publish()
    first = repo.refresh(repo.client())
    root, timestamp, index = _stored(first)
    repo.rotate("root")
    second = TrustedMetadataSet.reload(root, timestamp, index, now=repo.now)
    second.update_root(repo.roots[1])
    assert second.timestamp == first.timestamp and second.index == first.index
    with pytest.raises(RollbackAttack):
        second.update_timestamp(old_timestamp)


def test_old_timestamp_signed_by_rotated_out_keys_is_refused(repo: RepositorySimulator) -> None:
    old_timestamp = repo.timestamp
    repo.rotate("timestamp")
    trusted = repo.client()
    trusted.update_root(repo.roots[1])
    with pytest.raises(ThresholdNotMet):
        trusted.update_timestamp(old_timestamp)


def test_every_trust_error_is_a_repository_error(repo: RepositorySimulator) -> None:
    from steppatch.errors import RepositoryError

    assert issubclass(MetadataError, RepositoryError)
