"""The shim's record of one tracee thread, and tracee memory for the decoder."""

from __future__ import annotations

import mmap
import os
from typing import TYPE_CHECKING, Any, TypeVar, cast

from brokerd.decision.stack import Decision, EntryWalk, ExitWalk
from brokerd.protocol.abi import Abi, SyscallSpec

from .. import ptrace as pt
from ..accel import accel
from ..states import State, move

if TYPE_CHECKING:
    from ..scratch import Region
    from .pin import Pinned


#: the limit the decoder reads a path with (pathsize + 1): what the compiled stop reads
PATH_READ = 4097
#: strings up to this limit are read by the compiled call (longer: page by page here)
CSTR_IN_C = 1 << 16


class _Mem:
    """Tracee memory for the argument decoder (process_vm_readv)."""

    __slots__ = ("pid", "pre")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        #: (tid, address, what read_cstr(address, PATH_READ) gave or its errno): the path
        #: the compiled seccomp stop read with the stop, for this stop's decoding only
        self.pre: tuple[int, int, tuple[bytes, bool] | int] | None = None

    def read(self, addr: int, size: int) -> bytes:
        return pt.read_memory(self.pid, addr, size)

    def read_cstr(self, addr: int, limit: int) -> tuple[bytes, bool]:
        pre = self.pre
        if pre is not None and limit == PATH_READ and pre[0] == self.pid and pre[1] == addr:
            self.pre = None
            got = pre[2]
            if isinstance(got, int):
                raise OSError(got, f"process_vm_readv({self.pid}, {addr:#x}): {os.strerror(got)}")
            return got
        if accel is not None and limit <= CSTR_IN_C:
            return accel.read_cstr(self.pid, addr, limit)
        return read_cstr_py(self.pid, addr, limit)


def read_cstr_py(pid: int, addr: int, limit: int) -> tuple[bytes, bool]:
    """A NUL-terminated string of at most ``limit`` bytes at ``addr``, read
    page by page (a string may end just before unmapped memory): (its bytes,
    True) when the NUL came, (the first ``limit`` bytes, False) when not.
    The compiled ``accel.read_cstr`` gives the same (tests/test_accel.py)."""
    out = b""
    while len(out) <= limit:
        chunk = 4096 - ((addr + len(out)) & 4095)
        data = pt.read_memory(pid, addr + len(out), min(chunk, limit + 1 - len(out)))
        nul = data.find(b"\0")
        if nul >= 0:
            return out + data[:nul], True
        out += data
        if not data:
            break
    return out[:limit], False


_T = TypeVar("_T")
#: each _Thread field's default, set by its __init__ (_slotted)
_DEFAULTS: dict[str, object] = {}


def _slotted(cls: type[_T]) -> type[_T]:
    """``cls`` made again as a class of slots, one per annotated field, the
    fields' defaults (kept in :data:`_DEFAULTS`) set by ``__init__``: the
    compiled road (``accel.fused_stop``) reads and writes a thread's fields
    at their slots' offsets (a dict operation each before: a tenth of an
    in-process decision), and Python reads slots as fast as a dict."""
    _DEFAULTS.update({n: cls.__dict__[n] for n in cls.__annotations__ if n in cls.__dict__})
    ns = {k: v for k, v in cls.__dict__.items() if k not in _DEFAULTS and k not in ("__dict__", "__weakref__")}
    ns["__slots__"] = tuple(cls.__annotations__)
    return cast("type[_T]", type(cls.__name__, cls.__bases__, ns))


