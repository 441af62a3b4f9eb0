"""The tracer shim: runs a program under ptrace and makes the kernel do what
the authorizer stack decides.

One thread does everything: a plain epoll loop waits on a signalfd for
SIGCHLD (ptrace stops) and on every authorizer's descriptor.  A tracee
waiting for its verdict is just a record in a table, so other tracees keep
running and many decisions are in flight at once.  All ptrace requests come
from this thread, as the kernel requires.

Launched programs get a seccomp-bpf filter (see :mod:`.seccomp`) that stops
only the calls some authorizer subscribed to (PTRACE_EVENT_SECCOMP); the
tracee is then resumed with PTRACE_CONT, so a call that needs no result costs
exactly one stop.  ``step`` resumes with PTRACE_SYSCALL to get the exit stop.

Per-thread states (``_Thread.state``) and the one table of their moves are
in :mod:`.states` (docs/shim.md quotes it).
"""

from __future__ import annotations

import ctypes
import errno as E
import mmap
import os
import select
import shutil
import signal
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from brokerd.decision.audit import AuditRecord
from brokerd.decision.authorizer import KILL_GRACE
from brokerd.decision.defaults import NEVER_DENIED
from brokerd.decision.member import Member
from brokerd.decision.rules import StaticRules
from brokerd.decision.stack import Decision, EntryWalk, ExitWalk, Stack, VerdictError
from brokerd.protocol import codec
from brokerd.protocol.abi import ABIS, Abi, SyscallSpec, abi_from_audit, names_in
from brokerd.protocol.args import (
    Encoded,
    constant,
    decode_args,
    decode_outbufs,
    decode_result,
    encode_args,
)
from brokerd.protocol.types import (
    Call,
    Cont,
    Deliver,
    Fail,
    Field,
    Int,
    Kill,
    Ok,
    ProcEvent,
    Reply,
    Rewrite,
    SetMem,
    SignalEvent,
    SkipFail,
    Str,
    Struct,
    Suppress,
    Sym,
    SyscallEvent,
    SysretEvent,
)

from . import landlock, scratch, seccomp
from . import layers as kernel_layers
from . import ptrace as pt
from .guard import GUARDED, OWNER_CALLS, OWNER_CMD_BIT, PROC_OPEN_CALLS, Guard
from .kernel import missing_features
from .procfs import tgid_of
from .resolve import resolve
from .scratch import MEMFD_NAME, MFD_ALLOW_SEALING, MFD_CLOEXEC, Region, adopt, can_seal
from .states import State, move, strays_text
from .stopcount import StopCounter

if TYPE_CHECKING:
    from .elfinfo import Symbolizer

OPTIONS = (
    pt.O_TRACESYSGOOD
    | pt.O_TRACEFORK
    | pt.O_TRACEVFORK
    | pt.O_TRACECLONE
    | pt.O_TRACEEXEC
    | pt.O_TRACESECCOMP
    | pt.O_EXITKILL
)
SYSCALL_STOP = signal.SIGTRAP | 0x80
STOP_SIGNALS = frozenset((signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU))
_EVENT_NAMES = {pt.EVENT_FORK: "fork", pt.EVENT_VFORK: "vfork", pt.EVENT_CLONE: "clone"}
MASK64 = (1 << 64) - 1
ARG_REGS_64 = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
ARG_REGS_32 = ("rbx", "rcx", "rdx", "rsi", "rdi", "rbp")
CLONE_UNTRACED = constant("CLONE_UNTRACED")
#: sendmsg's 4th argument register (unused by the call) carries the listener hand-over's nonce
HANDOFF_ARG = 3
#: the same register (and the next, for i386's 32-bit halves) carries the
#: session's injection nonce in the broker's own injected memfd_create/close
#: (both ignore it): the filter lets exactly those through the program's static rules
INJECT_ARG = 3
#: injected calls with a spare argument register; the injected mmap uses all six
INJECTED_CALLS = ("memfd_create", "close", "mseal")
# The broker's own rules, below every authorizer: io_uring reaches files and
# sockets with no syscall to judge, so it is denied unless the operator allows
# it.  clone3 keeps its flags in memory: on ptrace with stable arguments the
# shim copies its struct clone_args into the read-only scratch region without
# CLONE_UNTRACED (see _stable_clone3); without a region (--no-stable-args, the
# notify backend) it fails with ENOSYS and libc falls back to clone, whose
# flags are in registers and lose CLONE_UNTRACED; clone itself always stops.
IO_URING_DENIED = (("io_uring_setup", E.EPERM), ("io_uring_enter", E.EPERM), ("io_uring_register", E.EPERM))
CLONE3_DENIED = (("clone3", E.ENOSYS),)
#: a watch-only attach's rules (brokerctl): no region, so clone3 fails as without stable args
BROKER_RULES_IO_URING = StaticRules(deny=CLONE3_DENIED)
#: struct clone_args sizes the kernel accepts (CLONE_ARGS_SIZE_VER0 .. PAGE_SIZE);
#: others fail in the kernel before any child exists, so they run unchanged
CLONE_ARGS_SIZES = range(64, 4096 + 1)
# numbers of the calls the shim injects, from the tables (i386 maps with mmap2)
SYS_MMAP = {n: a.nr("mmap2" if n == "i386" else "mmap") for n, a in ABIS.items()}
SYS_MEMFD_CREATE = {n: a.nr("memfd_create") for n, a in ABIS.items()}
SYS_CLOSE = {n: a.nr("close") for n, a in ABIS.items()}
SYS_MSEAL = {n: a.nr("mseal") for n, a in ABIS.items()}
MAP_FIXED = constant("MAP_FIXED")
MAP_32BIT = constant("MAP_32BIT")
# A userfaultfd that also handles faults taken by the kernel would freeze the
# broker inside process_vm_readv on a page nobody fills (no timeout can fire
# there): only UFFD_USER_MODE_ONLY ones may be created (others fail with
# EPERM, as they do natively for unprivileged users); kernel reads of their
# pages get EFAULT.  Checked in the filter and, when attached, at entry.
UFFD_USER_MODE_ONLY = 1
MREMAP_FIXED = constant("MREMAP_FIXED")
SHM_REMAP = 0o40000
#: calls that could replace or move the read-only scratch region; denied over it
REGION_CALLS = names_in("remap")
#: argument kinds whose judged bytes are copied into the region before the call runs
#: (sockaddr:N arguments too, packed again from the judged value)
STABLE_KINDS = frozenset({"path", "str"})
#: open-like calls whose opened object is checked against the judged path at the exit stop
#: (name -> (path argument index, flags argument index or None))
OPEN_CALLS = {"open": (0, 1), "openat": (1, 2), "openat2": (1, None), "creat": (0, None),
              "execve": (0, -1), "execveat": (1, -1)}  # -1: an exec, checked against /proc/PID/exe
O_CREAT, O_EXCL, O_NOFOLLOW = constant("O_CREAT"), constant("O_EXCL"), constant("O_NOFOLLOW")
O_TMPFILE_BIT = constant("O_TMPFILE") & ~constant("O_DIRECTORY")  # __O_TMPFILE
REGION_CALLS_ALWAYS = REGION_CALLS - {"mmap", "mmap2"}  # mmap: only with MAP_FIXED
# Terminal signals the broker itself ignores while a program runs: they are
# meant for the program (which shares the terminal's process group).
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT)
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# Job-control signals from the terminal: the broker does not stop on them
# itself; it stops (so the shell sees the job stopped) once the program has.
TTY_STOP_SIGNALS = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
SI_USER = 0
#: the data of the broker's own SECCOMP_RET_TRACE: a stop with other data comes
#: from a filter the program installed itself (natively, with no tracer, ENOSYS)
TRACE_MARK = 0xB70C


