"""Value types: slotted classes whose methods are written the first time they are used.

attrs and dataclasses write each class's ``__init__``, ``__eq__``, ``__hash__`` and ``__repr__``
with ``exec`` when the class is defined: about half a millisecond a class, plus 9 ms to import
attrs, and a command reading a home defines some thirty classes before it reads a file (a fifth
of its start, bench/startup_bench.py). Here defining a class costs what a plain class costs; its
methods are written one by one when first used (``__init__`` when the first instance is made).

The subset of attrs steppatch used: ``frozen`` (and ``mutable``) classes of annotated fields,
``field(default=, factory=, converter=, validator=, eq=, repr=, init=)``, ``derive=`` for a field
computed from the others, a ``__post_init__`` hook, ``evolve``, ``fields``, ``asdict``, ``order``.
Type checkers read the classes through :func:`typing.dataclass_transform`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["Field", "FrozenInstanceError", "asdict", "evolve", "field", "fields", "frozen",
           "mutable"]

_T = TypeVar("_T")


class _Nothing:
    """No value given (``None`` is a value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: Any = _Nothing()


class FrozenInstanceError(AttributeError):
    """A field of a frozen value was assigned or deleted."""


class Field:
    """One field of a record: its name and how ``__init__`` fills it."""

    __slots__ = ("converter", "default", "derive", "eq", "factory", "init", "name", "repr",
                 "validator")

    def __init__(self) -> None:
        self.name = ""
        self.default: Any = NOTHING
        self.factory: Callable[[], Any] | None = None
        self.converter: Callable[[Any], Any] | None = None
        self.validator: Callable[[Any, Field, Any], None] | None = None
        self.derive: Callable[[Any], Any] | None = None
        self.init = self.eq = self.repr = True

    @property
    def alias(self) -> str:
        """The field's ``__init__`` parameter."""
        return self.name

    @property
    def mandatory(self) -> bool:
        return self.init and self.default is NOTHING and self.factory is None

    def __repr__(self) -> str:
        return f"Field({self.name!r})"


def field(
    *,
    default: Any = NOTHING,
    factory: Callable[[], Any] | None = None,
    converter: Callable[[Any], Any] | None = None,
    validator: Callable[[Any, Field, Any], None] | None = None,
    derive: Callable[[Any], Any] | None = None,
    init: bool = True,
    eq: bool = True,
    repr: bool = True,
) -> Any:
    """A field with a default, a factory, a converter or a validator, or left out of ``eq``,
    ``repr`` or ``__init__``; ``derive(self)`` computes an ``init=False`` field from the others.

    Raises TypeError for a contradictory field (a default and a factory, ``derive`` in init).
    """
    if default is not NOTHING and factory is not None:
        raise TypeError("a field takes a default or a factory, not both")
    if derive is not None and (init or default is not NOTHING or factory is not None):
        raise TypeError("a derived field is init=False and has no default")
    spec = Field()
    spec.default, spec.factory, spec.converter = default, factory, converter
    spec.validator, spec.derive = validator, derive
    spec.init, spec.eq, spec.repr = init, eq, repr
    return spec


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar", "t.ClassVar"))


def _collect(cls: type) -> tuple[Field, ...]:
    found = []
    seen_default = ""
    # The class's own annotations, unevaluated (inspect.get_annotations would import inspect).
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, NOTHING)
        if isinstance(value, Field):
            spec = value
        else:
            spec = Field()
            spec.default = value
        spec.name = name
        if spec.mandatory and seen_default:
            raise TypeError(
                f"{cls.__qualname__}: mandatory field {name!r} after {seen_default!r}, "
                "which has a default"
            )
        if spec.init and not spec.mandatory:
            seen_default = name
        found.append(spec)
    return tuple(found)


def _rebind_cells(old: type, new: type) -> None:
    """Point the ``__class__`` cells of the methods (``super()``) at the slotted class."""
    for item in new.__dict__.values():
        if isinstance(item, (classmethod, staticmethod)):
            item = item.__func__
        elif isinstance(item, property):
            item = item.fget
        for cell in getattr(item, "__closure__", None) or ():
            if cell.cell_contents is old:
                cell.cell_contents = new


