"""The seccomp-bpf "syscall mask" of a launched session.

The filter first checks ``seccomp_data.arch`` (an unexpected architecture is
killed, never misread), then decides per syscall number with a balanced binary
search over ranges of numbers that share an action, so its cost grows with the
logarithm of the number of distinct rules rather than linearly (a filter that
scans a list of 60 numbers costs more than strace's own).

Actions are the kernel's: RET_ALLOW for calls nobody asked about, RET_TRACE
for calls that need a decision by an authorizer, RET_ERRNO / RET_KILL_PROCESS
for static rules that hold even if every user-space part of brokerd dies.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Mapping

# the ABI facts live with the syscall tables (one home); re-exported here
from brokerd.protocol.abi import ABIS, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT
from brokerd.protocol.record import Record, _set

# seccomp return actions
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000


# BPF opcodes
_LD_W_ABS = 0x20
_JMP_JA = 0x05
_JMP_JEQ_K = 0x15
_JMP_JGE_K = 0x35
_JMP_JSET_K = 0x45
_RET_K = 0x06

_OFF_NR = 0
_OFF_ARCH = 4

PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 8
SYS_seccomp = ABIS["x86_64"].nr("seccomp")  # the broker and its launched children are 64-bit
BPF_MAXINSNS = 4096


def ret_errno(errno: int) -> int:
    return RET_ERRNO | (errno & 0xFFFF)


def trace(data: int = 0) -> int:
    return RET_TRACE | (data & 0xFFFF)


class FlagTest(Record):
    """An action that depends on one argument: ``hit`` when any bit of
    ``mask`` is set in the low 32 bits of ``args[arg]``, else ``miss``
    (e.g. trace mmap only when it asks for MAP_FIXED)."""

    __slots__ = ("arg", "mask", "hit", "miss")
    arg: int
    mask: int
    hit: Action  # another test: the next matcher of an argument rule
    miss: Action

    def __init__(self, arg: int, mask: int, hit: Action, miss: Action) -> None:
        _set(self, "arg", arg)
        _set(self, "mask", mask)
        _set(self, "hit", hit)
        _set(self, "miss", miss)


class ArgEquals(Record):
    """An action that depends on one whole 64-bit argument: ``hit`` when
    ``args[arg] == value``, else ``miss`` (the launched child's hand-over of
    its listener carries a session nonce in an argument the call ignores).
    ``low32``: compare the low 32 bits only, for arguments the kernel takes
    as 32-bit (an ioctl's command), whatever the register's high half holds."""

    __slots__ = ("arg", "value", "hit", "miss", "low32")
    arg: int
    value: int
    hit: Action  # another test: i386's two 32-bit halves of a nonce
    miss: Action  # another test: a second value
    low32: bool

    def __init__(self, arg: int, value: int, hit: Action, miss: Action,
                 low32: bool = False) -> None:
        _set(self, "arg", arg)
        _set(self, "value", value)
        _set(self, "hit", hit)
        _set(self, "miss", miss)
        _set(self, "low32", low32)


#: what the filter does for one number: a return value, or a test on an argument
Action = int | FlagTest | ArgEquals


class AbiRules(Record):
    """What the filter does for one ABI: ``actions`` maps syscall numbers (as
    seen in ``seccomp_data.nr``, the x32 bit included) to an action; every
    other number gets ``default``."""

    __slots__ = ("actions", "default")
    actions: Mapping[int, Action]
    default: int

    def __init__(self, actions: Mapping[int, Action], default: int = RET_ALLOW) -> None:
        _set(self, "actions", actions)
        _set(self, "default", default)


# --------------------------------------------------------------------------
# A tiny assembler: code is built as a list of nodes and laid out back to
# front, so every jump target's distance is known when the jump is emitted.
# --------------------------------------------------------------------------


def _insn(code: int, jt: int, jf: int, k: int) -> tuple[int, int, int, int]:
    return (code, jt, jf, k & 0xFFFFFFFF)


class _Program:
    """Instructions emitted in reverse order; positions count from the end."""

    def __init__(self) -> None:
        self.rev: list[tuple[int, int, int, int]] = []

    def here(self) -> int:
        """Label of the instruction emitted last: the one that will run right
        after whatever is emitted (prepended) next."""
        return len(self.rev)

    def emit(self, insn: tuple[int, int, int, int]) -> int:
        self.rev.append(insn)
        return len(self.rev)  # label of this instruction

    def dist(self, label: int) -> int:
        """Jump offset from the instruction about to be emitted to ``label``."""
        return len(self.rev) - label

    def ret(self, action: int) -> int:
        return self.emit(_insn(_RET_K, 0, 0, action))

    def jump_to(self, label: int) -> int:
        """A label equal to ``label`` reachable with a short offset, adding an
        unconditional long jump when the distance exceeds 255."""
        if self.dist(label) <= 255:
            return label
        return self.emit(_insn(_JMP_JA, 0, 0, self.dist(label)))

    def cond(self, code: int, k: int, true_label: int, false_label: int) -> int:
        t, f = true_label, false_label
        # Each trampoline added moves the other target one further away.
        while self.dist(t) > 255 or self.dist(f) > 255:
            t = self.jump_to(t)
            f = self.jump_to(f)
        return self.emit(_insn(code, self.dist(t), self.dist(f), k))

    def instructions(self) -> list[tuple[int, int, int, int]]:
        return list(reversed(self.rev))


def _ranges(rules: AbiRules, lo: int, hi: int) -> list[tuple[int, int, Action]]:
    """Cover [lo, hi] with maximal (start, end, action) runs, default filling gaps."""
    runs: list[tuple[int, int, Action]] = []
    cur = lo
    for nr in sorted(n for n in rules.actions if lo <= n <= hi):
        action = rules.actions[nr]
        if nr > cur:
            runs.append((cur, nr - 1, rules.default))
        runs.append((nr, nr, action))
        cur = nr + 1
    if cur <= hi:
        runs.append((cur, hi, rules.default))
    merged: list[tuple[int, int, Action]] = []
    for start, end, action in runs:
        if merged and merged[-1][2] == action and merged[-1][1] + 1 == start:
            merged[-1] = (merged[-1][0], end, action)
        else:
            merged.append((start, end, action))
    return merged


def _tree(prog: _Program, runs: list[tuple[int, int, Action]], leaves: dict[int, int]) -> int:
    """Emit a balanced search over ``runs`` (sorted, contiguous); returns its label."""
    if len(runs) == 1:
        action = runs[0][2]
        if isinstance(action, FlagTest):
            hit = _tree(prog, [(0, 0, action.hit)], leaves)
            miss = _tree(prog, [(0, 0, action.miss)], leaves)
            prog.cond(_JMP_JSET_K, action.mask, hit, miss)
            # seccomp_data.args[i] (little-endian low word); the accumulator is reloaded per leaf
            return prog.emit(_insn(_LD_W_ABS, 0, 0, 16 + 8 * action.arg))
        if isinstance(action, ArgEquals):
            hit = _tree(prog, [(0, 0, action.hit)], leaves)
            miss = _tree(prog, [(0, 0, action.miss)], leaves)
            if not action.low32:
                prog.cond(_JMP_JEQ_K, action.value >> 32, hit, miss)
                hit = prog.emit(_insn(_LD_W_ABS, 0, 0, 16 + 8 * action.arg + 4))
            prog.cond(_JMP_JEQ_K, action.value & 0xFFFFFFFF, hit, miss)
            return prog.emit(_insn(_LD_W_ABS, 0, 0, 16 + 8 * action.arg))
        if action not in leaves or prog.dist(leaves[action]) > 255:
            leaves[action] = prog.ret(action)
        return leaves[action]
    mid = len(runs) // 2
    right = _tree(prog, runs[mid:], leaves)
    left = _tree(prog, runs[:mid], leaves)
    return prog.cond(_JMP_JGE_K, runs[mid][0], right, left)


def compile_filter(
    x86_64: AbiRules,
    i386: AbiRules | None = None,
    x32: AbiRules | None = None,
    bad_arch: int = RET_KILL_PROCESS,
) -> list[tuple[int, int, int, int]]:
    """Compile the per-ABI rules into BPF instructions (code, jt, jf, k).

    ``x32`` rules use numbers with the x32 bit set; when ``x32`` is None x32
    calls are killed.  When ``i386`` is None, i386 calls (``int $0x80``) are
    killed.
    """
    prog = _Program()
    kill = prog.ret(bad_arch)
    # x86_64 arch: numbers below the x32 bit are native, the rest are x32.
    # syscall(-1) is an ordinary ENOSYS natively, so it is allowed, not killed.
    x32_rules = x32 or AbiRules({0xFFFFFFFF: RET_ALLOW}, bad_arch)
    x32_block = _tree(prog, _ranges(x32_rules, X32_SYSCALL_BIT, 0xFFFFFFFF), {})
    native_block = _tree(prog, _ranges(x86_64, 0, X32_SYSCALL_BIT - 1), {})
    prog.cond(_JMP_JGE_K, X32_SYSCALL_BIT, x32_block, native_block)
    prog.emit(_insn(_LD_W_ABS, 0, 0, _OFF_NR))
    x64 = prog.here()
    if i386 is not None:
        _tree(prog, _ranges(i386, 0, 0xFFFFFFFF), {})
        prog.emit(_insn(_LD_W_ABS, 0, 0, _OFF_NR))
        i386_label = prog.here()
    else:
        i386_label = kill
    not64 = prog.cond(_JMP_JEQ_K, AUDIT_ARCH_I386, i386_label, kill)
    prog.cond(_JMP_JEQ_K, AUDIT_ARCH_X86_64, x64, not64)
    prog.emit(_insn(_LD_W_ABS, 0, 0, _OFF_ARCH))
    insns = prog.instructions()
    if len(insns) > BPF_MAXINSNS:
        raise ValueError(f"seccomp filter too long: {len(insns)} instructions")
    return insns


def pack(insns: list[tuple[int, int, int, int]]) -> bytes:
    """struct sock_filter[] as bytes."""
    return b"".join(struct.pack("=HBBI", *i) for i in insns)


def run(insns: list[tuple[int, int, int, int]], nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Interpret the filter for (nr, arch): used by tests to check the compiler
    against the table it was given, and by nothing on the hot path."""
    data = struct.pack("=IIQ", nr & 0xFFFFFFFF, arch, 0) + b"".join(
        struct.pack("=Q", a & 0xFFFFFFFFFFFFFFFF) for a in (tuple(args) + (0,) * 6)[:6])
    pc = 0
    acc = 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == _LD_W_ABS:
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code == _JMP_JA:
            pc += 1 + k
        elif code == _JMP_JEQ_K:
            pc += 1 + (jt if acc == k else jf)
        elif code == _JMP_JGE_K:
            pc += 1 + (jt if acc >= k else jf)
        elif code == _JMP_JSET_K:
            pc += 1 + (jt if acc & k else jf)
        elif code == _RET_K:
            return k
        else:
            raise ValueError(f"unknown BPF opcode {code:#x}")


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def install(insns: list[tuple[int, int, int, int]], flags: int = 0, no_new_privs: bool | None = None) -> int:
    """Install the filter on the calling thread (used in the launched child
    just before exec).  ``no_new_privs`` defaults to "only when not root"
    so that setuid programs keep working under root's sessions."""
    if no_new_privs is None:
        no_new_privs = os.geteuid() != 0
    if no_new_privs and _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "prctl(PR_SET_NO_NEW_PRIVS): " + os.strerror(err))
    buf = ctypes.create_string_buffer(pack(insns))
    prog = _SockFprog(len(insns), ctypes.addressof(buf))
    ret = _libc.syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, "seccomp(SET_MODE_FILTER): " + os.strerror(err))
    return ret
