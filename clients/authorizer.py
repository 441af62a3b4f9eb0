"""Write a brokerd authorizer in a few lines of Python.

An authorizer is a process the broker speaks to over a line protocol (see
``protocol/PROTOCOL.md``): it receives one line per intercepted system call
and answers with a verdict.  This module hides the protocol behind
decorators::

    from brokerd.clients.authorizer import Authorizer, cont, ok, skip_fail

    az = Authorizer("no-shadow")

    @az.on("openat", "open")
    def openat(call):
        return skip_fail("EACCES") if call.resolve_path(call.path_args()[0]) == "/etc/shadow" else cont()

    @az.on_result("getuid")          # the entry is answered ``step`` for you
    def fake(ret):
        return ok(0)

    az.run()                         # blocking loop on stdin/stdout

Handlers get a :class:`Syscall` (``on``), a :class:`SysResult` (``on_result``),
a :class:`SignalInfo` (``on_signal``) or the :class:`~brokerd.protocol.types.ProcEvent`
(``on_proc``, never answered).  A handler returns a verdict: a helper's result
(:func:`cont`, :func:`skip_fail`...), a protocol verdict object
(``SkipFail(13)``), a reply line as text (``"skip-fail EACCES"``) or ``None``
for the authorizer's default.  Calls with no handler get the default too
(``cont`` unless ``default=`` says otherwise); an exception in a handler is
printed on stderr and answered with ``failsafe`` (``skip-fail EPERM``), so a
bug denies instead of allowing.

The handshake subscribes the authorizer to exactly the syscalls it has
handlers for (``trace=``), so the others run at full speed without a
round-trip; ``@az.on("*")`` (or ``trace="all"``) subscribes to everything.

Two ways to serve: :meth:`Authorizer.run` (blocking, stdin/stdout, what
``brokerctl run -a`` starts) and ``await az.serve(stream)`` (trio, one call
per connection/session, many at once; handlers may then be ``async def``).
The protocol logic itself is sans-IO (:meth:`Authorizer.session` ->
:class:`Session` ``.feed(line)``), so other event loops can drive it too.

Argument indices in :class:`Syscall` helpers are **0-based** (``call.path(1)``
is openat's path); ``set`` clauses use the protocol's **1-based** ARGN.
"""

from __future__ import annotations

import errno as _errno
import os
import re
import stat
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeGuard

from brokerd.protocol import codec
from brokerd.protocol.abi import ABIS, SyscallSpec
from brokerd.protocol.args import FLAGSETS, WHO_TARGETS, constant, open_follows, value_to_int
from brokerd.protocol.consts import errno_number, signal_number
from brokerd.protocol.errors import ProtocolError
from brokerd.protocol.layers import LayerSpec, layer_attrs, parse_layer
from brokerd.protocol.linebuf import LineBuffer, PartialLine, TooLong
from brokerd.protocol.record import Record, _set, replace
from brokerd.protocol.types import (
    Addr,
    Call,
    Cont,
    Deliver,
    Error,
    Event,
    Fail,
    Field,
    Hello,
    Int,
    Kill,
    Oct,
    Ok,
    ProcEvent,
    Ptr,
    Reply,
    Rewrite,
    SetMem,
    SignalEvent,
    SkipFail,
    SkipOk,
    Step,
    Str,
    Struct,
    Suppress,
    Sym,
    SyscallEvent,
    SysretEvent,
    Value,
)

__all__ = [
    "Authorizer", "Session", "Syscall", "SysResult", "SignalInfo", "SockAddr",
    "cont", "step", "kill", "skip_fail", "skip_ok", "ok", "fail", "rewrite", "deliver",
    "suppress", "deny", "with_sets", "resolve_path", "to_reply", "opens_for_writing", "path_under",
    "kernel_layer", "cached",
]

# ---------------------------------------------------------------------------
# Verdict helpers: each returns a protocol Reply (no id; the library adds it)
# ---------------------------------------------------------------------------

SetSpec = SetMem | tuple[int, bytes] | tuple[int, bytes, int]


def _sets(sets: Iterable[SetSpec]) -> tuple[SetMem, ...]:
    out = []
    for s in sets:
        if isinstance(s, SetMem):
            out.append(s)
        else:
            argn, data, *off = s
            out.append(SetMem(int(argn), bytes(data), int(off[0]) if off else 0))
    return tuple(out)


def _errno_of(e: int | str) -> int:
    return e if isinstance(e, int) else errno_number(e)


_CONT = Reply(Cont())  # (immutable: one for every plain ``cont()``)


def cont(*, sets: Iterable[SetSpec] = ()) -> Reply:
    """Let the call run (at entry) / keep the result (after ``step``)."""
    return Reply(Cont(), sets=_sets(sets)) if sets else _CONT


def step(*, sets: Iterable[SetSpec] = ()) -> Reply:
    """Let the call run and send me its result (an ``on_result`` handler gets it)."""
    return Reply(Step(), sets=_sets(sets))


def kill() -> Reply:
    """Kill the whole traced process (SIGKILL)."""
    return Reply(Kill())


def skip_fail(err: int | str = "EPERM", *, sets: Iterable[SetSpec] = ()) -> Reply:
    """Do not run the call; it fails with ``err`` (a name such as ``"EACCES"`` or a number)."""
    return Reply(SkipFail(_errno_of(err)), sets=_sets(sets))


def deny(err: int | str = "EPERM") -> Reply:
    """Alias of :func:`skip_fail`."""
    return skip_fail(err)


def skip_ok(value: int = 0, *, sets: Iterable[SetSpec] = ()) -> Reply:
    """Do not run the call; it returns ``value``."""
    return Reply(SkipOk(int(value)), sets=_sets(sets))


def ok(value: int = 0, *, sets: Iterable[SetSpec] = ()) -> Reply:
    """After ``step``: the call returns ``value`` instead (``set`` clauses write memory)."""
    v = int(value)
    return Reply(Ok(Int(v)), sets=_sets(sets))


def fail(err: int | str, *, sets: Iterable[SetSpec] = ()) -> Reply:
    """After ``step``: the call fails with ``err`` instead."""
    return Reply(Fail(_errno_of(err)), sets=_sets(sets))


def rewrite(name: str, *args: Value | int | str | bytes, sets: Iterable[SetSpec] = ()) -> Reply:
    """Run another call instead: ``rewrite("openat", Sym(("AT_FDCWD",)), "/dev/null", Sym(("O_RDONLY",)))``.
    Python ints become ``Int``, str/bytes become ``Str``."""
    vals: list[Value] = []
    for a in args:
        if isinstance(a, bool):
            raise TypeError("a bool is not a syscall argument")
        if isinstance(a, int):
            vals.append(Int(a))
        elif isinstance(a, str):
            vals.append(Str(os.fsencode(a)))
        elif isinstance(a, bytes):
            vals.append(Str(a))
        else:
            vals.append(a)
    return Reply(Rewrite(Call(name, tuple(vals))), sets=_sets(sets))


def deliver(signal: int | str | None = None) -> Reply:
    """Deliver the signal (or ``signal`` instead)."""
    if isinstance(signal, str):
        signal = signal_number(signal)
    return Reply(Deliver(signal))


