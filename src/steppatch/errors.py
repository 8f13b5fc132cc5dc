"""The exception tree, split by whose fault an error is.

Every error steppatch raises is a :class:`SteppatchError`. The four branches tell an operator where
to look: their own input, the repository (or a mirror between it and them), the network, or the
local environment. Exceptions carry data as attributes so that the CLI can render them and tests
can assert on fields rather than on message text.
"""

from __future__ import annotations

__all__ = [
    "BadReference",
    "ClusterError",
    "ClusterMixed",
    "ClusterPartiallyApplied",
    "ComponentSourceError",
    "ConfigError",
    "ConfigOutdated",
    "DeltaError",
    "HistoryPruned",
    "HomeError",
    "InputError",
    "InsufficientSpace",
    "IntegrityError",
    "KeysInsideRepository",
    "LocalEnvironmentError",
    "LockedError",
    "MalformedDocument",
    "MissingFile",
    "NetworkError",
    "NodeError",
    "NodeFailed",
    "NotHot",
    "NothingToRollBack",
    "PathConflict",
    "RecipeError",
    "ReleaseError",
    "RepositoryConflict",
    "RepositoryError",
    "ResolutionImpossible",
    "ServiceError",
    "StagedApplyMissing",
    "StalePatch",
    "SteppatchError",
    "TooLarge",
    "UnknownReference",
    "UnsafePath",
    "UnsafeSourceSymlink",
    "UnsafeSymlink",
    "WouldOverwrite",
    "WrongEnvironment",
]


class SteppatchError(Exception):
    """The root of every error steppatch raises on purpose."""

    #: exit code the CLI uses for this kind of error
    exit_code = 1


# --- the operator's input -----------------------------------------------------------------------


class InputError(SteppatchError):
    """Bad input from the person running the command: a file, an argument, a reference."""

    exit_code = 2


class WouldOverwrite(InputError):
    """A file steppatch only ever creates (a key, a certificate) exists already: it is never
    replaced. ``path`` is the file."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} exists already; steppatch does not overwrite it")
        self.path = path


class ComponentSourceError(InputError):
    """A component source directory is not valid.

    ``path`` is the file at fault, ``field`` the field (or ``None`` when the whole file is).
    """

    def __init__(self, path: str, field: str | None, problem: str) -> None:
        where = f"{path}: field {field!r}" if field else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.field = field
        self.problem = problem


class UnsafeSourceSymlink(ComponentSourceError):
    """A symlink under a component source's ``files/`` leads outside the component's tree, loops,
    or follows more symlinks than ``Limits.max_symlink_hops``.

    ``component`` and ``version`` name the component, ``path`` is the symlink's file, ``link`` its
    path in the tree, ``target`` its target, ``reason`` ``escapes``, ``loop`` or ``too-many-hops``,
    and ``via`` the symlink where it shows (``link`` itself unless the way leads through another).
    """

    def __init__(
        self,
        path: str,
        component: str,
        version: str,
        link: str,
        target: str,
        reason: str,
        via: str,
        problem: str,
    ) -> None:
        super().__init__(path, None, f"{component} {version}: {problem}")
        self.component = component
        self.version = version
        self.link = link
        self.target = target
        self.reason = reason
        self.via = via


class RecipeError(InputError):
    """A ``.spr`` document is not a recipe steppatch can read; ``source`` says where it was."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source} is not a valid recipe: {problem}")
        self.source = source
        self.problem = problem


class BadReference(InputError):
    """A REF argument is neither ``to:PATH`` nor the path of a local recipe file."""

    def __init__(self, ref: str, problem: str) -> None:
        super().__init__(f"bad reference {ref!r}: {problem}")
        self.ref = ref
        self.problem = problem


class UnsafePath(InputError):
    """A path would escape the tree it must stay inside (``..``, absolute, or a link outside)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"unsafe path {path!r}: {problem}")
        self.path = path
        self.problem = problem


class ConfigError(InputError):
    """A config file is missing a field or has a wrong value."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class KeysInsideRepository(ConfigError):
    """The signing key directory ``keys`` lies inside the published ``repository`` (both fully
    resolved, symlinks followed): whoever can read the repository could read the keys."""

    def __init__(self, keys: str, repository: str) -> None:
        super().__init__(
            keys,
            f"signing keys must not live inside the repository {repository} "
            "(move them out, and pass the new place with --keys)",
        )
        self.keys = keys
        self.repository = repository


class ReleaseError(InputError):
    """A release recipe cannot be made: a pin is unknown or the set breaks its own ranges."""


class ResolutionImpossible(InputError):
    """No set of component versions satisfies the request.

    ``derivation`` is the solver's account of why, as data; ``str()`` is the human explanation.
    """

    def __init__(self, explanation: str, derivation: object = None) -> None:
        super().__init__(explanation)
        self.explanation = explanation
        self.derivation = derivation


