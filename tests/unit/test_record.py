"""Value types (steppatch._record): what attrs gave the code, with methods written on first use."""

from __future__ import annotations

import copy
import inspect
import pickle
import subprocess
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

import pytest

from steppatch import _record as record
from steppatch import evolve


def _positive(_instance: object, attribute: record.Field, value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, not {value}")


def _frozen_map(value: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(value))


@record.frozen
class Part:
    name: str
    size: int = record.field(default=1, validator=_positive)
    tags: Mapping[str, int] = record.field(factory=dict, converter=_frozen_map, eq=False)
    secret: bytes = record.field(default=b"", repr=False)
    label: str = record.field(init=False, eq=False, derive=lambda p: f"{p.name}:{p.size}")
    KIND: ClassVar[str] = "part"

    def describe(self) -> str:
        return f"{self.KIND} {self.label}"


@record.frozen(order=True)
class Point:
    x: int
    y: int = 0


@record.mutable
class Counter:
    count: int = 0
    seen: list[str] = record.field(factory=list)


@record.frozen
class Checked:
    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("low above high")


@record.frozen
class Shown:
    value: int

    def __repr__(self) -> str:
        return f"<{self.value}>"


def test_init_defaults_factories_converters_and_derived_fields() -> None:
    p = Part("a", 3, {"k": 1})
    assert (p.name, p.size, dict(p.tags), p.secret, p.label) == ("a", 3, {"k": 1}, b"", "a:3")
    assert isinstance(p.tags, MappingProxyType)
    assert Part("b").tags == {} and Part("b").tags is not Part("c").tags
    assert p.describe() == "part a:3"
    assert Part.KIND == "part" and "KIND" not in [f.name for f in record.fields(Part)]


def test_validators_and_post_init_refuse_and_make_nothing() -> None:
    with pytest.raises(ValueError, match="size must be positive, not 0"):
        Part("a", 0)
    with pytest.raises(ValueError, match="low above high"):
        Checked(2, 1)
    with pytest.raises(TypeError):
        Part()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Part("a", label="x")  # type: ignore[call-arg]


def test_eq_hash_and_repr_follow_the_fields_flags() -> None:
    assert Part("a", 2, {"x": 1}) == Part("a", 2, {"y": 2})  # tags: eq=False
    assert Part("a", 2) != Part("a", 3)
    assert Part("a") != ("a", 1)
    assert hash(Point(1, 2)) == hash(Point(1, 2)) and len({Point(1, 2), Point(1, 2)}) == 1
    assert repr(Part("a", 2, {"x": 1}, b"key")) == (
        "Part(name='a', size=2, tags=mappingproxy({'x': 1}), label='a:2')"
    )
    assert repr(Shown(3)) == "<3>"  # a class's own method is kept


def test_frozen_refuses_assignment_and_deletion() -> None:
    p = Part("a")
    with pytest.raises(record.FrozenInstanceError):
        p.name = "b"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.size  # type: ignore[misc]
    with pytest.raises(AttributeError):
        p.other = 1  # type: ignore[attr-defined]
    assert p.name == "a" and p.size == 1


def test_order_compares_field_tuples() -> None:
    assert sorted([Point(2), Point(1, 5), Point(1, 2)]) == [Point(1, 2), Point(1, 5), Point(2)]
    assert Point(1) < Point(1, 1) <= Point(1, 1) and Point(3) > Point(2, 9) >= Point(2, 9)
    with pytest.raises(TypeError):
        assert Point(1) < (1, 0)  # type: ignore[operator]


def test_mutable_records_assign_and_are_not_hashable() -> None:
    c = Counter()
    c.count += 1
    c.seen.append("x")
    assert c == Counter(1, ["x"]) and Counter().seen is not Counter().seen
    with pytest.raises(TypeError):
        hash(c)


def test_evolve_copies_through_init() -> None:
    p = Part("a", 2, {"k": 1})
    q = evolve(p, size=5)
    assert (q.name, q.size, dict(q.tags), q.label) == ("a", 5, {"k": 1}, "a:5")
    assert p.size == 2
    with pytest.raises(ValueError, match="size must be positive"):
        evolve(p, size=-1)
    with pytest.raises(TypeError):
        evolve(p, label="x")
    with pytest.raises(TypeError, match="not a record"):
        evolve(object())


def test_copy_pickle_and_asdict() -> None:
    p = Part("a", 2, {"k": 1}, b"s")
    clone = copy.copy(p)
    assert clone == p and clone.label == "a:2" and clone.secret == b"s"
    for point in (copy.deepcopy(Point(1, 2)), pickle.loads(pickle.dumps(Point(1, 2)))):
        assert point == Point(1, 2)
        with pytest.raises(record.FrozenInstanceError):
            point.x = 3  # type: ignore[misc]
    c = Counter(2, ["x"])
    assert pickle.loads(pickle.dumps(c)) == c
    assert record.asdict(Counter(1, ["x"])) == {"count": 1, "seen": ["x"]}
    assert record.asdict(Checked(1, 2)) == {"low": 1, "high": 2}


def test_the_signature_is_the_fields_once_written() -> None:
    Point(0)
    assert str(inspect.signature(Point)) == "(x, y=0)"
    assert Point.__match_args__ == ("x", "y")
    assert Point.__slots__ == ("x", "y", "__weakref__")


def test_bad_classes_are_refused_when_defined() -> None:
    with pytest.raises(TypeError, match="mandatory field 'b' after 'a'"):

        @record.frozen
        class _Bad:
            a: int = 1
            b: int

    with pytest.raises(TypeError, match="derives from object only"):

        @record.frozen
        class _Derived(Point):
            z: int = 0

    with pytest.raises(TypeError, match="default or a factory"):
        record.field(default=1, factory=int)
    with pytest.raises(TypeError, match="derived field"):
        record.field(derive=str)


def test_super_inside_a_record_method_sees_the_slotted_class() -> None:
    @record.frozen
    class Named:
        name: str

        def __str__(self) -> str:
            return "named " + super().__str__()

    assert str(Named("x")) == "named Named(name='x')"


def test_the_command_line_path_loads_no_attrs() -> None:
    """Start-up: the modules a command reading a home loads define their values without attrs."""
    code = (
        "import sys, steppatch.updater, steppatch.formats, steppatch.config, steppatch.model;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('attr', 'attrs', "
        "'dataclasses')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
