"""Every bound steppatch enforces, in one value.

Nothing that comes from outside (a repository, a mirror, a recipe file) may make steppatch use
unbounded memory, disk or time; each such bound lives here so that it is visible and settable.
"""

from __future__ import annotations

import attrs

from steppatch._json import JsonLimits
from steppatch.transport._limits import TransportLimits
from steppatch.trust.limits import TrustLimits

__all__ = ["DEFAULT_LIMITS", "Limits"]

MiB = 1024 * 1024


@attrs.frozen
class Limits:
    """Size, count and time bounds.

    Sizes are in bytes. The object size cap is a backstop only: every object download is bounded by
    the exact length its manifest gives.
    """

    max_root_bytes: int = 512 * 1024
    max_timestamp_bytes: int = 16 * 1024
    max_index_bytes: int = 32 * MiB
    max_root_rotations: int = 32
    max_recipe_bytes: int = 4 * MiB
    max_manifest_bytes: int = 64 * MiB
    max_object_bytes: int = 16 * 1024 * MiB
    max_component_toml_bytes: int = 1 * MiB
    max_manifest_entries: int = 1_000_000
    max_recipe_components: int = 10_000
    solver_max_rounds: int = 100_000
    chunk_bytes: int = 256 * 1024
    max_patch_bytes: int = 64 * 1024 * MiB
    max_patch_members: int = 2_000_000
    lock_timeout_seconds: float = 30.0
    service_timeout_seconds: float = 600.0
    #: processes hashing a tree (this one plus helpers); more than the cores only adds contention
    hash_workers: int = 2
    #: free space kept in reserve beyond an apply's own estimate
    disk_reserve_bytes: int = 16 * MiB

    #: deepest nesting of arrays and objects in a JSON document read from outside
    max_json_depth: int = 64
    #: longest integer in such a document (20 digits hold any 64-bit size)
    max_json_int_digits: int = 20

    #: network bounds: timeouts, deadlines, retries, parallel downloads
    network: TransportLimits = attrs.field(factory=TransportLimits)

    def transport(self) -> TransportLimits:
        """The bounds the transport edge enforces."""
        return self.network

    def json(self) -> JsonLimits:
        """The bounds every JSON reader enforces."""
        return JsonLimits(max_depth=self.max_json_depth, max_int_digits=self.max_json_int_digits)

    def trust(self) -> TrustLimits:
        """The bounds the metadata verification core checks."""
        return TrustLimits(
            max_root_bytes=self.max_root_bytes,
            max_timestamp_bytes=self.max_timestamp_bytes,
            max_index_bytes=self.max_index_bytes,
            max_root_rotations=self.max_root_rotations,
        )


DEFAULT_LIMITS = Limits()
