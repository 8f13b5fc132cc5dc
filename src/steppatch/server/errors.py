"""The errors of the updates server. Each is a :class:`~steppatch.errors.SteppatchError` that
carries its data as attributes, so the CLI can render it and tests need no message text.
"""

from __future__ import annotations

from steppatch.errors import (
    ConfigError,
    InputError,
    LocalEnvironmentError,
    NetworkError,
    RepositoryError,
    SteppatchError,
)

__all__ = [
    "MirrorConfigError",
    "NotServed",
    "OptionalMissing",
    "PrivateKeyServed",
    "SnapshotQuotaExceeded",
    "SnapshotRateLimited",
    "SnapshotRefused",
    "StoreError",
    "StoreFull",
    "UpstreamUnavailable",
]


class MirrorConfigError(ConfigError):
    """``mirror.toml`` is wrong. ``field`` names the key at fault (``"upstreams[1].url"``), or is
    ``None`` when the whole file is."""

    def __init__(self, path: str, field: str | None, problem: str) -> None:
        super().__init__(path, f"field {field!r}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


class PrivateKeyServed(MirrorConfigError):
    """A file under the tree the server would serve (``field``: ``origin.repository``, or
    ``store`` for a mirror) holds a PEM private key: ``key_file``. The server does not start."""

    def __init__(self, path: str, field: str, tree: str, key_file: str) -> None:
        super().__init__(
            path,
            field,
            f"{key_file} holds a private key and lies under {tree}, which this server serves: "
            "move it out of the tree",
        )
        self.tree = tree
        self.key_file = key_file


class StoreError(LocalEnvironmentError):
    """The mirror's store cannot be written or read. ``path`` is where, ``cause`` what the OS
    said."""

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(f"mirror store {path}: {cause}")
        self.path = path
        self.cause = cause


class StoreFull(StoreError):
    """The disk under the mirror's store is full: the fill was dropped, the store is intact."""


class UpstreamUnavailable(NetworkError):
    """No upstream could serve ``what`` now. ``reasons`` maps each upstream's id to why;
    ``retry_after`` is when to ask again (seconds)."""

    def __init__(self, what: str, reasons: dict[str, str], retry_after: int) -> None:
        listed = "; ".join(f"{k}: {v}" for k, v in reasons.items()) or "no upstream configured"
        super().__init__(what, f"no upstream can serve it now ({listed})")
        self.what = what
        self.reasons = dict(reasons)
        self.retry_after = retry_after


class OptionalMissing(RepositoryError):
    """No upstream has an optional file (a delta, a transfers document: upstreams before issue
    18 have none). Homes take whole objects; the upstreams are not counted as failed."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: no upstream has it ({reason})")
        self.path = path


class NotServed(SteppatchError):
    """The server has no file at ``path`` (HTTP 404): signed metadata does not list it."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path}: not served")
        self.path = path


class SnapshotRefused(InputError):
    """A snapshot upload was refused (HTTP ``status``): ``problem`` says why; ``field`` names the
    document's field at fault (``"name"``, ``"components.restapi"``), when one is."""

    def __init__(self, status: int, problem: str, field: str | None = None) -> None:
        super().__init__(f"snapshot refused: {problem}")
        self.status = status
        self.problem = problem
        self.field = field


class SnapshotRateLimited(SnapshotRefused):
    """``path`` was uploaded too often (HTTP 429): ask again in ``retry_after`` seconds."""

    def __init__(self, path: str, retry_after: int) -> None:
        super().__init__(429, f"{path}: too many uploads, retry in {retry_after} s")
        self.path = path
        self.retry_after = retry_after


class SnapshotQuotaExceeded(SnapshotRefused):
    """Storing the upload would take the snapshots kept under ``owner`` (its own and those it
    relays) from ``used`` to ``needed`` bytes, beyond ``quota`` (HTTP 413)."""

    def __init__(self, owner: str, used: int, needed: int, quota: int) -> None:
        super().__init__(
            413, f"the snapshots of {owner!r} would take {needed} bytes, over the quota of {quota}"
        )
        self.owner = owner
        self.used = used
        self.needed = needed
        self.quota = quota
