"""An in-memory repository that signs metadata on demand and lets a test play the attacker.

In the manner of python-tuf's ``tests/repository_simulator.py``: the simulator holds the release
engineer's keys and every document it published (so old versions can be replayed); a test reads
bytes from it the way a client would fetch them, or bends them first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from steppatch.trust import (
    ROLES,
    SigningKey,
    TrustedMetadataSet,
    TrustLimits,
    make_index,
    make_root,
    make_timestamp,
    sign,
)

#: the clock reading of the simulated client
NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


class RepositorySimulator:
    """Keys, current versions and the full history of published documents of one repository."""

    def __init__(
        self,
        *,
        now: datetime = NOW,
        key_counts: Mapping[str, int] | None = None,
        thresholds: Mapping[str, int] | None = None,
    ) -> None:
        counts = {role: 1 for role in ROLES} | dict(key_counts or {})
        self.now = now
        self.keys: dict[str, list[SigningKey]] = {
            role: [SigningKey.generate() for _ in range(counts[role])] for role in ROLES
        }
        self.thresholds: dict[str, int] = {role: 1 for role in ROLES} | dict(thresholds or {})
        self.expires: dict[str, datetime] = {
            "root": now + timedelta(days=365),
            "timestamp": now + timedelta(days=1),
            "index": now + timedelta(days=30),
        }
        self.payload: dict[str, Any] = {"components": {}, "recipes": {}}
        self.roots: list[bytes] = []  # roots[v - 1] is root version v
        self.indexes: dict[int, bytes] = {}
        self.timestamps: dict[int, bytes] = {}
        self.index_version = 0
        self.timestamp_version = 0
        self._previous_root_keys: list[SigningKey] = []
        self.publish_root()
        self.publish()

    # --- the release engineer ---------------------------------------------------------------------

    @property
    def root_version(self) -> int:
        return len(self.roots)

    def root_signed(self, version: int | None = None) -> dict[str, Any]:
        """The ``signed`` object of root ``version`` (default: the next one) from current keys."""
        return make_root(
            {role: [key.public for key in self.keys[role]] for role in ROLES},
            self.thresholds,
            self.root_version + 1 if version is None else version,
            self.expires["root"],
        )

    def publish_root(self) -> bytes:
        """Publish the next root, signed by the previous root keys and the current ones."""
        signers = self._previous_root_keys + self.keys["root"]
        data = sign(self.root_signed(), signers)
        self.roots.append(data)
        self._previous_root_keys = list(self.keys["root"])
        return data

    def rotate(self, role: str, count: int = 1, threshold: int = 1) -> bytes:
        """Replace ``role``'s keys with ``count`` new ones and publish the next root."""
        self.keys[role] = [SigningKey.generate() for _ in range(count)]
        self.thresholds[role] = threshold
        return self.publish_root()

    def publish_index(self, payload: Mapping[str, Any] | None = None) -> bytes:
        if payload is not None:
            self.payload = dict(payload)
        self.index_version += 1
        data = sign(
            make_index(self.payload, self.index_version, self.expires["index"]),
            self.keys["index"],
        )
        self.indexes[self.index_version] = data
        return data

    def publish_timestamp(self) -> bytes:
        self.timestamp_version += 1
        data = sign(
            make_timestamp(
                self.indexes[self.index_version],
                self.index_version,
                self.timestamp_version,
                self.expires["timestamp"],
            ),
            self.keys["timestamp"],
        )
        self.timestamps[self.timestamp_version] = data
        return data

    def publish(self, payload: Mapping[str, Any] | None = None) -> None:
        """A release: a new index version and a timestamp pinning it."""
        self.publish_index(payload)
        self.publish_timestamp()

    # --- what a client fetches --------------------------------------------------------------------

    @property
    def timestamp(self) -> bytes:
        return self.timestamps[self.timestamp_version]

    @property
    def index(self) -> bytes:
        return self.indexes[self.index_version]

    def client(
        self, now: datetime | None = None, limits: TrustLimits | None = None
    ) -> TrustedMetadataSet:
        """A new client session that trusts root version 1, as shipped."""
        return TrustedMetadataSet(self.roots[0], now or self.now, limits or TrustLimits())

    def refresh(self, trusted: TrustedMetadataSet) -> TrustedMetadataSet:
        """The client's happy path: every newer root, then timestamp, then index."""
        for version in range(trusted.root.version + 1, self.root_version + 1):
            trusted.update_root(self.roots[version - 1])
        trusted.update_timestamp(self.timestamp)
        trusted.update_index(self.index)
        return trusted

    # --- the attacker -----------------------------------------------------------------------------

    @staticmethod
    def envelope(signed: Mapping[str, Any], signatures: Iterable[Mapping[str, str]]) -> bytes:
        """A document with any signatures at all (nothing is checked)."""
        document = {"signed": signed, "signatures": list(signatures)}
        return json.dumps(document, indent=1, sort_keys=True).encode()

    @staticmethod
    def signature_entries(
        signed: Mapping[str, Any], keys: Sequence[SigningKey]
    ) -> list[dict[str, str]]:
        """Signature entries of ``keys`` over ``signed``, one per key given (repeats kept)."""
        from steppatch.trust import canonical_bytes

        data = canonical_bytes(signed)
        return [{"keyid": key.keyid, "sig": key.sign(data).hex()} for key in keys]

    @staticmethod
    def edit(data: bytes, change: Callable[[dict[str, Any]], object]) -> bytes:
        """``data`` with its parsed document changed in place by ``change``, not re-signed."""
        document = json.loads(data)
        change(document)
        return json.dumps(document, indent=1, sort_keys=True).encode()

    @staticmethod
    def signed_of(data: bytes) -> dict[str, Any]:
        signed: dict[str, Any] = json.loads(data)["signed"]
        return signed