_OWN = ("__init__", "__repr__", "__eq__", "__hash__", "__lt__", "__le__", "__gt__", "__ge__")


def _record(cls: type, *, is_frozen: bool, order: bool) -> type:
    if cls.__bases__ != (object,):
        raise TypeError(f"{cls.__qualname__}: a record derives from object only")
    specs = _collect(cls)
    names = tuple(s.name for s in specs)
    namespace = {k: v for k, v in cls.__dict__.items()
                 if k not in names and k not in ("__dict__", "__weakref__")}
    namespace["__slots__"] = (*names, "__weakref__")
    namespace["__qualname__"] = cls.__qualname__
    namespace["__match_args__"] = tuple(s.name for s in specs if s.init)
    namespace["__record_fields__"] = specs
    for name in ("__init__", "__repr__", "__eq__"):
        namespace.setdefault(name, _LAZY[name])
    if "__eq__" not in cls.__dict__ and "__hash__" not in cls.__dict__:
        namespace["__hash__"] = _LAZY["__hash__"] if is_frozen else None
    if order:
        for name in ("__lt__", "__le__", "__gt__", "__ge__"):
            namespace.setdefault(name, _LAZY[name])
    if is_frozen:
        namespace["__setattr__"] = _frozen_setattr
        namespace["__delattr__"] = _frozen_delattr
    namespace["__getstate__"] = _getstate
    namespace["__setstate__"] = _setstate
    new = type(cls)(cls.__name__, cls.__bases__, namespace)
    _rebind_cells(cls, new)
    return new


@overload
def frozen(cls: type[_T], /) -> type[_T]: ...
@overload
def frozen(*, order: bool = False) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def frozen(cls: type[_T] | None = None, /, *, order: bool = False) -> Any:
    """Make ``cls`` a frozen, slotted, hashable value type (with ``<`` when ``order``).

    Raises TypeError for a class with bases or a mandatory field after a defaulted one.
    """
    if cls is None:
        return lambda c: _record(c, is_frozen=True, order=order)
    return _record(cls, is_frozen=True, order=order)


@dataclass_transform(field_specifiers=(field, Field))
def mutable(cls: type[_T], /) -> type[_T]:
    """Make ``cls`` a slotted record whose fields may be assigned (unhashable).

    Raises TypeError as :func:`frozen`.
    """
    return _record(cls, is_frozen=False, order=False)


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"{type(self).__qualname__}.{name} cannot be assigned")


def _frozen_delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"{type(self).__qualname__}.{name} cannot be deleted")


def _getstate(self: object) -> dict[str, Any]:
    return {s.name: getattr(self, s.name) for s in fields(type(self)) if hasattr(self, s.name)}


def _setstate(self: object, state: Mapping[str, Any]) -> None:
    for name, value in state.items():
        object.__setattr__(self, name, value)


def _owner(instance: object) -> type:
    for klass in type(instance).__mro__:
        if "__record_fields__" in klass.__dict__:
            return klass
    raise TypeError(f"{type(instance).__qualname__} is not a record")  # pragma: no cover


def _make_lazy(name: str) -> Callable[..., Any]:
    def first_use(self: object, *args: Any, **kwargs: Any) -> Any:
        klass = _owner(self)
        _write_method(klass, name)
        return getattr(klass, name)(self, *args, **kwargs)

    first_use.__name__ = name
    return first_use


_LAZY = {name: _make_lazy(name) for name in _OWN}
_salts = itertools.count(1)
_COMPARE = {"__lt__": "<", "__le__": "<=", "__gt__": ">", "__ge__": ">="}