class NotHot(InputError):
    """``apply --hot`` was asked for a change that needs a restart; ``components`` are why."""

    def __init__(self, components: tuple[str, ...]) -> None:
        names = ", ".join(components)
        super().__init__(
            f"this change cannot be applied hot: {names} must be applied with a restart "
            "(run without --hot)"
        )
        self.components = components


class WrongEnvironment(InputError):
    """A patch file was made for another environment; both are named."""

    def __init__(self, patch_for: str, this: str) -> None:
        super().__init__(
            f"this patch was made for {patch_for}, not for this environment, {this}; make one "
            "from a snapshot of this environment"
        )
        self.patch_for = patch_for
        self.this = this


class StalePatch(InputError):
    """A patch was made from a snapshot older than the environment's state.

    ``changes`` lists what changed since (``name: snapshot -> now``).
    """

    def __init__(self, changes: tuple[str, ...]) -> None:
        what = "; ".join(changes) or "the installed files"
        super().__init__(
            f"this patch was made from a snapshot that is no longer current (changed since: "
            f"{what}); take a new snapshot and make a new patch, or apply with --force"
        )
        self.changes = changes


class PathConflict(InputError):
    """Two components claim the same path in the managed tree."""

    def __init__(self, path: str, first: str, second: str) -> None:
        super().__init__(f"components {first!r} and {second!r} both install {path!r}")
        self.path = path
        self.components = (first, second)


# --- the repository, or a mirror between it and us -----------------------------------------------


class RepositoryError(SteppatchError):
    """The repository (or a relay of it) is wrong: missing files, bad bytes, inconsistent data."""

    exit_code = 3


class UnknownReference(RepositoryError):
    """A ``to:PATH`` reference names no recipe in the repository."""

    def __init__(self, ref: str, repository: str) -> None:
        super().__init__(f"{ref!r} is not a recipe in the repository {repository}")
        self.ref = ref
        self.repository = repository


class IntegrityError(RepositoryError):
    """Bytes do not match the hash or length that trusted metadata gave for them."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: expected {expected}, got {actual}")
        self.what = what
        self.expected = expected
        self.actual = actual


class TooLarge(RepositoryError):
    """A download or document is larger than its limit allows."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} is larger than its limit of {limit} bytes")
        self.what = what
        self.limit = limit


class DeltaError(RepositoryError):
    """A delta or compressed form does not decode to what its signed metadata declares (a
    damaged frame, a wrong base, another length). A home falls back to the whole object."""

    def __init__(self, what: str, problem: str) -> None:
        super().__init__(f"{what}: {problem}")
        self.what = what
        self.problem = problem


class MalformedDocument(RepositoryError):
    """A repository document (index, manifest) cannot be parsed. ``source`` names it."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class MissingFile(RepositoryError):
    """The repository has no file at a path that it (or its index) says exists."""

    def __init__(self, url: str) -> None:
        super().__init__(f"{url}: no such file in the repository")
        self.url = url


class UnsafeSymlink(RepositoryError):
    """A published component's symlink, resolved in the managed tree an apply would build, leads
    outside it, loops, or follows more symlinks than ``Limits.max_symlink_hops``; nothing is
    written.

    ``component`` and ``version`` own the symlink at ``path`` (to ``target``); ``reason`` is
    ``escapes``, ``loop`` or ``too-many-hops``; ``via`` is the symlink where it shows (``path``
    itself unless the way leads through another, maybe another component's); ``count`` is how
    many symlinks of the tree are refused.
    """

    def __init__(
        self,
        component: str,
        version: str,
        path: str,
        target: str,
        reason: str,
        via: str,
        problem: str,
        count: int = 1,
    ) -> None:
        more = f" (and {count - 1} more)" if count > 1 else ""
        super().__init__(f"{component} {version}: {problem}{more}; nothing was changed")
        self.component = component
        self.version = version
        self.path = path
        self.target = target
        self.reason = reason
        self.via = via
        self.count = count


class RepositoryConflict(RepositoryError):
    """Publishing would change what a repository already holds under the same name and version."""


# --- the network ----------------------------------------------------------------------------------


class NetworkError(SteppatchError):
    """A repository or mirror could not be reached or answered with an error."""

    exit_code = 4

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(f"{url}: {problem}")
        self.url = url
        self.problem = problem


# --- the local environment -----------------------------------------------------------------------


class LocalEnvironmentError(SteppatchError):
    """The local machine is in the way: a home that is missing or broken, a disk, a permission."""

    exit_code = 5


class HomeError(LocalEnvironmentError):
    """A home is missing, not initialised, or its state cannot be read."""

    def __init__(self, home: str, problem: str) -> None:
        super().__init__(f"home {home}: {problem}")
        self.home = home
        self.problem = problem


class ServiceError(LocalEnvironmentError):
    """A start, stop or status command of the application failed."""

    def __init__(self, action: str, command: str, returncode: int | None, output: str) -> None:
        how = f"exit code {returncode}" if returncode is not None else "did not run"
        detail = f": {output}" if output else ""
        super().__init__(f"{action} command {command!r} failed ({how}){detail}")
        self.action = action
        self.command = command
        self.returncode = returncode
        self.output = output


class InsufficientSpace(LocalEnvironmentError):
    """Not enough free disk space for staging; ``needed`` and ``free`` are bytes."""

    def __init__(self, path: str, needed: int, free: int) -> None:
        super().__init__(
            f"{path}: needs about {needed / 2**20:.1f} MiB free to stage this apply, "
            f"has {free / 2**20:.1f} MiB"
        )
        self.path = path
        self.needed = needed
        self.free = free


class ConfigOutdated(LocalEnvironmentError):
    """``config.properties`` holds settings the installed components no longer accept.

    ``findings`` lists each (a :class:`steppatch.configcheck.ConfigFinding`).
    """

    def __init__(self, findings: tuple[object, ...]) -> None:
        lines = "; ".join(str(f) for f in findings)
        super().__init__(
            f"config.properties needs {len(findings)} correction(s) before the application "
            f"starts: {lines} (or start with --force)"
        )
        self.findings = findings


class NothingToRollBack(LocalEnvironmentError):
    """The home has no recorded state to return to."""

    def __init__(self, home: str) -> None:
        super().__init__(f"home {home}: no earlier state recorded (nothing to roll back to)")
        self.home = home


class HistoryPruned(NothingToRollBack):
    """The state a rollback would return to was removed by ``steppatch gc`` (past the kept
    history, ``keep_history``)."""

    def __init__(self, home: str, pruned: int) -> None:
        LocalEnvironmentError.__init__(
            self,
            f"home {home}: the earlier state was pruned by gc (history entry {pruned} and older "
            "are gone; keep_history in steppatch.toml sets how many are kept), so there is "
            "nothing to roll back to",
        )
        self.home = home
        self.pruned = pruned


class LockedError(LocalEnvironmentError):
    """Another live process holds the lock of this home or cache."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is locked by another steppatch process")
        self.path = path