@_slotted
class _Thread:
    """One tracee thread as the shim sees it.  A plain class, not a dataclass
    (whose import and generated methods cost every start-up), made a class of
    slots (:func:`_slotted`): each field is one annotated line with its
    default, set when it is made;
    ``__init__`` takes tid, tgid and any field by keyword."""

    tid: int
    tgid: int
    _state: State = State.RUN
    startup: bool = True
    announced: bool = False  # its parent's fork/vfork/clone event was seen (it may come after the child's stops)
    abi: Abi | None = None
    spec: SyscallSpec | None = None
    raw: tuple[int, ...] = ()
    event_id: int = 0
    walk: EntryWalk | ExitWalk | None = None
    decision: Decision | None = None
    replay: Decision | None = None
    #: (arch, nr, args, ip) of the call an injection interrupted: it must come back as it was
    replay_key: tuple = ()
    saved_regs: pt.Regs | None = None
    inject: list  # steps of a running injection (a list of its own, made in __init__)
    inject_fd: int = -1
    #: the injected call now set in its registers, (nr, its six argument registers): an entry
    #: that is not this call is the program's own code, which must not run unjudged
    inject_call: tuple = ()
    #: its own signal mask while the shim injects calls into it (all signals blocked meanwhile)
    saved_mask: int | None = None
    saved_view: mmap.mmap | None = None  # the shim's mapping of a scratch region being set up
    region_ident: tuple[int, int] = (0, 0)  # and its memfd's (st_dev, st_ino)
    new_region: Region | None = None  # mapped, not sealed yet (not the process's until it is)
    #: the shim's resume count when it last let this thread run (Stops._inherit_region)
    resumed: int = 0
    verify: tuple | None = None  # what an open must have opened (see _expected_object)
    pin: Pinned | None = None  # the open as openat2 of its judged real path (pin.py), or None
    #: the registers the broker changed for the call it let run: {name: (set, program's own)},
    #: or the same as a tuple to be made that dict (:func:`changed_regs`; a pinned open's,
    #: made at every one but needed only at a signal); a restart after a signal gets the
    #: program's own back (Signals._unpoint_restart)
    repointed: dict[str, tuple[int, int]] | tuple | None = None
    undo_step: bool = False  # an undone open was stepped: its sysret is still owed
    map_flags: int = 0  # extra flags of the injected mmap of the scratch region
    guard_exit: bool = False  # the guard checks what this open opened (no Landlock wall)
    #: a sendmmsg made sendmsg of its first message (Stable._stable_mmsghdr): (the address of
    #: that message's msg_len in the program's array, the registers changed), settled at its exit
    sent_one: tuple[int, dict[str, tuple[int, int]]] | None = None
    #: it exec'd: a fork event arriving late must not hand it its parent's scratch region
    #: (an execve nobody stops, e.g. one a kernel layer settles, can win that race)
    execed: bool = False
    #: its ptrace options include TRACEEXEC: an exec stops it (PTRACE_EVENT_EXEC)
    exec_events: bool = True
    t0: float = 0.0
    running: bool = True

    def __init__(self, tid: int, tgid: int, **fields: Any) -> None:
        for name, value in _DEFAULTS.items():
            setattr(self, name, value)
        self.tid = tid
        self.tgid = tgid
        self.inject = []
        for name, value in fields.items():
            if name not in _FIELDS:
                raise TypeError(f"_Thread has no field {name!r}")
            setattr(self, name, value)

    @property
    def state(self) -> State:
        """What the shim waits for on this thread (states.py: every move is in its table)."""
        return self._state

    @state.setter
    def state(self, new: str) -> None:
        self._state = move(self._state, new)


_FIELDS = frozenset(_Thread.__annotations__)


def changed_regs(repointed: dict[str, tuple[int, int]] | tuple) -> dict[str, tuple[int, int]]:
    """``t.repointed`` as ``{register: (set, program's own)}``: the tuple form
    is ``(argument registers, values set, program's own values, nr set, own
    nr)``, kept as it was at the stop."""
    if isinstance(repointed, dict):
        return repointed
    names, args, own, nr, own_nr = repointed
    changed = {name: (v, o) for name, v, o in zip(names, args, own, strict=False)}
    changed["orig_rax"] = (nr, own_nr)
    return changed