def _write_method(cls: type, name: str) -> None:
    """Write ``cls``'s method ``name`` and put it in place of its stand-in (each is written
    when first used: a command that only makes a value never pays for its ``__repr__``)."""
    specs: tuple[Field, ...] = cls.__dict__["__record_fields__"]
    env: dict[str, Any] = {"NOTHING": NOTHING}
    compared = [s.name for s in specs if s.eq]
    mine = "(" + "".join(f"self.{n}, " for n in compared) + ")"
    theirs = "(" + "".join(f"other.{n}, " for n in compared) + ")"
    if name == "__init__":
        lines = _init_lines(cls, specs, env)
    elif name == "__repr__":
        shown = ", ".join(f"{s.name}={{self.{s.name}!r}}" for s in specs if s.repr)
        env["_name"] = cls.__qualname__.rsplit(">.", 1)[-1]
        lines = ["def __repr__(self):", f"    return f'{{_name}}({shown})'"]
    elif name == "__hash__":
        env["_salt"] = next(_salts)
        lines = ["def __hash__(self):", f"    return hash((_salt, *{mine}))"]
    else:
        symbol = "==" if name == "__eq__" else _COMPARE[name]
        lines = [
            f"def {name}(self, other):",
            "    if other.__class__ is not self.__class__: return NotImplemented",
            f"    return {mine} {symbol} {theirs}",
        ]
    exec("\n".join(lines), env)  # the source is made here, from field names only
    if cls.__dict__.get(name) is _LAZY[name]:
        env[name].__qualname__ = f"{cls.__qualname__}.{name}"
        type.__setattr__(cls, name, env[name])


def _init_lines(cls: type, specs: tuple[Field, ...], env: dict[str, Any]) -> list[str]:
    params, body, checks = [], [], []
    for i, spec in enumerate(specs):
        env[f"_f{i}"] = spec
        if spec.init:
            if spec.default is not NOTHING:
                env[f"_d{i}"] = spec.default
                params.append(f"{spec.alias}=_d{i}")
            elif spec.factory is not None:
                env[f"_m{i}"] = spec.factory
                params.append(f"{spec.alias}=NOTHING")
                body.append(f"    if {spec.alias} is NOTHING: {spec.alias} = _m{i}()")
            else:
                params.append(spec.alias)
            value = spec.alias
        elif spec.derive is not None:
            env[f"_v{i}"] = spec.derive
            value = f"_v{i}(self)"
        elif spec.factory is not None:
            env[f"_m{i}"] = spec.factory
            value = f"_m{i}()"
        elif spec.default is not NOTHING:
            env[f"_d{i}"] = spec.default
            value = f"_d{i}"
        else:
            continue  # left unset until the class sets it
        if spec.converter is not None:
            env[f"_c{i}"] = spec.converter
            value = f"_c{i}({value})"
        # through the slot's descriptor: a third faster than object.__setattr__ (frozen classes
        # refuse the plain assignment)
        env[f"_s{i}"] = cls.__dict__[spec.name].__set__
        body.append(f"    _s{i}(self, {value})")
        if spec.validator is not None:
            env[f"_k{i}"] = spec.validator
            checks.append(f"    _k{i}(self, _f{i}, self.{spec.name})")
    post = ["    self.__post_init__()"] if hasattr(cls, "__post_init__") else []
    return [f"def __init__(self, {', '.join(params)}):", *body, *checks, *post, "    pass"]


def fields(cls: type) -> tuple[Field, ...]:
    """The fields of a record class. Raises TypeError for another class."""
    specs = cls.__dict__.get("__record_fields__") if isinstance(cls, type) else None
    if specs is None:
        raise TypeError(f"{cls!r} is not a record class")
    return specs  # type: ignore[no-any-return]


def evolve(instance: _T, **changes: Any) -> _T:
    """A copy of ``instance`` with ``changes``, made (converted, validated) by ``__init__``.

    Raises TypeError for a name that is not an init field, and what ``__init__`` raises.
    """
    cls = type(instance)
    for spec in fields(cls):
        if spec.init and spec.alias not in changes:
            changes[spec.alias] = getattr(instance, spec.name)
    return cls(**changes)


def asdict(instance: object) -> dict[str, Any]:
    """The fields as a dict, records inside turned into dicts, tuples and lists into lists.

    Raises TypeError when ``instance`` is not a record.
    """
    return {s.name: _plain(getattr(instance, s.name)) for s in fields(type(instance))}


def _plain(value: Any) -> Any:
    if "__record_fields__" in type(value).__dict__:
        return asdict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
