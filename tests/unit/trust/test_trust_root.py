"""Root updates: one version at a time, signed by the old and the new root keys."""

from __future__ import annotations

from datetime import timedelta

import pytest

from steppatch.trust import (
    ExpiredMetadata,
    RotationLimitReached,
    SigningKey,
    ThresholdNotMet,
    TrustLimits,
    UnexpectedVersion,
    load_trusted_root,
    rotate,
    sign,
)
from tests.unit.trust.trust_helpers import state
from tests.unit.trust.trust_simulator import RepositorySimulator


def test_root_n_plus_one_signed_by_old_and_new_keys_is_trusted(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    old_keys = repo.keys["root"]
    data = repo.rotate("root")
    root = trusted.update_root(data)
    assert root.version == 2
    assert root.role_keys("root") == tuple(key.public for key in repo.keys["root"])
    assert root.role_keys("root") != tuple(key.public for key in old_keys)
    assert trusted.root is root


def test_root_signed_only_by_old_keys_is_refused(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    before = state(trusted)
    old_keys = repo.keys["root"]
    repo.keys["root"] = [SigningKey.generate()]
    data = sign(repo.root_signed(), old_keys)
    with pytest.raises(ThresholdNotMet) as caught:
        trusted.update_root(data)
    assert caught.value.keyring == "root version 2"  # the new root's own keys fell short
    assert caught.value.counted == 0
    assert state(trusted) == before


def test_root_signed_only_by_new_keys_is_refused(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    before = state(trusted)
    repo.keys["root"] = [SigningKey.generate()]
    data = sign(repo.root_signed(), repo.keys["root"])
    with pytest.raises(ThresholdNotMet) as caught:
        trusted.update_root(data)
    assert caught.value.keyring == "root version 1"  # the trusted root's keys fell short
    assert state(trusted) == before


def test_jump_to_n_plus_two_is_refused(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    before = state(trusted)
    signed = repo.root_signed(version=3)
    with pytest.raises(UnexpectedVersion) as caught:
        trusted.update_root(sign(signed, repo.keys["root"]))
    assert (caught.value.expected, caught.value.actual) == (2, 3)
    assert state(trusted) == before


def test_the_same_root_again_is_refused(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    with pytest.raises(UnexpectedVersion) as caught:
        trusted.update_root(repo.roots[0])
    assert (caught.value.expected, caught.value.actual) == (2, 1)


def test_a_chain_of_roots_is_followed_one_at_a_time(repo: RepositorySimulator) -> None:
    for _ in range(4):
        repo.rotate("root")
    trusted = repo.refresh(repo.client())
    assert trusted.root.version == 5
    assert trusted.index is not None


def test_root_rotations_per_session_are_capped(repo: RepositorySimulator) -> None:
    for _ in range(3):
        repo.publish_root()
    trusted = repo.client(limits=TrustLimits(max_root_rotations=2))
    trusted.update_root(repo.roots[1])
    trusted.update_root(repo.roots[2])
    with pytest.raises(RotationLimitReached) as caught:
        trusted.update_root(repo.roots[3])
    assert caught.value.limit == 2
    assert trusted.root.version == 3


def test_root_cannot_be_updated_after_the_timestamp(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    trusted.update_timestamp(repo.timestamp)
    repo.publish_root()
    with pytest.raises(RuntimeError):
        trusted.update_root(repo.roots[1])


def test_expired_intermediate_root_is_fine_but_expired_final_root_is_not(
    repo: RepositorySimulator,
) -> None:
    repo.expires["root"] = repo.now - timedelta(days=1)
    repo.publish_root()  # version 2, expired
    repo.expires["root"] = repo.now + timedelta(days=1)
    repo.publish_root()  # version 3, fresh
    trusted = repo.refresh(repo.client())
    assert trusted.root.version == 3

    stale = repo.client()
    stale.update_root(repo.roots[1])
    with pytest.raises(ExpiredMetadata) as caught:
        stale.update_timestamp(repo.timestamp)
    assert caught.value.role == "root"
    assert stale.timestamp is None


def test_rotate_helper_makes_a_root_the_client_accepts(repo: RepositorySimulator) -> None:
    trusted = repo.client()
    current = trusted.root
    new_root_key, new_index_key = SigningKey.generate(), SigningKey.generate()
    data = rotate(
        current,
        signing_keys=[*repo.keys["root"], new_root_key],
        expires=repo.expires["root"],
        keys_by_role={"root": [new_root_key.public], "index": [new_index_key.public]},
    )
    root = trusted.update_root(data)
    assert root.version == 2
    assert root.role_keys("root") == (new_root_key.public,)
    assert root.role_keys("index") == (new_index_key.public,)
    assert root.timestamp_role == current.timestamp_role


@pytest.mark.parametrize("which", ["old", "new"])
def test_rotate_helper_refuses_keys_short_of_either_threshold(
    repo: RepositorySimulator, which: str
) -> None:
    current = load_trusted_root(repo.roots[0])
    new_root_key = SigningKey.generate()
    signers = repo.keys["root"] if which == "old" else [new_root_key]
    with pytest.raises(ThresholdNotMet):
        rotate(
            current,
            signing_keys=signers,
            expires=repo.expires["root"],
            keys_by_role={"root": [new_root_key.public]},
        )


def test_rotate_helper_can_change_a_threshold(repo: RepositorySimulator) -> None:
    current = load_trusted_root(repo.roots[0])
    extra = SigningKey.generate()
    data = rotate(
        current,
        signing_keys=repo.keys["root"],
        expires=repo.expires["root"],
        keys_by_role={"timestamp": [repo.keys["timestamp"][0].public, extra.public]},
        thresholds={"timestamp": 2},
    )
    assert load_trusted_root(data).timestamp_role.threshold == 2
