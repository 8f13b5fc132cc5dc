"""The client's trusted metadata: each update takes bytes and either trusts them or raises.

Modelled on python-tuf's ``ngclient/_internal/trusted_metadata_set.py`` and TUF spec v1.0, section
5. One :class:`TrustedMetadataSet` is one update session with one clock reading. The order is fixed:
root (one version at a time, as often as there are new versions), then timestamp, then index.
Nothing here reads files or the network: the caller fetches bytes (capped by
:class:`~steppatch.trust.limits.TrustLimits`), hands them in, and stores ``.raw`` of what comes out
verified.

A failed update leaves the set exactly as it was.
"""

from __future__ import annotations

from datetime import datetime

from steppatch.trust._time import require_aware
from steppatch.trust.errors import (
    ExpiredMetadata,
    MetadataTooLarge,
    MixAndMatch,
    RollbackAttack,
    RotationLimitReached,
    UnexpectedVersion,
    VersionConflict,
)
from steppatch.trust.hashing import sha256_hex
from steppatch.trust.limits import TrustLimits
from steppatch.trust.metadata import (
    Index,
    IndexPin,
    Root,
    Timestamp,
    check_threshold,
    index_from,
    read_envelope,
    root_from,
    timestamp_from,
)

__all__ = ["TrustedMetadataSet", "load_trusted_root", "verify_root_update"]

_DEFAULT_LIMITS = TrustLimits()


def load_trusted_root(data: bytes, limits: TrustLimits = _DEFAULT_LIMITS) -> Root:
    """Verify a root the caller already trusts (shipped, pinned, or stored) against itself.

    Its own root role's threshold must have signed it. Expiry is not checked here: an expired root
    may still be the start of a chain of newer roots. Raises :class:`MetadataTooLarge`,
    :class:`BadMetadata` or :class:`ThresholdNotMet`.
    """
    envelope = read_envelope(data, "root", limits.max_root_bytes)
    root = root_from(envelope)
    check_threshold(root, "root", envelope)
    return root


def verify_root_update(trusted: Root, data: bytes, limits: TrustLimits = _DEFAULT_LIMITS) -> Root:
    """Verify root version N+1 in ``data`` against the trusted root version N.

    It must be signed by a threshold of the trusted root's root keys and by a threshold of its own.
    Raises :class:`MetadataTooLarge`, :class:`BadMetadata`, :class:`ThresholdNotMet` (its
    ``keyring`` says which root's keys fell short) or :class:`UnexpectedVersion` (not N+1).
    """
    envelope = read_envelope(data, "root", limits.max_root_bytes)
    new = root_from(envelope)
    check_threshold(trusted, "root", envelope)
    if new.version != trusted.version + 1:
        raise UnexpectedVersion("root", trusted.version + 1, new.version)
    check_threshold(new, "root", envelope)
    return new


def _check_fresh(role: str, meta: Root | Timestamp | Index, now: datetime) -> None:
    if meta.expires <= now:
        raise ExpiredMetadata(role, meta.version, meta.expires, now)


