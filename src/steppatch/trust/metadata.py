"""The three roles as verified values, the envelope reader, and signature counting.

A published document is ``{"signed": {...}, "signatures": [{"keyid": HEX, "sig": HEX}, ...]}``.
Every ``signed`` object has ``_type`` (the role), ``spec`` (:data:`SPEC`), ``version`` (an integer
from 1) and ``expires`` (``2026-12-01T00:00:00Z``); each role adds its own fields and no others:

- root: ``keys`` (key id -> public key) and ``roles`` (``root``, ``index``, ``timestamp`` ->
  ``{"keyids": [...], "threshold": N}``);
- timestamp: ``index`` = ``{"version": N, "length": N, "sha256": HEX}`` of the published index;
- index: ``index``, the repository's index, an object this module does not interpret.

The readers here only check form. Whether a document may be trusted (signatures, versions, expiry)
is decided by :class:`steppatch.trust.TrustedMetadataSet`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from steppatch import _record as record
from steppatch.trust._time import parse_time
from steppatch.trust.canonical import canonical_bytes, read_json, show
from steppatch.trust.errors import BadMetadata, MetadataTooLarge, ThresholdNotMet
from steppatch.trust.keys import PublicKey

__all__ = [
    "ROLES",
    "SPEC",
    "Index",
    "IndexPin",
    "RoleKeys",
    "Root",
    "Signature",
    "Timestamp",
]

#: the value of ``signed.spec`` this code reads and writes
SPEC = "steppatch-metadata/1"
#: the roles, in the order a client updates them
ROLES = ("root", "timestamp", "index")

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_HEADER = ("_type", "spec", "version", "expires")


@record.frozen
class Signature:
    """One entry of ``signatures``: a key id and the raw signature bytes."""

    keyid: str
    sig: bytes = record.field(repr=False)


@record.frozen
class RoleKeys:
    """The key ids a role trusts and how many of them must sign."""

    keyids: frozenset[str]
    threshold: int


@record.frozen
class IndexPin:
    """What a timestamp pins: the index version, and length and sha256 of its published bytes."""

    version: int
    length: int
    sha256: str


@record.frozen
class Root:
    """Verified root metadata. ``canonical`` is the signed form, ``raw`` the published bytes."""

    version: int
    expires: datetime
    keys: tuple[PublicKey, ...]
    root_role: RoleKeys
    timestamp_role: RoleKeys
    index_role: RoleKeys
    canonical: bytes = record.field(repr=False)
    raw: bytes = record.field(repr=False, eq=False)

    def role(self, name: str) -> RoleKeys:
        """The keys of role ``name``. Raises KeyError for an unknown role."""
        return {
            "root": self.root_role,
            "timestamp": self.timestamp_role,
            "index": self.index_role,
        }[name]

    def key(self, keyid: str) -> PublicKey | None:
        """The public key with id ``keyid``, or None."""
        for key in self.keys:
            if key.keyid == keyid:
                return key
        return None

    def role_keys(self, name: str) -> tuple[PublicKey, ...]:
        """The public keys of role ``name``, sorted by key id. Raises KeyError for unknown roles."""
        keyids = self.role(name).keyids
        return tuple(key for key in self.keys if key.keyid in keyids)

    def to_signed(self) -> dict[str, Any]:
        """A fresh copy of the ``signed`` object."""
        result: dict[str, Any] = json.loads(self.canonical)
        return result


@record.frozen
class Timestamp:
    """Verified timestamp metadata: it pins the current index."""

    version: int
    expires: datetime
    index: IndexPin
    canonical: bytes = record.field(repr=False)
    raw: bytes = record.field(repr=False, eq=False)


@record.frozen
class Index:
    """Verified index metadata. :attr:`payload` is the repository's index, uninterpreted."""

    version: int
    expires: datetime
    canonical: bytes = record.field(repr=False)
    raw: bytes = record.field(repr=False, eq=False)

    @property
    def payload(self) -> dict[str, Any]:
        """A fresh copy of ``signed.index``, parsed on each call so no caller can alter it."""
        signed: dict[str, Any] = json.loads(self.canonical)
        payload: dict[str, Any] = signed["index"]
        return payload


# --- reading -----------------------------------------------------------------------------------


@record.frozen
class Envelope:
    """A parsed document whose signatures have not been checked yet. Internal to the package."""

    role: str
    signed: Mapping[str, Any] = record.field(eq=False, repr=False)
    canonical: bytes = record.field(repr=False)
    signatures: tuple[Signature, ...]
    raw: bytes = record.field(repr=False, eq=False)


