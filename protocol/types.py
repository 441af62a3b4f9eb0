"""Immutable values, events and verdicts of the brokerd line protocol (v1).

These types are the whole vocabulary of the protocol: the codec
(:mod:`brokerd.protocol.codec`) turns them into lines and back, and every
other part of brokerd (shim, daemon, clients) builds and inspects them.
Nothing here does I/O.  See ``protocol/PROTOCOL.md`` for the wire syntax.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ---------------------------------------------------------------------------
# Argument values (the syntax of one argument of a call line)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Int:
    """A signed integer, written in decimal: ``12``, ``-1``."""

    value: int


@dataclass(frozen=True, slots=True)
class Ptr:
    """An address or other unsigned quantity best read in hex: ``0x7ffd1000``; 0 is ``NULL``."""

    value: int


@dataclass(frozen=True, slots=True)
class Oct:
    """An integer written in octal with a leading zero, for file modes: ``0644``."""

    value: int


@dataclass(frozen=True, slots=True)
class Sym:
    """Symbolic constants or'ed together: ``O_RDONLY|O_CLOEXEC``, ``AT_FDCWD``.

    ``rest`` holds bits no name covers, written as a trailing ``|0x...`` term
    (or alone as ``0x...`` when there are no names).
    """

    names: tuple[str, ...]
    rest: int = 0


@dataclass(frozen=True, slots=True)
class Str:
    """A byte string, written C-quoted.  ``total`` is the full length when the
    event carries only a prefix (``"abc"...4096``), else None."""

    data: bytes
    total: int | None = None

    @property
    def truncated(self) -> bool:
        return self.total is not None and self.total > len(self.data)


@dataclass(frozen=True, slots=True)
class Addr:
    """An IP address and port inside a sockaddr: ``127.0.0.1:80``, ``[::1]:443``."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Field:
    """A named member of a struct: ``tv_sec=12``."""

    name: str
    value: Value


@dataclass(frozen=True, slots=True)
class Struct:
    """A struct in braces: ``{AF_INET, 127.0.0.1:80}``, ``{tv_sec=1, tv_usec=0}``."""

    fields: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Array:
    """An array in brackets: ``["ls", "-l"]``."""

    items: tuple[Value, ...]


Value = Int | Ptr | Oct | Sym | Str | Addr | Field | Struct | Array


@dataclass(frozen=True, slots=True)
class Call:
    """A system call as the seed writes it: ``write 2, "this is data", 12``."""

    name: str
    args: tuple[Value, ...] = ()


# ---------------------------------------------------------------------------
# Results (after a call ran)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ok:
    """The call succeeded with this return value (``ok 12``, ``ok 0x7f00...``)."""

    value: Int | Ptr


@dataclass(frozen=True, slots=True)
class Fail:
    """The call failed with this errno number (``fail EIO``)."""

    errno: int


Result = Ok | Fail


# ---------------------------------------------------------------------------
# Events: broker -> authorizer
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyscallEvent:
    """A call stopped at entry and waiting for a verdict.

    Wire: ``syscall ID PID TID ABI NAME ARGS [; KEY=VALUE ...]``
    ``notes`` carry extra facts the broker adds (e.g. ``path0="/etc/passwd"``,
    the resolved path of argument 0; ``caller="libc.so.6:open+0x20"``).
    """

    id: int
    pid: int
    tid: int
    abi: str
    call: Call
    notes: tuple[tuple[str, Value], ...] = ()


@dataclass(frozen=True, slots=True)
class SysretEvent:
    """The result of a call an authorizer asked to ``step``; waits for a reply.

    Wire: ``sysret ID PID TID ABI NAME ok VALUE`` or ``... fail ERRNO`` (+ notes)
    """

    id: int
    pid: int
    tid: int
    abi: str
    name: str
    result: Result
    notes: tuple[tuple[str, Value], ...] = ()


@dataclass(frozen=True, slots=True)
class SignalEvent:
    """A signal about to be delivered to a tracee; waits for a verdict.

    Wire: ``signal ID PID TID SIGNAME``
    """

    id: int
    pid: int
    tid: int
    signo: int


@dataclass(frozen=True, slots=True)
class ProcEvent:
    """A process notification; never answered.  Sent only to authorizers that
    subscribed to it in their handshake.

    Wire: ``proc PID TID KIND ARGS`` with KIND one of fork, vfork, clone
    (args: child pid), exec (args: path and facts), exit (args: status),
    killed (args: signal).
    """

    pid: int
    tid: int
    kind: str
    args: tuple[Value, ...] = ()


@dataclass(frozen=True, slots=True)
class Hello:
    """Handshake line, in both directions: ``hello VERSIONS [KEY=VALUE ...]``.

    ``versions`` are the protocol versions offered (or, in an answer, the one
    chosen).  ``attrs`` are ordered key/value pairs; values are plain tokens or
    quoted strings (e.g. ``role=authorizer name=sandbox trace=openat,connect``).
    """

    versions: tuple[int, ...]
    attrs: tuple[tuple[str, str], ...] = ()

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.attrs:
            if k == key:
                return v
        return default


@dataclass(frozen=True, slots=True)
class Error:
    """An error report: ``error CODE TEXT`` (CODE is a fixed token, TEXT free)."""

    code: str
    text: str = ""


@dataclass(frozen=True, slots=True)
class Data:
    """Answer to a ``fetch``: ``data ID ARGN OFFSET "bytes"``."""

    id: int
    argn: int
    offset: int
    data: Str


Event = SyscallEvent | SysretEvent | SignalEvent | ProcEvent | Hello | Error | Data


# ---------------------------------------------------------------------------
# Verdicts: authorizer -> broker
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cont:
    """Proceed (a call) / keep the result (after step) / deliver (a signal)."""


@dataclass(frozen=True, slots=True)
class Step:
    """Proceed, then send me the result as a ``sysret`` event."""


@dataclass(frozen=True, slots=True)
class Kill:
    """Kill the whole traced process (SIGKILL)."""


@dataclass(frozen=True, slots=True)
class SkipFail:
    """Do not run the call; it fails with this errno."""

    errno: int


@dataclass(frozen=True, slots=True)
class SkipOk:
    """Do not run the call; it returns this value."""

    value: int


@dataclass(frozen=True, slots=True)
class Rewrite:
    """Run this call instead (new arguments, possibly another syscall)."""

    call: Call


@dataclass(frozen=True, slots=True)
class Deliver:
    """Deliver a signal; ``signo`` replaces the pending one when given."""

    signo: int | None = None


@dataclass(frozen=True, slots=True)
class Suppress:
    """Do not deliver the signal."""


@dataclass(frozen=True, slots=True)
class SetMem:
    """Write bytes into tracee memory at argument ``argn`` (1-based, as in the
    seed's ``set 1 "data"``) plus ``offset``: ``set 1 "data"`` / ``set 1+8 "data"``."""

    argn: int
    data: bytes
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Fetch:
    """Ask for more of a buffer argument: ``fetch ID ARGN OFFSET LENGTH``."""

    id: int
    argn: int
    offset: int
    length: int


Verdict = Cont | Step | Kill | SkipFail | SkipOk | Rewrite | Deliver | Suppress | Ok | Fail


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply line: an optional request id, a verdict, and memory edits.

    Wire: ``[ID ]VERDICT[ ; set ARGN[+OFF] "data"]...[ ; cache]``
    """

    verdict: Verdict
    id: int | None = None
    sets: tuple[SetMem, ...] = field(default=())
    #: ``; cache``: this verdict holds for the same call again (same syscall,
    #: same decoded arguments and resolved paths) for the rest of the session
    cache: bool = False