class TrustedMetadataSet:
    """Root, timestamp and index that passed verification, for one update session.

    ``now`` is the single clock reading all expiry checks of this session use (timezone-aware).
    Raises like :func:`load_trusted_root` if ``root_bytes`` is not a valid self-signed root, and
    ValueError if ``now`` is naive.
    """

    def __init__(
        self, root_bytes: bytes, now: datetime, limits: TrustLimits = _DEFAULT_LIMITS
    ) -> None:
        self._now = require_aware(now, "now")
        self._limits = limits
        self._root = load_trusted_root(root_bytes, limits)
        self._timestamp: Timestamp | None = None
        self._index: Index | None = None
        self._rotations = 0
        self._timestamp_updated = False
        self._index_updated = False

    @classmethod
    def reload(
        cls,
        root_bytes: bytes,
        timestamp_bytes: bytes | None,
        index_bytes: bytes | None,
        *,
        now: datetime,
        limits: TrustLimits = _DEFAULT_LIMITS,
    ) -> TrustedMetadataSet:
        """A session that starts from what the client stored as trusted last time.

        The stored root is verified against itself; the stored timestamp and index against that
        root's keys. Their expiry and the index's match with the timestamp are not checked: they
        serve as the floor for rollback checks, and an expired timestamp is the normal case when a
        client starts. Call :meth:`update_timestamp` (and :meth:`update_index`) before use, and
        :meth:`current_index` to get an index that may be acted on.

        Raises :class:`MetadataTooLarge`, :class:`BadMetadata` or :class:`ThresholdNotMet` if any
        stored document is altered, so a tampered store is refused rather than silently trusted.
        """
        trusted = cls(root_bytes, now, limits)
        if timestamp_bytes is not None:
            envelope = read_envelope(timestamp_bytes, "timestamp", limits.max_timestamp_bytes)
            timestamp = timestamp_from(envelope)
            check_threshold(trusted._root, "timestamp", envelope)
            trusted._timestamp = timestamp
        if index_bytes is not None:
            envelope = read_envelope(index_bytes, "index", limits.max_index_bytes)
            index = index_from(envelope)
            check_threshold(trusted._root, "index", envelope)
            trusted._index = index
        return trusted

    # --- what is trusted ------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The clock reading of this session (UTC)."""
        return self._now

    @property
    def limits(self) -> TrustLimits:
        """The caps this session checks."""
        return self._limits

    @property
    def root(self) -> Root:
        """The trusted root (the newest verified in this session)."""
        return self._root

    @property
    def timestamp(self) -> Timestamp | None:
        """The trusted timestamp, or None. It may be from an earlier session and expired."""
        return self._timestamp

    @property
    def index(self) -> Index | None:
        """The trusted index, or None. It may be from an earlier session: see current_index."""
        return self._index

    def current_index(self) -> Index:
        """The index to act on: root, timestamp and index unexpired, and the index the one pinned.

        Raises :class:`ExpiredMetadata` or :class:`MixAndMatch`; RuntimeError if no timestamp or no
        index is trusted (a caller that skipped an update).
        """
        if self._timestamp is None or self._index is None:
            raise RuntimeError("no timestamp and index are trusted: update them first")
        _check_fresh("root", self._root, self._now)
        _check_fresh("timestamp", self._timestamp, self._now)
        _check_pin(self._timestamp.index, self._index.raw)
        if self._index.version != self._timestamp.index.version:
            raise MixAndMatch(
                "index", "version", str(self._timestamp.index.version), str(self._index.version)
            )
        _check_fresh("index", self._index, self._now)
        return self._index

    # --- updates --------------------------------------------------------------------------------

    def update_root(self, data: bytes) -> Root:
        """Trust root version N+1 (N the trusted version) from ``data``.

        If the new root changes the keys or threshold of the timestamp or index role, the trusted
        timestamp and index are dropped (fast-forward recovery: versions signed by rotated-out,
        perhaps compromised, keys no longer hold the client back). Expiry is checked later, on the
        final root, by :meth:`update_timestamp`.

        Raises :class:`RotationLimitReached` after ``limits.max_root_rotations`` updates in this
        session, and whatever :func:`verify_root_update` raises; RuntimeError after the timestamp
        was updated in this session.
        """
        if self._timestamp_updated:
            raise RuntimeError("root cannot be updated after the timestamp in one session")
        if self._rotations >= self._limits.max_root_rotations:
            raise RotationLimitReached(self._limits.max_root_rotations)
        new = verify_root_update(self._root, data, self._limits)
        old = self._root
        self._root = new
        self._rotations += 1
        if old.timestamp_role != new.timestamp_role or old.index_role != new.index_role:
            self._timestamp = None
            self._index = None
        return new

    def update_timestamp(self, data: bytes) -> Timestamp:
        """Trust the timestamp in ``data``.

        Raises :class:`ExpiredMetadata` if the trusted root or the timestamp has expired,
        :class:`MetadataTooLarge`, :class:`BadMetadata`, :class:`ThresholdNotMet` (timestamp keys
        of the trusted root), :class:`RollbackAttack` if its version or the index version it pins
        is lower than the trusted one, :class:`VersionConflict` if it has the trusted version but
        other content (or pins the trusted index version with another length or hash).
        RuntimeError after the index was updated in this session.
        """
        if self._index_updated:
            raise RuntimeError("timestamp cannot be updated after the index in one session")
        _check_fresh("root", self._root, self._now)
        envelope = read_envelope(data, "timestamp", self._limits.max_timestamp_bytes)
        new = timestamp_from(envelope)
        check_threshold(self._root, "timestamp", envelope)
        old = self._timestamp
        if old is not None:
            if new.version < old.version:
                raise RollbackAttack("timestamp", old.version, new.version)
            if new.version == old.version and new.canonical != old.canonical:
                raise VersionConflict("timestamp", new.version)
            if new.index.version < old.index.version:
                raise RollbackAttack("index", old.index.version, new.index.version)
            if new.index.version == old.index.version and new.index != old.index:
                raise VersionConflict("index", new.index.version)
        if self._index is not None and new.index.version < self._index.version:
            raise RollbackAttack("index", self._index.version, new.index.version)
        _check_fresh("timestamp", new, self._now)
        self._timestamp = new
        self._timestamp_updated = True
        return new

    def update_index(self, data: bytes) -> Index:
        """Trust the index in ``data``; it must be the one the trusted timestamp pins.

        Length and sha256 are checked before the bytes are parsed. Raises :class:`ExpiredMetadata`
        (root, timestamp or index), :class:`MetadataTooLarge`, :class:`MixAndMatch` (length, sha256
        or version differ from the pin), :class:`BadMetadata`, :class:`ThresholdNotMet` (index keys
        of the trusted root), :class:`RollbackAttack` (older than the trusted index),
        :class:`VersionConflict`. RuntimeError if no timestamp is trusted.
        """
        timestamp = self._timestamp
        if timestamp is None:
            raise RuntimeError("index cannot be updated before a timestamp is trusted")
        _check_fresh("root", self._root, self._now)
        _check_fresh("timestamp", timestamp, self._now)
        if len(data) > self._limits.max_index_bytes:
            raise MetadataTooLarge("index", len(data), self._limits.max_index_bytes)
        _check_pin(timestamp.index, data)
        envelope = read_envelope(data, "index", self._limits.max_index_bytes)
        new = index_from(envelope)
        check_threshold(self._root, "index", envelope)
        if new.version != timestamp.index.version:
            raise MixAndMatch("index", "version", str(timestamp.index.version), str(new.version))
        old = self._index
        if old is not None:
            if new.version < old.version:
                raise RollbackAttack("index", old.version, new.version)
            if new.version == old.version and new.canonical != old.canonical:
                raise VersionConflict("index", new.version)
        _check_fresh("index", new, self._now)
        self._index = new
        self._index_updated = True
        return new


def _check_pin(pin: IndexPin, data: bytes) -> None:
    if len(data) != pin.length:
        raise MixAndMatch("index", "length", str(pin.length), str(len(data)))
    actual = sha256_hex(data)
    if actual != pin.sha256:
        raise MixAndMatch("index", "sha256", pin.sha256, actual)
