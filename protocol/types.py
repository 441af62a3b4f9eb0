"""Immutable values, events and verdicts of the brokerd line protocol (v1).

These types are the whole vocabulary of the protocol: the codec
(:mod:`brokerd.protocol.codec`) turns them into lines and back, and every
other part of brokerd (shim, daemon, clients) builds and inspects them.
Nothing here does I/O.  See ``protocol/PROTOCOL.md`` for the wire syntax.

They behave as frozen, slotted dataclasses but are
:class:`~brokerd.protocol.record.Record` classes with their ``__init__``
written out: ``@dataclass`` compiles half a dozen methods per class when the
module is imported (issue 13: brokerctl's start-up).
"""

from __future__ import annotations

from .record import Record, _set, slot_setters

# ---------------------------------------------------------------------------
# Argument values (the syntax of one argument of a call line)
# ---------------------------------------------------------------------------


class Int(Record):
    """A signed integer, written in decimal: ``12``, ``-1``."""

    __slots__ = ("value",)
    value: int

    def __init__(self, value: int) -> None:
        _int_value(self, value)


(_int_value,) = slot_setters(Int)  # (made on every judged call)


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
        _str_data(self, data)
        _str_total(self, total)

    @property
    def truncated(self) -> bool:
        return self.total is not None and self.total > len(self.data)


_str_data, _str_total = slot_setters(Str)  # (made on every judged call)


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
        _call_name(self, name)
        _call_args(self, args)


_call_name, _call_args = slot_setters(Call)  # (made on every judged call)


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
        _syscallevent_id(self, id)
        _syscallevent_pid(self, pid)
        _syscallevent_tid(self, tid)
        _syscallevent_abi(self, abi)
        _syscallevent_call(self, call)
        _syscallevent_notes(self, notes)


_syscallevent_id, _syscallevent_pid, _syscallevent_tid, _syscallevent_abi, _syscallevent_call, _syscallevent_notes = slot_setters(SyscallEvent)  # (made on every judged call)


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
        _reply_verdict(self, verdict)
        _reply_id(self, id)
        _reply_sets(self, sets)
        _reply_cache(self, cache)


_reply_verdict, _reply_id, _reply_sets, _reply_cache = slot_setters(Reply)  # (made on every judged call)
