import json

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from steppatch.errors import RecipeError
from steppatch.model import RecipeKind
from steppatch.recipe import component_recipe, dump_recipe, parse_recipe, pinned_recipe


def doc(**fields: object) -> bytes:
    base: dict[str, object] = {
        "format": "steppatch-recipe/1",
        "kind": "release",
        "components": {"restapi": "==7.0.40"},
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def test_round_trip_is_byte_identical() -> None:
    recipe = pinned_recipe(
        RecipeKind.SNAPSHOT, {"b": Version("2"), "a": Version("1.0")}, system="prod"
    )
    data = dump_recipe(recipe)
    assert parse_recipe(data, "x.spr") == recipe
    assert dump_recipe(parse_recipe(data, "x.spr")) == data


def test_component_recipe_pins_its_version() -> None:
    recipe = component_recipe("restapi", Version("7.0.40"))
    assert recipe.kind is RecipeKind.COMPONENT
    assert recipe.components == {"restapi": SpecifierSet("==7.0.40")}
    assert not recipe.exact


def test_snapshot_is_exact() -> None:
    assert parse_recipe(doc(kind="snapshot", components={}), "s.spr").exact


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"not json", "not UTF-8 JSON"),
        (b"[1, 2]", "not a JSON object"),
        (doc(format="other/1"), "format"),
        (doc(format=None), "format: missing"),
        (doc(kind="weird"), "kind"),
        (doc(components={"Bad_Name": "==1"}), "Bad_Name"),
        (doc(components={"restapi": "=>1"}), "components.restapi"),
        (doc(components=[]), "components: expected dict"),
        (doc(components={}), "names no component"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_bad_recipes_are_refused_with_the_field(data: bytes, fragment: str) -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, "bad.spr")
    assert info.value.source == "bad.spr"
    assert fragment in str(info.value)
