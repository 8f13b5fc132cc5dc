"""``.spr`` recipes: parsing and serialization (bytes in, :class:`Recipe` out).

A recipe is UTF-8 JSON (see ``docs/formats.md``)::

    {"format": "steppatch-recipe/1", "kind": "release", "name": "step-trailblazer-9.0-mp5",
     "components": {"restapi": "==7.0.40", "step-core": "==9.0.5"}}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from steppatch._json import Fields, dump_json, load_json_object
from steppatch.errors import RecipeError
from steppatch.formats import entries_from_json, entry_to_json
from steppatch.limits import DEFAULT_LIMITS, Limits
from steppatch.model import FileEntry, NodeSnapshot, Recipe, RecipeKind
from steppatch.versions import is_valid_name, parse_specifier

__all__ = [
    "RECIPE_FORMAT",
    "component_recipe",
    "dump_recipe",
    "parse_recipe",
    "pinned_recipe",
    "pinned_versions",
]

RECIPE_FORMAT = "steppatch-recipe/1"


def recipe_fields(
    data: bytes, source: str, max_bytes: int, limits: Limits
) -> tuple[Fields, Callable[[str], NoReturn]]:
    """The fields of a ``steppatch-recipe/1`` document of at most ``max_bytes``, its format
    checked, and the function that raises a :class:`RecipeError` about it (for the fields of
    its lists' items). Raises :class:`RecipeError` naming what is wrong."""

    def fail(problem: str) -> NoReturn:
        raise RecipeError(source, problem)

    if len(data) > max_bytes:
        fail(f"larger than {max_bytes} bytes")
    f = Fields(load_json_object(data, fail, limits.json()), "", fail)
    found = f.get("format", str)
    if found != RECIPE_FORMAT:
        f.fail("format", f"expected {RECIPE_FORMAT!r}, got {found!r}")
    return f, fail


def parse_recipe(data: bytes, source: str, limits: Limits = DEFAULT_LIMITS) -> Recipe:
    """Parse a ``.spr`` document; ``source`` names it in errors.

    Raises :class:`RecipeError` naming the field at fault.
    """

    f, fail = recipe_fields(data, source, limits.max_recipe_bytes, limits)
    kind_text = f.get("kind", str)
    try:
        kind = RecipeKind(kind_text)
    except ValueError:
        f.fail("kind", f"expected one of {[k.value for k in RecipeKind]}, got {kind_text!r}")
    comps = f.sub("components")
    if len(comps.obj) > limits.max_recipe_components:
        f.fail("components", f"more than {limits.max_recipe_components} entries")
    components: dict[str, SpecifierSet] = {}
    for name in sorted(comps.obj):
        if not is_valid_name(name):
            comps.fail(name, "not a component name")
        components[name] = comps.parse(name, parse_specifier)
    if not components and kind is not RecipeKind.SNAPSHOT:
        f.fail("components", "names no component")
    files: tuple[FileEntry, ...] = ()
    if "files" in f.obj:
        if kind is not RecipeKind.SNAPSHOT:
            f.fail("files", "only a snapshot lists files")
        files = entries_from_json(f.get("files", list), fail, limits)
    nodes: list[NodeSnapshot] = []
    if "nodes" in f.obj:
        if kind is not RecipeKind.SNAPSHOT:
            f.fail("nodes", "only a snapshot lists nodes")
        listed = f.get("nodes", list)
        if len(listed) > limits.max_recipe_components:
            f.fail("nodes", f"more than {limits.max_recipe_components} entries")
        for i, item in enumerate(listed):
            if not isinstance(item, dict):
                f.fail(f"nodes[{i}]", "expected an object")
            node = Fields(item, f"nodes[{i}].", fail)
            pins = node.sub("components")
            nodes.append(
                NodeSnapshot(
                    name=node.get("name", str),
                    versions={n: pins.parse(n, Version) for n in sorted(pins.obj)},
                    environment=node.get("environment", str, ""),
                    fingerprint=node.get("fingerprint", str, ""),
                )
            )
    return Recipe(
        nodes=tuple(nodes),
        kind=kind,
        components=components,
        name=f.get("name", str, ""),
        system=f.get("system", str, ""),
        created=f.get("created", str, ""),
        environment=f.get("environment", str, ""),
        fingerprint=f.get("fingerprint", str, ""),
        files={e.path: e for e in files},
    )


def dump_recipe(recipe: Recipe) -> bytes:
    """The bytes of a recipe: deterministic, so equal recipes are equal files."""
    doc: dict[str, Any] = {
        "format": RECIPE_FORMAT,
        "kind": recipe.kind.value,
        "components": {n: str(s) for n, s in sorted(recipe.components.items())},
    }
    for key in ("name", "system", "created", "environment", "fingerprint"):
        value = getattr(recipe, key)
        if value:
            doc[key] = value
    if recipe.nodes:
        doc["nodes"] = [
            {
                "name": n.name,
                "components": {c: str(v) for c, v in sorted(n.versions.items())},
                **({"environment": n.environment} if n.environment else {}),
                **({"fingerprint": n.fingerprint} if n.fingerprint else {}),
            }
            for n in recipe.nodes
        ]
    if recipe.files:
        doc["files"] = [entry_to_json(e) for _path, e in sorted(recipe.files.items())]
    return dump_json(doc)


def pinned_recipe(
    kind: RecipeKind,
    pins: Mapping[str, Version],
    name: str = "",
    system: str = "",
    created: str = "",
    files: Mapping[str, FileEntry] | None = None,
    environment: str = "",
    fingerprint: str = "",
) -> Recipe:
    """A recipe that pins each component to one exact version."""
    return Recipe(
        kind=kind,
        components={n: SpecifierSet(f"=={v}") for n, v in sorted(pins.items())},
        name=name,
        system=system,
        created=created,
        files=files or {},
        environment=environment,
        fingerprint=fingerprint,
    )


def component_recipe(name: str, version: Version) -> Recipe:
    """The recipe published for one component version: that version, with its dependencies."""
    return pinned_recipe(RecipeKind.COMPONENT, {name: version}, name=f"{name}-{version}")


def pinned_versions(recipe: Recipe) -> dict[str, Version]:
    """The exact version each component of a pinning recipe (a snapshot) names.

    Raises :class:`RecipeError` for a component pinned to a range rather than one version.
    """
    versions = {}
    for name, spec in recipe.components.items():
        specs = list(spec)
        if len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
            raise RecipeError(recipe.name or "snapshot", f"{name} is not pinned to one version")
        versions[name] = Version(specs[0].version)
    return versions
