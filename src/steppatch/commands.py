"""What the command line's home commands decide, as library functions.

The CLI parses its options, calls one of these and renders the value it returns; the choices are
made here: which apply runs (a cluster apply, an offline patch file, a plain apply on this node),
whether ``prepare`` makes a plan or an offline patch, which options go together, the default home,
and reading the files options name. Inputs are checked, in the order the command line always
checked them, before ``open_home`` is called: a bad combination of options is refused with an
:class:`~steppatch.errors.InputError` and the home is not opened, let alone changed.

``open_home`` is a callable that opens the home (``Home.open`` with the command's progress
callback): the function opens it only once its inputs are known to be good.

The values returned are NamedTuples, not attrs classes: this module loads on the start of the
commands that use it, and attrs compiles each class's methods at import (bench/startup_bench.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from steppatch.errors import InputError
from steppatch.home._where import home_path

if TYPE_CHECKING:
    from packaging.version import Version

    from steppatch.cluster import Cluster, ClusterReport, ClusterStatus
    from steppatch.config import MirrorEntry
    from steppatch.enroll import InstalledCertificate, PendingRequest
    from steppatch.model import Recipe
    from steppatch.offline import PatchInfo
    from steppatch.pipeline import ApplyReport
    from steppatch.plan import Drift, Plan, SyncMode
    from steppatch.updater import Home

__all__ = [
    "ACCESS_MODES",
    "ApplyOutcome",
    "ApplyRoute",
    "EnrollOutcome",
    "MadePatch",
    "NodeRow",
    "add_node",
    "apply",
    "apply_route",
    "enroll",
    "home_path",
    "init_home",
    "list_nodes",
    "make_patch",
    "node_location",
    "parse_enroll_alias",
    "parse_pins",
    "prepare",
    "read_input_file",
    "refs_of",
    "release",
    "restart",
    "select_and_list_mirrors",
    "snapshot",
    "sync_mode",
    "verify",
]

#: ``open_home()``: the home a command works on, opened (with the command's progress callback)
OpenHome = Callable[[], "Home"]
#: ``cluster_of(home)``: the cluster of a home (default :class:`steppatch.cluster.Cluster`)
ClusterOf = Callable[["Home"], "Cluster"]
#: ``apply --accessmode``'s values
ACCESS_MODES = ("online", "offline")


# --- inputs ---------------------------------------------------------------------------------------


def read_input_file(path: Path, option: str) -> bytes:
    """The bytes of the file an option names. Raises :class:`InputError` naming the option."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"{option} {path}: {e.strerror or e}") from None


def refs_of(args: Sequence[str]) -> list[str]:
    """The references the arguments name, comma lists split (``to:a.spr,to:b.spr``), blanks
    dropped. Raises :class:`InputError` when none is left."""
    from steppatch.updater import split_refs

    refs = [ref for part in args for ref in split_refs(part)]
    if not refs:
        raise InputError("no reference given: name a to:PATH recipe or a local .spr file")
    return refs


def sync_mode(sync: bool, syncmode: SyncMode | None) -> SyncMode | None:
    """``--sync [--syncmode MODE]`` -> the sync mode of an apply (``None``: no sync; ``KEEP``
    when ``--sync`` comes alone). Raises :class:`InputError` for ``--syncmode`` without
    ``--sync``."""
    if syncmode is not None and not sync:
        raise InputError("--syncmode goes with --sync")
    if not sync:
        return None
    from steppatch.plan import SyncMode

    return syncmode or SyncMode.KEEP


def parse_pins(texts: Sequence[str]) -> dict[str, Version]:
    """``--pin NAME==VERSION`` values -> the versions a release pins (a later pin of a name
    wins). Raises :class:`InputError` naming the pin at fault."""
    from steppatch.versions import parse_pin

    pins = {}
    for text in texts:
        try:
            name, version = parse_pin(text)
        except ValueError as e:
            raise InputError(f"--pin {text!r}: {e}") from None
        pins[name] = version
    return pins