class StagedApplyMissing(LocalEnvironmentError):
    """A staged apply a cluster switch names is gone (discarded, or the home changed since)."""

    def __init__(self, home: str, token: str, problem: str) -> None:
        super().__init__(f"home {home}: staged apply {token!r}: {problem}")
        self.home = home
        self.token = token
        self.problem = problem


# --- clusters ------------------------------------------------------------------------------------


class ClusterError(LocalEnvironmentError):
    """A cluster apply could not start, or did not finish on every node."""


class ClusterMixed(ClusterError):
    """The cluster's nodes are not all at the same versions, so a plain apply does not start.

    ``groups`` pairs each set of versions (as text) with the nodes at it.
    """

    def __init__(self, groups: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
        where = "; ".join(f"{', '.join(nodes)} at {versions}" for versions, nodes in groups)
        super().__init__(
            f"the cluster is mixed: {where}. Patch one node at a time with 'apply --local', "
            "or apply a snapshot to bring every node to (steppatch apply SNAPSHOT.spr)"
        )
        self.groups = groups


class NodeFailed(ClusterError):
    """A node failed before any node was switched; nothing was switched anywhere.

    ``phase`` is ``status`` or ``prepare``; ``exit_code`` is the cause's.
    """

    def __init__(self, node: str, phase: str, reason: str, exit_code: int) -> None:
        super().__init__(f"node {node} failed during {phase}: {reason}; no node was switched")
        self.node = node
        self.phase = phase
        self.reason = reason
        self.exit_code = exit_code


class ClusterPartiallyApplied(ClusterError):
    """A node failed during its switch after others were switched.

    ``nodes`` pairs each node with its versions now (as text); ``switched`` names the nodes that
    were switched, ``failed`` the one that failed and ``hint`` says how to go back or finish.
    """

    def __init__(
        self,
        failed: str,
        reason: str,
        nodes: tuple[tuple[str, str], ...],
        switched: tuple[str, ...],
        hint: str,
    ) -> None:
        now = "; ".join(f"{name} at {versions}" for name, versions in nodes)
        super().__init__(
            f"node {failed} failed during its switch: {reason}. "
            f"Switched: {', '.join(switched) or 'none'}. Nodes now: {now}. {hint}"
        )
        self.failed = failed
        self.reason = reason
        self.nodes = nodes
        self.switched = switched
        self.hint = hint


class NodeError(ClusterError):
    """Another node could not be reached, or a command there failed; ``exit_code`` is the
    cause's (4 when the node could not be reached).
    """

    def __init__(self, node: str, problem: str, exit_code: int) -> None:
        super().__init__(f"node {node}: {problem}")
        self.node = node
        self.problem = problem
        self.exit_code = exit_code
