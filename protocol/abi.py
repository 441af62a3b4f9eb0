"""The x86 Linux syscall ABIs: numbers, names and argument kinds.

A seccomp/ptrace stop tells the shim an audit arch and a number; this module
turns them into a :class:`SyscallSpec` (name + argument kinds) that
:mod:`brokerd.protocol.args` decodes with.  The data live in the generated
modules ``protocol/_tables/{x86_64,i386,x32}.py`` (``scripts/gen_syscalls.py``:
kernel uapi headers + a curated prototype table), complete for Linux 6.18.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ._tables import i386 as _t_i386
from ._tables import x32 as _t_x32
from ._tables import x86_64 as _t_x86_64

__all__ = ["ABIS", "AUDIT_ARCH_I386", "AUDIT_ARCH_X86_64", "X32_SYSCALL_BIT", "Abi",
           "SyscallSpec", "abi_from_audit"]

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
#: x32 calls arrive with AUDIT_ARCH_X86_64 and this bit set in the number.
X32_SYSCALL_BIT = 0x40000000


@dataclass(frozen=True, slots=True)
class SyscallSpec:
    """One syscall of one ABI.

    ``args`` are the argument kinds (see :mod:`brokerd.protocol.args`), one
    per real argument; ``ret`` the kind of the return value (``int``,
    ``long``, ``fd``, ``pid``, ``uid`` or ``ptr``).  ``abi`` tells the decoder
    the register and pointer widths.
    """

    name: str
    nr: int
    args: tuple[str, ...]
    ret: str = "int"
    abi: str = "x86_64"


@dataclass(frozen=True)
class Abi:
    """A syscall ABI: its audit arch, x32 number bit and tables."""

    name: str
    audit_arch: int
    nr_bit: int
    by_nr: Mapping[int, SyscallSpec]
    by_name: Mapping[str, SyscallSpec]
    _unknown: dict[int, SyscallSpec] = field(default_factory=dict, repr=False, compare=False)

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


def _make(name: str, audit_arch: int, nr_bit: int,
          rows: tuple[tuple[int, str, tuple[str, ...], str], ...]) -> Abi:
    by_nr = {nr: SyscallSpec(n, nr, args, ret, name) for nr, n, args, ret in rows}
    by_name = {s.name: s for s in by_nr.values()}
    return Abi(name, audit_arch, nr_bit, MappingProxyType(by_nr), MappingProxyType(by_name))


ABIS: dict[str, Abi] = {
    "x86_64": _make("x86_64", AUDIT_ARCH_X86_64, 0, _t_x86_64.SYSCALLS),
    "i386": _make("i386", AUDIT_ARCH_I386, 0, _t_i386.SYSCALLS),
    "x32": _make("x32", AUDIT_ARCH_X86_64, X32_SYSCALL_BIT, _t_x32.SYSCALLS),
}


def abi_from_audit(arch: int, nr: int) -> Abi | None:
    """The ABI of a call from its seccomp/``PTRACE_GET_SYSCALL_INFO`` arch and
    number (x32 is x86_64's arch with the x32 bit in ``nr``); None if unknown."""
    if arch == AUDIT_ARCH_X86_64:
        return ABIS["x32"] if nr & X32_SYSCALL_BIT else ABIS["x86_64"]
    if arch == AUDIT_ARCH_I386:
        return ABIS["i386"]
    return None