def suppress() -> Reply:
    """Do not deliver the signal."""
    return Reply(Suppress())


def with_sets(reply: Reply, *sets: SetSpec) -> Reply:
    """``reply`` plus ``set ARGN "bytes"`` clauses (ARGN 1-based): ``with_sets(ok(0), (1, b"\\0" * 4))``."""
    return replace(reply, sets=reply.sets + _sets(sets))


def cached(verdict: object) -> Reply:
    """``verdict`` marked ``; cache`` (PROTOCOL.md 6.3a): the broker gives the
    same answer to the same call (syscall, decoded arguments, resolved paths)
    for the rest of the session without asking again.  Only for an answer
    that depends on nothing else (not on time, a counter or the pid), to a
    call at entry: ``return cached(skip_fail("EACCES"))``.  A ``step`` is
    never cached (its result must come back to the handler that chose it)."""
    return replace(to_reply(verdict), cache=True)


_VERDICT_TYPES = (Cont, Step, Kill, SkipFail, SkipOk, Rewrite, Deliver, Suppress, Ok, Fail)


def to_reply(v: object) -> Reply:
    """Anything a handler may return, as a Reply (raises ValueError/TypeError otherwise)."""
    if isinstance(v, Reply):
        return v
    if isinstance(v, _VERDICT_TYPES):
        return Reply(v)
    if isinstance(v, str | bytes):
        r = codec.parse_reply(v)
        if not isinstance(r, Reply):
            raise ValueError(f"{v!r} is not a verdict")
        return r
    raise TypeError(f"a handler returned {type(v).__name__}, not a verdict")


# ---------------------------------------------------------------------------
# Path resolution as the tracee sees it
# ---------------------------------------------------------------------------

_MAGIC = re.compile(r"/proc/\d+(?:/task/\d+)?/(?:fd/\d+|cwd|root|exe)\Z")
MAXSYMLINKS = 40


