"""The offline method's home side: make a patch file for another environment, apply one here.

:func:`prepare_offline` runs on a home that reaches the repository (its pipeline's client);
:func:`apply_patch` runs on the installation without network, through a pipeline of its own whose
client reads the patch's extracted files (:class:`~steppatch.transport.FileFetcher`), verified
against the home's trusted root like any repository. The patch file itself is
:mod:`steppatch.offline`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from steppatch import _record as record
from steppatch.errors import InputError, StalePatch, WrongEnvironment
from steppatch.model import Manifest, ObjectTransfers, Recipe, RecipeKind
from steppatch.offline import PatchFile, PatchInfo, write_patch
from steppatch.paths import safe_relpath
from steppatch.pipeline import ApplyPipeline, ApplyReport
from steppatch.plan import Plan, check_symlinks, component_changes, merge_manifests
from steppatch.recipe import dump_recipe, parse_recipe, pinned_versions
from steppatch.remote import MetadataStore, RepositoryClient
from steppatch.routes import choose_routes
from steppatch.store import ObjectStore
from steppatch.transport import FileFetcher, fetch_bytes

__all__ = ["apply_patch", "prepare_offline"]


def prepare_offline(
    pipeline: ApplyPipeline, refs: Sequence[str], target: Recipe, output: Path | str
) -> tuple[PatchInfo, int]:
    """What :meth:`steppatch.updater.Home.prepare_offline` does (it documents the errors);
    takes the home's lock."""
    if target.kind is not RecipeKind.SNAPSHOT or not target.environment:
        raise InputError(
            "--target must be a snapshot taken with 'steppatch snapshot' on the installation"
        )
    base = pinned_versions(target)
    files, client = pipeline.files, pipeline.client
    with files.locked(pipeline.limits.lock_timeout_seconds):
        recipes = pipeline.load_refs(refs)
        index = client.index()
        solution, _wanted = pipeline.solve(recipes, base)
        held: set[str] = set()
        installed: dict[str, Manifest] = {}
        for name, version in base.items():
            cv = index.get(name, version)
            if cv is None:
                raise InputError(
                    f"the snapshot's {name} {version} is not in the repository, so what the "
                    "installation holds cannot be known"
                )
            installed[name] = client.manifest(cv)
            held.update(e.sha256 for e in installed[name].files() if e.sha256)
        members: dict[str, bytes | Path] = {}
        needed: dict[str, int] = {}
        changed = {n: c for n, c in solution.items() if base.get(n) != c}
        manifests = {}
        for name, version in sorted(changed.items()):
            cv = index.components[name][version]
            manifests[name] = client.manifest(cv)
            members[cv.manifest.path] = _raw(client, cv.manifest.path, cv.manifest.length)
            for e in manifests[name].files():
                if e.sha256 and e.sha256 not in held:
                    needed[e.sha256] = e.size
        # The tree the installation will hold, unchanged components included: two
        # components claiming a path, or a symlink leading out through another component's,
        # are refused now rather than there.
        tree = merge_manifests(
            {n: manifests[n] if n in manifests else installed[n] for n in solution}
        )
        check_symlinks(tree, solution, pipeline.limits.max_symlink_hops)
        # Deltas from objects the installation holds (its snapshot's manifests say which), and
        # compressed forms, where the repository offers them; the rest whole.
        offers: dict[str, ObjectTransfers] = {}
        for name, version in sorted(changed.items()):
            cv = index.components[name][version]
            found = client.transfers(cv)
            if found is not None and cv.transfers is not None:
                # Not zip deltas: an installation whose zlib deflates differently could not
                # rebuild the archive, and a patch has no whole object to fall back to.
                for sha, ot in found.objects.items():
                    plain = tuple(d for d in ot.deltas if d.expanded is None)
                    offers[sha] = record.evolve(ot, deltas=plain)
                members[cv.transfers.path] = _raw(client, cv.transfers.path, cv.transfers.length)
        fetches = choose_routes(sorted(needed.items()), offers, held)
        encoded = [f for f in fetches if f.encoded is not None]
        scratch = ObjectStore(files.cache.root.parent / "deltas")
        got = client.fetch_encoded(encoded, scratch)
        whole = [(f.sha256, f.size) for f in fetches if f.encoded is None or f not in got]
        pipeline.download_whole(whole)
        for sha256, _size in sorted(whole):
            members[f"objects/{sha256[:2]}/{sha256}"] = files.cache.path(sha256)
        carried = {}
        for f in got:
            assert f.encoded is not None
            # Read now: the scratch store is emptied when the patch is written.
            members[f.encoded.path] = scratch.path(f.encoded.sha256).read_bytes()
            carried[f.sha256] = f.encoded.length
        for f in got:
            assert f.encoded is not None
            scratch.remove(f.encoded.sha256)
        patch_refs = []
        for i, ref in enumerate(refs):
            if ref.startswith("to:"):
                path = ref[3:]
                members[path] = _raw(client, path, index.recipes[path].length)
                patch_refs.append(ref)
            else:
                members[f"local/{i}.spr"] = dump_recipe(recipes[i])
                patch_refs.append(f"local:local/{i}.spr")
        members.update(_metadata_members(pipeline))
    info = PatchInfo(
        environment=target.environment,
        system=target.system,
        fingerprint=target.fingerprint,
        base=base,
        target=solution,
        refs=tuple(patch_refs),
        objects=len(needed),
        object_bytes=sum(needed.values()),
        delta_objects=len(carried),
        delta_bytes=sum(carried.values()),
    )
    return info, write_patch(Path(output), info, members)