# --- the release side -----------------------------------------------------------------------------


def release(
    directory: Path,
    path: str,
    pins: Sequence[str],
    *,
    name: str = "",
    keys: Path | None = None,
) -> Recipe:
    """``repo release``: parse the ``--pin`` values, then publish the release recipe at ``path``
    in the repository at ``directory`` (:meth:`steppatch.repo.Repository.release`)."""
    from steppatch.repo import Repository

    pinned = parse_pins(pins)
    return Repository.open(directory, keys=keys).release(path, pinned, name=name)


# --- making a home --------------------------------------------------------------------------------


def init_home(
    path: Path,
    updates: str,
    *,
    root: Path | None = None,
    trust_on_first_use: bool = False,
    system: str = "",
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    mirror_id: str = "primary",
) -> Home:
    """``init``: read the files the options name (``--root``, ``--cert`` with ``--key``, ``--ca``)
    and make the home at ``path`` (:meth:`steppatch.Home.init`). Raises :class:`InputError` for
    a file that cannot be read or ``--cert`` without ``--key`` (or the reverse)."""
    from steppatch.updater import Home

    root_bytes = read_input_file(root, "--root") if root else None
    if (cert is None) != (key is None):
        raise InputError("--cert and --key go together")
    client = (
        (read_input_file(cert, "--cert"), read_input_file(key, "--key"))
        if cert is not None and key is not None
        else None
    )
    return Home.init(
        path, updates, root=root_bytes, trust_on_first_use=trust_on_first_use, system=system,
        ca=read_input_file(ca, "--ca") if ca else None, client_cert=client, mirror_id=mirror_id,
    )


# --- apply and prepare ----------------------------------------------------------------------------


class ApplyRoute(StrEnum):
    """Which apply ``apply`` runs."""

    #: every node of the cluster staged, then each switched (:meth:`Cluster.apply`)
    CLUSTER = "cluster"
    #: an offline patch file, on this node only (:meth:`Home.apply_patch`)
    PATCH = "patch"
    #: this node (:meth:`Home.apply`): no other nodes, or ``--local``
    PLAIN = "plain"


class MadePatch(NamedTuple):
    """An offline patch file made (``apply --accessmode offline``, ``prepare --target``)."""

    info: PatchInfo
    size: int
    path: Path


class ApplyOutcome(NamedTuple):
    """What ``apply`` did: ``report`` for a patch or plain apply, ``cluster`` for a cluster apply;
    ``mixed``: the cluster's status when an apply on this node alone left the nodes at different
    versions (``None`` otherwise)."""

    route: ApplyRoute
    report: ApplyReport | None = None
    cluster: ClusterReport | None = None
    mixed: ClusterStatus | None = None


def apply_route(home: Home, refs: Sequence[str], *, local: bool = False) -> ApplyRoute:
    """A single patch file is applied as one (this node only, whatever the cluster); else a home
    with other nodes applies to the cluster unless ``local``; else to this node."""
    from steppatch.offline import is_patch_file

    if len(refs) == 1 and is_patch_file(Path(refs[0])):
        return ApplyRoute.PATCH
    if home.files.config.nodes and not local:
        return ApplyRoute.CLUSTER
    return ApplyRoute.PLAIN


