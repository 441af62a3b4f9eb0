"""The session's state that every part of the shim works on."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from brokerd.decision.audit import AuditRecord
from brokerd.decision.member import Member
from brokerd.decision.stack import Decision, Stack
from brokerd.protocol.abi import Abi, SyscallSpec
from brokerd.protocol.types import (
    SetMem,
    SkipFail,
)
from brokerd.spin import Spin

from .. import landlock
from .. import layers as kernel_layers
from .. import ptrace as pt
from ..accel import accel
from ..guard import PROC_OPEN_CALLS, Guard
from ..resolve import ROOT_CALLS, RootFds
from ..scratch import Region, can_seal
from ..stopcount import StopCounter
from .consts import REGION_CALLS_ALWAYS
from .loop import EventLoop
from .rules import PTRACE_TRACE, broker_rules
from .thread import _Mem, _Thread

if TYPE_CHECKING:
    from ..elfinfo import Symbolizer


class Answers(dict[str, tuple[str, int]]):
    """The stack's static answer per syscall name (Filter.stack_action), and
    the entry plans built from them (``plans``, Entry._plan): whatever
    changes the answers clears this cache, and so the plans with it; no plan
    outlives what it was made from."""

    def __init__(self) -> None:
        super().__init__()
        self.plans: dict[tuple[int, int], Any] = {}

    def clear(self) -> None:
        super().clear()
        self.plans.clear()


class ShimBase:
    """The session's state that every part of the shim works on."""

    backend = "ptrace"

    def __init__(
        self,
        stack: Sequence[Member],
        *,
        loop: EventLoop | None = None,
        strsize: int = 64,
        session: str = "1",
        audit: Callable[[AuditRecord], None] | None = None,
        log: Callable[[str], None] | None = None,
        greeting_timeout: float | None = None,
        caller: bool = False,
        allow_io_uring: bool = False,
        stable_args: bool = True,
        use_landlock: bool = True,
    ) -> None:
        self.stack = stack if isinstance(stack, Stack) else Stack(stack)
        #: the epoll loop (made before the shim when the handshake ran first, see launch.greet)
        self.loop = loop if loop is not None else EventLoop(self.stack)
        self.loop.on_signal = self._on_broker_signal
        self.loop.on_children = self._reap
        #: how _reap waits for the next stop once it handled one (brokerd/spin.py)
        self._stop_spin = Spin()
        self.strsize = strsize
        self.session = session
        #: the local audit sink (--audit FILE, the operator); the daemon's copy is ``_audit_tee``
        self.audit = audit
        self._audit_tee: Callable[[AuditRecord], None] | None = None
        #: the kernel's audit records of Landlock denials (socket, correlator), while read (launch.py)
        self._landlock_audit: tuple | None = None
        self._log = log or (lambda m: print(f"brokerd: {m}", file=sys.stderr, flush=True))
        self.greeting_timeout = greeting_timeout
        self.threads: dict[int, _Thread] = {}
        self._symbolizer = _symbolizer() if caller else None
        self.main_pid = 0
        self.main_status: int | None = None
        self._next_id = 1
        self._info = pt.SyscallInfo()
        self._regs = pt.Regs()
        self._action_cache = Answers()
        #: the broker's own rules, below every authorizer (docs/security.md)
        self.stable_args = stable_args
        self.internal = broker_rules(allow_io_uring, self._copies_clone3)
        self._signal_order: tuple[int, ...] = ()
        self._regions: dict[int, Region] = {}  # tgid -> its read-only scratch region
        #: how many times the shim let a tracee run (orders a region's completion before a fork)
        self._resume_count = 0
        #: marks the broker's own injected calls to the filter (INJECT_ARG); the program never sees it
        self._inject_nonce = int.from_bytes(os.urandom(8), "little") | 1
        self._slot_waiters: list[_Thread] = []  # calls waiting for a free scratch slot
        self._pin_ok: bool | None = None  # may opens be pinned (pin.py); worked out at first use
        #: processes with a seccomp filter of their own (installed under the broker, or inherited)
        self._own_filters: set[int] = set()
        #: calls that always stop for the broker's own checks (clone flags, the guard, the region)
        #: the region is sealed in the tracee (mseal): the kernel refuses to unmap,
        #: move or replace it, so the calls that could need not stop for it
        self.seals = stable_args and can_seal()
        self.internal_trace = PTRACE_TRACE - (REGION_CALLS_ALWAYS if self.seals else frozenset())
        #: tracees' root descriptors kept for pinned opens' resolution; the calls that
        #: change a root stop, and switch keeping off (resolve.RootFds)
        self._roots = RootFds()
        if stable_args:
            self.internal_trace |= ROOT_CALLS
        self._mem = _Mem(0)
        #: per x86_64 call number: 1 + the index of the path argument its plan decodes
        #: (0: none); the compiled seccomp stop reads that path with the stop (brokerd.tracer.accel)
        self._path_reads = bytearray(512)
        #: the non-waiting wait for the next stop: (tid, status) or None; compiled, (tid,
        #: status, seccomp info) with the stop's information fetched at once (brokerd.tracer.accel)
        self._next_stop: Callable[[], tuple | None] = (
            partial(accel.next_stop, self._path_reads) if accel is not None else pt.wait_any)
        #: the whole stop loop compiled (accel.reap): where the compiled calls are, unless
        #: BROKERD_CLOOP=0 (then the Python loop calls them one by one)
        self._compiled_loop = accel is not None and os.environ.get("BROKERD_CLOOP", "") != "0"
        self._saved_dispositions: dict[signal.Signals, Any] = {}
        self.stats = {"stops": 0, "decisions": 0}
        #: children that stopped and exited before their parent's fork/clone event
        #: came: that event must not bring them back into the table (the loop would wait for ever)
        self._gone_unannounced: set[int] = set()
        self.stops = StopCounter()  # per syscall name; BROKERD_STOP_COUNTS=FILE writes it (stopcount.py)
        self.attached = False
        #: what SIGTERM/SIGHUP of the broker do to attached tracees: "detach" or "kill"
        self.on_leave = "detach"
        self._detaching = False
        self.guard = Guard([os.getpid()], (a.pid for a in self.stack if a.pid), self._in_session)
        self.guard.session_tasks = self.threads.keys
        #: the Landlock domain every launched program gets (None: none; the guard's own checks stand in)
        self.landlock_abi = landlock.abi_version() if use_landlock else 0
        self.use_landlock = use_landlock
        self.wall = landlock.wall(self.landlock_abi) if self.landlock_abi else None
        #: the authorizers' kernel layers, compiled after the handshake
        self.layer_plan = kernel_layers.Plan()
        self._guard_without_wall(self.wall is None, self.landlock_abi < landlock.ABI_SCOPE, emulate=use_landlock)
        self.detached_cleanly = False
        #: every tracee stops at its exec (someone wants exec events, or callers' symbols);
        #: else only those that need it (Stops._choose_exec_events); set at launch
        self.exec_everywhere = True
        self._tty_stop = False
        self.forced: SkipFail | None = None  # set by fail("deny")

    def _guard_without_wall(self, proc: bool, owner: bool, emulate: bool) -> None:
        """Where no Landlock domain keeps the program away from the broker's
        processes (no Landlock, ``--no-landlock``, attach), the guard checks
        opens of /proc/PID entries (every open stops); where no signal scope
        does, it checks F_SETOWN (fcntl stops for its owner commands).  With
        ``emulate`` (Landlock missing, not refused by the user) it keeps the
        program from everything outside its session, as the domain would;
        otherwise from the broker's own processes only."""
        self.guard.proc_checks = proc
        self.guard.owner_checks = owner
        # no domain covers writes to /proc/PID/oom_score_adj and the like: opens for
        # writing stop (a flag test in the filter) and are checked, wall or not
        self.guard.write_checks = True
        self.guard.emulate_domain = emulate and proc
        self.guard.emulate_signals = emulate and owner
        # no domain covers prlimit/sched/priority calls: outside the session they are refused
        # unless the user opted out of the wall (or attached)
        self.guard.emulate_control = emulate
        self._guarded = self.guard.calls()
        # fcntl stops only for its owner commands (a flag test in the filter), not here
        self.internal_trace = self.internal_trace | (PROC_OPEN_CALLS if proc else frozenset())
        self._action_cache.clear()

    def _in_session(self, tgid: int) -> bool:
        return any(t.tgid == tgid for t in self.threads.values())

    if TYPE_CHECKING:  # the other parts' methods these ones call (defined in the sibling modules)
        def stack_action(self, name: str) -> tuple[str, int]: ...
        def build_filter(self, stop: int = ..., guard_region: bool = ..., handoff: int | None = ...) -> list[tuple[int, int, int, int]]: ...
        def leave(self, dying: bool) -> None: ...
        def _detach_thread(self, tid: int, sig: int) -> None: ...
        def _set_exec_events(self, t: _Thread, on: bool) -> None: ...
        def kill_all(self) -> None: ...
        def _end_landlock_audit(self) -> None: ...
        def _on_broker_signal(self, signo: int, code: int) -> None: ...
        def _reap(self) -> None: ...
        def end_authorizers(self, why: str) -> None: ...
        def _on_tracee(self, tid: int, fn: Callable[..., None], *args: object) -> None: ...
        def _on_status(self, tid: int, status: int, info: tuple | None = ...) -> None: ...
        def _resume(self, tid: int, sig: int = ...) -> None: ...
        def _to_exit_stop(self, t: _Thread) -> None: ...
        def _mark_run(self, t: _Thread) -> None: ...
        def _maybe_stop_self(self) -> None: ...
        def _gone(self, tid: int) -> None: ...
        def _on_seccomp(self, t: _Thread, info: tuple | None = ...) -> None: ...
        def _seccomp_entry(self, t: _Thread, arch: int, nr: int, args: tuple[int, ...], ip: int, ret_data: int,
                           path: tuple[bytes, bool] | int | None) -> None: ...
        def _on_entry(self, t: _Thread, arch: int, nr: int, rawargs: Sequence[int], ip: int) -> None: ...
        def _ask_entry(self, t: _Thread, plan: Any, rawargs: Sequence[int], ip: int,
                       path: tuple[bytes, bool] | int | None = ..., plain: bool | None = ...) -> None: ...
        def _make_fused(self) -> Callable[..., None]: ...
        def _guard_entry(self, t: _Thread, plan: Any, rawargs: Sequence[int]) -> bool: ...
        def _expected_object(self, t: _Thread, spec: SyscallSpec, raw: tuple, args: tuple,
                             pin: bool = ...) -> tuple: ...
        def _pinned_notes(self, t: _Thread, plan: Any, raw: tuple[int, ...], args: tuple) -> tuple | None: ...
        def _judged_plain(self, t: _Thread, plan: Any, raw: tuple[int, ...], args: tuple) -> tuple: ...
        def _opened_expected(self, t: _Thread, fd: int, expect: tuple) -> bool: ...
        def _undo_open(self, t: _Thread, fd: int) -> None: ...
        def _guard_region(self, t: _Thread, abi: Abi, spec: SyscallSpec,
                          rawargs: Sequence[int]) -> Sequence[int] | None: ...
        def _strip_untraced(self, t: _Thread, abi: Abi, rawargs: Sequence[int]) -> Sequence[int]: ...
        @property
        def _copies_clone3(self) -> bool: ...
        def _stable_clone3(self, t: _Thread, abi: Abi, rawargs: Sequence[int]) -> Sequence[int] | None: ...
        def _stable_owner(self, t: _Thread, abi: Abi, name: str, rawargs: Sequence[int]) -> Sequence[int] | None: ...
        def _stable_open_how(self, t: _Thread, abi: Abi, rawargs: Sequence[int]) -> Sequence[int] | None: ...
        def _stable_msghdr(self, t: _Thread, abi: Abi, rawargs: Sequence[int],
                           name: str = ...) -> Sequence[int] | None: ...
        def _stable_mmsghdr(self, t: _Thread, abi: Abi, rawargs: Sequence[int]) -> Sequence[int] | None: ...
        def _sent_one(self, t: _Thread, rval: int) -> int: ...
        def _check_sets(self, t: _Thread, sets: Sequence[SetMem]) -> None: ...
        def _apply_entry(self, t: _Thread, d: Decision) -> None: ...
        def _rewrite(self, t: _Thread, d: Decision) -> bool: ...
        def _release_slots(self, region: Region, tids: Sequence[int]) -> None: ...
        def _inject_region(self, t: _Thread, regs: pt.Regs, d: Decision | None) -> None: ...
        def _next_call(self, t: _Thread, nr: int, args: tuple[int, ...]) -> None: ...
        def _hold_signals(self, t: _Thread) -> None: ...
        def _release_signals(self, t: _Thread) -> None: ...
        def _injected_entry(self, t: _Thread, nr: int, args: Sequence[int]) -> None: ...
        def _fetch(self, event_id: int, argn: int, offset: int, length: int) -> bytes: ...
        def _set_memory(self, t: _Thread, s: SetMem) -> None: ...
        def _sysret(self, t: _Thread, rval: int) -> None: ...
        def _after_skip(self, t: _Thread) -> None: ...
        def _on_signal(self, t: _Thread, sig: int) -> None: ...
        def _pins_opens(self) -> bool: ...
        def _may_pin(self, t: _Thread, abi: Abi) -> bool: ...
        def _note_filter(self, t: _Thread, name: str, rawargs: Sequence[int]) -> None: ...
        def _pin_open(self, t: _Thread, d: Decision) -> str: ...
        def _ext_plan(self, plan: Any) -> Any: ...
        def _ask_ext(self, t: _Thread, plan: Any, args: tuple[int, ...], path: tuple[bytes, bool]) -> bool: ...
        def _answered(self, t: _Thread, fn: Callable[..., None], *args: object) -> None: ...


def _symbolizer() -> Symbolizer:
    """The ``caller`` note's symbolizer, imported on first use: pyelftools
    costs a quarter of brokerctl's start-up and most sessions never need it."""
    from ..elfinfo import Symbolizer

    return Symbolizer()
