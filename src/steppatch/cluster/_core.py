"""Clusters, the pure part: node locations, a cluster's status, and the node protocol's JSON.

No I/O here: :mod:`steppatch.cluster._nodes` runs commands on nodes and hands the results in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NoReturn

from packaging.version import Version

from steppatch import _record as record
from steppatch import formats
from steppatch._json import Fields, load_json_object
from steppatch.config import Location, check_node_name, parse_location
from steppatch.errors import NodeError
from steppatch.formats import plan_to_json
from steppatch.model import _frozen_map
from steppatch.plan import Plan

__all__ = [
    "NODE_FORMAT",
    "ClusterStatus",
    "Location",
    "NodeStatus",
    "SwitchResult",
    "check_node_name",
    "parse_location",
    "plan_from_json",
    "plan_to_json",
    "versions_text",
]

NODE_FORMAT = "steppatch-node/1"

def versions_text(versions: Mapping[str, Version]) -> str:
    """``restapi 7.0.40, step-core 9.0.5``, or ``nothing installed``."""
    if not versions:
        return "nothing installed"
    return ", ".join(f"{name} {version}" for name, version in sorted(versions.items()))


def _maybe_map(value: Mapping[str, Version] | None) -> Mapping[str, Version] | None:
    return None if value is None else _frozen_map(value)


@record.frozen
class NodeStatus:
    """One node as seen from the node running the command.

    ``versions`` is ``None`` when the node could not be asked; ``error`` then says why.
    """

    name: str
    location: str
    is_self: bool = False
    versions: Mapping[str, Version] | None = record.field(default=None, converter=_maybe_map)
    environment: str = ""
    fingerprint: str = ""
    error: str = ""


@record.frozen
class ClusterStatus:
    """Every node of a cluster, this one first."""

    nodes: tuple[NodeStatus, ...]

    @property
    def consistent(self) -> bool:
        """Whether every node answered and all are at the same versions."""
        if any(n.versions is None for n in self.nodes):
            return False
        return len({tuple(sorted((n.versions or {}).items())) for n in self.nodes}) <= 1

    @property
    def unreachable(self) -> tuple[NodeStatus, ...]:
        return tuple(n for n in self.nodes if n.versions is None)

    def groups(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Each set of versions (as text) with the nodes at it, in node order."""
        groups: dict[str, list[str]] = {}
        for n in self.nodes:
            key = versions_text(n.versions) if n.versions is not None else f"unknown ({n.error})"
            groups.setdefault(key, []).append(n.name)
        return tuple((text, tuple(names)) for text, names in groups.items())


@record.frozen
class SwitchResult:
    """What switching one node did: whether its application was restarted."""

    restarted: bool


# --- the node protocol's JSON (docs/formats.md, "steppatch-node/1") ----------------------------


def plan_from_json(value: object, node: str) -> Plan:
    """Parse a plan a node sent. Raises :class:`NodeError` naming what is wrong."""
    return formats.plan_from_json(value, _fail(node))


def parse_node_answer(data: bytes, node: str) -> Fields:
    """A node command's JSON answer, its format checked. Raises :class:`NodeError`."""
    fail = _fail(node)
    f = Fields(load_json_object(data, fail), "", fail)
    if f.get("format", str) != NODE_FORMAT:
        f.fail("format", f"expected {NODE_FORMAT!r} (is steppatch on the node this version?)")
    return f


def versions_from_json(f: Fields, field: str) -> dict[str, Version]:
    """A ``{name: version}`` object. Raises through ``f``'s failure."""
    pins = f.sub(field)
    return {n: pins.parse(n, Version) for n in sorted(pins.obj)}


def _fail(node: str) -> Callable[[str], NoReturn]:
    def fail(problem: str) -> NoReturn:
        raise NodeError(node, f"unexpected answer: {problem}", NodeError.exit_code)

    return fail


# The serving side builds its answers here, beside the parsing above, so that the field names of
# steppatch-node/1 are spelled once.


def status_answer(status: NodeStatus) -> dict[str, object]:
    """The answer to ``node status``."""
    return {
        "format": NODE_FORMAT,
        "versions": {n: str(v) for n, v in sorted((status.versions or {}).items())},
        "environment": status.environment,
        "fingerprint": status.fingerprint,
    }


def stage_answer(token: str, plan: Plan) -> dict[str, object]:
    """The answer to ``node stage``."""
    return {"format": NODE_FORMAT, "token": token, "plan": plan_to_json(plan)}


def switch_answer(result: SwitchResult) -> dict[str, object]:
    """The answer to ``node switch``."""
    return {"format": NODE_FORMAT, "restarted": result.restarted}


def empty_answer() -> dict[str, object]:
    """The answer to ``node discard``."""
    return {"format": NODE_FORMAT}
