"""Frozen record classes without importing :mod:`dataclasses`.

``dataclasses`` pulls in ``inspect``, ``ast`` and ``dis``: about 20 ms on these
machines, on every ``safe-run`` start, to define a handful of plain records.  This
decorator does the small part we use — an ``__init__`` from the annotated fields,
defaults, ``__eq__``/``__hash__``/``__repr__``, immutability — with no imports.
``typing.dataclass_transform`` tells type checkers to treat it like a dataclass.
"""

from __future__ import annotations

TYPE_CHECKING = False  # importing typing costs more than this whole module
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_kwargs: object) -> object:
        return lambda function: function


_FIELDS = "__record_fields__"


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], object]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A default built fresh for each instance (like ``dataclasses.field``)."""
    return _Factory(default_factory)  # type: ignore[return-value]


class FrozenInstanceError(AttributeError):
    """Raised on assignment to a field of a frozen record."""


def _install(cls: type, frozen: bool) -> type:
    # With ``from __future__ import annotations`` these are plain strings; never
    # evaluated (inspect.get_annotations would import inspect, the cost we avoid).
    annotations = cls.__dict__.get("__annotations__")  # noqa: RUF063
    if annotations is None:  # Python 3.14+ without the __future__ import: lazy annotations
        annotations = cls.__annotations__
    names: tuple[str, ...] = tuple(annotations)
    defaults = {name: cls.__dict__[name] for name in names if name in cls.__dict__}
    for name, value in defaults.items():
        if isinstance(value, _Factory):
            delattr(cls, name)
    qualname = cls.__name__

    def __init__(self: Any, *args: object, **kwargs: object) -> None:
        if len(args) > len(names):
            raise TypeError(f"{qualname}() takes at most {len(names)} positional arguments")
        values = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names or key in values:
                raise TypeError(f"{qualname}() got an unexpected or repeated argument {key!r}")
            values[key] = value
        for name in names:
            if name not in values:
                if name not in defaults:
                    raise TypeError(f"{qualname}() missing argument {name!r}")
                default = defaults[name]
                values[name] = default.make() if isinstance(default, _Factory) else default
            object.__setattr__(self, name, values[name])

    def _astuple(self: Any) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in names)

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return bool(_astuple(self) == _astuple(other))

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{qualname}({inner})"

    cls.__init__ = __init__  # type: ignore[misc]
    cls.__eq__ = __eq__  # type: ignore[method-assign,assignment]
    cls.__repr__ = __repr__  # type: ignore[method-assign,assignment]
    setattr(cls, _FIELDS, names)
    if frozen:

        def __setattr__(self: Any, name: str, value: object) -> None:
            raise FrozenInstanceError(f"cannot assign to field {name!r} of {qualname}")

        def __hash__(self: Any) -> int:
            return hash(_astuple(self))

        cls.__setattr__ = __setattr__  # type: ignore[method-assign,assignment]
        cls.__delattr__ = __setattr__  # type: ignore[method-assign,assignment]
        cls.__hash__ = __hash__  # type: ignore[method-assign,assignment]
    else:
        cls.__hash__ = None  # type: ignore[assignment]
    return cls


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[T]) -> type[T]:
    """Immutable record: fields are the class's annotated attributes, in order."""
    return _install(cls, frozen=True)


@dataclass_transform(field_specifiers=(field,))
def mutable_record(cls: type[T]) -> type[T]:
    """Like :func:`record`, but fields can be assigned (for parser/report state)."""
    return _install(cls, frozen=False)


def replace(obj: T, **changes: object) -> T:
    """A copy of a record with some fields changed (like ``dataclasses.replace``)."""
    values = {name: getattr(obj, name) for name in getattr(obj, _FIELDS)}
    values.update(changes)
    return type(obj)(**values)


def fields(obj: object) -> tuple[str, ...]:
    """Field names of a record class or instance, in declaration order."""
    return tuple(getattr(obj, _FIELDS))
