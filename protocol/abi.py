"""The x86 Linux syscall ABIs: numbers, names, argument kinds and classes.

A seccomp/ptrace stop tells the shim an audit arch and a number; this module
turns them into a :class:`SyscallSpec` (name + argument kinds) that
:mod:`brokerd.protocol.args` decodes with.  The data live in the generated
modules ``protocol/_tables/{x86_64,i386,x32}.py`` (``scripts/gen_syscalls.py``:
kernel uapi headers + a curated prototype table), complete for Linux 6.18.

Each call also carries its *classes*: strace's (``file``, ``desc``,
``network``, ``process``, ``signal``, ``ipc``, ``memory``, ``creds``,
``clock``, ``stat``, ``lstat``, ``fstat``, ``statfs``, ``fstatfs``, ``pure``)
and brokerd's own (``open``, ``fs-read``, ``fs-write``, ``fd-write``,
``link``, ``mknod``, ``signal-send``, ``signal-group``, ``process-access``,
``process-control``, ``remap``), so policies, the guard and ``-e trace=%CLASS`` select calls by
what they do instead of keeping their own lists (:func:`names_in`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType, ModuleType

from ._tables import i386 as _t_i386
from ._tables import x32 as _t_x32
from ._tables import x86_64 as _t_x86_64
from .record import Record, _set

__all__ = ["ABIS", "AUDIT_ARCH_I386", "AUDIT_ARCH_X86_64", "CLASSES", "X32_SYSCALL_BIT", "Abi",
           "SyscallSpec", "abi_from_audit", "all_names", "names_in"]

AUDIT_ARCH_X86_64: int = _t_x86_64.AUDIT_ARCH
AUDIT_ARCH_I386: int = _t_i386.AUDIT_ARCH
#: x32 calls arrive with AUDIT_ARCH_X86_64 and this bit set in the number.
X32_SYSCALL_BIT: int = _t_x32.NR_BIT


class SyscallSpec(Record):
    """One syscall of one ABI.

    ``args`` are the argument kinds (see :mod:`brokerd.protocol.args`), one
    per real argument; ``ret`` the kind of the return value (``int``,
    ``long``, ``fd``, ``pid``, ``uid`` or ``ptr``).  ``abi`` tells the decoder
    the register and pointer widths.
    """

    __slots__ = ("name", "nr", "args", "ret", "abi", "classes")
    name: str
    nr: int
    args: tuple[str, ...]
    ret: str
    abi: str
    classes: frozenset[str]

    def __init__(self, name: str, nr: int, args: tuple[str, ...], ret: str = "int",
                 abi: str = "x86_64", classes: frozenset[str] = frozenset()) -> None:
        _set(self, "name", name)
        _set(self, "nr", nr)
        _set(self, "args", args)
        _set(self, "ret", ret)
        _set(self, "abi", abi)
        _set(self, "classes", classes)


class Abi(Record):
    """A syscall ABI: its audit arch, x32 number bit and tables."""

    __slots__ = (
        "name", "audit_arch", "nr_bit", "by_nr", "by_name", "reg_bits", "ptr_bytes", "time_bytes",
        "arg_regs", "mmap_call", "_unknown", "_by_class",
    )
    _hidden = ("_unknown", "_by_class")
    name: str
    audit_arch: int
    nr_bit: int
    by_nr: Mapping[int, SyscallSpec]
    by_name: Mapping[str, SyscallSpec]
    #: register width in bits (i386: 32; x32 passes 64-bit registers)
    reg_bits: int
    #: pointer and time_t sizes in tracee memory
    ptr_bytes: int
    time_bytes: int
    #: the argument registers, as a 64-bit tracer's user_regs_struct names them
    arg_regs: tuple[str, ...]
    #: the mmap taking flags and offset in registers (i386: mmap2)
    mmap_call: str
    _unknown: dict[int, SyscallSpec]
    #: class -> its calls, made on first use (one pass over the table for all classes)
    _by_class: dict[str, frozenset[str]]

    def __init__(self, name: str, audit_arch: int, nr_bit: int, by_nr: Mapping[int, SyscallSpec],
                 by_name: Mapping[str, SyscallSpec], reg_bits: int = 64, ptr_bytes: int = 8,
                 time_bytes: int = 8,
                 arg_regs: tuple[str, ...] = ("rdi", "rsi", "rdx", "r10", "r8", "r9"),
                 mmap_call: str = "mmap", _unknown: dict[int, SyscallSpec] | None = None,
                 _by_class: dict[str, frozenset[str]] | None = None) -> None:
        _set(self, "name", name)
        _set(self, "audit_arch", audit_arch)
        _set(self, "nr_bit", nr_bit)
        _set(self, "by_nr", by_nr)
        _set(self, "by_name", by_name)
        _set(self, "reg_bits", reg_bits)
        _set(self, "ptr_bytes", ptr_bytes)
        _set(self, "time_bytes", time_bytes)
        _set(self, "arg_regs", arg_regs)
        _set(self, "mmap_call", mmap_call)
        _set(self, "_unknown", {} if _unknown is None else _unknown)
        _set(self, "_by_class", {} if _by_class is None else _by_class)

    def spec(self, nr: int) -> SyscallSpec:
        """The spec of number ``nr`` (x32: with or without the x32 bit).

        Unknown numbers get ``syscall_NR`` with six ``ptr`` arguments, cached
        so the decoder's per-spec plan is built once.
        """
        s = self.by_nr.get(nr | self.nr_bit)
        if s is not None:
            return s
        s = self._unknown.get(nr)
        if s is None:
            s = SyscallSpec(f"syscall_{nr}", nr, ("ptr",) * 6, "int", self.name)
            if len(self._unknown) < 4096:
                self._unknown[nr] = s
        return s

    @property
    def reg_mask(self) -> int:
        """All ones over one register of this ABI (what a raw argument holds)."""
        return (1 << self.reg_bits) - 1

    def nr(self, name: str) -> int:
        """The number to put in the syscall register for ``name`` (x32: with its bit)."""
        return self.by_name[name].nr

    def names_in(self, cls: str) -> frozenset[str]:
        """The calls of this ABI in class ``cls`` (empty if nothing is)."""
        if not self._by_class:
            groups: dict[str, set[str]] = {}
            for n, s in self.by_name.items():
                for c in s.classes:
                    groups.setdefault(c, set()).add(n)
            self._by_class.update((c, frozenset(names)) for c, names in groups.items())
        return self._by_class.get(cls, frozenset())


def _make(table: ModuleType) -> Abi:
    name = table.ABI
    by_nr = {nr: SyscallSpec(n, nr, args, ret, name, frozenset(classes))
             for nr, n, args, ret, classes in table.SYSCALLS}
    by_name = {s.name: s for s in by_nr.values()}
    return Abi(name, table.AUDIT_ARCH, table.NR_BIT, MappingProxyType(by_nr),
               MappingProxyType(by_name), table.REG_BITS, table.PTR_BYTES, table.TIME_BYTES,
               table.ARG_REGS, table.MMAP_CALL)


ABIS: dict[str, Abi] = {t.ABI: _make(t) for t in (_t_x86_64, _t_i386, _t_x32)}

#: Every class some call belongs to, sorted.
CLASSES: tuple[str, ...] = tuple(sorted({c for abi in ABIS.values() for s in abi.by_nr.values()
                                         for c in s.classes}))


@cache
def names_in(cls: str) -> frozenset[str]:
    """The calls in class ``cls`` on any ABI (the names policies match on);
    KeyError for a class no call has (a typo in a policy fails at import)."""
    if cls not in CLASSES:
        raise KeyError(f"no syscall class {cls!r} (known: {', '.join(CLASSES)})")
    return frozenset().union(*(abi.names_in(cls) for abi in ABIS.values()))


@cache
def all_names() -> frozenset[str]:
    """Every syscall name of every ABI."""
    return frozenset(n for abi in ABIS.values() for n in abi.by_name)


def abi_from_audit(arch: int, nr: int) -> Abi | None:
    """The ABI of a call from its seccomp/``PTRACE_GET_SYSCALL_INFO`` arch and
    number (x32 is x86_64's arch with the x32 bit in ``nr``); None if unknown."""
    if arch == AUDIT_ARCH_X86_64:
        return ABIS["x32"] if nr & X32_SYSCALL_BIT else ABIS["x86_64"]
    if arch == AUDIT_ARCH_I386:
        return ABIS["i386"]
    return None