def apply(
    open_home: OpenHome,
    refs: Sequence[str],
    *,
    hot: bool = False,
    sync: bool = False,
    syncmode: SyncMode | None = None,
    force: bool = False,
    local: bool = False,
    accessmode: str = "online",
    target: Path | None = None,
    output: Path | None = None,
    cluster_of: ClusterOf | None = None,
) -> ApplyOutcome | MadePatch:
    """``apply``: with ``accessmode`` ``offline``, make a patch file (:func:`make_patch`); else
    apply ``refs`` by the route :func:`apply_route` chooses.

    Raises :class:`InputError` for an unknown ``accessmode``, ``syncmode`` without ``sync``, no
    reference, and ``sync`` with a patch file (the home is opened but not changed then); what
    :meth:`Home.apply`, :meth:`Home.apply_patch` and :meth:`Cluster.apply` raise.
    """
    if accessmode not in ACCESS_MODES:
        raise InputError(f"--accessmode {accessmode!r}: expected online or offline")
    if accessmode == "offline":
        return make_patch(open_home, refs, target, output)
    mode = sync_mode(sync, syncmode)
    names = refs_of(refs)
    home = open_home()
    route = apply_route(home, names, local=local)
    if cluster_of is None:
        from steppatch.cluster import Cluster

        cluster_of = Cluster
    if route is ApplyRoute.CLUSTER:
        return ApplyOutcome(route, cluster=cluster_of(home).apply(names, hot=hot, sync=mode))
    if route is ApplyRoute.PATCH:
        if mode is not None:
            raise InputError("--sync does not go with a patch file")
        report = home.apply_patch(names[0], force=force, hot=hot)
    else:
        report = home.apply(names, hot=hot, sync=mode)
    mixed = None
    if home.files.config.nodes:
        status = cluster_of(home).status()
        if len(status.nodes) >= 2 and not status.consistent:
            mixed = status
    return ApplyOutcome(route, report=report, mixed=mixed)


def make_patch(
    open_home: OpenHome, refs: Sequence[str], target: Path | None, output: Path | None
) -> MadePatch:
    """An offline patch file for the installation whose snapshot is the file ``target``,
    written to ``output`` (:meth:`Home.prepare_offline`). Raises :class:`InputError` when either
    is missing or ``target`` cannot be read, what :func:`steppatch.recipe.parse_recipe` raises
    for a bad snapshot, and what :meth:`Home.prepare_offline` raises."""
    if target is None or output is None:
        raise InputError("an offline patch needs both --target SNAPSHOT.spr and --output PATCH")
    from steppatch.recipe import parse_recipe

    snapshot_recipe = parse_recipe(read_input_file(target, "--target"), str(target))
    home = open_home()
    info, size = home.prepare_offline(refs_of(refs), snapshot_recipe, output)
    return MadePatch(info, size, output)


def prepare(
    open_home: OpenHome,
    refs: Sequence[str],
    *,
    target: Path | None = None,
    output: Path | None = None,
) -> Plan | MadePatch:
    """``prepare``: with ``target`` or ``output``, make an offline patch file
    (:func:`make_patch`); else resolve and download ``refs`` (:meth:`Home.prepare`)."""
    if target is not None or output is not None:
        return make_patch(open_home, refs, target, output)
    home = open_home()
    return home.prepare(refs_of(refs))


# --- reading and looking after a home -------------------------------------------------------------


def verify(open_home: OpenHome, against: Path | None = None) -> Drift:
    """``verify [--against FULL.spr]``: the drift of the managed tree, against the snapshot file
    ``against`` if given (read and parsed before the home is opened)."""
    recipe = None
    if against is not None:
        from steppatch.recipe import parse_recipe

        recipe = parse_recipe(read_input_file(against, "--against"), str(against))
    return open_home().verify(recipe)


def snapshot(
    open_home: OpenHome,
    path: Path,
    *,
    full: bool = False,
    cluster: bool = False,
    cluster_of: ClusterOf | None = None,
) -> Recipe:
    """``snapshot FILE [--full | --cluster]``: write this node's snapshot, or with ``cluster``
    the cluster's (every node recorded). Raises :class:`InputError` for both ``full`` and
    ``cluster`` (a full snapshot is per node)."""
    if cluster:
        if full:
            raise InputError("--full is per node: take it on each node without --cluster")
        if cluster_of is None:
            from steppatch.cluster import Cluster

            cluster_of = Cluster
        return cluster_of(open_home()).snapshot(path)
    return open_home().snapshot(path, full=full)


def restart(home: Home, *, force: bool = False) -> None:
    """Stop the application, then start it (``force``: despite config findings)."""
    home.stop()
    home.start(force=force)