def apply_patch(
    pipeline: ApplyPipeline, path: Path | str, *, force: bool, hot: bool
) -> ApplyReport:
    """What :meth:`steppatch.updater.Home.apply_patch` does (it documents the errors); takes
    the home's lock. ``pipeline``'s own client is not used: the patch gets one of its own."""
    files, limits = pipeline.files, pipeline.limits
    patch = PatchFile.open(path, limits)
    info = patch.info
    environment = files.environment_id()
    if info.environment != environment:
        raise WrongEnvironment(
            f"{info.system or 'an unnamed system'} ({info.environment})",
            f"{files.config.system or 'unnamed'} ({environment})",
        )
    with files.locked(limits.lock_timeout_seconds):
        state = files.state()
        if state.versions() == dict(info.target):
            return ApplyReport(Plan(dict(info.target), (), True))
        if state.fingerprint() != info.fingerprint and not force:
            now = state.versions()
            raise StalePatch(tuple(str(c) for c in component_changes(info.base, now, ())))
        with files.scratch("patch-") as tmp:
            patch.extract(tmp)
            client = RepositoryClient(
                FileFetcher(tmp), MetadataStore(files.metadata_dir), limits, pipeline.clock
            )
            offline = pipeline.with_client(client)
            recipes = [_patch_ref(offline, ref, tmp) for ref in info.refs]
            return offline.apply(recipes, hot=hot, sync=None, record=True)


def _patch_ref(pipeline: ApplyPipeline, ref: str, root: Path) -> Recipe:
    if ref.startswith("local:"):
        member = root / safe_relpath(ref[len("local:"):])
        return parse_recipe(member.read_bytes(), ref, pipeline.limits)
    return pipeline.load_ref(ref)


def _raw(client: RepositoryClient, path: str, length: int) -> bytes:
    """A published file's bytes (to put in a patch; the installation verifies them)."""
    return client.pool.call(lambda fetcher: fetch_bytes(fetcher, path, length, path), path)


def _metadata_members(pipeline: ApplyPipeline) -> dict[str, bytes | Path]:
    """The signed metadata a patch carries: every root version, the timestamp, its index."""
    client = pipeline.client
    store = MetadataStore(pipeline.files.metadata_dir)
    trusted = client.refresh()
    members: dict[str, bytes | Path] = {}
    limit = pipeline.limits.max_root_bytes
    for version in range(1, trusted.root.version + 1):
        path = f"roots/{version}.root.json"
        members[path] = _raw(client, path, limit)
    timestamp, index = store.read("timestamp"), store.read("index")
    assert timestamp is not None and index is not None and trusted.index is not None
    members["timestamp.json"] = timestamp
    members[f"indexes/{trusted.index.version}.index.json"] = index
    return members
