from __future__ import annotations

from typing import Any

import attrs

__all__ = ["DEFAULT_TRANSPORT_LIMITS", "TransportLimits"]


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, not {value}")


@attrs.frozen
class TransportLimits:
    """Time, parallelism and retry bounds of downloads.

    The deadline of one download of ``n`` bytes is ``deadline_seconds + n / min_bytes_per_second``:
    a trickling mirror that keeps every read under ``read_timeout_seconds`` still fails then.
    ``retries`` is how many more times a download that broke off *after making progress* is
    resumed from the same mirror before that mirror counts as failed; a mirror that refuses,
    times out, answers 5xx or 404, or sends wrong bytes fails at once.
    """

    connect_timeout_seconds: float = attrs.field(default=10.0, validator=_positive)
    read_timeout_seconds: float = attrs.field(default=30.0, validator=_positive)
    deadline_seconds: float = attrs.field(default=120.0, validator=_positive)
    min_bytes_per_second: float = attrs.field(default=256 * 1024.0, validator=_positive)
    parallel_downloads: int = attrs.field(default=8, validator=_positive)
    retries: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    chunk_bytes: int = attrs.field(default=256 * 1024, validator=_positive)
    #: how much of an error response's body is read to explain it
    max_error_body_bytes: int = attrs.field(default=4096, validator=_positive)
    #: how much of an answer that is not a repository file (the admin port's JSON) is read
    max_answer_bytes: int = attrs.field(default=1024 * 1024, validator=_positive)

    def deadline_for(self, length: int | None) -> float:
        """Seconds allowed for one download of ``length`` bytes (``None``: unknown, small)."""
        return self.deadline_seconds + (length or 0) / self.min_bytes_per_second


DEFAULT_TRANSPORT_LIMITS = TransportLimits()
