"""Constants the parts of the shim share (ptrace options, registers, the broker's own rules)."""

from __future__ import annotations

import errno as E
import signal

from brokerd.decision.rules import StaticRules
from brokerd.protocol.abi import ABIS, names_in
from brokerd.protocol.args import constant

from .. import ptrace as pt

OPTIONS = (
    pt.O_TRACESYSGOOD
    | pt.O_TRACEFORK
    | pt.O_TRACEVFORK
    | pt.O_TRACECLONE
    | pt.O_TRACEEXEC
    | pt.O_TRACESECCOMP
    | pt.O_EXITKILL
)
#: a launched tracee that needs no exec event (Stops._choose_exec_events): seized,
#: an exec then stops nothing at all (no event, no SIGTRAP)
OPTIONS_NO_EXEC = OPTIONS & ~pt.O_TRACEEXEC
SYSCALL_STOP = signal.SIGTRAP | 0x80
STOP_SIGNALS = frozenset((signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU))
EVENT_NAMES = {pt.EVENT_FORK: "fork", pt.EVENT_VFORK: "vfork", pt.EVENT_CLONE: "clone"}
MASK64 = (1 << 64) - 1
#: the highest address a `set` may write, by register width (loose: the user half of 64 bits)
USER_LIMIT = {32: 0xFFFFFFFF, 64: MASK64 >> 1}
CLONE_UNTRACED = constant("CLONE_UNTRACED")
#: calls the broker stops for itself only when they carry CLONE_UNTRACED (a
#: flag test in the filter: its flags are in a register, argument 0 on both ABIs)
UNTRACED_TESTED = frozenset({"clone"})
#: sendmsg's 4th argument register (unused by the call) carries the listener hand-over's nonce
HANDOFF_ARG = 3
#: the same register (and the next, for i386's 32-bit halves) carries the
#: session's injection nonce in the broker's own injected memfd_create/close
#: (both ignore it): the filter lets exactly those through the program's static rules
INJECT_ARG = 3
#: injected calls with a spare argument register; the injected mmap uses all six
INJECTED_CALLS = ("memfd_create", "close", "mseal")


def nonce_parts(nonce: int, reg_bits: int) -> tuple[int, ...]:
    """The injection nonce as argument register values, from INJECT_ARG on:
    one 64-bit register, or two 32-bit halves (low first) for a 32-bit ABI."""
    if reg_bits >= 64:
        return (nonce,)
    return (nonce & 0xFFFFFFFF, nonce >> 32)

# The broker's own rules, below every authorizer: io_uring reaches files and
# sockets with no syscall to judge, so it is denied unless the operator allows
# it.  clone3 keeps its flags in memory: on ptrace with stable arguments the
# shim copies its struct clone_args into the read-only scratch region without
# CLONE_UNTRACED (see _stable_clone3); without a region (--no-stable-args, the
# notify backend) it fails with ENOSYS and libc falls back to clone, whose
# flags are in registers and lose CLONE_UNTRACED; clone stops for it only when
# it carries CLONE_UNTRACED (a flag test in the filter).
IO_URING_DENIED = (("io_uring_setup", E.EPERM), ("io_uring_enter", E.EPERM), ("io_uring_register", E.EPERM))
CLONE3_DENIED = (("clone3", E.ENOSYS),)
#: a watch-only attach's rules (brokerctl): no region, so clone3 fails as without stable args
BROKER_RULES_IO_URING = StaticRules(deny=CLONE3_DENIED)
#: struct clone_args sizes the kernel accepts (CLONE_ARGS_SIZE_VER0 .. PAGE_SIZE);
#: others fail in the kernel before any child exists, so they run unchanged
CLONE_ARGS_SIZES = range(64, 4096 + 1)
#: the sizes openat2 reads ``struct open_how`` with (OPEN_HOW_SIZE_VER0 .. PAGE_SIZE; others:
#: EINVAL/E2BIG before any read)
OPEN_HOW_SIZES = range(24, 4096 + 1)
#: sendmsg's ``struct msghdr`` by pointer width: (its size, msg_namelen's offset); msg_name is first
MSGHDR = {8: (56, 8), 4: (28, 4)}
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
#: the argument kinds of i386's old mmap: one pointer to a struct of its six arguments
OLD_MMAP_ARGS = ("ptr",)
#: argument kinds whose judged bytes are copied into the region before the call runs
#: (sockaddr:N arguments too, packed again from the judged value)
STABLE_KINDS = frozenset({"path", "str"})


def _open_calls() -> dict[str, tuple[int, int | None]]:
    """Open-like calls whose opened object is checked against the judged
    path at the exit stop, from the tables: the ``open`` class and the execs
    (an ``argv`` argument).  name -> (path argument index, ``open_flags``
    argument index, None (no flags: openat2's are in its open_how, creat's
    imply O_CREAT) or -1 (an exec, checked against /proc/PID/exe))."""
    out: dict[str, tuple[int, int | None]] = {}
    opens = names_in("open")
    for abi in ABIS.values():
        for name, spec in abi.by_name.items():
            if name in opens or "argv" in spec.args:
                flags = -1 if "argv" in spec.args else (
                    spec.args.index("open_flags") if "open_flags" in spec.args else None)
                out[name] = (spec.args.index("path"), flags)
    return out


OPEN_CALLS = _open_calls()
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
