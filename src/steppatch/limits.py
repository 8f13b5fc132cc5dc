"""Every bound steppatch enforces, in one value.

Nothing that comes from outside (a repository, a mirror, a recipe file) may make steppatch use
unbounded memory, disk or time; each such bound lives here so that it is visible and settable.
"""

from __future__ import annotations

from steppatch import _record as record
from steppatch._json import JsonLimits
from steppatch.trust.limits import TrustLimits

__all__ = ["DEFAULT_LIMITS", "DEFAULT_TRANSPORT_LIMITS", "Limits", "TransportLimits"]

MiB = 1024 * 1024


def _positive(instance: object, attribute: record.Field, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, not {value}")


def _not_negative(instance: object, attribute: record.Field, value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, not {value}")


@record.frozen
class TransportLimits:
    """Time, parallelism and retry bounds of downloads.

    The deadline of one download of ``n`` bytes is ``deadline_seconds + n / min_bytes_per_second``:
    a trickling mirror that keeps every read under ``read_timeout_seconds`` still fails then.
    ``retries`` is how many more times a download that broke off *after making progress* is
    resumed from the same mirror before that mirror counts as failed; a mirror that refuses,
    times out, answers 5xx or 404, or sends wrong bytes fails at once.
    """

    connect_timeout_seconds: float = record.field(default=10.0, validator=_positive)
    read_timeout_seconds: float = record.field(default=30.0, validator=_positive)
    deadline_seconds: float = record.field(default=120.0, validator=_positive)
    min_bytes_per_second: float = record.field(default=256 * 1024.0, validator=_positive)
    parallel_downloads: int = record.field(default=8, validator=_positive)
    retries: int = record.field(default=2, validator=_not_negative)
    chunk_bytes: int = record.field(default=256 * 1024, validator=_positive)
    #: how much of an error response's body is read to explain it
    max_error_body_bytes: int = record.field(default=4096, validator=_positive)
    #: how much of an answer that is not a repository file (the admin port's JSON) is read
    max_answer_bytes: int = record.field(default=1024 * 1024, validator=_positive)

    def deadline_for(self, length: int | None) -> float:
        """Seconds allowed for one download of ``length`` bytes (``None``: unknown, small)."""
        return self.deadline_seconds + (length or 0) / self.min_bytes_per_second


DEFAULT_TRANSPORT_LIMITS = TransportLimits()


@record.frozen
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
    #: symlinks followed to resolve one symlink of a managed tree (Linux's MAXSYMLINKS is 40)
    max_symlink_hops: int = 40
    max_recipe_components: int = 10_000
    solver_max_rounds: int = 100_000
    chunk_bytes: int = 256 * 1024
    max_patch_bytes: int = 64 * 1024 * MiB
    max_patch_members: int = 2_000_000
    #: a cluster node's answer over ssh (its stdout; the tail of its stderr is kept as long)
    max_node_answer_bytes: int = 16 * MiB
    lock_timeout_seconds: float = 30.0
    service_timeout_seconds: float = 600.0
    #: processes hashing a tree (this one plus helpers); more than the cores only adds contention
    hash_workers: int = 2
    #: a partial download (home cache or mirror store) untouched this long is removed by gc
    partial_max_age_seconds: float = 86400.0
    #: free space kept in reserve beyond an apply's own estimate
    disk_reserve_bytes: int = 16 * MiB
    #: a thin snapshot upload (names and versions only): its size, its number of components,
    #: and the length of each string in it (names, versions, system, created, ids)
    max_snapshot_bytes: int = 1 * MiB
    max_snapshot_components: int = 1_000
    max_snapshot_string_chars: int = 256
    #: the nodes a thin cluster snapshot may list (each: a name, versions, ids)
    max_snapshot_nodes: int = 64
    #: how much of each file ``mirror serve`` reads looking for a PEM private key in the tree it
    #: serves: a key file starts with its BEGIN line, after at most a few certificates
    key_scan_head_bytes: int = 16 * 1024

    #: deltas (``docs/formats.md``, transfers): ``repo add`` makes one from each object a path
    #: held in the previous ``delta_history_versions`` versions of the same component
    delta_history_versions: int = 3
    #: neither a delta nor a compressed form for objects smaller than this
    delta_min_object_bytes: int = 4096
    #: a delta's base plus its target: zstd's window must cover both, at most 2 GiB (window_log
    #: 31); memory stays bounded because both are mapped files (page cache), not copies
    max_delta_span_bytes: int = 2048 * MiB
    #: zstd level of deltas and compressed forms: 9 (lazy2) makes 1%-changed 256 MiB deltas
    #: 14% smaller than 3 (dfast) at the same speed (bench/README.md); decoding barely depends on it
    delta_level: int = 9
    #: a delta is kept when smaller than this fraction of the target compressed (or whole)
    delta_keep_fraction: float = 0.5
    #: a compressed form is kept when smaller than this fraction of the object
    compressed_keep_fraction: float = 0.9
    #: zip deltas: members inflating to more than this stay deflated (one member in memory)
    max_zip_member_bytes: int = 64 * MiB
    #: zip deltas: the expanded form a home decodes, at most
    max_zip_expanded_bytes: int = 2048 * MiB
    #: zip deltas (version 2): the changed members a home deflates again, in deflated bytes (what
    #: zlib writes; its time goes with that, about 0.1 s per MB here for binaries and text
    #: alike), at most this fraction of the archive's length; the other changed members travel
    #: deflated. In bytes, not seconds, on purpose: ``repo add`` may run on a faster or slower
    #: machine than the homes, and deltas should not depend on its load. From the goals of
    #: issue 18 (at most 0.7x rsync's bytes, rebuilding at 200 MB/s or more): 0.055 gives
    #: pandas' wheel 0.697x rebuilt at 200-250 MB/s on 2 cores, numpy's 0.57x at 230-250;
    #: 0.05 misses the bytes (0.702x), and each 0.005 more costs about 15 MB/s
    #: (bench/README.md, "Deltas": the trade-off on three wheels)
    zip_redeflate_fraction: float = 0.055
    #: ... and at least this many bytes, whatever the archive's length: about 10 ms of deflating,
    #: which a small archive's rebuild can afford whatever its rate
    zip_redeflate_min_bytes: int = 96 * 1024
    #: zip deltas (version 2): zstd level of both frames, for archives up to the length below,
    #: each frame kept at ``delta_level`` instead when that is shorter: 19 makes pandas' delta
    #: 1.2% smaller and the frame of the re-deflated members' contents 15% smaller, so fewer
    #: members need deflating for the same bytes, but its optimal parser sees only 8 MiB back
    #: (and long matches): on a 60 MiB archive its frame 1 was 4x longer. It encodes at about
    #: 3 MB/s (base plus target), 8 s for a 13 MB wheel; decoding is as fast
    zip_delta_level: int = 19
    #: ... longer archives use ``delta_level`` alone: a 60 MiB one took 37 s at 19, for nothing
    zip_delta_level_max_bytes: int = 32 * MiB
    #: zip deltas: threads rebuilding an archive at a home, about its cores (at least 2: one
    #: decodes the archive's frame while the others deflate members, then all deflate;
    #: CPython's zlib releases the GIL)
    zip_rebuild_threads: int = 2
    #: zip deltas: deflated members held in memory until written, at most (or one member)
    zip_rebuild_pending_bytes: int = 64 * MiB
    #: a transfers document (``steppatch-transfers/1``)
    max_transfers_bytes: int = 64 * MiB

    #: deepest nesting of arrays and objects in a JSON document read from outside
    max_json_depth: int = 64
    #: longest integer in such a document (20 digits hold any 64-bit size)
    max_json_int_digits: int = 20

    #: network bounds: timeouts, deadlines, retries, parallel downloads
    network: TransportLimits = record.field(factory=TransportLimits)

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