def _s32(v: int) -> int:
    """A register value as the kernel's signed 32-bit pid_t/int."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _pidfd_pid(pid: int, tid: int, fd: int) -> int | None:
    """The process pidfd ``fd`` of the tracee refers to (its fdinfo ``Pid:``)."""
    for p in (f"/proc/{pid}/task/{tid}/fdinfo/{fd}", f"/proc/{pid}/fdinfo/{fd}"):
        try:
            with open(p, "rb") as f:
                for line in f:
                    if line.startswith(b"Pid:"):
                        n = int(line.split()[1])
                        return n if n > 0 else None
        except (OSError, ValueError, IndexError):
            continue
    return None


def group_members(pgrp: int) -> list[int]:
    """The processes of process group ``pgrp`` now (a racy snapshot of /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getpgid(int(d)) == pgrp:
                    out.append(int(d))
            except OSError:
                continue
    return out


def tracer_of(pid: int) -> int | None:
    """The pid of the process ptrace-tracing ``pid`` (``TracerPid:`` of
    /proc/PID/status; 0 = untraced), None if ``pid`` is gone.  Two tracees of
    one brokerd session have the same tracer: the session's shim."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"TracerPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def resolve_path(path: str, base: str = "/", *, pid: int | None = None, tid: int | None = None,
                 follow: bool = True) -> str | None:
    """The absolute path the kernel would reach for ``path`` looked up from
    directory ``base``: ``.``/``..`` and every symlink resolved (the last
    component only if ``follow``), ``/proc/self`` and ``/proc/thread-self``
    meaning the tracee (``pid``/``tid``), magic links (``/proc/N/fd/M``)
    followed to their target.  Components that do not exist are kept as
    written (a file about to be created).  A target that is not a path
    (``pipe:[1234]``, ``socket:[99]``) is returned as is.  None: too many
    symlinks (the call would fail with ELOOP)."""
    todo = [c for c in path.split("/") if c] [::-1]
    parts: list[str] = [] if path.startswith("/") else [c for c in base.split("/") if c]
    links = 0
    missing = False
    while todo:
        comp = todo.pop()
        if comp == ".":
            continue
        if comp == "..":
            if parts:
                parts.pop()
            continue
        if parts == ["proc"] and pid is not None and comp in ("self", "thread-self"):
            if comp == "thread-self":
                todo.extend([str(tid if tid is not None else pid), "task"])
            comp = str(pid)
        parts.append(comp)
        last = not todo
        if missing or (last and not follow):
            continue
        here = "/" + "/".join(parts)
        try:
            st = os.lstat(here)
        except OSError:
            missing = True  # the rest is taken as written
            continue
        if not stat.S_ISLNK(st.st_mode):
            continue
        links += 1
        if links > MAXSYMLINKS:
            return None
        try:
            target = os.readlink(here)
        except OSError:
            missing = True
            continue
        parts.pop()
        if _MAGIC.match(here):
            if not target.startswith("/"):
                return target if last else None  # pipe:[N] etc.; nothing lies below it
            target = target.removesuffix(" (deleted)")
        if target.startswith("/"):
            parts = []
        todo.extend([c for c in target.split("/") if c][::-1])
    return "/" + "/".join(parts)


def path_under(path: str, roots: Iterable[str]) -> bool:
    for r in roots:
        if r == "/" or path == r or path.startswith(r + "/"):
            return True
    return False


# Calls whose last path component is not followed (they act on a link itself).
_NOFOLLOW = frozenset({
    "lstat", "lstat64", "unlink", "unlinkat", "rmdir", "rename", "renameat", "renameat2",
    "symlink", "symlinkat", "mkdir", "mkdirat", "mknod", "mknodat", "lchown", "lchown32",
    "lsetxattr", "lgetxattr", "llistxattr", "lremovexattr", "readlink", "readlinkat",
    "link", "linkat",
})
#: calls whose NULL path means the file behind their dirfd (utimensat(fd, NULL, ...),
#: glibc's futimens; futimesat likewise), which the kernel changes as the path's
_NULL_IS_DIRFD = frozenset({"utimensat", "utimensat_time64", "futimesat"})
# (call, 0-based argument) that are path-kind but not looked up: a symlink's contents.
_NOT_LOOKED_UP = frozenset({("symlink", 0), ("symlinkat", 0)})
_O_CREAT = constant("O_CREAT")
_AT_SYMLINK_NOFOLLOW, _AT_SYMLINK_FOLLOW = constant("AT_SYMLINK_NOFOLLOW"), constant("AT_SYMLINK_FOLLOW")
_AT_EMPTY_PATH, _AT_FDCWD = constant("AT_EMPTY_PATH"), constant("AT_FDCWD")
_MAGIC_LINK = re.compile(r"/proc/\d+(?:/task/\d+)?/(?:fd/\d+|cwd|root|exe)\Z")  # the broker's realN for them
O_ACCMODE = constant("O_WRONLY") | constant("O_RDWR")
#: __O_TMPFILE: O_TMPFILE without its O_DIRECTORY bit
O_TMPFILE_BIT = constant("O_TMPFILE") & ~constant("O_DIRECTORY")
O_WRITE_FLAGS = constant("O_TRUNC") | _O_CREAT | O_TMPFILE_BIT


def opens_for_writing(flags: int) -> bool:
    """Would an open with these flags write (O_WRONLY/O_RDWR, O_TRUNC,
    O_CREAT, O_TMPFILE)?  O_CREAT alone only writes if the file is missing."""
    return flags & O_ACCMODE != 0 or flags & O_WRITE_FLAGS != 0


# ---------------------------------------------------------------------------
# What handlers receive
# ---------------------------------------------------------------------------


class SockAddr(Record):
    """A decoded sockaddr argument: ``family`` is ``"AF_INET"``, ``"AF_INET6"``,
    ``"AF_UNIX"``...; ``host``/``port`` for IP, ``path`` for AF_UNIX (abstract
    names start with ``@``), ``raw`` the protocol value."""

    __slots__ = ("family", "host", "port", "path", "raw")
    family: str
    host: str | None
    port: int | None
    path: str | None
    raw: Value | None

    def __init__(self, family: str, host: str | None = None, port: int | None = None,
                 path: str | None = None, raw: Value | None = None) -> None:
        _set(self, "family", family)
        _set(self, "host", host)
        _set(self, "port", port)
        _set(self, "path", path)
        _set(self, "raw", raw)


def _isawaitable(obj: object) -> TypeGuard[Awaitable[Any]]:
    """``inspect.isawaitable``, imported here: ``inspect`` costs several ms of
    every start-up, and an in-process policy's handlers are plain functions."""
    from inspect import isawaitable

    return isawaitable(obj)


def _format_exc() -> str:
    """The exception being handled, as ``traceback.format_exc()`` (imported
    only when a handler failed)."""
    import traceback

    return traceback.format_exc()


def sockaddr_of(v: Value) -> SockAddr | None:
    """A protocol sockaddr value (``{AF_INET, 1.2.3.4:80}``) as a :class:`SockAddr`."""
    if isinstance(v, Ptr):
        return None  # NULL or unreadable
    if not isinstance(v, Struct) or not v.fields:
        return SockAddr("unknown", raw=v)
    fam_v = v.fields[0]
    if isinstance(fam_v, Sym) and fam_v.names:
        family = fam_v.names[0]
    elif isinstance(fam_v, Int):
        family = str(fam_v.value)
    else:
        family = "unknown"
    rest = v.fields[1:]
    if family in ("AF_INET", "AF_INET6"):
        for f in rest:
            if isinstance(f, Addr):
                return SockAddr(family, f.host, f.port, raw=v)
        return SockAddr(family, raw=v)
    if family == "AF_UNIX":
        for f in rest:
            if isinstance(f, Str):
                data = f.data
                p = "@" + os.fsdecode(data[1:]) if data.startswith(b"\0") else os.fsdecode(data)
                return SockAddr(family, path=p, raw=v)
        return SockAddr(family, path="", raw=v)  # unnamed
    return SockAddr(family, raw=v)


class Syscall:
    """A system call stopped at entry, as a handler sees it.

    ``name``, ``args`` (protocol values), ``pid``, ``tid``, ``abi``, ``id``,
    ``notes`` (dict of the event's ``KEY=VALUE`` notes), ``event`` (the
    :class:`SyscallEvent`), ``session`` (the :class:`Session`), ``spec`` (the
    ABI table's :class:`SyscallSpec`, None for an unknown call).
    Indices are 0-based.
    """

    __slots__ = ("event", "session", "_spec", "_notes")

    def __init__(self, event: SyscallEvent, session: Session | None = None) -> None:
        self.event = event
        self.session = session
        self._spec: SyscallSpec | None | bool = False  # looked up on first use (most handlers never do)
        self._notes: dict[str, Value] | None = None

    @property
    def spec(self) -> SyscallSpec | None:
        spec = self._spec
        if spec is False:
            abi = ABIS.get(self.event.abi)
            spec = self._spec = abi.by_name.get(self.event.call.name) if abi else None
        return spec  # type: ignore[return-value]

    # -- identity ---------------------------------------------------------
    @property
    def name(self) -> str:
        return self.event.call.name

    @property
    def args(self) -> tuple[Value, ...]:
        return self.event.call.args

    @property
    def pid(self) -> int:
        return self.event.pid

    @property
    def tid(self) -> int:
        return self.event.tid

    @property
    def abi(self) -> str:
        return self.event.abi

    @property
    def id(self) -> int:
        return self.event.id

    @property
    def notes(self) -> dict[str, Value]:
        if self._notes is None:
            self._notes = dict(self.event.notes)
        return self._notes

    @property
    def replay(self) -> bool:
        """True when the events come from a journal (``brokerctl replay``):
        the process is gone, so nothing is looked up in /proc."""
        return bool(self.session and self.session.replay)

    def text(self) -> str:
        """The call as the wire writes it: ``openat AT_FDCWD, "/etc/passwd", O_RDONLY``."""
        return codec.format_call(self.event.call)

    def __repr__(self) -> str:
        return f"<Syscall {self.id} pid={self.pid} {self.text()}>"

    # -- arguments --------------------------------------------------------
    def kind(self, i: int) -> str | None:
        """The ABI table's kind of argument ``i`` (``"path"``, ``"open_flags"``...)."""
        if self.spec is None or i >= len(self.spec.args):
            return None
        return self.spec.args[i]

    def arg(self, i: int) -> Value | None:
        return self.args[i] if i < len(self.args) else None

    def num(self, i: int) -> int:
        """Argument ``i`` as an int (symbols such as ``AT_FDCWD`` or
        ``O_WRONLY|O_CREAT`` turned into their values)."""
        v = self.arg(i)
        if v is None:
            raise IndexError(f"{self.name} has no argument {i}")
        return value_to_int(v, (self.kind(i) or "int").partition(":")[0])

    flags = num

    def has_flag(self, i: int, *names: str) -> bool:
        """Is any of the flags ``names`` (``"O_CREAT"``) set in argument ``i``?
        For multi-bit fields (``O_WRONLY``/``O_RDWR``) the field must equal it."""
        kind = (self.kind(i) or "").partition(":")[0]
        fs = FLAGSETS.get(kind)
        value = self.num(i)
        for n in names:
            if fs is None or n not in fs.names:
                raise ValueError(f"{n!r} is not a flag of {self.name} argument {i} ({kind or 'unknown'})")
            bit = fs.names[n]
            if fs.enum is not None:
                if value == bit:
                    return True
                continue
            field_mask = next((mask for mask, m in fs.fields if n in m.values()), None)
            if field_mask is not None:
                if value & field_mask == bit:
                    return True
            elif bit and value & bit == bit:
                return True
        return False

    def field(self, i: int, name: str) -> Value | None:
        """Member ``name`` of struct argument ``i`` (``call.field(2, "flags")`` for openat2)."""
        v = self.arg(i)
        if isinstance(v, Struct):
            for f in v.fields:
                if isinstance(f, Field) and f.name == name:
                    return f.value
        return None

    def open_flags(self) -> int | None:
        """The ``O_*`` flags of an open-like call (open, openat, openat2, creat:
        ``O_WRONLY|O_CREAT|O_TRUNC``), else None."""
        if self.name == "creat":
            return 0o1101
        if self.name == "openat2":
            v = self.field(2, "flags")
            return None if v is None else value_to_int(v, "open_flags")
        for j, k in enumerate(self.spec.args if self.spec else ()):
            if k == "open_flags" and j < len(self.args):
                return self.num(j)
        return None

    def data(self, i: int) -> bytes | None:
        """The bytes of a string/buffer argument (a prefix if truncated), None if not a string."""
        v = self.arg(i)
        return v.data if isinstance(v, Str) else None

    def path(self, i: int) -> str | None:
        """Argument ``i`` as the tracee passed it (no resolution), or None."""
        d = self.data(i)
        return None if d is None else os.fsdecode(d)

    def path_args(self) -> list[int]:
        """Indices of the arguments the kernel looks up as paths."""
        if self.spec is None:
            return []
        return [i for i, k in enumerate(self.spec.args) if k == "path" and (self.name, i) not in _NOT_LOOKED_UP]

    def _dirfd_for(self, i: int) -> int | None:
        if i > 0 and self.kind(i - 1) == "dirfd":
            return self.num(i - 1)
        return None

    def _follows(self, i: int) -> bool:
        n = self.name
        if n in ("link", "linkat"):
            if i == len(self.args) - 1 or n == "link" and i == 1:
                return False  # the new name
            return n == "linkat" and self._at_flags() & _AT_SYMLINK_FOLLOW != 0
        if n in _NOFOLLOW:
            return False
        for j, k in enumerate(self.spec.args if self.spec else ()):
            if k == "open_flags":
                fl = self.num(j)
                if not open_follows(fl):
                    return False
            elif k == "at_flags" and self.num(j) & _AT_SYMLINK_NOFOLLOW:
                return False
        return True

    def _at_flags(self) -> int:
        for j, k in enumerate(self.spec.args if self.spec else ()):
            if k == "at_flags":
                return self.num(j)
        return 0

    def cwd(self) -> str | None:
        """The calling thread's working directory (``/proc/PID/task/TID/cwd``)."""
        if self.replay:
            return None
        for p in (f"/proc/{self.pid}/task/{self.tid}/cwd", f"/proc/{self.pid}/cwd"):
            try:
                return os.readlink(p)
            except OSError:
                continue
        return None

    def fd_path(self, fd: int) -> str | None:
        """What descriptor ``fd`` of the tracee is (``/proc/PID/fd/N``): a path,
        or ``pipe:[N]``/``socket:[N]``...; None if unknown."""
        if self.replay:
            return None
        for p in (f"/proc/{self.pid}/task/{self.tid}/fd/{fd}", f"/proc/{self.pid}/fd/{fd}"):
            try:
                return os.readlink(p).removesuffix(" (deleted)")
            except OSError:
                continue
        return None

    def target_pids(self) -> list[int] | None:
        """The processes (or threads) a call that reaches or changes another
        process aims at (the tables' ``process-access`` and ``process-control``
        classes: kill, tgkill, pidfd_send_signal, ptrace, prlimit64,
        sched_setaffinity, setpriority...): its ``pid`` arguments (0: the
        caller, or for ``kill`` its process group), the process behind its
        pidfd (``/proc/PID/fdinfo/N``), the members of the process group it
        names (``kill(-PGRP)``, ``setpriority(PRIO_PGRP, ...)``).  None when it
        names every process, a user's processes, an empty group or what cannot
        be known (a ``/proc/PID`` directory fd, a replayed event): deny then."""
        if self.spec is None or self.replay:
            return None
        kinds = self.spec.args
        group_kill = "signal-group" in self.spec.classes
        out: list[int] = []
        for i, k in enumerate(kinds):
            if k == "pid":
                got = self._pid_target(_s32(self.num(i)), group_kill)
            elif k in WHO_TARGETS and i + 1 < len(kinds):
                got = self._who_target(WHO_TARGETS[k].get(self.num(i)), _s32(self.num(i + 1)))
            else:
                continue
            if got is None:
                return None
            out += got
        if not out and kinds[:1] == ("fd",) and "process-access" in self.spec.classes:
            pid = _pidfd_pid(self.pid, self.tid, self.num(0))
            out = [pid] if pid is not None else []
        return out or None

    def _pid_target(self, pid: int, group_kill: bool) -> list[int] | None:
        """A ``pid`` argument as the processes it names: kill's 0 and -PGRP
        are groups, its -1 everything; elsewhere 0 is the caller itself."""
        if pid > 0:
            return [pid]
        if group_kill:
            return None if pid == -1 else self._who_target("group", -pid)
        return [self.tid] if pid == 0 else None

    def _who_target(self, what: str | None, who: int) -> list[int] | None:
        """setpriority/ioprio_set's ``which, who``: a process (0: the caller)
        or a process group (0: the caller's); a user's processes: None."""
        if what == "process" and who >= 0:
            return [who or self.tid]
        if what == "group" and who >= 0:
            try:
                return group_members(who or os.getpgid(self.pid)) or None
            except OSError:  # the caller is gone
                return None
        return None

    def resolve_path(self, i: int, *, follow: bool | None = None) -> str | None:
        """The absolute path argument ``i`` reaches, as the kernel would look it
        up for the tracee: relative to its cwd or to the ``dirfd`` argument,
        ``..`` and symlinks resolved (the last component unless the call does
        not follow it: lstat, unlink, O_NOFOLLOW, AT_SYMLINK_NOFOLLOW...).
        For opens and execs the broker's ``realN`` note is used as it is.
        ``""`` with ``AT_EMPTY_PATH`` is the dirfd itself.  A result that does
        not start with ``/`` is no file (``pipe:[12]``, ``socket:[3]``,
        ``anon_inode:[eventfd]``): a descriptor already open.  None when it
        cannot be known (unreadable string, unknown descriptor, ELOOP) -
        policies should deny then.  Racy by nature: see docs/policies.md."""
        raw = self.data(i)
        if raw is None and self.name in _NULL_IS_DIRFD and self._dirfd_for(i) not in (None, _AT_FDCWD) \
                and self.num(i) == 0:
            return self.fd_path(self._dirfd_for(i) or 0)  # futimens(fd): the descriptor's file
        if raw is None or (isinstance(self.arg(i), Str) and self.arg(i).truncated):  # type: ignore[union-attr]
            return None
        p = os.fsdecode(raw)
        if follow is None:
            follow = self._follows(i)
        if follow or self.replay:
            # the broker's own resolution (in replay: the journal's, made while
            # the process lived, with the call's own follow rule; clients/replay.py).
            # Open/exec calls: it checks, when the
            # call ends, that the kernel used this very object, so judging it is
            # safe from symlinks swapped meanwhile (docs/security.md)
            real = next((v for k, v in self.event.notes if k == f"real{i + 1}"), None)
            if isinstance(real, Str) and not real.truncated:
                p = os.fsdecode(real.data)
                if not _MAGIC_LINK.match(p):
                    return p
                # the program's own descriptor (/dev/stdin -> /proc/PID/fd/0): its target, below
        pid = None if self.replay else self.pid
        if p.startswith("/"):
            return resolve_path(p, "/", pid=pid, tid=self.tid, follow=follow)
        dirfd = self._dirfd_for(i)
        if dirfd is None or dirfd == _AT_FDCWD:
            base = self.cwd()
        else:
            base = self.fd_path(dirfd)
        if base is None:
            return None
        if p == "":  # the descriptor itself (fstatat(fd, "", AT_EMPTY_PATH)), maybe pipe:[N]
            return base if self._at_flags() & _AT_EMPTY_PATH else None
        if not base.startswith("/"):
            return None  # a pipe or socket is no directory
        return resolve_path(p, base, pid=pid, tid=self.tid, follow=follow)

    def resolved_paths(self) -> list[tuple[int, str | None]]:
        """(index, resolved path) of every looked-up path argument."""
        return [(i, self.resolve_path(i)) for i in self.path_args()]

    def sockaddr(self, i: int | None = None) -> SockAddr | None:
        """The sockaddr argument ``i`` (default: the first ``sockaddr`` one), decoded."""
        if i is None:
            for j, k in enumerate(self.spec.args if self.spec else ()):
                if k.startswith("sockaddr"):
                    i = j
                    break
            else:
                return None
        v = self.arg(i)
        return None if v is None else sockaddr_of(v)

    def read_memory(self, addr: int, size: int) -> bytes:
        """Read the tracee's memory (``/proc/PID/mem``); OSError if not allowed."""
        if self.replay:
            raise OSError(_errno.ESRCH, "replayed event: no process")
        with open(f"/proc/{self.pid}/mem", "rb", buffering=0) as f:
            f.seek(addr)
            return f.read(size)

    # -- answers ----------------------------------------------------------
    def rewrite(self, *args: Value | int | str | bytes, name: str | None = None) -> Reply:
        """Run this call with other arguments (or as another call ``name``)."""
        return rewrite(name or self.name, *args)


class SysResult:
    """The result of a call an authorizer stepped: ``call`` is the entry
    (:class:`Syscall`, None if the library did not see it), ``ok`` / ``value``
    / ``errno`` / ``errname`` describe what the kernel returned."""

    __slots__ = ("event", "call", "session")

    def __init__(self, event: SysretEvent, call: Syscall | None, session: Session | None = None) -> None:
        self.event = event
        self.call = call
        self.session = session

    @property
    def name(self) -> str:
        return self.event.name

    @property
    def pid(self) -> int:
        return self.event.pid

    @property
    def tid(self) -> int:
        return self.event.tid

    @property
    def id(self) -> int:
        return self.event.id

    @property
    def ok(self) -> bool:
        return isinstance(self.event.result, Ok)

    @property
    def value(self) -> int | None:
        r = self.event.result
        return r.value.value if isinstance(r, Ok) else None

    @property
    def errno(self) -> int | None:
        r = self.event.result
        return r.errno if isinstance(r, Fail) else None

    @property
    def errname(self) -> str | None:
        e = self.errno
        return None if e is None else _errno.errorcode.get(e, str(e))

    def text(self) -> str:
        r = self.event.result
        return f"ok {codec.format_value(r.value)}" if isinstance(r, Ok) else f"fail {self.errname}"

    def __repr__(self) -> str:
        return f"<SysResult {self.id} pid={self.pid} {self.name} {self.text()}>"


class SignalInfo(Record):
    """A signal about to be delivered (``on_signal`` handlers)."""

    __slots__ = ("event", "session")
    event: SignalEvent
    session: Session | None

    def __init__(self, event: SignalEvent, session: Session | None = None) -> None:
        _set(self, "event", event)
        _set(self, "session", session)

    @property
    def signo(self) -> int:
        return self.event.signo

    @property
    def pid(self) -> int:
        return self.event.pid

    @property
    def tid(self) -> int:
        return self.event.tid


# ---------------------------------------------------------------------------
# Kernel layers
# ---------------------------------------------------------------------------


def kernel_layer(
    fs: Iterable[tuple[str | Iterable[str], str]] = (),
    *,
    fs_handled: str | Iterable[str] | None = None,
    net: Iterable[tuple[str | Iterable[str], Iterable[int]]] = (),
    net_handled: str | Iterable[str] | None = None,
    scope: str | Iterable[str] = (),
    settle: str = "all",
    unjudged: str | Iterable[str] = (),
) -> LayerSpec:
    """A kernel layer for :class:`Authorizer` (``layer=``), checked as the
    broker will check it (ValueError otherwise)::

        kernel_layer([("read,execute", "/usr"), ("all", "/home/box")], fs_handled="all")
        kernel_layer(net=[("connect", [443])])

    Rights: ``read write execute create remove truncate ioctl-dev list`` (or
    ``all``); network: ``bind connect`` (TCP ports); scope: ``signal
    abstract-unix``.  ``settle`` (strace syntax) limits which calls the broker
    may stop asking about because the layer decides them; ``unjudged``
    (strace syntax) names calls the layer does not decide that the policy
    lets run unasked while the layer is in force (metadata look-ups)."""
    def text(v: str | Iterable[str]) -> str:
        return v if isinstance(v, str) else ",".join(v)
    attrs: list[tuple[str, str]] = []
    if fs_handled is not None:
        attrs.append(("fs-handled", text(fs_handled)))
    attrs += [("fs", f"{text(r)} {p}") for r, p in fs]
    if net_handled is not None:
        attrs.append(("net-handled", text(net_handled)))
    attrs += [("net", f"{text(r)} {','.join(str(p) for p in ports)}") for r, ports in net]
    if scope:
        attrs.append(("scope", text(scope)))
    attrs.append(("settle", settle))
    if unjudged:
        attrs.append(("unjudged", text(unjudged)))
    spec = parse_layer(attrs)
    if spec is None:  # unreachable: settle is always there
        raise ValueError("empty layer")
    return spec


# ---------------------------------------------------------------------------
# The authorizer: handlers + settings; sessions speak the protocol
# ---------------------------------------------------------------------------

Handler = Callable[[Any], Any]


class _Handlers:
    entry: dict[str, Handler]
    result: dict[str, Handler]
    signal: Handler | None
    proc: dict[str, Handler]
    error: Handler | None
    hello: Handler | None

    def __init__(self, entry: dict[str, Handler] | None = None,
                 result: dict[str, Handler] | None = None, signal: Handler | None = None,
                 proc: dict[str, Handler] | None = None, error: Handler | None = None,
                 hello: Handler | None = None) -> None:
        self.entry = {} if entry is None else entry
        self.result = {} if result is None else result
        self.signal = signal
        self.proc = {} if proc is None else proc
        self.error = error
        self.hello = hello


# Calls that never return: stepping them would leave state behind forever.
_NO_RETURN = frozenset({"exit", "exit_group", "rt_sigreturn", "sigreturn"})


class Authorizer:
    """A policy: named handlers plus how to answer what no handler covers.

    ``name`` is shown in the broker's logs; ``events`` the process events to
    be told about (``fork``, ``exec``, ``exit``; ``on_proc`` adds to them);
    ``trace`` overrides the subscription (``"all"`` or an iterable of names;
    default: the names of the handlers); ``default`` answers subscribed calls
    with no handler (``cont``); ``failsafe`` answers a call whose handler
    raised (``skip-fail EPERM``); ``strsize`` asks the broker for longer
    string prefixes in events.
    """

    def __init__(
        self,
        name: str = "authorizer",
        *,
        events: Iterable[str] = (),
        trace: str | Iterable[str] | None = None,
        default: object = None,
        failsafe: object = None,
        strsize: int | None = None,
        log: Callable[[str], None] | None = None,
        layer: LayerSpec | None = None,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        rules: Iterable[str] = (),
        unknown: str | None = None,
    ) -> None:
        if not re.fullmatch(r"[\x21\x23-\x7e]+", name):
            raise ValueError(f"authorizer name {name!r} must be one printable token")
        self.name = name
        self.events: set[str] = set(events)
        self.trace = trace if trace is None or isinstance(trace, str) else frozenset(trace)
        self.default = to_reply(default) if default is not None else cont()
        self.failsafe = to_reply(failsafe) if failsafe is not None else skip_fail("EPERM")
        self.strsize = strsize
        #: the kernel layer it declares (:func:`kernel_layer`): the broker applies it under the
        #: program and stops asking about the calls it settles (PROTOCOL.md 7.6)
        self.layer = layer
        #: static rules sent in the handshake: calls allowed without asking, and what
        #: happens to calls it names nowhere (PROTOCOL.md 7.2)
        self.allow = frozenset(allow)
        #: ``NAME[:ERRNO]``: calls that fail in the kernel filter, never asked about
        self.deny = tuple(deny)
        #: argument rules (``"ioctl arg2=TIOCSTI => skip-fail EPERM"``) the broker
        #: applies for it; on calls it allows they guard the allow, in the kernel
        #: filter where the rule tests only register arguments (PROTOCOL.md 7.2)
        self.rules = tuple(rules)
        self.unknown = unknown
        self.handlers = _Handlers()
        self._log = log or (lambda msg: print(f"{self.name}: {msg}", file=sys.stderr, flush=True))

    # -- registration -----------------------------------------------------
    def on(self, *names: str) -> Callable[[Handler], Handler]:
        """Decorator: ``handler(call: Syscall) -> verdict`` for these syscalls
        (``"*"``: any syscall without its own handler, and subscribe to all)."""
        if not names:
            raise ValueError("on() needs at least one syscall name")

        def register(fn: Handler) -> Handler:
            for n in names:
                self.handlers.entry[n] = fn
            return fn

        return register

    def on_result(self, *names: str) -> Callable[[Handler], Handler]:
        """Decorator: ``handler(ret: SysResult) -> ok(...)/fail(...)/cont()``
        for the results of these calls.  A call with a result handler but no
        entry handler is answered ``step`` at entry (and an entry handler's
        ``cont`` becomes ``step``).  ``"*"``: the results of any call an entry
        handler answered ``step()`` that has no result handler of its own."""

        def register(fn: Handler) -> Handler:
            for n in names:
                self.handlers.result[n] = fn
            return fn

        return register

    def on_signal(self, fn: Handler) -> Handler:
        """Decorator: ``handler(sig: SignalInfo) -> deliver()/suppress()/kill()``;
        subscribes to signals (``signals=yes``)."""
        self.handlers.signal = fn
        return fn

    def on_proc(self, *kinds: str) -> Callable[[Handler], Handler]:
        """Decorator: ``handler(ev: ProcEvent)`` for ``fork``/``vfork``/``clone``/
        ``exec``/``exit``/``killed`` notifications (never answered)."""

        def register(fn: Handler) -> Handler:
            for k in kinds:
                self.handlers.proc[k] = fn
                self.events.add("exit" if k == "killed" else k)
            return fn

        return register

    def on_error(self, fn: Handler) -> Handler:
        """Decorator: ``handler(err: Error)`` for ``error`` lines from the broker
        (default: printed on stderr)."""
        self.handlers.error = fn
        return fn

    def on_hello(self, fn: Handler) -> Handler:
        """Decorator: ``handler(session: Session)`` once the handshake is done."""
        self.handlers.hello = fn
        return fn

    # -- subscription -----------------------------------------------------
    def subscription(self) -> str:
        """The ``trace=`` value of the handshake."""
        if self.trace == "all" or (self.trace is None and "*" in self.handlers.entry):
            return "all"
        if isinstance(self.trace, str):
            names: set[str] = {n for n in self.trace.split(",") if n}
        elif self.trace is not None:
            names = set(self.trace)
        else:
            names = set(self.handlers.entry) | set(self.handlers.result)
        names.discard("*")
        return ",".join(sorted(names)) or "none"

    def hello(self) -> Hello:
        attrs = [("role", "authorizer"), ("name", self.name), ("trace", self.subscription())]
        if self.events:
            attrs.append(("events", ",".join(sorted(self.events))))
        attrs.append(("signals", "yes" if self.handlers.signal else "no"))
        if self.strsize:
            attrs.append(("strsize", str(self.strsize)))
        if self.allow:
            attrs.append(("allow", ",".join(sorted(self.allow))))
        if self.deny:
            attrs.append(("deny", ",".join(self.deny)))
        attrs += [("rule", r) for r in self.rules]
        if self.unknown:
            attrs.append(("unknown", self.unknown))
        attrs += layer_attrs(self.layer)
        return Hello((codec.VERSION,), tuple(attrs))

    # -- serving ----------------------------------------------------------
    def session(self) -> Session:
        """A fresh sans-IO protocol session (one per connection)."""
        return Session(self)

    def run(self, stdin: Any = None, stdout: Any = None) -> int:
        """Serve one session on stdin/stdout (binary files) until end of input.
        Returns 0; this is what ``python -m`` policies call.

        One ``read`` takes whatever lines are waiting and one ``write`` sends
        all their replies: one of each per decision when the broker asks one
        question at a time, fewer when several threads' questions wait."""
        rfile = stdin if stdin is not None else sys.stdin.buffer
        wfile = stdout if stdout is not None else sys.stdout.buffer
        read = getattr(rfile, "read1", rfile.read)  # read1: at most one read(2), never waits for more
        s = self.session()
        buf = LineBuffer()
        try:
            while True:
                data = read(65536)
                if data:
                    buf.feed(data)
                else:
                    buf.eof()
                out = [self._serve_line(s, item) for item in buf]
                if any(out):
                    wfile.write(b"".join(out))
                    wfile.flush()
                if not data:
                    break
        except (BrokenPipeError, KeyboardInterrupt):
            pass
        return 0

    @staticmethod
    def _serve_line(s: Session, item: bytes | TooLong | PartialLine) -> bytes:
        """The reply bytes to one framed line (an over-long or cut line: logged, none)."""
        if isinstance(item, TooLong | PartialLine):
            s.protocol_error(item.to_error())
            return b""
        return s.feed(item)

    def main(self) -> None:
        """``run()`` then exit: the body of a policy's ``if __name__ == "__main__"``."""
        sys.exit(self.run())

    async def serve(self, stream: Any, *, concurrency: int = 1) -> None:
        """Serve one session over a trio stream (``receive_some``/``send_all``)
        until the peer closes it.  Handlers may be ``async def``.  With
        ``concurrency > 1`` and a handshake peer, up to that many events are
        decided at once and answered as they finish (replies carry the event
        id); a plain peer is always answered in order."""
        import trio

        s = self.session()
        buf = LineBuffer()
        send_lock = trio.Lock()
        limiter = trio.CapacityLimiter(max(1, concurrency))

        async def send(data: bytes) -> None:
            async with send_lock:
                await stream.send_all(data)

        async def decide(job: _Job) -> None:
            try:
                async with limiter:
                    out = await s.afinish(job)
                if out:
                    await send(out)
            except trio.BrokenResourceError:
                pass

        async with trio.open_nursery() as nursery:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    buf.eof()
                else:
                    buf.feed(data)
                for item in buf:
                    if isinstance(item, TooLong | PartialLine):
                        s.protocol_error(item.to_error())
                        continue
                    job = s.start(item)
                    if job is None:
                        continue
                    if isinstance(job, bytes):
                        await send(job)
                    elif concurrency > 1 and s.mode == "hello":
                        nursery.start_soon(decide, job)
                    else:
                        out = await s.afinish(job)
                        if out:
                            await send(out)
                if not data:
                    break
        try:
            await stream.aclose()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def _call_sync(job: _Job, where: str) -> object:
    """The handler's result for ``job`` where nothing can await it (``run()``,
    an in-process session): an awaitable is closed and refused (TypeError)."""
    if job.handler is None:
        return None
    result = job.handler(job.arg)
    if type(result) is not Reply and _isawaitable(result):  # (a Reply never is: skip the ABC check)
        if hasattr(result, "close"):
            result.close()
        raise TypeError(f"async handlers need Authorizer.serve(), not {where}")
    return result


class _Job:
    """One event waiting for its handler: ``kind`` entry/result/signal/proc."""

    __slots__ = ("kind", "event", "handler", "arg")
    kind: str
    event: object
    handler: Handler | None
    arg: object

    def __init__(self, kind: str, event: object, handler: Handler | None, arg: object) -> None:
        self.kind = kind
        self.event = event
        self.handler = handler
        self.arg = arg


class Session:
    """The protocol state of one connection (sans-IO): feed it the broker's
    lines, send back what it returns.

    ``mode`` is ``new`` (nothing seen), ``hello`` (handshake done: replies are
    prefixed with the event id) or ``plain`` (the peer did not greet: one
    reply per event, in order).  ``id`` is the broker's session id,
    ``replay`` True for ``brokerctl replay``, ``state`` a dict for handlers.
    """

    def __init__(self, az: Authorizer) -> None:
        self.az = az
        self.mode = "new"
        self.id: str | None = None
        self.replay = False
        self.broker: Hello | None = None
        self.state: dict[str, Any] = {}
        self._pending: dict[int, Syscall] = {}
        self.stats = {"events": 0, "errors": 0}
        #: how decide_entry makes a handler's Syscall, (event, session) -> Syscall (an
        #: in-process member's broker sets a compiled maker: brokerd.tracer.makers)
        self.new_call: Callable[[SyscallEvent, Session], Syscall] = Syscall

    # -- sync -------------------------------------------------------------
    def feed(self, line: bytes | str) -> bytes:
        """One line from the broker -> the bytes to send back (maybe empty).
        Async handlers are not allowed here (use :meth:`Authorizer.serve`)."""
        try:
            ev = codec.parse_event(line)
        except ProtocolError as e:
            return self._unreadable(e) or b""
        if type(ev) is SyscallEvent:  # the common line: decided without a job (decide_entry)
            return self._reply(ev.id, self.decide_entry(ev, "run()"))
        job = self._started(ev)
        if job is None:
            return b""
        if isinstance(job, bytes):
            return job
        return self.finish(job)

    def finish(self, job: _Job) -> bytes:
        try:
            result = _call_sync(job, "run()")
        except Exception:  # noqa: BLE001 - a policy bug must not kill the session
            return self._crashed(job)
        return self._answer(job, result)

    async def afinish(self, job: _Job) -> bytes:
        if job.handler is None:
            return self._answer(job, None)
        try:
            result = job.handler(job.arg)
            if _isawaitable(result):
                result = await result
        except Exception:  # noqa: BLE001
            return self._crashed(job)
        return self._answer(job, result)

    # -- the protocol -----------------------------------------------------
    def protocol_error(self, err: ProtocolError) -> None:
        self.stats["errors"] += 1
        self.az._log(f"bad line from the broker: {err.code}: {err.message}")

    def start(self, line: bytes | str) -> _Job | bytes | None:
        """Parse a line; returns bytes to send at once, a job for a handler, or None."""
        try:
            ev = codec.parse_event(line)
        except ProtocolError as e:
            return self._unreadable(e)
        return self._started(ev)

    def _unreadable(self, e: ProtocolError) -> bytes | None:
        """A line that does not parse: logged; in a plain stream it still takes
        its place (the failsafe answers it)."""
        self.protocol_error(e)
        return codec.format_reply(self.az.failsafe) if self.mode == "plain" else None

    def _started(self, ev: Event) -> _Job | bytes | None:
        """:meth:`start` for a parsed event."""
        out = self.start_event(ev)
        if isinstance(out, Reply):
            return self._reply(out.id, out)  # type: ignore[arg-type]
        return codec.format_reply(out) if isinstance(out, Hello) else out

    def decide(self, ev: object) -> Reply | None:
        """The sans-text path (an in-process policy, brokerd.decision.inproc):
        an event object -> the Reply object to it (None: nothing to answer)."""
        if type(ev) is SyscallEvent:
            r = self.decide_entry(ev)
            return r if r.id == ev.id else Reply(r.verdict, ev.id, r.sets, r.cache)
        job = self.start_event(ev)
        if type(job) is not _Job:
            return job if isinstance(job, Reply) else None
        try:
            result = _call_sync(job, "an in-process session")
        except Exception:  # noqa: BLE001 - a policy bug must not kill the session
            return self._crash_verdict(job)
        return self._verdict(job, result)

    def decide_entry(self, ev: SyscallEvent, where: str = "an in-process session") -> Reply:
        """:meth:`decide` for a syscall entry, its Reply's id not necessarily
        set (an in-process caller reads only the verdict, the sets and
        ``cache``): the hot path of an in-process policy, one handler call
        and no job, no copy of a handler's Reply (issue #13).  The same
        answers as :meth:`start_event` + :meth:`_verdict`."""
        if self.mode == "new":
            self.mode = "plain"
        self.stats["events"] += 1
        name = ev.call.name
        entry = self.az.handlers.entry
        fn = entry.get(name) or entry.get("*")
        call = self.new_call(ev, self)
        if fn is None:
            if self._wants_result(name):
                self._pending[ev.id] = call
                return Reply(Step(), ev.id)
            result: object = None
        else:
            try:
                result = fn(call)
            except Exception:  # noqa: BLE001 - a policy bug must not kill the session
                return self._crash_verdict(_Job("entry", ev, fn, call))
            if result is _CONT and name not in self.az.handlers.result:
                return result  # the common answer: as the handler gave it
        return self.entry_answer(ev, fn, call, result, where)

    def entry_answer(self, ev: SyscallEvent, fn: Handler | None, call: Syscall, result: object,
                     where: str = "an in-process session") -> Reply:
        """:meth:`decide_entry`'s answer once handler ``fn`` (None: there
        was none) gave ``result`` for ``call``: also for a caller that called
        the handler itself (the broker's compiled road, brokerd.tracer.accel,
        when the answer is anything but the plain :func:`cont`)."""
        if type(result) is not Reply and _isawaitable(result):
            if hasattr(result, "close"):
                result.close()
            try:
                raise TypeError(f"async handlers need Authorizer.serve(), not {where}")
            except TypeError:
                return self._crash_verdict(_Job("entry", ev, fn, call))
        if (type(result) is Reply and not result.cache and type(result.verdict) is Cont
                and ev.call.name not in self.az.handlers.result):
            return result  # a plain cont: as the handler gave it
        return self._verdict(_Job("entry", ev, fn, call), result)  # type: ignore[return-value]

    def entry_crashed(self, ev: SyscallEvent, fn: Handler, call: Syscall, error: Exception) -> Reply:
        """:meth:`decide_entry`'s answer when handler ``fn`` raised ``error``
        (the failsafe, the traceback logged) for a caller that called it
        itself (the broker's compiled road)."""
        try:
            raise error
        except Exception:  # noqa: BLE001 - as decide_entry
            return self._crash_verdict(_Job("entry", ev, fn, call))

    def start_event(self, ev: object) -> _Job | Reply | Hello | None:
        """An event object: a Reply (or our Hello) to send at once, a job for a handler, or None."""
        if isinstance(ev, Hello):
            return self._on_hello(ev)
        if self.mode == "new":
            self.mode = "plain"
        self.stats["events"] += 1
        h = self.az.handlers
        if isinstance(ev, SyscallEvent):
            call = Syscall(ev, self)
            fn = h.entry.get(ev.call.name) or h.entry.get("*")
            if fn is None and self._wants_result(ev.call.name):
                self._pending[ev.id] = call
                return Reply(Step(), ev.id)
            return _Job("entry", ev, fn, call)
        if isinstance(ev, SysretEvent):
            entry = self._pending.pop(ev.id, None)
            fn = h.result.get(ev.name) or h.result.get("*")
            return _Job("result", ev, fn, SysResult(ev, entry, self))
        if isinstance(ev, SignalEvent):
            return _Job("signal", ev, h.signal, SignalInfo(ev, self))
        if isinstance(ev, ProcEvent):
            if ev.kind == "exit" or ev.kind == "killed":
                self._forget(ev.pid)
            fn = h.proc.get(ev.kind)
            if fn is not None:
                try:
                    fn(ev)
                except Exception:  # noqa: BLE001
                    self.az._log("proc handler failed:\n" + _format_exc())
            return None
        if isinstance(ev, Error):
            if h.error is not None:
                h.error(ev)
            else:
                self.az._log(f"the broker says: error {ev.code} {ev.text}")
            return None
        return None  # data lines: we never fetch

    def _on_hello(self, ev: Hello) -> Hello | None:
        if self.mode == "new" and ev.get("role") == "broker":
            self.broker = ev
            self.id = ev.get("session")
            self.replay = ev.get("replay") in ("yes", "1")
            if codec.VERSION not in ev.versions:
                self.az._log(f"the broker offers protocol versions {ev.versions}; this library speaks {codec.VERSION}")
            self.mode = "hello"
            if self.az.handlers.hello is not None:
                self.az.handlers.hello(self)
            return self.az.hello()
        return None  # the broker's confirmation, or a repeated hello: nothing to answer

    def _wants_result(self, name: str) -> bool:
        r = self.az.handlers.result
        return name not in _NO_RETURN and name in r

    def _forget(self, pid: int) -> None:
        for k in [k for k, c in self._pending.items() if c.pid == pid]:
            del self._pending[k]

    def _reply(self, eid: int, r: Reply) -> bytes:
        want = eid if self.mode == "hello" else None  # plain mode: replies carry no ID
        if r.id != want:
            r = Reply(r.verdict, want, r.sets, r.cache)
        return codec.format_reply(r)

    def _answer(self, job: _Job, result: object) -> bytes:
        r = self._verdict(job, result)
        return b"" if r is None else self._reply(r.id, r)  # type: ignore[arg-type]

    def _verdict(self, job: _Job, result: object) -> Reply | None:
        """The handler's result as the Reply to send (its id set), None for proc events."""
        if job.kind == "proc":
            return None
        ev = job.event
        eid = ev.id  # type: ignore[attr-defined]
        try:
            if result is None:
                reply = self.az.default if job.kind == "entry" else (
                    deliver() if job.kind == "signal" else cont())
            else:
                reply = to_reply(result)
            if job.kind == "entry":
                name = ev.call.name  # type: ignore[attr-defined]
                if isinstance(reply.verdict, Cont) and self._wants_result(name):
                    reply = Reply(Step(), reply.id, reply.sets)  # someone wants the result
                if isinstance(reply.verdict, Step) and name not in _NO_RETURN:
                    self._pending[eid] = job.arg  # type: ignore[assignment]
            # ``; cache`` only where it means something: an answer at entry that is no step
            keep = reply.cache and job.kind == "entry" and not isinstance(reply.verdict, Step)
            return Reply(reply.verdict, eid, reply.sets, keep)
        except (ValueError, TypeError, ProtocolError) as e:
            self.az._log(f"bad verdict from the handler of {_what(job)}: {e}")
            return Reply(self._safe(job).verdict, eid, self._safe(job).sets)

    def _safe(self, job: _Job) -> Reply:
        if job.kind == "entry":
            return self.az.failsafe
        return deliver() if job.kind == "signal" else cont()

    def _crashed(self, job: _Job) -> bytes:
        r = self._crash_verdict(job)
        return self._reply(r.id, r)  # type: ignore[arg-type]

    def _crash_verdict(self, job: _Job) -> Reply:
        self.stats["errors"] += 1
        self.az._log(f"handler of {_what(job)} failed; answering {codec.format_reply(self._safe(job)).decode().strip()}\n"
                     + _format_exc().rstrip())
        safe = self._safe(job)
        return Reply(safe.verdict, job.event.id, safe.sets)  # type: ignore[attr-defined]


def _what(job: _Job) -> str:
    ev = job.event
    if isinstance(ev, SyscallEvent):
        return ev.call.name
    if isinstance(ev, SysretEvent):
        return f"{ev.name} (result)"
    return type(ev).__name__


# Re-exported for policies: values they build replies from.
__all__ += ["Int", "Ptr", "Oct", "Sym", "Str", "Struct", "Addr", "Field", "Call", "sockaddr_of"]
