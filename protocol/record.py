"""Immutable value classes without ``@dataclass``'s cost at import.

``@dataclass(frozen=True, slots=True)`` compiles half a dozen methods for
every class when its module is imported (about 0.4 ms a class here, plus
``import dataclasses``, which brings ``inspect``): with some sixty such
classes between the protocol and the tracer, a good part of what every
``brokerctl run`` paid before the program started (issue 13).  A
:class:`Record` subclass lists its fields in ``__slots__`` and writes its
``__init__`` out (``_set(self, "name", name)`` per field); everything else a
frozen dataclass has comes from here, shared: equality and hashing by the
tuple of field values (only with the very same class), ``repr``,
``__match_args__``, ``FrozenInstanceError`` on assignment, pickling and
copying, and ``__dataclass_fields__`` made on first use, so that
``dataclasses.replace``, ``fields``, ``asdict`` and ``is_dataclass`` work
as before.  Fields named in ``_hidden`` (caches) are left out of equality,
hashing and ``repr``.  :func:`replace` is ``dataclasses.replace`` for
them, without the import.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from dataclasses import Field as _DataclassField

_set = object.__setattr__
_R = TypeVar("_R", bound="Record")


class _DataclassFields:
    """``__dataclass_fields__`` of a :class:`Record` class, made on first use
    (``dataclasses.fields``/``replace``/``asdict`` look for it): the fields a
    frozen dataclass of the same definition has.  Importing ``dataclasses``
    (and ``inspect`` with it) is left to whoever needs them."""

    def __get__(self, obj: object, cls: type[Record]) -> dict[str, _DataclassField[Any]]:
        import dataclasses

        names = cls.__slots__
        defaults = cls.__init__.__defaults__ or ()
        default = dict(zip(names[len(names) - len(defaults):], defaults, strict=True))
        specs = [(n, cls.__annotations__[n], dataclasses.field(default=default[n])) if n in default
                 else (n, cls.__annotations__[n]) for n in names]
        twin = dataclasses.make_dataclass(cls.__name__, specs, frozen=True)
        fields = {f.name: f for f in dataclasses.fields(twin)}
        type.__setattr__(cls, "__dataclass_fields__", fields)  # found first from now on
        return fields


class Record:
    """An immutable value whose fields are its ``__slots__``, in
    ``__init__``'s order, compared and hashed as a tuple (only with values of
    the very same class).  Not meant to be subclassed further."""

    __slots__: ClassVar[tuple[str, ...]] = ()
    __match_args__: ClassVar[tuple[str, ...]] = ()
    __dataclass_fields__: ClassVar[dict[str, _DataclassField[Any]]] = _DataclassFields()  # type: ignore[assignment]
    #: fields left out of equality, hashing and repr (a dataclass's ``field(compare=False, repr=False)``)
    _hidden: ClassVar[tuple[str, ...]] = ()
    _shown: ClassVar[tuple[str, ...]] = ()
    _values: ClassVar[Any] = staticmethod(lambda obj: ())
    _state: ClassVar[Any] = staticmethod(lambda obj: ())

    def __init_subclass__(cls) -> None:
        names = cls.__slots__
        type.__setattr__(cls, "__match_args__", names)
        cls._shown = tuple(n for n in names if n not in cls._hidden)
        cls._values = staticmethod(_getter(cls._shown))
        cls._state = staticmethod(_getter(names))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values(self) == self._values(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values(self))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(self._shown, self._values(self), strict=True))
        return f"{self.__class__.__qualname__}({shown})"

    def __setattr__(self, name: str, value: object) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __getstate__(self) -> tuple[Any, ...]:  # pickle and copy: slots and a frozen __setattr__
        return self._state(self)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            _set(self, name, value)


def _getter(names: tuple[str, ...]) -> Any:
    """obj -> the tuple of its ``names`` (a tuple even for one field, as a
    dataclass compares and hashes)."""
    if not names:
        return lambda obj: ()
    get = attrgetter(*names)
    return get if len(names) > 1 else lambda obj: (get(obj),)


def slot_setters(cls: type[Record]) -> tuple[Any, ...]:
    """The ``__set__`` of each of ``cls``'s slot descriptors, in ``__slots__``
    order.  An ``__init__`` that sets its fields through them runs about a
    third fewer instructions than with ``_set`` (``object.__setattr__``: a
    generic attribute lookup per field): for the few types made on every
    judged call (issue #13).  They bypass the frozen ``__setattr__`` exactly
    as ``_set`` does, so only ``__init__`` may use them."""
    return tuple(cls.__dict__[name].__set__ for name in cls.__slots__)


def replace(obj: _R, **changes: Any) -> _R:
    """A copy of ``obj`` with ``changes``: ``dataclasses.replace`` for a
    :class:`Record` (which it also accepts), without importing
    ``dataclasses``."""
    values = dict(zip(obj.__slots__, obj._state(obj), strict=True))
    values.update(changes)
    return obj.__class__(**values)