def _fields(value: object, expected: Sequence[str], role: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadMetadata(role, where, "expected an object")
    for name in expected:
        if name not in value:
            raise BadMetadata(role, f"{where}.{name}", "missing")
    for name in value:
        if name not in expected:
            raise BadMetadata(role, f"{where}.{str(name)[:70]}", "unknown field")
    return value


def _int(value: Mapping[str, Any], name: str, role: str, where: str, minimum: int) -> int:
    item = value[name]
    if isinstance(item, bool) or not isinstance(item, int):
        raise BadMetadata(role, f"{where}.{name}", f"expected an integer, got {show(item)}")
    if item < minimum:
        raise BadMetadata(role, f"{where}.{name}", f"expected at least {minimum}, got {item}")
    return item


def _hex(
    value: Mapping[str, Any], name: str, role: str, where: str, pattern: re.Pattern[str]
) -> str:
    item = value[name]
    if not isinstance(item, str) or not pattern.fullmatch(item):
        raise BadMetadata(
            role, f"{where}.{name}", "expected lowercase hex digits of the right length"
        )
    return item


def _expires(signed: Mapping[str, Any], role: str) -> datetime:
    item = signed["expires"]
    if not isinstance(item, str):
        raise BadMetadata(role, "signed.expires", f"expected a string, got {show(item)}")
    try:
        return parse_time(item)
    except ValueError as e:
        raise BadMetadata(role, "signed.expires", str(e)) from e


def read_envelope(data: bytes, role: str, max_bytes: int) -> Envelope:
    """Parse a published document of ``role`` without checking its signatures.

    Raises :class:`MetadataTooLarge` if ``data`` is over ``max_bytes``, :class:`BadMetadata` if it
    is not an envelope of ``role`` with the common fields (``_type``, ``spec``, ``version``,
    ``expires``) well formed. Role fields are checked by the ``*_from`` readers.
    """
    if len(data) > max_bytes:
        raise MetadataTooLarge(role, len(data), max_bytes)
    document = _fields(read_json(data, role), ("signed", "signatures"), role, "document")
    signed = document["signed"]
    if not isinstance(signed, Mapping):
        raise BadMetadata(role, "signed", "expected an object")
    if "_type" not in signed:
        raise BadMetadata(role, "signed._type", "missing")
    if signed["_type"] != role:
        raise BadMetadata(role, "signed._type", f"expected {role!r}, got {show(signed['_type'])}")
    if "spec" not in signed:
        raise BadMetadata(role, "signed.spec", "missing")
    if signed["spec"] != SPEC:
        raise BadMetadata(role, "signed.spec", f"expected {SPEC!r}, got {show(signed['spec'])}")
    for name in ("version", "expires"):
        if name not in signed:
            raise BadMetadata(role, f"signed.{name}", "missing")
    _int(signed, "version", role, "signed", 1)
    _expires(signed, role)
    entries = document["signatures"]
    if not isinstance(entries, list):
        raise BadMetadata(role, "signatures", "expected a list")
    signatures = []
    for i, entry in enumerate(entries):
        where = f"signatures[{i}]"
        fields = _fields(entry, ("keyid", "sig"), role, where)
        keyid = _hex(fields, "keyid", role, where, _HEX64)
        sig = _hex(fields, "sig", role, where, _HEX128)
        signatures.append(Signature(keyid, bytes.fromhex(sig)))
    try:
        canonical = canonical_bytes(signed)
    except ValueError as e:
        raise BadMetadata(role, "signed", str(e)) from e
    return Envelope(role, signed, canonical, tuple(signatures), data)


def _role_keys(roles: Mapping[str, Any], name: str, keys: Mapping[str, PublicKey]) -> RoleKeys:
    where = f"signed.roles.{name}"
    entry = _fields(roles[name], ("keyids", "threshold"), "root", where)
    keyids = entry["keyids"]
    if not isinstance(keyids, list) or not keyids:
        raise BadMetadata("root", f"{where}.keyids", "expected a non-empty list of key ids")
    for keyid in keyids:
        if not isinstance(keyid, str) or keyid not in keys:
            raise BadMetadata(
                "root", f"{where}.keyids", f"key id {show(keyid)} is not in signed.keys"
            )
    if len(set(keyids)) != len(keyids):
        raise BadMetadata("root", f"{where}.keyids", "a key id is listed twice")
    threshold = _int(entry, "threshold", "root", where, 1)
    if threshold > len(keyids):
        raise BadMetadata(
            "root",
            f"{where}.threshold",
            f"threshold {threshold} is more than the {len(keyids)} key(s) listed",
        )
    return RoleKeys(frozenset(keyids), threshold)


def root_from(envelope: Envelope) -> Root:
    """The :class:`Root` in a root envelope. Raises :class:`BadMetadata` naming the bad field."""
    signed = _fields(envelope.signed, (*_HEADER, "keys", "roles"), "root", "signed")
    raw_keys = signed["keys"]
    if not isinstance(raw_keys, Mapping):
        raise BadMetadata("root", "signed.keys", "expected an object")
    keys: dict[str, PublicKey] = {}
    for keyid, value in raw_keys.items():
        if not _HEX64.fullmatch(keyid):
            raise BadMetadata("root", f"signed.keys.{keyid[:70]}", "key id is not 64 hex digits")
        key = PublicKey.from_json(value, f"signed.keys.{keyid}")
        if key.keyid != keyid:
            raise BadMetadata(
                "root", f"signed.keys.{keyid}", f"the key's id is {key.keyid}, not {keyid}"
            )
        keys[keyid] = key
    roles = _fields(signed["roles"], ("root", "timestamp", "index"), "root", "signed.roles")
    return Root(
        version=signed["version"],
        expires=_expires(signed, "root"),
        keys=tuple(keys[keyid] for keyid in sorted(keys)),
        root_role=_role_keys(roles, "root", keys),
        timestamp_role=_role_keys(roles, "timestamp", keys),
        index_role=_role_keys(roles, "index", keys),
        canonical=envelope.canonical,
        raw=envelope.raw,
    )


def timestamp_from(envelope: Envelope) -> Timestamp:
    """The :class:`Timestamp` in an envelope. Raises :class:`BadMetadata` naming the bad field."""
    signed = _fields(envelope.signed, (*_HEADER, "index"), "timestamp", "signed")
    pin = _fields(signed["index"], ("version", "length", "sha256"), "timestamp", "signed.index")
    return Timestamp(
        version=signed["version"],
        expires=_expires(signed, "timestamp"),
        index=IndexPin(
            version=_int(pin, "version", "timestamp", "signed.index", 1),
            length=_int(pin, "length", "timestamp", "signed.index", 0),
            sha256=_hex(pin, "sha256", "timestamp", "signed.index", _HEX64),
        ),
        canonical=envelope.canonical,
        raw=envelope.raw,
    )


def index_from(envelope: Envelope) -> Index:
    """The :class:`Index` in an envelope. Raises :class:`BadMetadata` naming the bad field."""
    signed = _fields(envelope.signed, (*_HEADER, "index"), "index", "signed")
    if not isinstance(signed["index"], Mapping):
        raise BadMetadata("index", "signed.index", "expected an object")
    return Index(
        version=signed["version"],
        expires=_expires(signed, "index"),
        canonical=envelope.canonical,
        raw=envelope.raw,
    )


# --- signatures --------------------------------------------------------------------------------


def signing_keyids(signer: Root, role: str, envelope: Envelope) -> frozenset[str]:
    """The distinct keys of ``role`` in ``signer`` that validly signed ``envelope``.

    Unknown key ids and keys of other roles are ignored; a key counts once however often it signs.
    Costs one signature check per entry, at most one per distinct key id that counts.
    """
    role_keys = signer.role(role)
    valid: set[str] = set()
    for signature in envelope.signatures:
        if signature.keyid in valid or signature.keyid not in role_keys.keyids:
            continue
        key = signer.key(signature.keyid)
        if key is not None and key.verify(signature.sig, envelope.canonical):
            valid.add(signature.keyid)
    return frozenset(valid)


def check_threshold(signer: Root, role: str, envelope: Envelope) -> None:
    """Check that a threshold of ``signer``'s keys for ``role`` signed ``envelope``.

    Raises :class:`ThresholdNotMet` with the count and the threshold.
    """
    valid = signing_keyids(signer, role, envelope)
    threshold = signer.role(role).threshold
    if len(valid) < threshold:
        raise ThresholdNotMet(
            envelope.role, f"root version {signer.version}", threshold, len(valid), valid
        )