class LaunchError(Exception):
    """The program could not be started; ``status`` is what a shell would exit with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def attach_refusal(pid: int, err: OSError) -> str:
    """Why PTRACE_SEIZE of ``pid`` failed, and what to do about it."""
    if err.errno == E.ESRCH:
        return f"no such process: {pid}"
    try:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        status = {}
    tracer = status.get("TracerPid", "0").strip()
    if tracer not in ("0", ""):
        return f"cannot attach to {pid}: it is already traced by pid {tracer} (detach that tracer first)"
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = f.read().strip()
    except OSError:
        scope = ""
    if scope and scope != "0" and os.geteuid() != 0:
        return (f"cannot attach to {pid}: Yama ptrace_scope is {scope}; run as root or set "
                "/proc/sys/kernel/yama/ptrace_scope to 0")
    return (f"cannot attach to {pid}: {err.strerror} (you may only trace your own processes "
            "unless you are root)")


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


@dataclass(slots=True)
class _Thread:
    tid: int
    tgid: int
    _state: State = State.RUN
    startup: bool = True
    abi: Abi | None = None
    spec: SyscallSpec | None = None
    raw: tuple[int, ...] = ()
    event_id: int = 0
    walk: EntryWalk | ExitWalk | None = None
    decision: Decision | None = None
    replay: Decision | None = None
    saved_regs: pt.Regs | None = None
    inject: list = field(default_factory=list)  # steps of a running injection
    inject_fd: int = -1
    saved_view: mmap.mmap | None = None  # the shim's mapping of a scratch region being set up
    verify: tuple | None = None  # what an open must have opened (see _expected_object)
    undo_step: bool = False  # an undone open was stepped: its sysret is still owed
    map_flags: int = 0  # extra flags of the injected mmap of the scratch region
    guard_exit: bool = False  # the guard checks what this open opened (no Landlock wall)
    #: it exec'd: a fork event arriving late must not hand it its parent's scratch region
    #: (an execve nobody stops, e.g. one a kernel layer settles, can win that race)
    execed: bool = False
    t0: float = 0.0
    running: bool = True

    @property
    def state(self) -> State:
        """What the shim waits for on this thread (states.py: every move is in its table)."""
        return self._state

    @state.setter
    def state(self, new: str) -> None:
        self._state = move(self._state, new)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _signalfd(signals: Sequence[int]) -> int:
    """A non-blocking signalfd for ``signals`` (which the caller has blocked)."""
    mask = 0
    for s in signals:
        mask |= 1 << (s - 1)
    sigset = ctypes.create_string_buffer(struct.pack("=Q", mask) + bytes(120))
    fd = _libc().signalfd(-1, sigset, os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "signalfd")
    return fd


class Shim:
    """One traced session: a program, its descendants and an authorizer stack."""

    backend = "ptrace"

    def __init__(
        self,
        stack: Sequence[Member],
        *,
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
        self.stack = Stack(stack)
        self.strsize = strsize
        self.session = session
        self.audit = audit
        self._log = log or (lambda m: print(f"brokerd: {m}", file=sys.stderr, flush=True))
        self.greeting_timeout = greeting_timeout
        self.threads: dict[int, _Thread] = {}
        self._symbolizer = _symbolizer() if caller else None
        self.main_pid = 0
        self.main_status: int | None = None
        self._next_id = 1
        self._info = pt.SyscallInfo()
        self._regs = pt.Regs()
        self._action_cache: dict[str, tuple[str, int]] = {}
        #: the broker's own rules, below every authorizer (docs/security.md)
        self.stable_args = stable_args
        self.internal = StaticRules(deny=(() if allow_io_uring else IO_URING_DENIED)
                                    + (() if self._copies_clone3 else CLONE3_DENIED))
        self._signal_order: tuple[int, ...] = ()
        self._regions: dict[int, Region] = {}  # tgid -> its read-only scratch region
        #: marks the broker's own injected calls to the filter (INJECT_ARG); the program never sees it
        self._inject_nonce = int.from_bytes(os.urandom(8), "little") | 1
        self._slot_waiters: list[_Thread] = []  # calls waiting for a free scratch slot
        #: calls that always stop for the broker's own checks (clone flags, the guard, the region)
        #: the region is sealed in the tracee (mseal): the kernel refuses to unmap,
        #: move or replace it, so the calls that could need not stop for it
        self.seals = stable_args and can_seal()
        self.internal_trace = (frozenset({"clone", "clone3"}) | GUARDED
                               | (frozenset() if self.seals else REGION_CALLS_ALWAYS))
        self._mem = _Mem(0)
        self._sfd = -1
        self._ep: select.epoll | None = None
        self._fds: dict[int, Member] = {}
        self._saved_dispositions: dict[signal.Signals, Any] = {}
        self._old_mask: set[int] = set()
        self.stats = {"stops": 0, "decisions": 0}
        self.stops = StopCounter()  # per syscall name; BROKERD_STOP_COUNTS=FILE writes it (stopcount.py)
        self.attached = False
        #: what SIGTERM/SIGHUP of the broker do to attached tracees: "detach" or "kill"
        self.on_leave = "detach"
        self._detaching = False
        self.guard = Guard([os.getpid()], (a.pid for a in self.stack if a.pid), self._in_session)
        #: the Landlock domain every launched program gets (None: none; the guard's own checks stand in)
        self.landlock_abi = landlock.abi_version() if use_landlock else 0
        self.use_landlock = use_landlock
        self.wall = landlock.wall(self.landlock_abi) if self.landlock_abi else None
        #: the authorizers' kernel layers, compiled after the handshake
        self.layer_plan = kernel_layers.Plan()
        self._guard_without_wall(self.wall is None, self.landlock_abi < landlock.ABI_SCOPE, emulate=use_landlock)
        self.detached_cleanly = False
        self._tty_stop = False
        self._readers: dict[int, Callable[[], None]] = {}
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
        self.guard.emulate_domain = emulate and proc
        self.guard.emulate_signals = emulate and owner
        self._guarded = self.guard.calls()
        # fcntl stops only for its owner commands (a flag test in the filter), not here
        self.internal_trace = self.internal_trace | (PROC_OPEN_CALLS if proc else frozenset())
        self._action_cache.clear()

    def _in_session(self, tgid: int) -> bool:
        return any(t.tgid == tgid for t in self.threads.values())

    # ------------------------------------------------------------------
    # set-up
    # ------------------------------------------------------------------
    def _setup_loop(self) -> None:
        if self._ep is not None:
            return
        problems = missing_features()
        if problems:
            raise LaunchError(1, "this kernel cannot run a brokerd session: " + "; ".join(problems))
        # not dumpable: a traced program of the same user cannot ptrace the
        # broker or read its memory through /proc (docs/security.md)
        _libc().prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
        watched = (signal.SIGCHLD, *FORWARDED_SIGNALS, *TERMINAL_SIGNALS, *TTY_STOP_SIGNALS)
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        self._sfd = _signalfd(watched)
        self._ep = select.epoll()
        self._ep.register(self._sfd, select.EPOLLIN)
        for a in self.stack:
            if a.rfd >= 0:
                self._fds[a.rfd] = a
                self._ep.register(a.rfd, select.EPOLLIN)

    def handshake(self) -> None:
        """Greet every authorizer and wait for its first answer, which says
        whether it speaks the handshake or is a plain line filter."""
        self._setup_loop()
        now = time.monotonic()
        for a in self.stack:
            if self.greeting_timeout is not None:
                a.greeting_timeout = self.greeting_timeout
            a.greet(self.session, now)
        while not all(a.ready for a in self.stack):
            self._poll_once(reap=False)
        self.stack.forget()  # subscriptions are known now
        self._signal_order = self.stack.signal_order()
        self.guard.protected_groups |= {a.pid for a in self.stack if a.pid}
        if self.stack:  # one decode serves every authorizer: the largest prefix any wants
            self.strsize = max(a.strsize if a.strsize is not None else self.strsize for a in self.stack)
        for a in self.stack:
            if hasattr(a, "on_fetch"):
                a.on_fetch = self._fetch
        if self._symbolizer is None and any(a.caller for a in self.stack):
            self._symbolizer = _symbolizer()
        self._plan_layers()

    def _plan_layers(self) -> None:
        """Compile the authorizers' kernel layers for this kernel (applied by
        the launched child, after the wall): each authorizer stops being asked
        about the calls its layer settles (PROTOCOL.md 7.6)."""
        specs = [(a.name, getattr(a, "layer", None)) for a in self.stack]
        self.layer_plan = kernel_layers.plan(specs, self.landlock_abi, self._log)
        for a, settled in zip(self.stack, self.layer_plan.settled, strict=True):
            if hasattr(a, "settled"):
                a.settled = settled
        self._action_cache.clear()

    def _no_layers(self, why: str) -> None:
        """Nothing can be given to the program (attach): every call per call."""
        if any(getattr(a, "layer", None) for a in self.stack):
            self._log(f"{why}: kernel layers are not applied; their calls are decided per call")
        self.layer_plan = kernel_layers.Plan()
        for a in self.stack:
            if hasattr(a, "settled"):
                a.settled = frozenset()
        self._action_cache.clear()

    def stack_action(self, name: str) -> tuple[str, int]:
        """What the whole stack does with syscall ``name`` before any argument
        is seen: allow, trace, deny(errno) or kill, the broker's own rules
        last (see decision.rules.combine)."""
        act = self._action_cache.get(name)
        if act is None:
            internal = self.internal.action(name, name in self.internal_trace)
            act = self.stack.action(name, internal)
            self._action_cache[name] = act
        return act

    def build_filter(self, stop: int = seccomp.trace(TRACE_MARK), guard_region: bool = True,
                     handoff: int | None = None) -> list[tuple[int, int, int, int]]:
        """The launched session's seccomp mask: ``stop`` (RET_TRACE, or
        RET_USER_NOTIF for the notification backend) for calls someone must
        decide, the stack's static answers (ALLOW, ERRNO, KILL_PROCESS) for
        the rest, so those hold in the kernel whatever happens to us."""
        kernel = {
            "allow": lambda e: seccomp.RET_ALLOW,
            "trace": lambda e: stop,
            "deny": seccomp.ret_errno,
            "kill": lambda e: seccomp.RET_KILL_PROCESS,
        }
        unknown = self.stack.unknown()
        rules: dict[str, seccomp.AbiRules] = {}
        for abi_name, abi in ABIS.items():
            default = kernel[unknown[0]](unknown[1])
            acts: dict[int, seccomp.Action] = {}
            for name, spec in abi.by_name.items():
                what, err = self.stack_action(name)
                action: seccomp.Action = kernel[what](err)
                if not guard_region or self.seals or action != seccomp.RET_ALLOW or name not in ("mmap", "mmap2"):
                    pass
                elif spec.args[3:4] == ("mmap_flags",):
                    # a MAP_FIXED mapping could replace the scratch region: it stops (and is checked)
                    action = seccomp.FlagTest(3, MAP_FIXED, stop, seccomp.RET_ALLOW)
                else:
                    action = stop  # i386's old mmap passes its flags in memory
                action = self._flag_rule(name, action, stop)
                if handoff is not None and name == "sendmsg" and isinstance(action, int):
                    action = seccomp.ArgEquals(HANDOFF_ARG, handoff, seccomp.RET_ALLOW, action)
                if name in INJECTED_CALLS and isinstance(action, int) and action not in (seccomp.RET_ALLOW, stop):
                    action = self._injected_rule(abi_name, action)
                if action != default:
                    acts[spec.nr | abi.nr_bit] = action
            rules[abi_name] = seccomp.AbiRules(acts, default)
        names = self.stack.subscriptions()
        if names is not None:
            known = set(ABIS["x86_64"].by_name) | set(ABIS["i386"].by_name)
            unknown_names = names - known
            for a in self.stack:
                for n in a.static.allow | a.static.kill | {n for n, _ in a.static.deny}:
                    if n not in known:
                        unknown_names.add(n)
            if unknown_names:
                self._log(f"unknown syscall names ignored: {', '.join(sorted(unknown_names))}")
        x32_rules = rules["x32"]
        x32: seccomp.AbiRules | None = None  # nobody cares about x32: the filter kills it
        if x32_rules.default != seccomp.RET_ALLOW or x32_rules.actions:
            x32 = seccomp.AbiRules({**x32_rules.actions, 0xFFFFFFFF: seccomp.RET_ALLOW}, x32_rules.default)
        return seccomp.compile_filter(rules["x86_64"], rules["i386"], x32)

    def _injected_rule(self, abi_name: str, action: int) -> seccomp.ArgEquals:
        """Let exactly the broker's injected call through a static rule: it
        carries the session nonce in argument registers the call ignores (one
        64-bit one, or two 32-bit ones for i386), which the program never sees."""
        n = self._inject_nonce
        if abi_name != "i386":
            return seccomp.ArgEquals(INJECT_ARG, n, seccomp.RET_ALLOW, action)
        high = seccomp.ArgEquals(INJECT_ARG + 1, n >> 32, seccomp.RET_ALLOW, action)
        return seccomp.ArgEquals(INJECT_ARG, n & 0xFFFFFFFF, high, action)

    def _flag_rule(self, name: str, action: seccomp.Action, stop: int) -> seccomp.Action:
        """The filter's argument tests for the broker's own rules: a program's
        own seccomp listener would see its calls before us (USER_NOTIF outranks
        TRACE), so creating one fails with EBUSY, as when a listener exists;
        without Landlock's signal scope, fcntl's owner commands stop for the guard."""
        if not isinstance(action, int) or action not in (seccomp.RET_ALLOW, stop):
            return action
        if name == "seccomp":
            return seccomp.FlagTest(1, seccomp.SECCOMP_FILTER_FLAG_NEW_LISTENER, seccomp.ret_errno(E.EBUSY), action)
        if name == "userfaultfd":  # only the user-mode kind: see UFFD_USER_MODE_ONLY
            return seccomp.FlagTest(0, UFFD_USER_MODE_ONLY, action, seccomp.ret_errno(E.EPERM))
        if name in OWNER_CALLS and self.guard.owner_checks and action == seccomp.RET_ALLOW:
            return seccomp.FlagTest(1, OWNER_CMD_BIT, stop, action)
        return action

    # ------------------------------------------------------------------
    # launch
    # ------------------------------------------------------------------
    def launch(self, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        """Fork, let the tracer seize the child, install the filter, exec ``argv``."""
        insns = self.build_filter()

        def prepare(go: int) -> None:
            os.read(go, 1)  # wait until we are seized
            seccomp.install(insns)

        pid, go = self._spawn(argv, env, prepare)
        try:
            pt.seize(pid, OPTIONS)
        except OSError as e:
            os.kill(pid, signal.SIGKILL)
            os.close(go)
            raise LaunchError(1, f"cannot trace the program: {e.strerror}") from e
        self._started(pid, go)
        return pid

    def _spawn(self, argv: Sequence[str], env: dict[str, str] | None,
               prepare: Callable[[int], None]) -> tuple[int, int]:
        """Fork the program.  The child restores the signal state the broker
        changed, runs ``prepare(go)`` (wait on the pipe ``go`` for the broker,
        install the filter: the order is the backend's) and execs.  Returns the
        pid and the pipe's write end, for :meth:`_started`."""
        if not argv:
            raise LaunchError(2, "no program given")
        path = argv[0] if "/" in argv[0] else shutil.which(argv[0])
        if path is None:
            raise LaunchError(127, f"{argv[0]}: command not found")
        self._setup_loop()
        if self.wall is None and self.use_landlock:
            self._log("no Landlock here (not in this kernel, or refused by a seccomp profile): the broker's "
                      "own checks guard its processes instead (every open stops once more; docs/security.md)")
        env = dict(os.environ) if env is None else env
        for s in TERMINAL_SIGNALS:
            self._saved_dispositions[s] = signal.getsignal(s)
        r, w = os.pipe()
        # the child must be dumpable for a non-root broker to seize it or take
        # its listener (the broker itself is not, see _setup_loop)
        _libc().prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
        pid = os.fork()
        if pid != 0:
            _libc().prctl(4, 0, 0, 0, 0)
        if pid == 0:  # the child: becomes the program
            try:
                os.close(w)
                for s, disp in self._saved_dispositions.items():
                    signal.signal(s, signal.SIG_DFL if disp in (None, signal.default_int_handler) else disp)
                signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
                if self.wall is not None:
                    try:
                        landlock.restrict(self.wall)
                    except OSError as e:  # fail closed: the program never runs outside the wall
                        os.write(2, f"brokerctl: cannot apply the Landlock wall: {e.strerror} "
                                    "(--no-landlock runs without it)\n".encode())
                        os._exit(127)
                # the authorizers' layers, in stack order (each only narrows); before the
                # filter, whose own answers (a policy's ENOSYS) must not reach these calls
                for layer in self.layer_plan.layers:
                    try:
                        landlock.restrict(layer)
                    except OSError as e:  # fail closed: its settled calls are asked nobody
                        os.write(2, f"brokerctl: cannot apply a policy's Landlock layer: {e.strerror} "
                                    "(--no-landlock decides its calls per call)\n".encode())
                        os._exit(127)
                prepare(r)
                os.close(r)
                os.execve(path, list(argv), env)
            except OSError as e:
                code = 126 if e.errno in (E.EACCES, E.ENOEXEC) else 127
                try:  # the write itself may be denied (a policy that sees every call)
                    os.write(2, f"brokerctl: {argv[0]}: {e.strerror}\n".encode())
                finally:
                    os._exit(code)
            finally:  # whatever happened, the child never returns into the broker's code
                os._exit(127)
        os.close(r)
        return pid, w

    def _started(self, pid: int, go: int) -> None:
        """The broker holds the program: record it and let it exec."""
        self.main_pid = pid
        self.threads[pid] = _Thread(pid, pid, startup=False)
        os.write(go, b"go")
        os.close(go)

    # ------------------------------------------------------------------
    # attach / detach
    # ------------------------------------------------------------------
    def attach(self, pid: int, follow: bool = False, exit_kill: bool = True) -> list[int]:
        """PTRACE_SEIZE every thread of ``pid`` (re-reading /proc/PID/task
        until no new thread appears), then interrupt each so that syscall
        stops begin.  New threads are always followed (a thread is the same
        process); ``follow`` also follows children forked from now on.
        ``exit_kill``: the kernel kills the tracees if the broker dies (an
        enforcing attach fails closed); without it they go on untraced, as
        after ``strace -p`` (a watch-only attach must never harm)."""
        options = pt.O_TRACESYSGOOD | pt.O_TRACECLONE | pt.O_TRACEEXEC | pt.O_TRACESECCOMP
        if exit_kill:
            options |= pt.O_EXITKILL
        if follow:
            options |= pt.O_TRACEFORK | pt.O_TRACEVFORK
        self._setup_loop()
        self.attached = True
        # no domain can be given to a running process: the guard's own checks, for the broker's processes
        self._guard_without_wall(True, True, emulate=False)
        self._no_layers("attach gives a running process no Landlock domain")
        seized: list[int] = []
        while True:
            try:
                tids = {int(x) for x in os.listdir(f"/proc/{pid}/task")}
            except FileNotFoundError:
                if not seized:
                    raise LaunchError(1, f"no such process: {pid}") from None
                break
            new = sorted(tids - set(seized))
            if not new:
                break
            for tid in new:
                try:
                    pt.seize(tid, options)
                except ProcessLookupError:
                    continue
                except OSError as e:
                    if not seized:
                        raise LaunchError(1, attach_refusal(pid, e)) from e
                    continue
                self.threads[tid] = _Thread(tid, pid, startup=False)
                seized.append(tid)
                pt.interrupt(tid)
        self.main_pid = pid
        self.main_status = 0  # do not wait for an exit status: end when detached or gone
        return seized

    def request_detach(self) -> None:
        """Leave every tracee as it was: stopped tracees are released now,
        running ones are interrupted and released at their next stop, with
        any signal they were about to receive."""
        if self._detaching:
            return
        self._detaching = True
        self.detached_cleanly = True
        for tid, t in list(self.threads.items()):
            if t.running or t.state == "stopped":
                # a running tracee, or one listening in a group-stop, must be
                # brought to a ptrace-stop before it can be detached
                try:
                    pt.interrupt(tid)
                except ProcessLookupError:
                    self.threads.pop(tid, None)
            elif t.state in ("ask", "ret", "run", "slotwait"):
                self._detach_thread(tid, 0)

    def leave(self, dying: bool) -> None:
        """The attached broker is going away: the operator's Ctrl-C detaches;
        dying (SIGTERM, SIGHUP, its output lost) does what ``on_leave`` says."""
        if dying and self.on_leave == "kill":
            self.kill_all()
        else:
            self.request_detach()

    def _detach_thread(self, tid: int, sig: int) -> None:
        t = self.threads.pop(tid, None)
        if t is not None:
            t.walk = None
        try:
            pt.detach(tid, sig)
        except ProcessLookupError:
            pass

    # ------------------------------------------------------------------
    # the loop
    # ------------------------------------------------------------------
    def run(self) -> int:
        """Trace until every tracee is gone; returns the main program's status
        the way a shell reports it (exit code, or 128+signal)."""
        self._setup_loop()
        self._reap()
        while self.threads or self.main_status is None:
            self._poll_once(reap=True)
        if strays_text():
            self._log(f"internal: thread state moves outside the table (a bug, please report): {strays_text()}")
        for a in self.stack:
            a.kill("session ended") if a.mode != "dead" else None
        deadline = time.monotonic() + KILL_GRACE
        for a in self.stack:
            a.reap(deadline)
        self.stops.report()
        return self.exit_code()

    def exit_code(self) -> int:
        st = self.main_status or 0
        if os.WIFEXITED(st):
            return os.WEXITSTATUS(st)
        if os.WIFSIGNALED(st):
            return 128 + os.WTERMSIG(st)
        return 1

    def _poll_once(self, reap: bool) -> None:
        assert self._ep is not None
        deadline = None
        for a in self.stack:
            d = a.next_deadline()
            if d is not None and (deadline is None or d < deadline):
                deadline = d
        timeout = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        for fd, mask in self._ep.poll(timeout):
            if fd == self._sfd:
                self._on_signals(reap)
                continue
            reader = self._readers.get(fd)
            if reader is not None:
                reader()
                continue
            member = self._fds.get(fd)
            if member is None:
                continue
            now = time.monotonic()
            if mask & select.EPOLLOUT:
                member.on_writable()
            if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                member.on_readable(now)
            self._sync_fd(member, fd)
        now = time.monotonic()
        for a in self.stack:
            if a.mode != "dead":
                a.expire(now)
            self._sync_fd(a, None)

    def _sync_fd(self, a: Member, fd: int | None) -> None:
        """Keep epoll's view of an authorizer's descriptors current: drop a
        dead one, ask for EPOLLOUT only while it has output waiting.  A socket
        authorizer reads and writes one descriptor; a spawned one has two."""
        assert self._ep is not None
        if a.mode == "dead":
            for k in [k for k, v in self._fds.items() if v is a]:
                del self._fds[k]
                try:
                    self._ep.unregister(k)
                except (OSError, ValueError):
                    pass
            return
        want_out = a.wants_write
        if a.wfd == a.rfd:
            if want_out != getattr(a, "_epollout", False):
                a._epollout = want_out  # type: ignore[attr-defined]
                self._ep.modify(a.rfd, select.EPOLLIN | (select.EPOLLOUT if want_out else 0))
            return
        registered = a.wfd in self._fds
        if want_out and not registered:
            self._fds[a.wfd] = a
            self._ep.register(a.wfd, select.EPOLLOUT)
        elif not want_out and registered:
            del self._fds[a.wfd]
            self._ep.unregister(a.wfd)

    # ------------------------------------------------------------------
    # hooks for the daemon connection (brokerd.daemon.client)
    # ------------------------------------------------------------------
    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` from the loop whenever ``fd`` is readable."""
        self._setup_loop()
        assert self._ep is not None
        self._readers[fd] = callback
        self._ep.register(fd, select.EPOLLIN)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None and self._ep is not None:
            try:
                self._ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def kill_all(self) -> None:
        """SIGKILL every traced process (``brokerctl kill``, failure mode kill)."""
        for tgid in {t.tgid for t in self.threads.values()}:
            try:
                os.kill(tgid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def fail(self, mode: str, why: str) -> None:
        """The session lost something it cannot do without (the daemon):
        ``kill`` the tracees (default), ``deny`` every subscribed call with
        EPERM from now on, or ``allow`` (go on with the stack that is left)."""
        self._log(f"{why}; failure mode {mode}")
        if mode == "kill":
            self.kill_all()
        elif mode == "deny":
            self.forced = SkipFail(E.EPERM)

    def _on_signals(self, reap: bool) -> None:
        while True:
            try:
                data = os.read(self._sfd, 128 * 16)
            except BlockingIOError:
                break
            for off in range(0, len(data), 128):
                signo, _err, code = struct.unpack_from("=Iii", data, off)
                if signo in TTY_STOP_SIGNALS:
                    # Ctrl-Z: the program got it too; follow it into the stop
                    self._tty_stop = not self.attached
                    self._maybe_stop_self()
                elif self.attached and signo != signal.SIGCHLD:
                    self.leave(signo in FORWARDED_SIGNALS)
                elif signo in FORWARDED_SIGNALS or (signo in TERMINAL_SIGNALS and code == SI_USER):
                    if self.main_pid and self.main_status is None:
                        try:
                            os.kill(self.main_pid, signo)
                        except ProcessLookupError:
                            pass
        if reap:
            self._reap()

    def _reap(self) -> None:
        while True:
            try:
                tid, status = os.waitpid(-1, pt.WNOHANG | pt.WALL)
            except ChildProcessError:
                return
            if tid == 0:
                return
            self.stats["stops"] += 1
            self._on_tracee(tid, self._on_status, tid, status)

    def _on_tracee(self, tid: int, fn: Callable[..., None], *args: object) -> None:
        """Run ``fn(*args)``, which works on tracee ``tid`` (ptrace requests,
        /proc reads, its memory).  Every entry from the loop into per-tracee
        work goes through here (a stop, an authorizer's answer), because a
        tracee may be gone at any moment: SIGKILL from outside, the OOM
        killer, a sibling thread's exit_group or execve.  A gone tracee is
        forgotten quietly (its exit status comes later); any other failure
        on a live one kills its process rather than leave it stopped for ever
        or running unjudged (fail closed), and never ends the session."""
        try:
            fn(*args)
        except (OSError, ValueError, OverflowError) as e:
            t = self.threads.get(tid)
            if not (isinstance(e, OSError) and e.errno == E.ESRCH) and self._alive(tid):
                tgid = t.tgid if t is not None else tid
                self._log(f"pid {tgid}: cannot handle its stop ({e}): killed")
                try:
                    os.kill(tgid, signal.SIGKILL)
                except OSError:
                    pass
            self._gone(tid)

    @staticmethod
    def _alive(tid: int) -> bool:
        """Is ``tid`` still in a ptrace-stop (so still ours to resume)?"""
        try:
            pt.geteventmsg(tid)
        except OSError:
            return False
        return True

    # ------------------------------------------------------------------
    # stops
    # ------------------------------------------------------------------
    def _thread(self, tid: int) -> _Thread:
        t = self.threads.get(tid)
        if t is None:
            t = _Thread(tid, tgid_of(tid))
            self.threads[tid] = t
        return t

    def _on_status(self, tid: int, status: int) -> None:
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self._on_exit(tid, status)
            return
        if not os.WIFSTOPPED(status):
            return
        if tid not in self.threads and not self._is_tracee(tid):
            return
        t = self._thread(tid)
        t.running = False
        sig = os.WSTOPSIG(status)
        event = status >> 16
        if self._detaching and t.state in ("stopped", "run", "ask", "ret", "step") and event != pt.EVENT_STOP:
            # leaving: a signal-delivery stop keeps its signal, anything else just goes on
            self._detach_thread(tid, sig if not event and sig != SYSCALL_STOP else 0)
            return
        if event == pt.EVENT_SECCOMP:
            self._on_seccomp(t)
        elif sig == SYSCALL_STOP:
            self._on_syscall_stop(t)
        elif event in (pt.EVENT_FORK, pt.EVENT_VFORK, pt.EVENT_CLONE):
            self.stops.add(f"event:{_EVENT_NAMES[event]}")
            child = pt.geteventmsg(tid)
            if child not in self.threads:
                self.threads[child] = _Thread(child, child if event != pt.EVENT_CLONE else tgid_of(child))
            ctgid = self.threads[child].tgid
            if ctgid != t.tgid and t.tgid in self._regions and not self.threads[child].execed:
                self._regions[ctgid] = self._regions[t.tgid]  # the shared mapping is inherited
            kind = _EVENT_NAMES[event]
            self._proc_event(t, kind, (Int(child),))
            if t.state == "step":  # PTRACE_CONT would skip the exit stop: the stepper must hear the child's pid
                self._to_exit_stop(t)
            else:
                self._resume(tid)
        elif event == pt.EVENT_EXEC:
            self.stops.add("event:exec")
            self._on_exec(t)
        elif event == pt.EVENT_STOP:
            self.stops.add("event:stop")
            if t.startup or sig not in STOP_SIGNALS:
                t.startup = False
                self._resume(tid)
            elif self._detaching:
                self._detach_thread(tid, 0)
            else:
                t.state = "stopped"
                pt.listen(tid)
                self._maybe_stop_self()
        elif event:
            self._resume(tid)
        else:
            t.startup = False
            self.stops.add(f"signal:{_signame(sig)}")
            self._on_signal(t, sig)

    def _resume(self, tid: int, sig: int = 0) -> None:
        """Let a stopped tracee go on: PTRACE_CONT when launched (the filter
        stops what matters), PTRACE_SYSCALL when attached, detach while detaching."""
        t = self.threads.get(tid)
        if t is not None:
            t.running = True
        if self._detaching:
            self._detach_thread(tid, sig)
        elif self.attached:
            pt.syscall(tid, sig)
        else:
            pt.cont(tid, sig)

    def _to_exit_stop(self, t: _Thread) -> None:
        """Resume to the syscall-exit stop of the current call."""
        t.running = True
        pt.syscall(t.tid)

    def _maybe_stop_self(self) -> None:
        """After a terminal stop request, stop the broker too once the main
        program is stopped, so the shell reports the job stopped and ``fg``
        (SIGCONT to the whole job) resumes both: job control as without tracing."""
        if not self._tty_stop:
            return
        main = [t for t in self.threads.values() if t.tgid == self.main_pid]
        if main and all(t.state == "stopped" for t in main):
            self._tty_stop = False
            os.kill(os.getpid(), signal.SIGSTOP)

    def _is_tracee(self, tid: int) -> bool:
        """A stop from a tid we do not know yet: a new child whose first stop
        came before its parent's fork event.  Authorizer processes never stop."""
        return all(a.pid != tid for a in self.stack)

    def _on_exit(self, tid: int, status: int) -> None:
        t = self.threads.pop(tid, None)
        if t is None:
            return
        region = self._regions.get(t.tgid)
        if region is not None:
            if tid == t.tgid:
                del self._regions[t.tgid]
            self._release_slots(region, [tid])
        if tid == t.tgid:
            if os.WIFEXITED(status):
                self._proc_event(t, "exit", (Int(os.WEXITSTATUS(status)),))
            else:
                self._proc_event(t, "killed", (Int(os.WTERMSIG(status)),))
        if tid == self.main_pid:
            self.main_status = status

    def _gone(self, tid: int) -> None:
        t = self.threads.get(tid)
        if t is not None:
            t.walk = None
            t.state = "run"

    def _on_exec(self, t: _Thread) -> None:
        former = pt.geteventmsg(t.tid)
        if former != t.tid:
            # exec from a non-leader thread: it takes over the leader's tid, and
            # its record (maybe a stepped execve waiting for its result) with it
            old = self.threads.pop(former, None)
            if old is not None:
                old.tid = t.tid
                t = old
        old_region = self._regions.pop(t.tgid, None)  # a new address space: the old mapping is gone
        if old_region is not None:  # (shared with the parent it was forked from, maybe)
            self._release_slots(old_region, [former, t.tid, *(x.tid for x in self.threads.values()
                                                               if x.tgid == t.tgid)])
        t.execed = True
        self.threads[t.tid] = t
        if self._symbolizer is not None:
            self._symbolizer.forget(t.tgid)
        if any("exec" in a.events for a in self.stack):
            self._proc_event(t, "exec", _exec_args(t.tid))
        if t.state in ("step", "verify"):
            self._to_exit_stop(t)  # a stepped or checked execve: its result comes at the exit stop
        else:
            t.state = "run"
            self._resume(t.tid)

    def _proc_event(self, t: _Thread, kind: str, args: tuple) -> None:
        subscribers = [a for a in self.stack if kind in a.events or (kind == "killed" and "exit" in a.events)]
        if not subscribers:
            return
        line = codec.format_event(ProcEvent(t.tgid, t.tid, kind, args))
        for a in subscribers:
            a.notify(line)

    # ------------------------------------------------------------------
    # syscall entry
    # ------------------------------------------------------------------
    def _on_seccomp(self, t: _Thread) -> None:
        if t.state == "inject":  # one of our injected calls meets the filter: let it run
            self._to_exit_stop(t)
            return
        if pt.geteventmsg(t.tid) != TRACE_MARK:
            # the program's own RET_TRACE rule (newer filters' data wins): no
            # tracer of its own, so ENOSYS as natively, and nobody judges a call that never runs
            regs = pt.getregs(t.tid, self._regs)
            regs.orig_rax = MASK64
            regs.rax = (-E.ENOSYS) & MASK64
            pt.setregs(t.tid, regs)
            t.state = "run"
            self._resume(t.tid)
            return
        info = pt.get_syscall_info(t.tid, self._info)
        if info.op != pt.INFO_SECCOMP:
            self._resume(t.tid)
            return
        sc = info.u.seccomp
        self._on_entry(t, info.arch, sc.nr, sc.args, info.instruction_pointer)

    def _on_entry(self, t: _Thread, arch: int, nr: int, rawargs, ip: int) -> None:
        """A call at its entry (seccomp stop when launched, syscall-entry stop
        when attached): decode it and start its walk through the stack."""
        if t.replay is not None:  # the call our injected mmap interrupted, back again
            d, t.replay = t.replay, None
            self._apply_entry(t, d)
            return
        abi = abi_from_audit(arch, nr)
        if abi is None:  # the filter kills unknown arches; never misread one
            os.kill(t.tgid, signal.SIGKILL)
            return
        spec = abi.spec(nr)
        self.stops.add(spec.name)
        if spec.name == "clone" and self.backend == "ptrace":
            rawargs = self._strip_untraced(t, abi, rawargs)
        elif spec.name == "clone3" and self._copies_clone3:
            rawargs = self._stable_clone3(t, abi, rawargs)
            if rawargs is None:
                return  # the region is being made (the call comes back), or it failed
        elif spec.name in REGION_CALLS and t.tgid in self._regions:
            mask = 0xFFFFFFFF if abi.name == "i386" else MASK64
            if self._hits_region(t, spec.name, tuple(a & mask for a in rawargs)):
                t.raw = ()
                self._log(f"pid {t.tgid}: {spec.name} over the broker's read-only scratch memory: denied")
                self._apply_entry(t, Decision("skip-fail", Call(spec.name), E.EPERM))
                return
        t.guard_exit = False
        if spec.name == "userfaultfd" and not rawargs[0] & UFFD_USER_MODE_ONLY:  # attach mode (no filter)
            t.raw = ()
            self._apply_entry(t, Decision("skip-fail", Call(spec.name), E.EPERM))
            return
        if spec.name in self._guarded:
            mask = 0xFFFFFFFF if abi.name == "i386" else MASK64
            verdict = self.guard.judge(spec.name, tuple(a & mask for a in rawargs), t.tid, t.tgid)
            if verdict is not None:
                what, value = verdict
                t.raw = ()
                target = "a process outside the session" if spec.name in PROC_OPEN_CALLS else "the broker"
                self._log(f"pid {t.tgid}: {spec.name} aimed at {target}: "
                          + ("denied" if what == "deny" else "sent to the rest of the group only"))
                self._apply_entry(t, Decision("skip-fail" if what == "deny" else "skip-ok", Call(spec.name), value))
                return
            t.guard_exit = spec.name in PROC_OPEN_CALLS  # what was opened is checked at the exit stop
        what, err = self.stack_action(spec.name)
        if what != "trace":  # settled by static rules: no round trip (attach mode gets here)
            if what == "allow":
                t.state = "run"
                self._resume(t.tid)
            else:
                t.raw = ()
                self._apply_entry(t, Decision("skip-fail" if what == "deny" else "kill", Call(spec.name), err))
            return
        order = self.stack.order(spec.name)
        if order and self.forced is not None and spec.name not in NEVER_DENIED:
            self._apply_entry(t, Decision("skip-fail", Call(spec.name), self.forced.errno))
            return
        if not order:
            if t.guard_exit:
                t.state = "verify"
                self._to_exit_stop(t)
                return
            t.state = "run"
            self._resume(t.tid)
            return
        raw = tuple(rawargs)
        if abi.name == "i386":
            raw = tuple(a & 0xFFFFFFFF for a in raw)
        self._mem.pid = t.tid
        args = decode_args(spec, raw[: len(spec.args)], self._mem, strsize=self.strsize)
        ev_id = self._next_id
        self._next_id += 1
        notes = _path_notes(t.tid, spec, raw, args) if "path" in spec.args else ()
        t.verify = None
        if self.stable_args and spec.name in OPEN_CALLS and notes:
            t.verify, real = self._expected_object(t, spec, raw, args)
            if real is not None:
                notes += ((f"real{OPEN_CALLS[spec.name][0] + 1}", Str(real)),)
        if self._symbolizer is not None:
            notes += (("caller", Str(self._symbolizer.caller(t.tgid, ip).encode())),)
        ev = SyscallEvent(ev_id, t.tgid, t.tid, abi.name, Call(spec.name, args), notes)
        t.abi, t.spec, t.raw, t.event_id, t.state = abi, spec, raw, ev_id, "ask"
        t.t0 = time.monotonic()
        t.walk = EntryWalk(ev, order)
        self._advance_entry(t, t.walk)

    def _expected_object(self, t: _Thread, spec: SyscallSpec, raw: tuple, args: tuple) -> tuple:
        """Resolve the path of an open as the tracee would, once, before anyone
        judges it: (what the open must turn out to have opened, the real path
        for the ``realN`` note).  Checked again at the exit stop, so a symlink
        swapped after this snapshot cannot make the kernel open something else.
        The expectation is the inode it names or, for a path that does not
        exist yet, whatever is at that very place (in that very directory)
        when the call returns: never the target of a link put there meanwhile."""
        pidx, fidx = OPEN_CALLS[spec.name]
        v = args[pidx] if pidx < len(args) else None
        if not isinstance(v, Str) or v.truncated or not v.data:
            return None, None
        path = _absolute(t.tid, spec.args, raw, pidx, v.data)
        if path is None:
            return None, None
        exec_ = fidx == -1
        flags = 0 if exec_ else raw[fidx] if fidx is not None and fidx < len(raw) else O_CREAT
        if spec.name == "openat2":
            try:
                flags = int.from_bytes(pt.read_memory(t.tid, raw[2], 8), "little")
            except OSError:
                return None, None
        if flags & O_TMPFILE_BIT == O_TMPFILE_BIT:
            return None, None
        # O_NOFOLLOW, and O_CREAT|O_EXCL, open a final symlink itself (or fail)
        follow = not (flags & O_NOFOLLOW or flags & (O_CREAT | O_EXCL) == O_CREAT | O_EXCL)
        root = os.fsencode(f"/proc/{t.tid}/root")
        r = resolve(root, path, t.tgid, t.tid, follow)  # one resolution: note and expectation agree
        if r is None:
            return None, None
        if not r.exists:
            # what will be there then: the open must have opened what is *then*
            # at the judged place, in the judged directory (not a link's target)
            parent = None
            if r.parent is not None:
                try:
                    pst = os.stat(root + r.parent)
                    parent = (pst.st_dev, pst.st_ino)
                except OSError:
                    pass
            return ("absent-exe" if exec_ else "absent", parent, root + r.path), r.path
        st = r.st
        assert st is not None  # it exists: resolve() gives its lstat
        if exec_:
            # an ELF runs as itself (/proc/PID/exe); a #! script runs its interpreter: unverifiable
            try:
                with open(root + r.path, "rb") as f:
                    elf = f.read(4) == b"\x7fELF"
                st = os.stat(root + r.path)
            except OSError:
                return None, None
            return (("exe", st.st_dev, st.st_ino) if elf else None), r.path
        return ("inode", st.st_dev, st.st_ino), r.path

    def _opened_expected(self, t: _Thread, fd: int, expect: tuple) -> bool:
        """Is descriptor ``fd`` (or, for an exec, the new program) the very
        object the judged path named when it was resolved?"""
        try:
            if expect[0] in ("exe", "absent-exe"):
                st = os.stat(f"/proc/{t.tid}/exe")
            else:
                st = os.stat(f"/proc/{t.tid}/fd/{fd}")
            if expect[0] in ("absent", "absent-exe"):  # created, or appeared meanwhile: what is now at that place?
                _, parent, where = expect
                if parent is None:
                    return False  # not even its directory existed when judged
                dst = os.stat(os.path.dirname(where))
                ent = os.lstat(where)
                return (dst.st_dev, dst.st_ino) == parent and (ent.st_dev, ent.st_ino) == (st.st_dev, st.st_ino)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == expect[1:]

    def _undo_open(self, t: _Thread, fd: int) -> None:
        """Close the descriptor the open returned (in the tracee) and make the
        call fail with EACCES instead."""
        assert t.abi is not None
        regs = pt.getregs(t.tid, self._regs)
        saved = pt.Regs()
        ctypes.memmove(ctypes.addressof(saved), ctypes.addressof(regs), ctypes.sizeof(regs))
        t.saved_regs = saved
        t.undo_step = t.state == "step"
        t.state = "inject"
        t.inject = [self._undone]
        self._next_call(t, SYS_CLOSE[t.abi.name], (fd,))

    def _undone(self, t: _Thread, rval: int, failed: bool) -> None:
        saved = t.saved_regs
        assert saved is not None
        t.saved_regs = None
        saved.rax = (-E.EACCES) & MASK64
        t.state = "run"
        pt.setregs(t.tid, saved)
        if t.undo_step:  # someone stepped this call: it hears how it ended
            t.undo_step = False
            self._sysret(t, -E.EACCES)
            return
        self._resume(t.tid)

    def _hits_region(self, t: _Thread, name: str, a: tuple[int, ...]) -> bool:
        """Would this call unmap, move or replace (part of) the scratch region?"""
        r = self._regions[t.tgid]
        if name == "munmap" or name == "remap_file_pages":
            return r.covers(a[0], a[1])
        if name == "mremap":
            return r.covers(a[0], a[1]) or bool(a[3] & MREMAP_FIXED) and r.covers(a[4], a[2])
        if name in ("mmap", "mmap2"):
            return bool(a[3] & MAP_FIXED) and r.covers(a[0], a[1])
        if name == "shmat":
            return bool(a[2] & SHM_REMAP) and a[1] < r.addr + r.size
        return False

    def _strip_untraced(self, t: _Thread, abi: Abi, rawargs):
        """clone(CLONE_UNTRACED) would create a child no tracer follows: clear
        the flag (it is in a register, so no other thread can race us)."""
        flags = rawargs[0]
        if not flags & CLONE_UNTRACED:
            return rawargs
        regs = pt.getregs(t.tid, self._regs)
        if abi.name == "i386":
            regs.rbx &= ~CLONE_UNTRACED
        else:
            regs.rdi &= ~CLONE_UNTRACED
        pt.setregs(t.tid, regs)
        return (flags & ~CLONE_UNTRACED, *tuple(rawargs)[1:])

    @property
    def _copies_clone3(self) -> bool:
        """clone3 runs (on a stable copy) only where the shim has a region."""
        return self.backend == "ptrace" and self.stable_args

    def _stable_clone3(self, t: _Thread, abi: Abi, rawargs):
        """clone3's flags are in memory another thread can change after any
        check: copy its struct clone_args once into the thread's read-only
        scratch slot, without CLONE_UNTRACED, and point the call (and what the
        authorizers are shown) at the copy.  Returns the new arguments, or
        None when the call was answered or a region is being injected."""
        mask = 0xFFFFFFFF if abi.name == "i386" else MASK64
        addr, size = rawargs[0] & mask, rawargs[1] & mask
        if size not in CLONE_ARGS_SIZES:
            return rawargs  # EINVAL/E2BIG from the kernel, as natively; size is a register
        region = self._regions.get(t.tgid)
        if region is None:  # made first; the call then stops again and is copied
            t.abi = abi
            self._inject_region(t, pt.getregs(t.tid, self._regs), None)
            return None
        try:
            blob = bytearray(pt.read_memory(t.tid, addr, size))
        except OSError:
            blob = bytearray()
        if len(blob) != size:  # natively the kernel's copy faults too
            t.raw = ()
            self._apply_entry(t, Decision("skip-fail", Call("clone3"), E.EFAULT))
            return None
        flags = int.from_bytes(blob[:8], "little") & ~CLONE_UNTRACED
        blob[:8] = flags.to_bytes(8, "little")
        where = region.reserve(t.tid, [size])
        if where is None:  # every slot held by a live thread: libc falls back to clone
            t.raw = ()
            self._apply_entry(t, Decision("skip-fail", Call("clone3"), E.ENOSYS))
            return None
        region.write(where[0], bytes(blob))
        regs = pt.getregs(t.tid, self._regs)
        setattr(regs, (ARG_REGS_32 if abi.name == "i386" else ARG_REGS_64)[0], where[0])
        pt.setregs(t.tid, regs)
        return (where[0], *tuple(rawargs)[1:])

    def _advance_entry(self, t: _Thread, walk: EntryWalk) -> None:
        nxt = walk.next()
        if nxt is None:
            assert walk.decision is not None
            t.walk = None
            d = walk.decision
            self._record(walk.event, d, t)
            if self.stable_args and d.action == "cont" and not d.rewritten and t.spec is not None and any(
                    k in STABLE_KINDS or k.startswith("sockaddr:") for k in t.spec.args):
                d.stabilize = True
            if d.action != "cont" or d.rewritten:  # a rewritten path is the authorizer's own choice
                t.verify = None
            self._apply_entry(t, d)
            return
        pos, ev = nxt
        known = self.stack.known_answer(pos, ev, t.abi)
        if known is not None:  # its own argument rule, or its cached verdict for this very call
            walk.feed(known.verdict, known.sets)
            self._advance_entry(t, walk)
            return
        self.stack[pos].ask(ev, partial(self._answered, t, partial(self._on_entry_answer, t, walk, pos)), time.monotonic())

    def _on_entry_answer(self, t: _Thread, walk: EntryWalk, pos: int, reply: Reply, reason: str) -> None:
        if t.walk is not walk or self.threads.get(t.tid) is not t:
            return  # the tracee died meanwhile
        a = self.stack[pos]
        if reason:
            self._log(f"{reason}: {a.name}'s default applies to {walk.event.call.name} (pid {t.tgid})")
        verdict = reply.verdict
        try:
            self._check_rewrite(t, verdict)
            self._check_sets(t, reply.sets)
            step = walk.next()
            assert step is not None  # the walk is waiting for this very answer
            ev = step[1]  # the event as this authorizer saw it (the cache key)
            walk.feed(verdict, reply.sets)
            if not reason:
                self.stack.remember(pos, ev, reply)
        except VerdictError as e:
            a.report_error(e.code, str(e))
            walk.feed(a.default, ())
        self._advance_entry(t, walk)

    def _check_rewrite(self, t: _Thread, verdict: object) -> None:
        if isinstance(verdict, Rewrite):
            assert t.abi is not None
            if verdict.call.name not in t.abi.by_name:
                raise VerdictError("unknown-syscall", f"no syscall {verdict.call.name!r} in the {t.abi.name} ABI")
            spec = t.abi.by_name[verdict.call.name]
            if len(verdict.call.args) > len(spec.args) and len(verdict.call.args) > 6:
                raise VerdictError("bad-value", f"{spec.name} takes {len(spec.args)} arguments")
            try:
                encode_args(spec, verdict.call.args, t.raw)
            except ValueError as e:
                raise VerdictError("bad-value", f"cannot encode {spec.name}: {e}") from e

    def _check_sets(self, t: _Thread, sets: Sequence[SetMem]) -> None:
        """A `set` must name an argument of the call and land inside the
        address space; grammar-valid offsets can be any size."""
        for s in sets:
            if not 1 <= s.argn <= len(t.raw):
                raise VerdictError("bad-value", f"set {s.argn}: the call has no argument {s.argn}")
            addr = t.raw[s.argn - 1] + s.offset
            limit = 0xFFFFFFFF if t.abi is not None and t.abi.name == "i386" else MASK64 >> 1
            if s.offset < 0 or addr + len(s.data) > limit:
                raise VerdictError("bad-value", f"set {s.argn}+{s.offset}: outside the address space")

    def _record(self, event: object, d: Decision, t: _Thread) -> None:
        self.stats["decisions"] += 1
        if self.audit is None:
            return
        by = self.stack[d.decided_by].name if d.decided_by is not None else ""
        verdict = d.action if d.action in ("cont", "kill") else f"{d.action} {d.value}"
        if d.rewritten:
            verdict += " (rewritten) " + codec.format_call(d.call)
        self.audit(AuditRecord(event, verdict, by, time.monotonic() - t.t0))  # type: ignore[arg-type]

    def _apply_entry(self, t: _Thread, d: Decision) -> None:
        tid = t.tid
        t.decision = d
        for s in d.sets:
            self._set_memory(t, s)
        if d.action == "kill":
            t.state = "run"
            os.kill(t.tgid, signal.SIGKILL)
            return
        if d.action in ("skip-fail", "skip-ok"):
            regs = pt.getregs(tid, self._regs)
            regs.orig_rax = MASK64
            regs.rax = (-d.value if d.action == "skip-fail" else d.value) & MASK64
            pt.setregs(tid, regs)
            if self.attached:
                t.state = "skip"  # the exit stop comes; the value is set again there
                self._to_exit_stop(t)
            else:
                t.state = "run"
                self._resume(tid)
            return
        if d.rewritten or d.stabilize:
            if not self._rewrite(t, d):
                return  # scratch memory is being injected; the call comes back
        if d.steppers:
            t.state = "step"
            self._to_exit_stop(t)
        elif (t.verify is not None or t.guard_exit) and d.action == "cont":
            t.state = "verify"
            self._to_exit_stop(t)
        else:
            t.state = "run"
            self._resume(tid)

    def _rewrite(self, t: _Thread, d: Decision) -> bool:
        """Put the decided call in the registers, its memory arguments in the
        read-only scratch region.  For a call that was only judged
        (``d.stabilize``), just its strings and paths are copied there, so the
        kernel reads exactly what the authorizers saw."""
        assert t.abi is not None
        spec = t.abi.by_name[d.call.name]
        if d.rewritten:
            enc = encode_args(spec, d.call.args, t.raw)
            values = list(enc.regs)
            blobs = list(enc.blobs)
        else:  # judged strings go as they were shown (NUL-terminated), the rest stays
            enc = None
            values = list(t.raw) + [0] * (6 - len(t.raw))
            judged = [(i, v) for i, (k, v) in enumerate(zip(spec.args, d.call.args, strict=False))
                      if k in STABLE_KINDS and type(v) is Str]
            if any(v.total is not None for _, v in judged):
                # longer than PATH_MAX: only a prefix was judged; the kernel would refuse it anyway
                return self._refuse(t, d, E.ENAMETOOLONG)
            blobs = [(i, v.data + b"\0") for i, v in judged]
            socks = [i for i, k in enumerate(spec.args[: len(d.call.args)]) if k.startswith("sockaddr:")
                     and type(d.call.args[i]) is Struct]
            if socks:  # the judged address, packed again, with its own length
                enc = encode_args(spec, d.call.args, t.raw)
                for i, b in enc.blobs:
                    if i in socks:
                        blobs.append((i, b))
                        n = int(spec.args[i].split(":")[1])
                        values[n] = enc.regs[n]
                enc = None
            if not blobs:
                return True
        regs = pt.getregs(t.tid, self._regs)
        if blobs:
            region = self._regions.get(t.tgid)
            if region is None:
                self._inject_region(t, regs, d)
                return False
            sizes = [len(b) for _, b in blobs]
            if not region.fits(sizes):  # a rewrite bigger than a slot: the call fails, as an oversized one would
                return self._refuse(t, d, E.E2BIG)
            addrs = region.reserve(t.tid, sizes)
            if addrs is None:  # every slot is held by a live thread: wait for one, never kill
                t.state = "slotwait"
                self._slot_waiters.append(t)
                return False
            for (i, blob), addr in zip(blobs, addrs, strict=True):
                region.write(addr, _relocate(enc, i, blob, addr) if enc is not None else blob)
                values[i] = addr
        names = ARG_REGS_32 if t.abi.name == "i386" else ARG_REGS_64
        for name, v in zip(names, values, strict=False):
            setattr(regs, name, v & MASK64)
        regs.orig_rax = spec.nr | t.abi.nr_bit
        pt.setregs(t.tid, regs)
        t.spec = spec
        return True

    def _refuse(self, t: _Thread, d: Decision, errno: int) -> bool:
        """The decided call cannot be made as judged: it fails with ``errno``."""
        regs = pt.getregs(t.tid, self._regs)
        regs.orig_rax = MASK64
        regs.rax = (-errno) & MASK64
        pt.setregs(t.tid, regs)
        d.action, d.value = "skip-fail", errno
        return True

    def _release_slots(self, region: Region, tids: Sequence[int]) -> None:
        """Threads that are gone (exit) or left the address space (exec) give
        their scratch slots back; calls waiting for a slot go on."""
        for tid in tids:
            region.release(tid)
        waiting, self._slot_waiters = self._slot_waiters, []
        for w in waiting:
            if self.threads.get(w.tid) is w and w.state == "slotwait" and w.decision is not None:
                self._on_tracee(w.tid, self._apply_entry, w, w.decision)

    # -- injection: a few syscalls the tracee makes on the shim's behalf --------
    def _inject_region(self, t: _Thread, regs: pt.Regs, d: Decision | None) -> None:
        """Create the scratch region in the tracee: memfd_create (the shim
        takes and seals it), mmap it read-only and shared, close the fd; then
        rewind so the interrupted call runs again and gets decision ``d``."""
        assert t.abi is not None
        saved = pt.Regs()
        ctypes.memmove(ctypes.addressof(saved), ctypes.addressof(regs), ctypes.sizeof(regs))
        t.saved_regs = saved
        t.replay = d
        t.state = "inject"
        # the memfd's name, briefly on the stack well below the red zone
        name_at = (saved.rsp - 4096) & ~15
        pt.write_memory(t.tid, name_at, MEMFD_NAME.encode() + b"\0")
        t.inject = [self._injected_memfd, self._injected_mmap, self._injected_close]
        self._set_call(t, regs, SYS_MEMFD_CREATE[t.abi.name], (name_at, MFD_CLOEXEC | MFD_ALLOW_SEALING))
        self._to_exit_stop(t)

    def _set_call(self, t: _Thread, regs: pt.Regs, nr: int, args: tuple[int, ...]) -> None:
        assert t.abi is not None
        names = ARG_REGS_32 if t.abi.name == "i386" else ARG_REGS_64
        mask = 0xFFFFFFFF if t.abi.name == "i386" else MASK64
        for name, v in zip(names, args, strict=False):
            setattr(regs, name, v & mask)
        if len(args) <= INJECT_ARG:  # memfd_create, close: the nonce passes the program's static rules
            if t.abi.name == "i386":
                setattr(regs, names[INJECT_ARG], self._inject_nonce & 0xFFFFFFFF)
                setattr(regs, names[INJECT_ARG + 1], self._inject_nonce >> 32)
            else:
                setattr(regs, names[INJECT_ARG], self._inject_nonce)
        regs.orig_rax = nr
        pt.setregs(t.tid, regs)

    def _next_call(self, t: _Thread, nr: int, args: tuple[int, ...]) -> None:
        """From an exit stop: run one more syscall at the same instruction."""
        assert t.saved_regs is not None
        regs = pt.Regs()
        ctypes.memmove(ctypes.addressof(regs), ctypes.addressof(t.saved_regs), ctypes.sizeof(regs))
        regs.rip -= 2  # syscall and int $0x80 are both 2 bytes
        regs.rax = nr
        self._set_call(t, regs, nr, args)
        self._to_exit_stop(t)

    def _injected_memfd(self, t: _Thread, rval: int, failed: bool) -> None:
        if failed:
            self._inject_failed(t, f"memfd_create: {os.strerror(-rval)}")
            return
        t.inject_fd = rval
        try:
            fd, view = adopt(t.tid, rval)
        except OSError as e:
            self._inject_failed(t, f"cannot take the scratch memfd ({e.strerror}; the broker needs its tracee's "
                                   "/proc/PID/fd, and --no-stable-args would do without the region, unsafely)")
            return
        os.close(fd)  # the shim's mapping keeps the memory alive
        t.saved_view = view
        assert t.abi is not None
        self._map_region(t, MAP_32BIT if t.abi.name == "x86_64" else 0)

    def _map_region(self, t: _Thread, low: int) -> None:
        """mmap(PROT_READ, MAP_SHARED) the memfd in the tracee; in a 64-bit
        process below 2 GiB (MAP_32BIT) when it can be, so the stable copies
        are within reach of 32-bit pointers (``int $0x80`` calls)."""
        assert t.abi is not None
        t.map_flags = low
        self._next_call(t, SYS_MMAP[t.abi.name], (0, scratch.REGION_SIZE, 1, 1 | low, t.inject_fd, 0))

    def _injected_mmap(self, t: _Thread, rval: int, failed: bool) -> None:
        view = t.saved_view
        assert view is not None
        if failed and t.map_flags:  # no room below 2 GiB: anywhere will do for 64-bit calls
            t.inject.insert(0, self._injected_mmap)
            self._map_region(t, 0)
            return
        if failed:
            view.close()
            self._inject_failed(t, f"mmap of the scratch region: {os.strerror(-rval)}")
            return
        region = Region(rval & (0xFFFFFFFF if t.abi and t.abi.name == "i386" else MASK64), view)
        self._regions[t.tgid] = region
        assert t.abi is not None
        if self.seals:
            t.inject.insert(0, self._injected_mseal)
            self._next_call(t, SYS_MSEAL[t.abi.name], (region.addr, region.size, 0))
            return
        self._next_call(t, SYS_CLOSE[t.abi.name], (t.inject_fd,))

    def _injected_mseal(self, t: _Thread, rval: int, failed: bool) -> None:
        """The region is sealed: nothing the program calls can unmap, move or
        replace it.  Unsealed, nothing stops those calls (the filter lets them
        run when sealing works): the process cannot go on (fail closed)."""
        if failed:
            self._log(f"pid {t.tgid}: mseal of the scratch region: {os.strerror(-rval)}; killed")
            os.kill(t.tgid, signal.SIGKILL)
            return
        assert t.abi is not None
        self._next_call(t, SYS_CLOSE[t.abi.name], (t.inject_fd,))

    def _injected_close(self, t: _Thread, rval: int, failed: bool) -> None:
        saved = t.saved_regs
        assert saved is not None
        t.saved_regs = None
        saved.rip -= 2  # back onto the interrupted call, which stops again and gets its decision
        saved.rax = saved.orig_rax
        t.state = "run"
        pt.setregs(t.tid, saved)
        self._resume(t.tid)

    def _inject_failed(self, t: _Thread, why: str) -> None:
        """No scratch memory: the interrupted call fails (EPERM) rather than
        run with arguments the broker could not make stable."""
        saved = t.saved_regs
        assert saved is not None
        self._log(f"pid {t.tgid}: {why}; the call fails with EPERM")
        t.saved_regs = None
        t.replay = None
        t.inject = []
        saved.rax = (-E.EPERM) & MASK64
        t.state = "run"
        pt.setregs(t.tid, saved)
        self._resume(t.tid)

    def _fetch(self, event_id: int, argn: int, offset: int, length: int) -> bytes:
        """More of a buffer argument of a call still waiting for its verdict
        (the seed's 10 MB write: only what an authorizer asks for is copied)."""
        for t in self.threads.values():
            if t.event_id == event_id and t.state in ("ask", "ret"):
                if not 1 <= argn <= len(t.raw):
                    raise ValueError(f"argument {argn} does not exist")
                return pt.read_memory(t.tid, t.raw[argn - 1] + offset, length)
        raise LookupError(f"no call with id {event_id} is waiting")

    def _set_memory(self, t: _Thread, s: SetMem) -> None:
        if not 1 <= s.argn <= len(t.raw):
            self._log(f"set {s.argn}: no such argument; ignored")
            return
        try:
            pt.write_memory(t.tid, t.raw[s.argn - 1] + s.offset, s.data)
        except OSError as e:
            self._log(f"set {s.argn}: cannot write tracee memory: {e}")

    # ------------------------------------------------------------------
    # syscall exit (step, inject)
    # ------------------------------------------------------------------
    def _on_syscall_stop(self, t: _Thread) -> None:
        info = pt.get_syscall_info(t.tid, self._info)
        if info.op == pt.INFO_ENTRY:
            if t.state == "inject":
                self._to_exit_stop(t)  # one of our injected calls: on to its exit
                return
            if t.state in ("step", "skip"):
                self._resume(t.tid)  # cannot happen; never strand a tracee
                return
            self._on_entry(t, info.arch, info.u.entry.nr, info.u.entry.args, info.instruction_pointer)
            return
        if info.op != pt.INFO_EXIT:
            self._resume(t.tid)
            return
        self.stops.add(f"exit:{t.spec.name if t.spec is not None and t.state != 'inject' else t.state}")
        rval = info.u.exit.rval
        if t.state == "inject":
            step = t.inject.pop(0)
            step(t, rval, bool(info.u.exit.is_error))
            return
        if t.state == "skip":
            self._after_skip(t)
            return
        if t.guard_exit and t.state in ("verify", "step"):
            t.guard_exit = False
            if rval >= 0 and not self.guard.opened_ok(t.tid, t.tgid, rval):
                t.verify = None
                self._log(f"pid {t.tgid}: {t.spec.name if t.spec else 'open'} reached into a process outside "
                          "the session: closed, EACCES")
                self._undo_open(t, rval)
                return
            if t.state == "verify" and t.verify is None:
                t.state = "run"
                self._resume(t.tid)
                return
        if t.verify is not None and t.state in ("verify", "step"):
            expect, t.verify = t.verify, None
            if rval >= 0 and not self._opened_expected(t, rval, expect):
                what = t.spec.name if t.spec else "open"
                if expect[0] in ("exe", "absent-exe"):  # an exec cannot be undone: the process must not go on
                    self._log(f"pid {t.tgid}: {what} ran another program than the one judged "
                              "(a path component changed in between): killed")
                    os.kill(t.tgid, signal.SIGKILL)
                    return
                self._log(f"pid {t.tgid}: {what} opened another object than the one "
                          "judged (a path component changed in between): closed, EACCES")
                self._undo_open(t, rval)
                return
            if t.state == "verify":
                t.state = "run"
                self._resume(t.tid)
                return
        if t.state != "step" or t.decision is None or t.spec is None or t.abi is None:
            t.state = "run"
            self._resume(t.tid)
            return
        self._sysret(t, rval)

    def _sysret(self, t: _Thread, rval: int) -> None:
        """At the exit stop of a stepped call: its ``sysret`` goes back through
        those who stepped (also for a call the broker undid: they hear EACCES)."""
        assert t.decision is not None and t.spec is not None and t.abi is not None
        result = decode_result(t.spec, rval)
        self._mem.pid = t.tid
        try:
            outs = decode_outbufs(t.spec, t.raw, rval, self._mem, self.strsize)
        except OSError:
            outs = ()
        notes = tuple((f"buf{i + 1}", v) for i, v in outs)
        ev = SysretEvent(t.event_id, t.tgid, t.tid, t.abi.name, t.spec.name, result, notes)
        t.state = "ret"
        t.walk = ExitWalk(ev, t.decision.steppers)
        self._advance_exit(t, t.walk)

    def _after_skip(self, t: _Thread) -> None:
        """Exit stop of a skipped call (attach mode): make sure the value stands."""
        d = t.decision
        t.state = "run"
        if d is not None and d.action in ("skip-fail", "skip-ok"):
            regs = pt.getregs(t.tid, self._regs)
            regs.rax = (-d.value if d.action == "skip-fail" else d.value) & MASK64
            pt.setregs(t.tid, regs)
        self._resume(t.tid)

    def _advance_exit(self, t: _Thread, walk: ExitWalk) -> None:
        nxt = walk.next()
        if nxt is None:
            t.walk = None
            self._apply_exit(t, walk)
            return
        pos, ev = nxt
        self.stack[pos].ask(ev, partial(self._answered, t, partial(self._on_exit_answer, t, walk, pos)), time.monotonic())

    def _on_exit_answer(self, t: _Thread, walk: ExitWalk, pos: int, reply: Reply, reason: str) -> None:
        if t.walk is not walk or self.threads.get(t.tid) is not t:
            return
        if reason:
            self._log(f"{reason}: the result of {walk.event.name} is kept (pid {t.tgid})")
        try:
            self._check_sets(t, reply.sets)
            walk.feed(reply.verdict, reply.sets)
        except VerdictError as e:
            self.stack[pos].report_error(e.code, str(e))
            walk.feed(Cont(), ())
        self._advance_exit(t, walk)

    def _apply_exit(self, t: _Thread, walk: ExitWalk) -> None:
        result = walk.result
        t.state = "run"
        if isinstance(result, Kill):
            os.kill(t.tgid, signal.SIGKILL)
            return
        for s in walk.sets:
            self._set_memory(t, s)
        if result != walk.event.result:
            regs = pt.getregs(t.tid, self._regs)
            if isinstance(result, Fail):
                regs.rax = (-result.errno) & MASK64
            elif isinstance(result, Ok):
                regs.rax = result.value.value & MASK64
            pt.setregs(t.tid, regs)
        self._resume(t.tid)

    # ------------------------------------------------------------------
    # signals
    # ------------------------------------------------------------------
    def _on_signal(self, t: _Thread, sig: int) -> None:
        if t.state == "inject":  # mid-injection: deliver as is, keep catching our calls' exits
            t.running = True
            pt.syscall(t.tid, sig)
            return
        if not self._signal_order:
            self._resume(t.tid, sig)
            return
        ev_id = self._next_id
        self._next_id += 1
        ev = SignalEvent(ev_id, t.tgid, t.tid, sig)
        t.state = "ask"
        t.t0 = time.monotonic()
        self._ask_signal(t, ev, 0, sig)

    def _ask_signal(self, t: _Thread, ev: SignalEvent, i: int, sig: int) -> None:
        if i == len(self._signal_order):
            t.state = "run"
            self._resume(t.tid, sig)
            return
        pos = self._signal_order[i]
        ev = ev if ev.signo == sig else SignalEvent(ev.id, ev.pid, ev.tid, sig)
        marker = object()
        t.walk = marker  # type: ignore[assignment]

        def answer(reply: Reply, reason: str) -> None:
            if t.walk is not marker or self.threads.get(t.tid) is not t:
                return
            v = reply.verdict
            if isinstance(v, Kill):
                t.state, t.walk = "run", None
                os.kill(t.tgid, signal.SIGKILL)
            elif isinstance(v, Suppress):
                t.state, t.walk = "run", None
                self._resume(t.tid, 0)
            else:
                new = v.signo if isinstance(v, Deliver) and v.signo else sig
                self._ask_signal(t, ev, i + 1, new)

        self.stack[pos].ask(ev, partial(self._answered, t, answer), time.monotonic())

    def _answered(self, t: _Thread, fn: Callable[..., None], *args: object) -> None:
        """An authorizer's answer (or its default) about tracee ``t``."""
        self._on_tracee(t.tid, fn, *args)


def _path_notes(tid: int, spec: SyscallSpec, raw: tuple[int, ...], args: tuple) -> tuple:
    """``pathN`` notes: each path argument made absolute against the caller's
    cwd or dirfd, ``.`` and ``..`` folded lexically (symlinks not followed).
    Advisory: the kernel resolves again when the call runs."""
    notes = []
    kinds = spec.args
    for i, kind in enumerate(kinds):
        if kind != "path" or i >= len(args):
            continue
        v = args[i]
        if not isinstance(v, Str) or v.truncated or not v.data:
            continue
        path = _absolute(tid, kinds, raw, i, v.data)
        if path is not None:
            notes.append((f"path{i + 1}", Str(os.path.normpath(path).replace(b"//", b"/"))))
    return tuple(notes)


def _absolute(tid: int, kinds: tuple[str, ...], raw: tuple[int, ...], i: int, path: bytes) -> bytes | None:
    """Path argument ``i`` made absolute against the caller's cwd or its
    dirfd argument, not folded (``a/link/..`` is not ``a``)."""
    if path.startswith(b"/"):
        return path
    base = f"/proc/{tid}/cwd"
    if i > 0 and kinds[i - 1] == "dirfd" and (raw[i - 1] & 0xFFFFFFFF) != 0xFFFFFF9C:  # not AT_FDCWD
        base = f"/proc/{tid}/fd/{raw[i - 1] & 0xFFFFFFFF}"
    try:
        where = os.fsencode(os.readlink(base))
    except OSError:
        return None
    if where.endswith(b" (deleted)") or not where.startswith(b"/"):
        return None  # a removed directory (or no directory): no path leads there
    return where + b"/" + path


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def _symbolizer() -> Symbolizer:
    """The ``caller`` note's symbolizer, imported on first use: pyelftools
    costs a quarter of brokerctl's start-up and most sessions never need it."""
    from .elfinfo import Symbolizer

    return Symbolizer()


def _exec_args(pid: int) -> tuple:
    """The exec event's facts: path, then ELF class, machine and interpreter."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = ""
    args: list = [Str(os.fsencode(exe))]
    from .elfinfo import exec_facts  # pyelftools: only for sessions that asked for exec events

    facts = exec_facts(f"/proc/{pid}/exe")
    if facts is not None:
        args += [
            Field("class", Int(facts.elfclass)),
            Field("machine", Sym((facts.machine,))),
            Field("interp", Str(os.fsencode(facts.interp))),
        ]
    return tuple(args)


def _relocate(enc: Encoded, index: int, blob: bytes, addr: int) -> bytes:
    """Turn the blob-relative pointers of blob ``index`` (argv, iovec) into
    addresses, now that the blob's place in the tracee is known."""
    slots = [off for i, off in enc.relocs if i == index]
    if not slots:
        return blob
    out = bytearray(blob)
    size = enc.ptr_size
    for off in slots:
        rel = int.from_bytes(out[off : off + size], "little")
        out[off : off + size] = (rel + addr).to_bytes(size, "little")
    return bytes(out)


