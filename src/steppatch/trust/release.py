"""The release side: build the ``signed`` objects of each role, sign them, rotate root.

Pure functions: keys come in as values and documents go out as bytes; where keys and documents are
stored is up to the caller. :func:`sign` reads back what it wrote, so the release side cannot
publish a document a client would refuse as malformed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from steppatch.trust._time import format_time
from steppatch.trust.canonical import canonical_bytes, published_bytes
from steppatch.trust.errors import BadMetadata
from steppatch.trust.hashing import sha256_hex
from steppatch.trust.keys import PublicKey, SigningKey
from steppatch.trust.limits import TrustLimits
from steppatch.trust.metadata import (
    ROLES,
    SPEC,
    Root,
    index_from,
    read_envelope,
    root_from,
    timestamp_from,
)
from steppatch.trust.trusted_set import verify_root_update

__all__ = ["make_index", "make_root", "make_timestamp", "rotate", "sign"]

_READERS = {"root": root_from, "timestamp": timestamp_from, "index": index_from}


def _header(role: str, version: int, expires: datetime) -> dict[str, Any]:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be an integer from 1, got {version!r}")
    return {"_type": role, "spec": SPEC, "version": version, "expires": format_time(expires)}


def make_root(
    keys_by_role: Mapping[str, Sequence[PublicKey]],
    thresholds: Mapping[str, int],
    version: int,
    expires: datetime,
) -> dict[str, Any]:
    """The ``signed`` object of a root listing ``keys_by_role`` for each of the three roles.

    Raises ValueError unless both mappings name exactly ``root``, ``timestamp`` and ``index``,
    every role has a key, every threshold is between 1 and its role's number of distinct keys,
    ``version`` is from 1 and ``expires`` is timezone-aware.
    """
    for name, mapping in (("keys_by_role", keys_by_role), ("thresholds", thresholds)):
        if set(mapping) != set(ROLES):
            raise ValueError(f"{name} must name exactly {', '.join(ROLES)}; got {sorted(mapping)}")
    signed = _header("root", version, expires)
    keys: dict[str, Any] = {}
    roles: dict[str, Any] = {}
    for role in ROLES:
        keyids = sorted({key.keyid for key in keys_by_role[role]})
        threshold = thresholds[role]
        if isinstance(threshold, bool) or not isinstance(threshold, int):
            raise ValueError(f"threshold of {role} must be an integer, got {threshold!r}")
        if not 1 <= threshold <= len(keyids):
            raise ValueError(
                f"threshold of {role} must be between 1 and its {len(keyids)} key(s),"
                f" got {threshold}"
            )
        for key in keys_by_role[role]:
            keys[key.keyid] = key.to_json()
        roles[role] = {"keyids": keyids, "threshold": threshold}
    signed["keys"] = keys
    signed["roles"] = roles
    return signed


def make_index(payload: Mapping[str, Any], version: int, expires: datetime) -> dict[str, Any]:
    """The ``signed`` object of an index carrying ``payload`` (copied).

    Raises ValueError if ``payload`` holds a float or anything else not in the canonical form.
    """
    signed = _header("index", version, expires)
    signed["index"] = json.loads(canonical_bytes(payload))  # a deep copy, checked
    return signed


def make_timestamp(
    index_bytes: bytes, index_version: int, version: int, expires: datetime
) -> dict[str, Any]:
    """The ``signed`` object of a timestamp pinning the published index ``index_bytes``.

    Raises ValueError if ``index_bytes`` is not an index document of version ``index_version``.
    """
    try:
        index = index_from(read_envelope(index_bytes, "index", len(index_bytes)))
    except BadMetadata as e:
        raise ValueError(f"index_bytes is not an index document: {e}") from e
    if index.version != index_version:
        raise ValueError(f"index_bytes is index version {index.version}, not {index_version}")
    signed = _header("timestamp", version, expires)
    signed["index"] = {
        "version": index_version,
        "length": len(index_bytes),
        "sha256": sha256_hex(index_bytes),
    }
    return signed


def sign(signed: Mapping[str, Any], keys: Sequence[SigningKey]) -> bytes:
    """The published document: ``signed`` with one signature per distinct key, pretty-printed.

    Raises ValueError if ``keys`` is empty or ``signed`` is not in the canonical form's types, and
    :class:`BadMetadata` if ``signed`` is not a well-formed document of its ``_type``.
    """
    if not keys:
        raise ValueError("sign needs at least one key")
    role = signed.get("_type")
    if not isinstance(role, str) or role not in _READERS:
        raise BadMetadata(None, "signed._type", f"expected one of {', '.join(ROLES)}, got {role!r}")
    canonical = canonical_bytes(signed)
    unique = {key.keyid: key for key in keys}
    signatures = [
        {"keyid": keyid, "sig": unique[keyid].sign(canonical).hex()} for keyid in sorted(unique)
    ]
    data = published_bytes({"signed": signed, "signatures": signatures})
    _READERS[role](read_envelope(data, role, len(data)))
    return data


def rotate(
    current: Root,
    *,
    signing_keys: Sequence[SigningKey],
    expires: datetime,
    keys_by_role: Mapping[str, Sequence[PublicKey]] | None = None,
    thresholds: Mapping[str, int] | None = None,
    limits: TrustLimits | None = None,
) -> bytes:
    """Root version N+1 after ``current`` (N), published and signed by ``signing_keys``.

    Roles missing from ``keys_by_role`` / ``thresholds`` keep their keys / threshold.
    ``signing_keys`` must hold a threshold of the current root keys and of the new root keys (give
    both when the root role itself rotates); the result is verified as a client would.
    Raises ValueError like :func:`make_root`, :class:`ThresholdNotMet` if the keys fall short.
    """
    changes = keys_by_role or {}
    new_thresholds = thresholds or {}
    signed = make_root(
        {role: changes.get(role, current.role_keys(role)) for role in ROLES},
        {role: new_thresholds.get(role, current.role(role).threshold) for role in ROLES},
        current.version + 1,
        expires,
    )
    data = sign(signed, signing_keys)
    verify_root_update(current, data, limits or TrustLimits())
    return data
