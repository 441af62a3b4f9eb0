"""The shim's record of one tracee thread, and tracee memory for the decoder."""

from __future__ import annotations

import mmap
from typing import TYPE_CHECKING

from brokerd.decision.stack import Decision, EntryWalk, ExitWalk
from brokerd.protocol.abi import Abi, SyscallSpec

from .. import ptrace as pt
from ..states import State, move

if TYPE_CHECKING:
    from .pin import Pinned


class _Mem:
    """Tracee memory for the argument decoder (process_vm_readv)."""

    __slots__ = ("pid",)

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def read(self, addr: int, size: int) -> bytes:
        return pt.read_memory(self.pid, addr, size)

    def read_cstr(self, addr: int, limit: int) -> tuple[bytes, bool]:
        out = b""
        while len(out) <= limit:
            chunk = 4096 - ((addr + len(out)) & 4095)
            data = pt.read_memory(self.pid, addr + len(out), min(chunk, limit + 1 - len(out)))
            nul = data.find(b"\0")
            if nul >= 0:
                return out + data[:nul], True
            out += data
            if not data:
                break
        return out[:limit], False


class _Thread:
    __slots__ = (
        "tid", "tgid", "_state", "startup", "announced", "abi", "spec", "raw", "event_id", "walk",
        "decision", "replay", "replay_key", "saved_regs", "inject", "inject_fd", "inject_call",
        "saved_mask", "saved_view", "verify", "pin", "undo_step", "map_flags", "guard_exit",
        "execed", "exec_events", "t0", "running",
    )
    tid: int
    tgid: int
    _state: State
    startup: bool
    announced: bool  # its parent's fork/vfork/clone event was seen (it may come after the child's stops)
    abi: Abi | None
    spec: SyscallSpec | None
    raw: tuple[int, ...]
    event_id: int
    walk: EntryWalk | ExitWalk | None
    decision: Decision | None
    replay: Decision | None
    #: (arch, nr, args, ip) of the call an injection interrupted: it must come back as it was
    replay_key: tuple
    saved_regs: pt.Regs | None
    inject: list  # steps of a running injection
    inject_fd: int
    #: the injected call now set in its registers, (nr, its six argument registers): an entry
    #: that is not this call is the program's own code, which must not run unjudged
    inject_call: tuple
    #: its own signal mask while the shim injects calls into it (all signals blocked meanwhile)
    saved_mask: int | None
    saved_view: mmap.mmap | None  # the shim's mapping of a scratch region being set up
    verify: tuple | None  # what an open must have opened (see _expected_object)
    pin: Pinned | None  # the open as openat2 of its judged real path (pin.py), or None
    undo_step: bool  # an undone open was stepped: its sysret is still owed
    map_flags: int  # extra flags of the injected mmap of the scratch region
    guard_exit: bool  # the guard checks what this open opened (no Landlock wall)
    #: it exec'd: a fork event arriving late must not hand it its parent's scratch region
    #: (an execve nobody stops, e.g. one a kernel layer settles, can win that race)
    execed: bool
    #: its ptrace options include TRACEEXEC: an exec stops it (PTRACE_EVENT_EXEC)
    exec_events: bool
    t0: float
    running: bool

    def __init__(self, tid: int, tgid: int, _state: State = State.RUN, startup: bool = True,
                 announced: bool = False, abi: Abi | None = None, spec: SyscallSpec | None = None,
                 raw: tuple[int, ...] = (), event_id: int = 0,
                 walk: EntryWalk | ExitWalk | None = None, decision: Decision | None = None,
                 replay: Decision | None = None, replay_key: tuple = (),
                 saved_regs: pt.Regs | None = None, inject: list | None = None, inject_fd: int = -1,
                 inject_call: tuple = (), saved_mask: int | None = None,
                 saved_view: mmap.mmap | None = None, verify: tuple | None = None,
                 pin: Pinned | None = None, undo_step: bool = False, map_flags: int = 0,
                 guard_exit: bool = False,
                 execed: bool = False, exec_events: bool = True, t0: float = 0.0,
                 running: bool = True) -> None:
        self.tid = tid
        self.tgid = tgid
        self._state = _state
        self.startup = startup
        self.announced = announced
        self.abi = abi
        self.spec = spec
        self.raw = raw
        self.event_id = event_id
        self.walk = walk
        self.decision = decision
        self.replay = replay
        self.replay_key = replay_key
        self.saved_regs = saved_regs
        self.inject = [] if inject is None else inject
        self.inject_fd = inject_fd
        self.inject_call = inject_call
        self.saved_mask = saved_mask
        self.saved_view = saved_view
        self.verify = verify
        self.pin = pin
        self.undo_step = undo_step
        self.map_flags = map_flags
        self.guard_exit = guard_exit
        self.execed = execed
        self.exec_events = exec_events
        self.t0 = t0
        self.running = running

    @property
    def state(self) -> State:
        """What the shim waits for on this thread (states.py: every move is in its table)."""
        return self._state

    @state.setter
    def state(self, new: str) -> None:
        self._state = move(self._state, new)