def select_and_list_mirrors(
    home: Home, select: str | None = None
) -> list[tuple[MirrorEntry, bool]]:
    """``mirrors [--updates URL]``: select the mirror ``select`` (added if new), then the
    mirrors in the order they are tried, each with whether it is selected."""
    if select:
        home.select_mirror(select)
    return home.mirrors()


# --- nodes ----------------------------------------------------------------------------------------


class NodeRow(NamedTuple):
    """One node of ``nodes``: this node first, then the others as configured."""

    name: str
    location: str
    command: str
    is_self: bool


def list_nodes(home: Home, cluster_of: ClusterOf | None = None) -> list[NodeRow]:
    """This node (its name and path), then the other nodes the home's config lists."""
    if cluster_of is None:
        # what Cluster.self_name and Cluster.entries read, without loading the cluster (start-up)
        name, entries = home.files.node_name(), list(home.files.config.nodes)
    else:
        cluster = cluster_of(home)
        name, entries = cluster.self_name, cluster.entries()
    return [NodeRow(name, str(home.path), "", True)] + [
        NodeRow(e.name, e.location, e.command, False) for e in entries
    ]


def node_location(location: str) -> str:
    """A node's location as stored: a URL (``ssh://...``) as given, a local path made absolute
    (a relative one would mean another home from another directory)."""
    if not location.startswith("ssh://") and "://" not in location:
        return str(Path(location).absolute())
    return location


def add_node(open_home: OpenHome, name: str, location: str, command: str = "") -> str:
    """``nodes add NAME LOCATION``: add the node; returns its location as stored."""
    from steppatch.config import NodeEntry

    stored = node_location(location)
    open_home().add_node(NodeEntry(name, stored, command))
    return stored


# --- enrollment -----------------------------------------------------------------------------------


class EnrollOutcome(NamedTuple):
    """What ``enroll`` did: ``installed`` (``--install``), or ``request`` made, with ``host``,
    the mirror the manuals' ``mirror:NAME:HOST`` form named (``None`` without it)."""

    installed: InstalledCertificate | None = None
    request: PendingRequest | None = None
    host: str | None = None


def parse_enroll_alias(value: str) -> tuple[str, str]:
    """``mirror:NAME:HOST`` (the manuals' form) -> ``(NAME, HOST)``. Raises :class:`InputError`."""
    kind, _, rest = value.partition(":")
    name, _, host = rest.partition(":")
    if kind != "mirror" or not name or not host:
        raise InputError(f"--enroll={value}: expected mirror:SYSTEM_NAME:HOST")
    return name, host


def enroll(
    home: Path,
    system_name: str | None = None,
    *,
    install: Path | None = None,
    alias: str | None = None,
    ca: Path | None = None,
    force: bool = False,
) -> EnrollOutcome:
    """``enroll SYSTEM_NAME`` / ``--install CERT`` / ``--enroll=mirror:NAME:HOST``: make the
    home's key and certificate request (:func:`steppatch.enroll.request_certificate`), or install
    the signed certificate (:func:`steppatch.enroll.install_certificate`).

    Raises :class:`InputError` for both a system name and ``alias`` (unless the name is itself
    ``mirror:...``), for neither or both of a system name and ``install``, and for a bad
    ``mirror:NAME:HOST``, before the home is touched; what those functions raise.
    """
    from steppatch.enroll import install_certificate, request_certificate

    host = None
    if alias is not None:
        if system_name is not None and not system_name.startswith("mirror:"):
            raise InputError("give SYSTEM_NAME or --enroll=mirror:NAME:HOST, not both")
        system_name, host = parse_enroll_alias(alias)
    elif system_name is not None and system_name.startswith("mirror:"):
        system_name, host = parse_enroll_alias(system_name)
    if (system_name is None) == (install is None):
        raise InputError("give SYSTEM_NAME (make a request) or --install CERT (install it)")
    if install is not None:
        return EnrollOutcome(installed=install_certificate(home, install, ca=ca))
    assert system_name is not None
    return EnrollOutcome(request=request_certificate(home, system_name, force=force), host=host)
