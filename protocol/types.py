"""Immutable values, events and verdicts of the brokerd line protocol (v1).

These types are the whole vocabulary of the protocol: the codec
(:mod:`brokerd.protocol.codec`) turns them into lines and back, and every
other part of brokerd (shim, daemon, clients) builds and inspects them.
Nothing here does I/O.  See ``protocol/PROTOCOL.md`` for the wire syntax.

They behave as frozen, slotted dataclasses (keyword or positional
arguments, equality and hashing by value, ``repr``, ``match`` patterns,
``FrozenInstanceError`` on assignment, ``dataclasses.replace``/``fields``/
``asdict``) but are plain classes with their ``__init__`` written out:
``@dataclass`` compiles half a dozen methods per class when the module is
imported, which was a tenth of ``brokerd run``'s start-up (issue 13).
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from dataclasses import Field as _DataclassField

_set = object.__setattr__


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
    """The base of every protocol type: an immutable value whose fields are
    its ``__slots__``, in ``__init__``'s order, compared and hashed as a
    tuple (only with values of the very same class)."""

    __slots__: ClassVar[tuple[str, ...]] = ()
    __match_args__: ClassVar[tuple[str, ...]] = ()
    __dataclass_fields__: ClassVar[dict[str, _DataclassField[Any]]] = _DataclassFields()  # type: ignore[assignment]
    _values: ClassVar[Any] = staticmethod(lambda obj: ())

    def __init_subclass__(cls) -> None:
        names = cls.__slots__
        type.__setattr__(cls, "__match_args__", names)
        if names:  # a tuple even for one field: as a dataclass compares and hashes
            get = attrgetter(*names)
            cls._values = staticmethod(get if len(names) > 1 else lambda obj: (get(obj),))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values(self) == self._values(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values(self))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(self.__slots__, self._values(self), strict=True))
        return f"{self.__class__.__qualname__}({shown})"

    def __setattr__(self, name: str, value: object) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __getstate__(self) -> tuple[Any, ...]:  # pickle and copy: slots and a frozen __setattr__
        return self._values(self)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            _set(self, name, value)


# ---------------------------------------------------------------------------
# Argument values (the syntax of one argument of a call line)
# ---------------------------------------------------------------------------


class Int(Record):
    """A signed integer, written in decimal: ``12``, ``-1``."""

    __slots__ = ("value",)
    value: int

    def __init__(self, value: int) -> None:
        _set(self, "value", value)


class Ptr(Record):
    """An address or other unsigned quantity best read in hex: ``0x7ffd1000``; 0 is ``NULL``."""

    __slots__ = ("value",)
    value: int

    def __init__(self, value: int) -> None:
        _set(self, "value", value)


class Oct(Record):
    """An integer written in octal with a leading zero, for file modes: ``0644``."""

    __slots__ = ("value",)
    value: int

    def __init__(self, value: int) -> None:
        _set(self, "value", value)


class Sym(Record):
    """Symbolic constants or'ed together: ``O_RDONLY|O_CLOEXEC``, ``AT_FDCWD``.

    ``rest`` holds bits no name covers, written as a trailing ``|0x...`` term
    (or alone as ``0x...`` when there are no names).
    """

    __slots__ = ("names", "rest")
    names: tuple[str, ...]
    rest: int

    def __init__(self, names: tuple[str, ...], rest: int = 0) -> None:
        _set(self, "names", names)
        _set(self, "rest", rest)


class Str(Record):
    """A byte string, written C-quoted.  ``total`` is the full length when the
    event carries only a prefix (``"abc"...4096``), else None."""

    __slots__ = ("data", "total")
    data: bytes
    total: int | None

    def __init__(self, data: bytes, total: int | None = None) -> None:
        _set(self, "data", data)
        _set(self, "total", total)

    @property
    def truncated(self) -> bool:
        return self.total is not None and self.total > len(self.data)


class Addr(Record):
    """An IP address and port inside a sockaddr: ``127.0.0.1:80``, ``[::1]:443``."""

    __slots__ = ("host", "port")
    host: str
    port: int

    def __init__(self, host: str, port: int) -> None:
        _set(self, "host", host)
        _set(self, "port", port)


class Field(Record):
    """A named member of a struct: ``tv_sec=12``."""

    __slots__ = ("name", "value")
    name: str
    value: Value

    def __init__(self, name: str, value: Value) -> None:
        _set(self, "name", name)
        _set(self, "value", value)


class Struct(Record):
    """A struct in braces: ``{AF_INET, 127.0.0.1:80}``, ``{tv_sec=1, tv_usec=0}``."""

    __slots__ = ("fields",)
    fields: tuple[Value, ...]

    def __init__(self, fields: tuple[Value, ...]) -> None:
        _set(self, "fields", fields)


class Array(Record):
    """An array in brackets: ``["ls", "-l"]``."""

    __slots__ = ("items",)
    items: tuple[Value, ...]

    def __init__(self, items: tuple[Value, ...]) -> None:
        _set(self, "items", items)


Value = Int | Ptr | Oct | Sym | Str | Addr | Field | Struct | Array


class Call(Record):
    """A system call as the seed writes it: ``write 2, "this is data", 12``."""

    __slots__ = ("name", "args")
    name: str
    args: tuple[Value, ...]

    def __init__(self, name: str, args: tuple[Value, ...] = ()) -> None:
        _set(self, "name", name)
        _set(self, "args", args)


# ---------------------------------------------------------------------------
# Results (after a call ran)
# ---------------------------------------------------------------------------


class Ok(Record):
    """The call succeeded with this return value (``ok 12``, ``ok 0x7f00...``)."""

    __slots__ = ("value",)
    value: Int | Ptr

    def __init__(self, value: Int | Ptr) -> None:
        _set(self, "value", value)


class Fail(Record):
    """The call failed with this errno number (``fail EIO``)."""

    __slots__ = ("errno",)
    errno: int

    def __init__(self, errno: int) -> None:
        _set(self, "errno", errno)


Result = Ok | Fail


# ---------------------------------------------------------------------------
# Events: broker -> authorizer
# ---------------------------------------------------------------------------


class SyscallEvent(Record):
    """A call stopped at entry and waiting for a verdict.

    Wire: ``syscall ID PID TID ABI NAME ARGS [; KEY=VALUE ...]``
    ``notes`` carry extra facts the broker adds (e.g. ``path0="/etc/passwd"``,
    the resolved path of argument 0; ``caller="libc.so.6:open+0x20"``).
    """

    __slots__ = ("id", "pid", "tid", "abi", "call", "notes")
    id: int
    pid: int
    tid: int
    abi: str
    call: Call
    notes: tuple[tuple[str, Value], ...]

    def __init__(
        self,
        id: int,
        pid: int,
        tid: int,
        abi: str,
        call: Call,
        notes: tuple[tuple[str, Value], ...] = (),
    ) -> None:
        _set(self, "id", id)
        _set(self, "pid", pid)
        _set(self, "tid", tid)
        _set(self, "abi", abi)
        _set(self, "call", call)
        _set(self, "notes", notes)


class SysretEvent(Record):
    """The result of a call an authorizer asked to ``step``; waits for a reply.

    Wire: ``sysret ID PID TID ABI NAME ok VALUE`` or ``... fail ERRNO`` (+ notes)
    """

    __slots__ = ("id", "pid", "tid", "abi", "name", "result", "notes")
    id: int
    pid: int
    tid: int
    abi: str
    name: str
    result: Result
    notes: tuple[tuple[str, Value], ...]

    def __init__(
        self,
        id: int,
        pid: int,
        tid: int,
        abi: str,
        name: str,
        result: Result,
        notes: tuple[tuple[str, Value], ...] = (),
    ) -> None:
        _set(self, "id", id)
        _set(self, "pid", pid)
        _set(self, "tid", tid)
        _set(self, "abi", abi)
        _set(self, "name", name)
        _set(self, "result", result)
        _set(self, "notes", notes)


class SignalEvent(Record):
    """A signal about to be delivered to a tracee; waits for a verdict.

    Wire: ``signal ID PID TID SIGNAME``
    """

    __slots__ = ("id", "pid", "tid", "signo")
    id: int
    pid: int
    tid: int
    signo: int

    def __init__(self, id: int, pid: int, tid: int, signo: int) -> None:
        _set(self, "id", id)
        _set(self, "pid", pid)
        _set(self, "tid", tid)
        _set(self, "signo", signo)


class ProcEvent(Record):
    """A process notification; never answered.  Sent only to authorizers that
    subscribed to it in their handshake.

    Wire: ``proc PID TID KIND ARGS`` with KIND one of fork, vfork, clone
    (args: child pid), exec (args: path and facts), exit (args: status),
    killed (args: signal).
    """

    __slots__ = ("pid", "tid", "kind", "args")
    pid: int
    tid: int
    kind: str
    args: tuple[Value, ...]

    def __init__(self, pid: int, tid: int, kind: str, args: tuple[Value, ...] = ()) -> None:
        _set(self, "pid", pid)
        _set(self, "tid", tid)
        _set(self, "kind", kind)
        _set(self, "args", args)


class Hello(Record):
    """Handshake line, in both directions: ``hello VERSIONS [KEY=VALUE ...]``.

    ``versions`` are the protocol versions offered (or, in an answer, the one
    chosen).  ``attrs`` are ordered key/value pairs; values are plain tokens or
    quoted strings (e.g. ``role=authorizer name=sandbox trace=openat,connect``).
    """

    __slots__ = ("versions", "attrs")
    versions: tuple[int, ...]
    attrs: tuple[tuple[str, str], ...]

    def __init__(self, versions: tuple[int, ...], attrs: tuple[tuple[str, str], ...] = ()) -> None:
        _set(self, "versions", versions)
        _set(self, "attrs", attrs)

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.attrs:
            if k == key:
                return v
        return default


class Error(Record):
    """An error report: ``error CODE TEXT`` (CODE is a fixed token, TEXT free)."""

    __slots__ = ("code", "text")
    code: str
    text: str

    def __init__(self, code: str, text: str = "") -> None:
        _set(self, "code", code)
        _set(self, "text", text)


class Data(Record):
    """Answer to a ``fetch``: ``data ID ARGN OFFSET "bytes"``."""

    __slots__ = ("id", "argn", "offset", "data")
    id: int
    argn: int
    offset: int
    data: Str

    def __init__(self, id: int, argn: int, offset: int, data: Str) -> None:
        _set(self, "id", id)
        _set(self, "argn", argn)
        _set(self, "offset", offset)
        _set(self, "data", data)


Event = SyscallEvent | SysretEvent | SignalEvent | ProcEvent | Hello | Error | Data


# ---------------------------------------------------------------------------
# Verdicts: authorizer -> broker
# ---------------------------------------------------------------------------


class Cont(Record):
    """Proceed (a call) / keep the result (after step) / deliver (a signal)."""

    __slots__ = ()


class Step(Record):
    """Proceed, then send me the result as a ``sysret`` event."""

    __slots__ = ()


class Kill(Record):
    """Kill the whole traced process (SIGKILL)."""

    __slots__ = ()


class SkipFail(Record):
    """Do not run the call; it fails with this errno."""

    __slots__ = ("errno",)
    errno: int

    def __init__(self, errno: int) -> None:
        _set(self, "errno", errno)


class SkipOk(Record):
    """Do not run the call; it returns this value."""

    __slots__ = ("value",)
    value: int

    def __init__(self, value: int) -> None:
        _set(self, "value", value)


class Rewrite(Record):
    """Run this call instead (new arguments, possibly another syscall)."""

    __slots__ = ("call",)
    call: Call

    def __init__(self, call: Call) -> None:
        _set(self, "call", call)


class Deliver(Record):
    """Deliver a signal; ``signo`` replaces the pending one when given."""

    __slots__ = ("signo",)
    signo: int | None

    def __init__(self, signo: int | None = None) -> None:
        _set(self, "signo", signo)


class Suppress(Record):
    """Do not deliver the signal."""

    __slots__ = ()


class SetMem(Record):
    """Write bytes into tracee memory at argument ``argn`` (1-based, as in the
    seed's ``set 1 "data"``) plus ``offset``: ``set 1 "data"`` / ``set 1+8 "data"``."""

    __slots__ = ("argn", "data", "offset")
    argn: int
    data: bytes
    offset: int

    def __init__(self, argn: int, data: bytes, offset: int = 0) -> None:
        _set(self, "argn", argn)
        _set(self, "data", data)
        _set(self, "offset", offset)


class Fetch(Record):
    """Ask for more of a buffer argument: ``fetch ID ARGN OFFSET LENGTH``."""

    __slots__ = ("id", "argn", "offset", "length")
    id: int
    argn: int
    offset: int
    length: int

    def __init__(self, id: int, argn: int, offset: int, length: int) -> None:
        _set(self, "id", id)
        _set(self, "argn", argn)
        _set(self, "offset", offset)
        _set(self, "length", length)


Verdict = Cont | Step | Kill | SkipFail | SkipOk | Rewrite | Deliver | Suppress | Ok | Fail


class Reply(Record):
    """One reply line: an optional request id, a verdict, and memory edits.

    Wire: ``[ID ]VERDICT[ ; set ARGN[+OFF] "data"]...[ ; cache]``
    """

    __slots__ = ("verdict", "id", "sets", "cache")
    #: ``; cache``: this verdict holds for the same call again (same syscall,
    #: same decoded arguments and resolved paths) for the rest of the session
    verdict: Verdict
    id: int | None
    sets: tuple[SetMem, ...]
    cache: bool

    def __init__(
        self,
        verdict: Verdict,
        id: int | None = None,
        sets: tuple[SetMem, ...] = (),
        cache: bool = False,
    ) -> None:
        _set(self, "verdict", verdict)
        _set(self, "id", id)
        _set(self, "sets", sets)
        _set(self, "cache", cache)
