"""Syscall argument kinds: raw register values <-> protocol values.

The syscall tables (:mod:`brokerd.protocol.abi`) give every argument a *kind*;
this module turns a register value of that kind into a protocol
:data:`~brokerd.protocol.types.Value` (``O_RDONLY|O_CLOEXEC``, ``"/etc/passwd"``,
``{AF_INET, 127.0.0.1:80}``) and, for rewritten calls, back into register
values plus memory blobs the shim must place in the tracee.

It is pure: tracee memory is reached only through a :class:`Memory` object
the caller supplies, so it is tested with plain bytes and reused by any shim.

Kinds (``:N`` names the 0-based argument holding a length or count):

===================  ========================================================
scalars              ``int`` ``uint`` ``long`` ``ulong`` ``hex`` ``ptr`` ``fd``
                     ``pid`` ``uid`` ``mode`` (octal) ``dirfd`` (AT_FDCWD)
                     ``signo`` (SIGINT)
flag sets / enums    every name in :data:`FLAGSETS`: ``open_flags`` ``at_flags``
                     ``prot`` ``mmap_flags`` ``clone_flags`` ``af`` ``socktype``
                     ``whence`` ``access_mode`` ``unlink_flags``
                     ``rename_flags`` ``fcntl_cmd`` ``prctl_option`` ...
input memory         ``path`` ``str`` (NUL-terminated), ``inbuf:N`` (N bytes),
                     ``sockaddr:N`` (N = socklen), ``argv`` ``envp`` (string
                     arrays), ``iovec:N`` (N = iovcnt), ``timespec``
                     ``timespec64`` ``timeval``, ``open_how:N``
                     ``clone_args:N`` (N = struct size)
output memory        ``outbuf:N`` (N = capacity; shown with the return value's
                     length), ``out_sockaddr:N`` (N = socklen pointer),
                     ``out_timespec`` ``out_timespec64`` ``out_timeval``
                     ``pipefd`` (int[2]): a pointer at entry, contents from
                     :func:`decode_outbufs` after the call
===================  ========================================================

Widths follow the ABI of the spec (``spec.abi``): i386 registers are 32-bit,
i386/x32 pointers are 4 bytes, i386 ``timespec``/``timeval`` fields are 32-bit
(the ``*64`` kinds are always 64-bit, as ``__kernel_timespec`` is).

Each kind is one row of a registry (``_REGISTRY``): its decoder at entry,
its decoder after the call (output memory), how a rewrite's value becomes a
blob, whether it names a length argument (``:N``).  Adding a kind is adding
a row; decoding, decoding outputs and encoding never test kind names.

Hot path: :func:`decode_args` runs on every intercepted call, so each spec's
kinds are compiled once into a tuple of closures (kind strings such as
``inbuf:2`` are parsed then, never per call).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from .abi import ABIS, SyscallSpec
from .consts import MAX_ERRNO, SIGNAL_NAMES, SIGNALS
from .record import Record, _set
from .types import Addr, Array, Fail, Field, Int, Oct, Ok, Ptr, Result, Str, Struct, Sym, Value

__all__ = [
    "FLAGSETS", "KINDS", "WHO_TARGETS", "Encoded", "FlagSet", "Memory", "check_kind", "constant", "decode_args",
    "decode_outbufs", "decode_result", "encode_args", "entry_decoder", "entry_decoder_given", "format_flags", "pack_sockaddr",
    "unpack_sockaddr", "value_to_int",
]


class Memory(Protocol):
    """Read access to the tracee's memory (e.g. process_vm_readv or /proc/PID/mem)."""

    def read(self, addr: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``addr``: fewer if the range runs into an
        unmapped page; raises OSError when nothing at ``addr`` is readable."""
        ...

    def read_cstr(self, addr: int, limit: int) -> tuple[bytes, bool]:
        """Read at most ``limit`` bytes at ``addr``; return the bytes before the
        first NUL and whether a NUL was found within them.  OSError if unmapped."""
        ...


# ---------------------------------------------------------------------------
# Per-ABI widths
# ---------------------------------------------------------------------------


class _Widths(Record):
    __slots__ = ("mask", "ptr", "time")
    mask: int  # register mask
    ptr: int  # pointer size in tracee memory
    time: int  # size of time_t/long fields of timespec/timeval

    def __init__(self, mask: int, ptr: int, time: int) -> None:
        _set(self, "mask", mask)
        _set(self, "ptr", ptr)
        _set(self, "time", time)


_WIDTHS: dict[str, _Widths] = {
    name: _Widths(abi.reg_mask, abi.ptr_bytes, abi.time_bytes) for name, abi in ABIS.items()
}
_M32 = (1 << 32) - 1
_M64 = (1 << 64) - 1


def _s32(v: int) -> int:
    return ((v & _M32) ^ 0x80000000) - 0x80000000


def _s64(v: int) -> int:
    return ((v & _M64) ^ (1 << 63)) - (1 << 63)


# ---------------------------------------------------------------------------
# Flag sets: data, not code
# ---------------------------------------------------------------------------


class FlagSet(Record):
    """A named set of constants for one argument kind.

    ``fields`` are multi-valued bit fields shown by exact value (O_ACCMODE:
    O_RDONLY/O_WRONLY/O_RDWR; clone's CSIGNAL; socket type), ``bits`` are
    or-able flags (multi-bit ones such as O_SYNC listed first so they win),
    ``enum`` sets map whole values to names (whence, fcntl commands).
    ``width`` says how a register is read: ``u32`` (most flags), ``s32``
    (enums that can be negative) or ``reg`` (full register, e.g. clone flags).
    """

    __slots__ = (
        "name", "bits", "fields", "enum", "zero", "width", "hex_unknown", "aliases", "fields_last",
    )
    name: str
    bits: tuple[tuple[str, int], ...]
    fields: tuple[tuple[int, Mapping[int, str]], ...]
    enum: Mapping[int, str] | None
    zero: str | None
    width: str
    hex_unknown: bool
    aliases: Mapping[str, int] | None
    fields_last: bool  # clone: CLONE_VM|...|SIGCHLD, as strace writes it

    def __init__(self, name: str, bits: tuple[tuple[str, int], ...] = (),
                 fields: tuple[tuple[int, Mapping[int, str]], ...] = (),
                 enum: Mapping[int, str] | None = None, zero: str | None = None, width: str = "u32",
                 hex_unknown: bool = False, aliases: Mapping[str, int] | None = None,
                 fields_last: bool = False) -> None:
        _set(self, "name", name)
        _set(self, "bits", bits)
        _set(self, "fields", fields)
        _set(self, "enum", enum)
        _set(self, "zero", zero)
        _set(self, "width", width)
        _set(self, "hex_unknown", hex_unknown)
        _set(self, "aliases", aliases)
        _set(self, "fields_last", fields_last)

    @property
    def names(self) -> dict[str, int]:
        """name -> value, for parsing (aliases included)."""
        cached = _NAMES_CACHE.get(self.name)
        if cached is None:
            cached = {}
            if self.enum is not None:
                cached.update({n: v for v, n in self.enum.items()})
            for _mask, m in self.fields:
                cached.update({n: v for v, n in m.items()})
            cached.update(dict(self.bits))
            if self.zero:
                cached[self.zero] = 0
            if self.aliases:
                cached.update(self.aliases)
            _NAMES_CACHE[self.name] = cached
        return cached

    def format(self, value: int) -> Value:
        """An int as this set's names; round-trips through :func:`value_to_int`.
        Memoized (values are immutable): a program repeats the same few flag
        words, and every judged call formats its flags."""
        key = (self.name, value)
        v = _FORMAT_CACHE.get(key)
        if v is None:
            if len(_FORMAT_CACHE) >= _FORMAT_CACHE_SIZE:  # bounded: a program may send any value
                _FORMAT_CACHE.clear()
            v = _FORMAT_CACHE[key] = self._format(value)
        return v

    def _format(self, value: int) -> Value:
        if self.enum is not None:
            n = self.enum.get(value)
            if n is not None:
                return Sym((n,))
            return Ptr(value) if self.hex_unknown and value >= 0 else Int(value)
        if value < 0:
            return Int(value)
        if value == 0:
            if self.zero:
                return Sym((self.zero,))
        fnames: list[str] = []
        rest = value
        for mask, m in self.fields:
            n = m.get(rest & mask)
            if n is not None:
                fnames.append(n)
                rest &= ~mask
        bnames: list[tuple[int, str]] = []
        for n, b in self.bits:
            if rest & b == b:
                bnames.append((b, n))
                rest &= ~b
        if not fnames and not bnames:
            return Int(0) if value == 0 else Ptr(value)
        bnames.sort()
        names = [n for _, n in bnames]
        names = names + fnames if self.fields_last else fnames + names
        return Sym(tuple(names), rest)


_NAMES_CACHE: dict[str, dict[str, int]] = {}
_FORMAT_CACHE: dict[tuple[str, int], Value] = {}
_FORMAT_CACHE_SIZE = 4096


def _enum(name: str, pairs: Mapping[str, int], *, width: str = "u32", hex_unknown: bool = False,
          aliases: Mapping[str, int] | None = None) -> FlagSet:
    return FlagSet(name, enum={v: n for n, v in reversed(list(pairs.items()))}, width=width,
                   hex_unknown=hex_unknown, aliases=aliases)


def _bits(name: str, pairs: Mapping[str, int], *, zero: str | None = None,
          fields: tuple[tuple[int, Mapping[int, str]], ...] = (), width: str = "u32",
          aliases: Mapping[str, int] | None = None, fields_last: bool = False) -> FlagSet:
    # multi-bit flags first so O_SYNC beats O_DSYNC, O_TMPFILE beats O_DIRECTORY
    ordered = sorted(pairs.items(), key=lambda kv: -bin(kv[1]).count("1"))
    return FlagSet(name, bits=tuple(ordered), fields=fields, zero=zero, width=width,
                   aliases=aliases, fields_last=fields_last)


_O_BITS = {
    "O_CREAT": 0o100, "O_EXCL": 0o200, "O_NOCTTY": 0o400, "O_TRUNC": 0o1000,
    "O_APPEND": 0o2000, "O_NONBLOCK": 0o4000, "O_DSYNC": 0o10000, "O_ASYNC": 0o20000,
    "O_DIRECT": 0o40000, "O_LARGEFILE": 0o100000, "O_DIRECTORY": 0o200000,
    "O_NOFOLLOW": 0o400000, "O_NOATIME": 0o1000000, "O_CLOEXEC": 0o2000000,
    "O_SYNC": 0o4010000, "O_PATH": 0o10000000, "O_TMPFILE": 0o20200000,
}
_CLONE_NS = {
    "CLONE_NEWTIME": 0x80, "CLONE_VM": 0x100, "CLONE_FS": 0x200, "CLONE_FILES": 0x400,
    "CLONE_SIGHAND": 0x800, "CLONE_PIDFD": 0x1000, "CLONE_PTRACE": 0x2000,
    "CLONE_VFORK": 0x4000, "CLONE_PARENT": 0x8000, "CLONE_THREAD": 0x10000,
    "CLONE_NEWNS": 0x20000, "CLONE_SYSVSEM": 0x40000, "CLONE_SETTLS": 0x80000,
    "CLONE_PARENT_SETTID": 0x100000, "CLONE_CHILD_CLEARTID": 0x200000,
    "CLONE_DETACHED": 0x400000, "CLONE_UNTRACED": 0x800000, "CLONE_CHILD_SETTID": 0x1000000,
    "CLONE_NEWCGROUP": 0x2000000, "CLONE_NEWUTS": 0x4000000, "CLONE_NEWIPC": 0x8000000,
    "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000,
    "CLONE_IO": 0x80000000, "CLONE_CLEAR_SIGHAND": 0x100000000,
    "CLONE_INTO_CGROUP": 0x200000000,
}
_CLONE_BITS = {k: v for k, v in _CLONE_NS.items() if k != "CLONE_NEWTIME"}
_SIGNAL_FIELD = {n: s for n, s in SIGNAL_NAMES.items() if 1 <= n <= 0xff}
_AF = {
    "AF_UNSPEC": 0, "AF_UNIX": 1, "AF_INET": 2, "AF_AX25": 3, "AF_IPX": 4, "AF_APPLETALK": 5,
    "AF_NETROM": 6, "AF_BRIDGE": 7, "AF_ATMPVC": 8, "AF_X25": 9, "AF_INET6": 10, "AF_ROSE": 11,
    "AF_DECnet": 12, "AF_NETBEUI": 13, "AF_SECURITY": 14, "AF_KEY": 15, "AF_NETLINK": 16,
    "AF_PACKET": 17, "AF_ASH": 18, "AF_ECONET": 19, "AF_ATMSVC": 20, "AF_RDS": 21, "AF_SNA": 22,
    "AF_IRDA": 23, "AF_PPPOX": 24, "AF_WANPIPE": 25, "AF_LLC": 26, "AF_IB": 27, "AF_MPLS": 28,
    "AF_CAN": 29, "AF_TIPC": 30, "AF_BLUETOOTH": 31, "AF_IUCV": 32, "AF_RXRPC": 33,
    "AF_ISDN": 34, "AF_PHONET": 35, "AF_IEEE802154": 36, "AF_CAIF": 37, "AF_ALG": 38,
    "AF_NFC": 39, "AF_VSOCK": 40, "AF_KCM": 41, "AF_QIPCRTR": 42, "AF_SMC": 43, "AF_XDP": 44,
    "AF_MCTP": 45,
}
_SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM",
               5: "SOCK_SEQPACKET", 6: "SOCK_DCCP", 10: "SOCK_PACKET"}
_SOCK_FLAGS = {"SOCK_NONBLOCK": 0o4000, "SOCK_CLOEXEC": 0o2000000}
_TIMER_FLAGS = {"TIMER_ABSTIME": 1}

_SETS: list[FlagSet] = [
    _bits("open_flags", _O_BITS, fields=((3, {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}),),
          aliases={"O_NDELAY": 0o4000, "FASYNC": 0o20000, "O_RSYNC": 0o4010000}),
    _bits("fd_flags", {"O_NONBLOCK": 0o4000, "O_CLOEXEC": 0o2000000}),
    _bits("at_flags", {"AT_EACCESS": 0x200, "AT_SYMLINK_NOFOLLOW": 0x100, "AT_SYMLINK_FOLLOW": 0x400,
                       "AT_NO_AUTOMOUNT": 0x800, "AT_EMPTY_PATH": 0x1000,
                       "AT_STATX_FORCE_SYNC": 0x2000, "AT_STATX_DONT_SYNC": 0x4000,
                       "AT_RECURSIVE": 0x8000}),
    _enum("dirfd", {"AT_FDCWD": -100}, width="s32"),
    _bits("unlink_flags", {"AT_REMOVEDIR": 0x200}),
    _bits("rename_flags", {"RENAME_NOREPLACE": 1, "RENAME_EXCHANGE": 2, "RENAME_WHITEOUT": 4}),
    _bits("access_mode", {"R_OK": 4, "W_OK": 2, "X_OK": 1}, zero="F_OK"),
    _bits("prot", {"PROT_READ": 1, "PROT_WRITE": 2, "PROT_EXEC": 4, "PROT_SEM": 8,
                   "PROT_GROWSDOWN": 0x01000000, "PROT_GROWSUP": 0x02000000}, zero="PROT_NONE"),
    _bits("mmap_flags", {
        "MAP_FIXED": 0x10, "MAP_ANONYMOUS": 0x20, "MAP_32BIT": 0x40, "MAP_GROWSDOWN": 0x100,
        "MAP_DENYWRITE": 0x800, "MAP_EXECUTABLE": 0x1000, "MAP_LOCKED": 0x2000,
        "MAP_NORESERVE": 0x4000, "MAP_POPULATE": 0x8000, "MAP_NONBLOCK": 0x10000,
        "MAP_STACK": 0x20000, "MAP_HUGETLB": 0x40000, "MAP_SYNC": 0x80000,
        "MAP_FIXED_NOREPLACE": 0x100000},
        fields=((0xf, {1: "MAP_SHARED", 2: "MAP_PRIVATE", 3: "MAP_SHARED_VALIDATE",
                       8: "MAP_DROPPABLE"}),),
        aliases={"MAP_ANON": 0x20, "MAP_FILE": 0}),
    _bits("clone_flags", _CLONE_BITS, fields=((0xff, _SIGNAL_FIELD),), width="reg",
          fields_last=True),
    _bits("unshare_flags", _CLONE_NS, width="reg"),
    _enum("af", _AF, aliases={"AF_LOCAL": 1, "AF_FILE": 1, "AF_ROUTE": 16}),
    _bits("socktype", _SOCK_FLAGS, fields=((0xf, _SOCK_TYPES),)),
    _bits("sock_flags", _SOCK_FLAGS),
    _enum("whence", {"SEEK_SET": 0, "SEEK_CUR": 1, "SEEK_END": 2, "SEEK_DATA": 3, "SEEK_HOLE": 4}),
    _enum("fcntl_cmd", {
        "F_DUPFD": 0, "F_GETFD": 1, "F_SETFD": 2, "F_GETFL": 3, "F_SETFL": 4, "F_GETLK": 5,
        "F_SETLK": 6, "F_SETLKW": 7, "F_SETOWN": 8, "F_GETOWN": 9, "F_SETSIG": 10,
        "F_GETSIG": 11, "F_GETLK64": 12, "F_SETLK64": 13, "F_SETLKW64": 14, "F_SETOWN_EX": 15,
        "F_GETOWN_EX": 16, "F_GETOWNER_UIDS": 17, "F_OFD_GETLK": 36, "F_OFD_SETLK": 37,
        "F_OFD_SETLKW": 38, "F_SETLEASE": 1024, "F_GETLEASE": 1025, "F_NOTIFY": 1026,
        "F_DUPFD_QUERY": 1027, "F_CREATED_QUERY": 1028, "F_CANCELLK": 1029,
        "F_DUPFD_CLOEXEC": 1030, "F_SETPIPE_SZ": 1031, "F_GETPIPE_SZ": 1032,
        "F_ADD_SEALS": 1033, "F_GET_SEALS": 1034, "F_GET_RW_HINT": 1035, "F_SET_RW_HINT": 1036,
        "F_GET_FILE_RW_HINT": 1037, "F_SET_FILE_RW_HINT": 1038}),
    _enum("prctl_option", {
        "PR_SET_PDEATHSIG": 1, "PR_GET_PDEATHSIG": 2, "PR_GET_DUMPABLE": 3,
        "PR_SET_DUMPABLE": 4, "PR_GET_UNALIGN": 5, "PR_SET_UNALIGN": 6, "PR_GET_KEEPCAPS": 7,
        "PR_SET_KEEPCAPS": 8, "PR_GET_FPEMU": 9, "PR_SET_FPEMU": 10, "PR_GET_FPEXC": 11,
        "PR_SET_FPEXC": 12, "PR_GET_TIMING": 13, "PR_SET_TIMING": 14, "PR_SET_NAME": 15,
        "PR_GET_NAME": 16, "PR_GET_ENDIAN": 19, "PR_SET_ENDIAN": 20, "PR_GET_SECCOMP": 21,
        "PR_SET_SECCOMP": 22, "PR_CAPBSET_READ": 23, "PR_CAPBSET_DROP": 24, "PR_GET_TSC": 25,
        "PR_SET_TSC": 26, "PR_GET_SECUREBITS": 27, "PR_SET_SECUREBITS": 28,
        "PR_SET_TIMERSLACK": 29, "PR_GET_TIMERSLACK": 30, "PR_TASK_PERF_EVENTS_DISABLE": 31,
        "PR_TASK_PERF_EVENTS_ENABLE": 32, "PR_MCE_KILL": 33, "PR_MCE_KILL_GET": 34,
        "PR_SET_MM": 35, "PR_SET_CHILD_SUBREAPER": 36, "PR_GET_CHILD_SUBREAPER": 37,
        "PR_SET_NO_NEW_PRIVS": 38, "PR_GET_NO_NEW_PRIVS": 39, "PR_GET_TID_ADDRESS": 40,
        "PR_SET_THP_DISABLE": 41, "PR_GET_THP_DISABLE": 42, "PR_MPX_ENABLE_MANAGEMENT": 43,
        "PR_MPX_DISABLE_MANAGEMENT": 44, "PR_SET_FP_MODE": 45, "PR_GET_FP_MODE": 46,
        "PR_CAP_AMBIENT": 47, "PR_SVE_SET_VL": 50, "PR_SVE_GET_VL": 51,
        "PR_GET_SPECULATION_CTRL": 52, "PR_SET_SPECULATION_CTRL": 53, "PR_PAC_RESET_KEYS": 54,
        "PR_SET_TAGGED_ADDR_CTRL": 55, "PR_GET_TAGGED_ADDR_CTRL": 56, "PR_SET_IO_FLUSHER": 57,
        "PR_GET_IO_FLUSHER": 58, "PR_SET_SYSCALL_USER_DISPATCH": 59,
        "PR_PAC_SET_ENABLED_KEYS": 60, "PR_PAC_GET_ENABLED_KEYS": 61, "PR_SCHED_CORE": 62,
        "PR_SME_SET_VL": 63, "PR_SME_GET_VL": 64, "PR_SET_MDWE": 65, "PR_GET_MDWE": 66,
        "PR_SET_MEMORY_MERGE": 67, "PR_GET_MEMORY_MERGE": 68, "PR_RISCV_V_SET_CONTROL": 69,
        "PR_RISCV_V_GET_CONTROL": 70, "PR_SET_VMA": 0x53564D41, "PR_SET_PTRACER": 0x59616D61},
        width="s32"),
    _enum("arch_prctl_code", {
        "ARCH_SET_GS": 0x1001, "ARCH_SET_FS": 0x1002, "ARCH_GET_FS": 0x1003,
        "ARCH_GET_GS": 0x1004, "ARCH_GET_CPUID": 0x1011, "ARCH_SET_CPUID": 0x1012,
        "ARCH_GET_XCOMP_SUPP": 0x1021, "ARCH_GET_XCOMP_PERM": 0x1022,
        "ARCH_REQ_XCOMP_PERM": 0x1023, "ARCH_GET_XCOMP_GUEST_PERM": 0x1024,
        "ARCH_REQ_XCOMP_GUEST_PERM": 0x1025, "ARCH_MAP_VDSO_X32": 0x2001,
        "ARCH_MAP_VDSO_32": 0x2002, "ARCH_MAP_VDSO_64": 0x2003, "ARCH_GET_UNTAG_MASK": 0x4001,
        "ARCH_ENABLE_TAGGED_ADDR": 0x4002, "ARCH_GET_MAX_TAG_BITS": 0x4003,
        "ARCH_FORCE_TAGGED_SVA": 0x4004, "ARCH_SHSTK_ENABLE": 0x5001,
        "ARCH_SHSTK_DISABLE": 0x5002, "ARCH_SHSTK_LOCK": 0x5003, "ARCH_SHSTK_UNLOCK": 0x5004,
        "ARCH_SHSTK_STATUS": 0x5005}, hex_unknown=True),
    _enum("sigprocmask_how", {"SIG_BLOCK": 0, "SIG_UNBLOCK": 1, "SIG_SETMASK": 2}),
    _bits("wait_options", {"WNOHANG": 1, "WUNTRACED": 2, "WEXITED": 4, "WCONTINUED": 8,
                           "WNOWAIT": 0x1000000, "__WNOTHREAD": 0x20000000,
                           "__WALL": 0x40000000, "__WCLONE": 0x80000000},
          aliases={"WSTOPPED": 2}),
    _enum("waitid_which", {"P_ALL": 0, "P_PID": 1, "P_PGID": 2, "P_PIDFD": 3}),
    _bits("msg_flags", {
        "MSG_OOB": 1, "MSG_PEEK": 2, "MSG_DONTROUTE": 4, "MSG_CTRUNC": 8, "MSG_PROXY": 0x10,
        "MSG_TRUNC": 0x20, "MSG_DONTWAIT": 0x40, "MSG_EOR": 0x80, "MSG_WAITALL": 0x100,
        "MSG_FIN": 0x200, "MSG_SYN": 0x400, "MSG_CONFIRM": 0x800, "MSG_RST": 0x1000,
        "MSG_ERRQUEUE": 0x2000, "MSG_NOSIGNAL": 0x4000, "MSG_MORE": 0x8000,
        "MSG_WAITFORONE": 0x10000, "MSG_BATCH": 0x40000, "MSG_SOCK_DEVMEM": 0x2000000,
        "MSG_ZEROCOPY": 0x4000000, "MSG_FASTOPEN": 0x20000000, "MSG_CMSG_CLOEXEC": 0x40000000}),
    _enum("shutdown_how", {"SHUT_RD": 0, "SHUT_WR": 1, "SHUT_RDWR": 2}),
    _enum("sock_level", {"SOL_IP": 0, "SOL_SOCKET": 1, "SOL_TCP": 6, "SOL_UDP": 17,
                         "SOL_IPV6": 41, "SOL_ICMPV6": 58, "SOL_RAW": 255, "SOL_PACKET": 263,
                         "SOL_NETLINK": 270, "SOL_TLS": 282, "SOL_ALG": 279}),
    _enum("madvise_advice", {
        "MADV_NORMAL": 0, "MADV_RANDOM": 1, "MADV_SEQUENTIAL": 2, "MADV_WILLNEED": 3,
        "MADV_DONTNEED": 4, "MADV_FREE": 8, "MADV_REMOVE": 9, "MADV_DONTFORK": 10,
        "MADV_DOFORK": 11, "MADV_MERGEABLE": 12, "MADV_UNMERGEABLE": 13, "MADV_HUGEPAGE": 14,
        "MADV_NOHUGEPAGE": 15, "MADV_DONTDUMP": 16, "MADV_DODUMP": 17, "MADV_WIPEONFORK": 18,
        "MADV_KEEPONFORK": 19, "MADV_COLD": 20, "MADV_PAGEOUT": 21, "MADV_POPULATE_READ": 22,
        "MADV_POPULATE_WRITE": 23, "MADV_DONTNEED_LOCKED": 24, "MADV_COLLAPSE": 25,
        "MADV_HWPOISON": 100, "MADV_SOFT_OFFLINE": 101, "MADV_GUARD_INSTALL": 102,
        "MADV_GUARD_REMOVE": 103}),
    _bits("msync_flags", {"MS_ASYNC": 1, "MS_INVALIDATE": 2, "MS_SYNC": 4}),
    _bits("mremap_flags", {"MREMAP_MAYMOVE": 1, "MREMAP_FIXED": 2, "MREMAP_DONTUNMAP": 4}),
    _bits("mlockall_flags", {"MCL_CURRENT": 1, "MCL_FUTURE": 2, "MCL_ONFAULT": 4}),
    _bits("futex_op", {"FUTEX_PRIVATE_FLAG": 128, "FUTEX_CLOCK_REALTIME": 256},
          fields=((0x7f, {0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 2: "FUTEX_FD", 3: "FUTEX_REQUEUE",
                          4: "FUTEX_CMP_REQUEUE", 5: "FUTEX_WAKE_OP", 6: "FUTEX_LOCK_PI",
                          7: "FUTEX_UNLOCK_PI", 8: "FUTEX_TRYLOCK_PI", 9: "FUTEX_WAIT_BITSET",
                          10: "FUTEX_WAKE_BITSET", 11: "FUTEX_WAIT_REQUEUE_PI",
                          12: "FUTEX_CMP_REQUEUE_PI", 13: "FUTEX_LOCK_PI2"}),)),
    _enum("ptrace_request", {
        "PTRACE_TRACEME": 0, "PTRACE_PEEKTEXT": 1, "PTRACE_PEEKDATA": 2, "PTRACE_PEEKUSER": 3,
        "PTRACE_POKETEXT": 4, "PTRACE_POKEDATA": 5, "PTRACE_POKEUSER": 6, "PTRACE_CONT": 7,
        "PTRACE_KILL": 8, "PTRACE_SINGLESTEP": 9, "PTRACE_GETREGS": 12, "PTRACE_SETREGS": 13,
        "PTRACE_GETFPREGS": 14, "PTRACE_SETFPREGS": 15, "PTRACE_ATTACH": 16,
        "PTRACE_DETACH": 17, "PTRACE_GETFPXREGS": 18, "PTRACE_SETFPXREGS": 19,
        "PTRACE_SYSCALL": 24, "PTRACE_GET_THREAD_AREA": 25, "PTRACE_SET_THREAD_AREA": 26,
        "PTRACE_ARCH_PRCTL": 30, "PTRACE_SYSEMU": 31, "PTRACE_SYSEMU_SINGLESTEP": 32,
        "PTRACE_SINGLEBLOCK": 33, "PTRACE_SETOPTIONS": 0x4200, "PTRACE_GETEVENTMSG": 0x4201,
        "PTRACE_GETSIGINFO": 0x4202, "PTRACE_SETSIGINFO": 0x4203, "PTRACE_GETREGSET": 0x4204,
        "PTRACE_SETREGSET": 0x4205, "PTRACE_SEIZE": 0x4206, "PTRACE_INTERRUPT": 0x4207,
        "PTRACE_LISTEN": 0x4208, "PTRACE_PEEKSIGINFO": 0x4209, "PTRACE_GETSIGMASK": 0x420a,
        "PTRACE_SETSIGMASK": 0x420b, "PTRACE_SECCOMP_GET_FILTER": 0x420c,
        "PTRACE_SECCOMP_GET_METADATA": 0x420d, "PTRACE_GET_SYSCALL_INFO": 0x420e,
        "PTRACE_GET_RSEQ_CONFIGURATION": 0x420f,
        "PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG": 0x4210,
        "PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG": 0x4211, "PTRACE_SET_SYSCALL_INFO": 0x4212},
        width="reg"),
    _enum("rlimit_resource", {
        "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
        "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
        "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
        "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15}),
    _enum("clockid", {
        "CLOCK_REALTIME": 0, "CLOCK_MONOTONIC": 1, "CLOCK_PROCESS_CPUTIME_ID": 2,
        "CLOCK_THREAD_CPUTIME_ID": 3, "CLOCK_MONOTONIC_RAW": 4, "CLOCK_REALTIME_COARSE": 5,
        "CLOCK_MONOTONIC_COARSE": 6, "CLOCK_BOOTTIME": 7, "CLOCK_REALTIME_ALARM": 8,
        "CLOCK_BOOTTIME_ALARM": 9, "CLOCK_TAI": 11}, width="s32"),
    _bits("timer_flags", _TIMER_FLAGS),
    _bits("timerfd_flags", {"TFD_TIMER_ABSTIME": 1, "TFD_TIMER_CANCEL_ON_SET": 2}),
    _bits("eventfd_flags", {"EFD_SEMAPHORE": 1, "EFD_NONBLOCK": 0o4000,
                            "EFD_CLOEXEC": 0o2000000}),
    _enum("itimer_which", {"ITIMER_REAL": 0, "ITIMER_VIRTUAL": 1, "ITIMER_PROF": 2}),
    _enum("priority_which", {"PRIO_PROCESS": 0, "PRIO_PGRP": 1, "PRIO_USER": 2}),
    _enum("ioprio_which", {"IOPRIO_WHO_PROCESS": 1, "IOPRIO_WHO_PGRP": 2, "IOPRIO_WHO_USER": 3}),
    _bits("flock_op", {"LOCK_SH": 1, "LOCK_EX": 2, "LOCK_NB": 4, "LOCK_UN": 8,
                       "LOCK_MAND": 32, "LOCK_READ": 64, "LOCK_WRITE": 128}),
    _bits("getrandom_flags", {"GRND_NONBLOCK": 1, "GRND_RANDOM": 2, "GRND_INSECURE": 4}),
    _bits("memfd_flags", {"MFD_CLOEXEC": 1, "MFD_ALLOW_SEALING": 2, "MFD_HUGETLB": 4,
                          "MFD_NOEXEC_SEAL": 8, "MFD_EXEC": 0x10}),
    _enum("epoll_op", {"EPOLL_CTL_ADD": 1, "EPOLL_CTL_DEL": 2, "EPOLL_CTL_MOD": 3}),
    _enum("seccomp_op", {"SECCOMP_SET_MODE_STRICT": 0, "SECCOMP_SET_MODE_FILTER": 1,
                         "SECCOMP_GET_ACTION_AVAIL": 2, "SECCOMP_GET_NOTIF_SIZES": 3}),
    _bits("seccomp_flags", {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
                            "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
                            "SECCOMP_FILTER_FLAG_NEW_LISTENER": 8,
                            "SECCOMP_FILTER_FLAG_TSYNC_ESRCH": 16,
                            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32}),
    _bits("resolve_flags", {"RESOLVE_NO_XDEV": 1, "RESOLVE_NO_MAGICLINKS": 2,
                            "RESOLVE_NO_SYMLINKS": 4, "RESOLVE_BENEATH": 8,
                            "RESOLVE_IN_ROOT": 0x10, "RESOLVE_CACHED": 0x20}, width="reg"),
    _bits("close_range_flags", {"CLOSE_RANGE_UNSHARE": 2, "CLOSE_RANGE_CLOEXEC": 4}),
    _bits("mount_flags", {
        "MS_RDONLY": 1, "MS_NOSUID": 2, "MS_NODEV": 4, "MS_NOEXEC": 8, "MS_SYNCHRONOUS": 16,
        "MS_REMOUNT": 32, "MS_MANDLOCK": 64, "MS_DIRSYNC": 128, "MS_NOSYMFOLLOW": 256,
        "MS_NOATIME": 1024, "MS_NODIRATIME": 2048, "MS_BIND": 4096, "MS_MOVE": 8192,
        "MS_REC": 16384, "MS_SILENT": 32768, "MS_POSIXACL": 1 << 16, "MS_UNBINDABLE": 1 << 17,
        "MS_PRIVATE": 1 << 18, "MS_SLAVE": 1 << 19, "MS_SHARED": 1 << 20, "MS_RELATIME": 1 << 21,
        "MS_KERNMOUNT": 1 << 22, "MS_I_VERSION": 1 << 23, "MS_STRICTATIME": 1 << 24,
        "MS_LAZYTIME": 1 << 25}, width="reg"),
    _bits("umount_flags", {"MNT_FORCE": 1, "MNT_DETACH": 2, "MNT_EXPIRE": 4,
                           "UMOUNT_NOFOLLOW": 8}),
    _bits("xattr_flags", {"XATTR_CREATE": 1, "XATTR_REPLACE": 2}),
    _bits("statx_mask", {
        "STATX_BASIC_STATS": 0x7ff, "STATX_TYPE": 1, "STATX_MODE": 2, "STATX_NLINK": 4,
        "STATX_UID": 8, "STATX_GID": 0x10, "STATX_ATIME": 0x20, "STATX_MTIME": 0x40,
        "STATX_CTIME": 0x80, "STATX_INO": 0x100, "STATX_SIZE": 0x200, "STATX_BLOCKS": 0x400,
        "STATX_BTIME": 0x800, "STATX_MNT_ID": 0x1000, "STATX_DIOALIGN": 0x2000,
        "STATX_MNT_ID_UNIQUE": 0x4000, "STATX_SUBVOL": 0x8000, "STATX_WRITE_ATOMIC": 0x10000,
        "STATX_DIO_READ_ALIGN": 0x20000}),
    _bits("inotify_mask", {
        "IN_ACCESS": 1, "IN_MODIFY": 2, "IN_ATTRIB": 4, "IN_CLOSE_WRITE": 8,
        "IN_CLOSE_NOWRITE": 0x10, "IN_OPEN": 0x20, "IN_MOVED_FROM": 0x40, "IN_MOVED_TO": 0x80,
        "IN_CREATE": 0x100, "IN_DELETE": 0x200, "IN_DELETE_SELF": 0x400, "IN_MOVE_SELF": 0x800,
        "IN_UNMOUNT": 0x2000, "IN_Q_OVERFLOW": 0x4000, "IN_IGNORED": 0x8000,
        "IN_ONLYDIR": 0x1000000, "IN_DONT_FOLLOW": 0x2000000, "IN_EXCL_UNLINK": 0x4000000,
        "IN_MASK_CREATE": 0x10000000, "IN_MASK_ADD": 0x20000000, "IN_ISDIR": 0x40000000,
        "IN_ONESHOT": 0x80000000}),
    _bits("fallocate_mode", {"FALLOC_FL_KEEP_SIZE": 1, "FALLOC_FL_PUNCH_HOLE": 2,
                             "FALLOC_FL_NO_HIDE_STALE": 4, "FALLOC_FL_COLLAPSE_RANGE": 8,
                             "FALLOC_FL_ZERO_RANGE": 0x10, "FALLOC_FL_INSERT_RANGE": 0x20,
                             "FALLOC_FL_UNSHARE_RANGE": 0x40}),
    _enum("fadvise_advice", {"POSIX_FADV_NORMAL": 0, "POSIX_FADV_RANDOM": 1,
                             "POSIX_FADV_SEQUENTIAL": 2, "POSIX_FADV_WILLNEED": 3,
                             "POSIX_FADV_DONTNEED": 4, "POSIX_FADV_NOREUSE": 5}),
    _bits("splice_flags", {"SPLICE_F_MOVE": 1, "SPLICE_F_NONBLOCK": 2, "SPLICE_F_MORE": 4,
                           "SPLICE_F_GIFT": 8}),
    _enum("socketcall_call", {
        "SYS_SOCKET": 1, "SYS_BIND": 2, "SYS_CONNECT": 3, "SYS_LISTEN": 4, "SYS_ACCEPT": 5,
        "SYS_GETSOCKNAME": 6, "SYS_GETPEERNAME": 7, "SYS_SOCKETPAIR": 8, "SYS_SEND": 9,
        "SYS_RECV": 10, "SYS_SENDTO": 11, "SYS_RECVFROM": 12, "SYS_SHUTDOWN": 13,
        "SYS_SETSOCKOPT": 14, "SYS_GETSOCKOPT": 15, "SYS_SENDMSG": 16, "SYS_RECVMSG": 17,
        "SYS_ACCEPT4": 18, "SYS_RECVMMSG": 19, "SYS_SENDMMSG": 20}),
    _enum("ipc_call", {
        "SEMOP": 1, "SEMGET": 2, "SEMCTL": 3, "SEMTIMEDOP": 4, "MSGSND": 11, "MSGRCV": 12,
        "MSGGET": 13, "MSGCTL": 14, "SHMAT": 21, "SHMDT": 22, "SHMGET": 23, "SHMCTL": 24}),
    _enum("ioctl_req", {
        "TCGETS": 0x5401, "TCSETS": 0x5402, "TCSETSW": 0x5403, "TCSETSF": 0x5404,
        "TIOCSCTTY": 0x540E, "TIOCGPGRP": 0x540F, "TIOCSPGRP": 0x5410, "TIOCOUTQ": 0x5411,
        "TIOCSTI": 0x5412, "TIOCGWINSZ": 0x5413, "TIOCSWINSZ": 0x5414, "FIONREAD": 0x541B,
        "TIOCNOTTY": 0x5422, "FIONBIO": 0x5421, "TIOCGPTN": 0x80045430,
        "TIOCSPTLCK": 0x40045431, "FIONCLEX": 0x5450, "FIOCLEX": 0x5451, "FIOASYNC": 0x5452,
        "TCGETS2": 0x802C542A, "TCSETS2": 0x402C542B, "FICLONE": 0x40049409,
        "FS_IOC_GETFLAGS": 0x80086601, "FS_IOC_SETFLAGS": 0x40086602},
        hex_unknown=True, aliases={"TIOCINQ": 0x541B}),
    _enum("signo", {n: v for v, n in SIGNAL_NAMES.items()}, width="s32",
          aliases={n: v for n, v in SIGNALS.items() if v not in SIGNAL_NAMES
                   or SIGNAL_NAMES[v] != n}),
]

#: kind -> flag set, for every flag/enum kind.
FLAGSETS: dict[str, FlagSet] = {s.name: s for s in _SETS}
FLAGSETS["clone3_flags"] = FLAGSETS["unshare_flags"]


def _global_names() -> dict[str, int]:
    """Names known in any set, when unambiguous: a rewrite may use AT_FDCWD
    for an ``fd`` argument or SIGKILL for an ``int``."""
    seen: dict[str, set[int]] = {}
    for s in FLAGSETS.values():
        for n, v in s.names.items():
            seen.setdefault(n, set()).add(v)
    return {n: next(iter(vs)) for n, vs in seen.items() if len(vs) == 1}


_GLOBAL_NAMES = _global_names()


def constant(name: str) -> int:
    """The value of a flag or enum name (``O_CREAT``, ``AT_FDCWD``,
    ``MAP_FIXED``, ``TIOCSTI``...): the flag sets here are the one home of
    these numbers, so policies and the tracer take them from here instead
    of writing their own copies.  KeyError if unknown or ambiguous."""
    return _GLOBAL_NAMES[name]


def open_follows(flags: int) -> bool:
    """Does an open with ``flags`` follow a final symlink?  O_NOFOLLOW, and
    O_CREAT|O_EXCL, open the link itself (or fail); not with O_PATH, which
    drops O_CREAT and O_EXCL (the kernel's ``build_open_how``):
    O_PATH|O_CREAT|O_EXCL follows it as O_PATH does.  (The tracer's pin and
    the client library's path resolution both ask this.)"""
    if flags & _O_NOFOLLOW:
        return False
    return bool(flags & _O_PATH) or flags & _O_CREAT_EXCL != _O_CREAT_EXCL


_O_NOFOLLOW, _O_PATH = _GLOBAL_NAMES["O_NOFOLLOW"], _GLOBAL_NAMES["O_PATH"]
_O_CREAT_EXCL = _GLOBAL_NAMES["O_CREAT"] | _GLOBAL_NAMES["O_EXCL"]

# ---------------------------------------------------------------------------
# Kind vocabulary
# ---------------------------------------------------------------------------

def _split(kind: str) -> tuple[str, int | None]:
    base, sep, n = kind.partition(":")
    return base, (int(n) if sep else None)


#: ``which`` kinds whose next argument (``who``) names the target of a call
#: that changes another process (setpriority, ioprio_set), by value: a
#: process (who 0: the caller), a process group (0: the caller's) or every
#: process of a user
WHO_TARGETS: Mapping[str, Mapping[int, str]] = {
    "priority_which": {0: "process", 1: "group", 2: "user"},
    "ioprio_which": {1: "process", 2: "group", 3: "user"},
}


def check_kind(kind: str, nargs: int = 6) -> None:
    """Raise ValueError unless ``kind`` is in the vocabulary (used by the generator and tests)."""
    base, n = _split(kind)
    if base not in KINDS:
        raise ValueError(f"unknown argument kind {kind!r}")
    with_n = base in _REGISTRY and _REGISTRY[base].with_n
    if with_n != (n is not None):
        raise ValueError(f"kind {base!r} {'needs' if with_n else 'takes no'} ':N'")
    if n is not None and not 0 <= n < nargs:
        raise ValueError(f"kind {kind!r}: argument {n} out of range")


# ---------------------------------------------------------------------------
# Formatting of integers
# ---------------------------------------------------------------------------


def format_flags(kind: str, value: int) -> Value:
    """An already width-normalised int as the value a ``kind`` argument shows:
    names for flag/enum kinds, ``Oct`` for modes, ``Ptr`` for pointers and
    memory kinds (the register is an address), ``Int`` otherwise."""
    base = _split(kind)[0]
    fs = FLAGSETS.get(base)
    if fs is not None:
        return fs.format(value)
    if base == "mode":
        return Oct(value) if value >= 0 else Int(value)
    k = _REGISTRY.get(base)
    if base in ("hex", "ptr") or k is not None and not k.scalar:
        return Ptr(value) if value >= 0 else Int(value)
    return Int(value)


def register_bits(kind: str, reg_mask: int) -> int | None:
    """The bits of the argument register that a ``kind`` argument's decoded
    value reflects (what the kernel reads of it: an ``int`` is the low 32
    bits, a ``long`` the whole register), or None when the value is no
    integer held in the register (strings, buffers, structs in memory)."""
    base, _ = _split(kind)
    fs = FLAGSETS.get(base)
    if fs is not None:
        return reg_mask if fs.width == "reg" else _M32
    if base in ("int", "fd", "pid", "uid", "uint"):
        return _M32
    if base in ("long", "ulong", "hex", "ptr"):
        return reg_mask
    return None


def value_to_int(v: Value, kind: str) -> int:
    """A protocol value as an int for a ``kind`` argument (not yet masked).

    Symbols are looked up in the kind's own set first, then in every set when
    the name is unambiguous, then as signal names; unknown names raise
    ValueError naming the kind.
    """
    if isinstance(v, Int | Ptr | Oct):
        return v.value
    if isinstance(v, Sym):
        fs = FLAGSETS.get(_split(kind)[0])
        total = v.rest
        for name in v.names:
            if fs is not None and name in fs.names:
                total |= fs.names[name]
            elif name in _GLOBAL_NAMES:
                total |= _GLOBAL_NAMES[name]
            elif name == "NULL":
                pass
            else:
                raise ValueError(f"unknown name {name!r} for a {kind!r} argument")
        return total
    if isinstance(v, Field):
        return value_to_int(v.value, kind)
    raise ValueError(f"a {type(v).__name__} cannot stand for a {kind!r} argument (an integer is needed)")


# ---------------------------------------------------------------------------
# sockaddr
# ---------------------------------------------------------------------------

_AF_UNIX, _AF_INET, _AF_INET6 = 1, 2, 10
#: the longest sockaddr the kernel reads (sizeof(struct sockaddr_storage)): longer lengths fail with EINVAL
SOCKADDR_MAX = _SOCKADDR_MAX = 128


def unpack_sockaddr(data: bytes) -> Value:
    """``struct sockaddr`` bytes (as long as the socklen says) -> ``{AF_INET, 1.2.3.4:80}``.

    AF_UNIX gives ``{AF_UNIX, "path"}`` (abstract names keep their leading
    NUL; an unnamed address is ``{AF_UNIX}``); AF_INET6 adds
    ``flowinfo=``/``scope_id=`` fields only when non-zero; other families keep
    their raw ``sa_data`` bytes as a string.
    """
    import ipaddress  # here, not at import: most runs decode no address, every start-up paid it

    if len(data) < 2:
        return Struct((Str(data),))
    fam = int.from_bytes(data[:2], "little")
    famv = FLAGSETS["af"].format(fam)
    if fam == _AF_INET and len(data) >= 8:
        port = int.from_bytes(data[2:4], "big")
        return Struct((famv, Addr(str(ipaddress.IPv4Address(data[4:8])), port)))
    if fam == _AF_INET6 and len(data) >= 24:
        port = int.from_bytes(data[2:4], "big")
        flow = int.from_bytes(data[4:8], "big")
        scope = int.from_bytes(data[24:28], "little") if len(data) >= 28 else 0
        fields: tuple[Value, ...] = (famv, Addr(str(ipaddress.IPv6Address(data[8:24])), port))
        if flow:
            fields += (Field("flowinfo", Int(flow)),)
        if scope:
            fields += (Field("scope_id", Int(scope)),)
        return Struct(fields)
    if fam == _AF_UNIX:
        path = data[2:]
        if not path:
            return Struct((famv,))
        if path[0] != 0:
            path = path.split(b"\0", 1)[0]
        return Struct((famv, Str(path)))
    return Struct((famv, Str(data[2:])))


def pack_sockaddr(v: Value) -> bytes:
    """The inverse of :func:`unpack_sockaddr`: a struct value -> sockaddr bytes.

    Pathname AF_UNIX addresses get a terminating NUL (the length then is
    ``2 + len(path) + 1``); abstract ones (leading NUL) do not.
    """
    if not isinstance(v, Struct) or not v.fields:
        raise ValueError(f"a sockaddr must be a struct like {{AF_INET, 127.0.0.1:80}}, not {v!r}")
    fam = value_to_int(v.fields[0], "af")
    rest = v.fields[1:]
    head = fam.to_bytes(2, "little")
    named = {f.name: f.value for f in rest if isinstance(f, Field)}
    pos = [f for f in rest if not isinstance(f, Field)]
    if fam in (_AF_INET, _AF_INET6):
        if len(pos) != 1 or not isinstance(pos[0], Addr):
            raise ValueError(f"an AF_INET/AF_INET6 sockaddr needs one address:port, got {v!r}")
        a = pos[0]
        import ipaddress  # (see unpack_sockaddr)

        try:
            ip = ipaddress.ip_address(a.host)
        except ValueError as e:
            raise ValueError(f"bad IP address {a.host!r}") from e
        if not 0 <= a.port <= 0xffff:
            raise ValueError(f"port {a.port} out of range")
        port = a.port.to_bytes(2, "big")
        if fam == _AF_INET:
            if ip.version != 4:
                raise ValueError(f"AF_INET needs an IPv4 address, got {a.host!r}")
            return head + port + ip.packed + bytes(8)
        if ip.version != 6:
            ip = ipaddress.IPv6Address(f"::ffff:{ip}")
        flow = value_to_int(named["flowinfo"], "uint") if "flowinfo" in named else 0
        scope = value_to_int(named["scope_id"], "uint") if "scope_id" in named else 0
        return head + port + (flow & _M32).to_bytes(4, "big") + ip.packed + (scope & _M32).to_bytes(4, "little")
    if not pos:
        return head
    if len(pos) != 1 or not isinstance(pos[0], Str):
        raise ValueError(f"sockaddr of family {fam} needs one string of address bytes, got {v!r}")
    data = pos[0].data
    if fam == _AF_UNIX and data and data[0] != 0:
        data += b"\0"
    return head + data


# ---------------------------------------------------------------------------
# Decoders: factories building closures f(raw, mem, strsize, pathsize) -> Value
# ---------------------------------------------------------------------------

Decoder = Callable[[Sequence[int], Memory, int, int], Value]
_STR_PROBE = 65536  # how far past strsize a truncated string is measured


def _cstr(mem: Memory, addr: int, limit: int) -> Value:
    """A NUL-terminated string: ``Str`` (with ``total`` if longer than ``limit``)."""
    if addr == 0:
        return Ptr(0)
    try:
        data, complete = mem.read_cstr(addr, limit + 1)
    except OSError:
        return Ptr(addr)
    if complete and len(data) <= limit:
        return Str(data)
    if complete:  # a Memory that looked one byte further than asked
        return Str(data[:limit], total=len(data))
    data = data[:limit]
    try:
        more, _ = mem.read_cstr(addr + limit, _STR_PROBE)
        total = limit + len(more)
    except OSError:
        total = limit + 1
    return Str(data, total=max(total, limit + 1))


def _buf(mem: Memory, addr: int, size: int, strsize: int) -> Value:
    """``size`` bytes at ``addr``, the first ``strsize`` of them shown."""
    if addr == 0:
        return Ptr(0)
    if size <= 0:
        return Str(b"")
    try:
        data = mem.read(addr, min(size, strsize))
    except OSError:
        return Ptr(addr)
    return Str(data, total=size) if size > len(data) else Str(data)


def _read_exact(mem: Memory, addr: int, size: int) -> bytes | None:
    try:
        data = mem.read(addr, size)
    except OSError:
        return None
    return data if len(data) == size else None


def _time_struct(mem: Memory, addr: int, tsize: int, sub: str) -> Value:
    if addr == 0:
        return Ptr(0)
    data = _read_exact(mem, addr, 2 * tsize)
    if data is None:
        return Ptr(addr)
    sec = int.from_bytes(data[:tsize], "little", signed=True)
    frac = int.from_bytes(data[tsize:], "little", signed=True)
    return Struct((Field("tv_sec", Int(sec)), Field(sub, Int(frac))))


def _ptr_array(mem: Memory, addr: int, psize: int, cap: int) -> tuple[list[int], bool]:
    """Pointers of a NULL-terminated array, at most ``cap``; (pointers, terminated?)."""
    out: list[int] = []
    chunk = 32
    while len(out) < cap:
        try:
            data = mem.read(addr + len(out) * psize, chunk * psize)
        except OSError:
            return out, False
        n = len(data) // psize
        if n == 0:
            return out, False
        for i in range(n):
            p = int.from_bytes(data[i * psize:(i + 1) * psize], "little")
            if p == 0:
                return out, True
            out.append(p)
            if len(out) >= cap:
                break
    return out, False


_ARGV_SHOWN = 32  # strings shown; the count of the rest follows as more=N
_ARGV_CAP = 4096  # pointers walked at most


def _mk_scalar(i: int, kind: str, w: _Widths) -> Decoder:
    mask = w.mask
    if kind in ("int", "fd", "pid", "uid"):
        return _memo(i, lambda r: Int(_s32(r)))
    if kind == "uint":
        return _memo(i, lambda r: Int(r & _M32))
    if kind == "long":
        if mask == _M32:
            return lambda raw, mem, s, p: Int(_s32(raw[i]))
        return lambda raw, mem, s, p: Int(_s64(raw[i]))
    if kind == "ulong":
        return lambda raw, mem, s, p: Int(raw[i] & mask)
    if kind in ("hex", "ptr"):
        return lambda raw, mem, s, p: Ptr(raw[i] & mask)
    if kind == "mode":
        return _memo(i, lambda r: Oct(r & 0o7777777))
    raise AssertionError(kind)


def _memo(i: int, make: Callable[[int], Value]) -> Decoder:
    """The decoder of register ``i`` whose value depends on nothing else
    (flags, ints, modes): ``make(register)``, kept per register value, so
    the same flag word costs one dict lookup (values are immutable; a
    program repeats a few words).  Bounded: a program may pass anything."""
    seen: dict[int, Value] = {}

    def decode(raw: Sequence[int], mem: Memory, s: int, p: int) -> Value:
        r = raw[i]
        v = seen.get(r)
        if v is None:
            if len(seen) >= _MEMO_KEPT:
                seen.clear()
            v = seen[r] = make(r)
        return v
    decode.memo = (i, seen)  # type: ignore[attr-defined]  # (_joined looks it up inline)
    return decode


_MEMO_KEPT = 256


def _mk_flags(i: int, fs: FlagSet, w: _Widths) -> Decoder:
    fmt = fs._format  # (memoized per register value by _memo, not by FlagSet.format's shared cache)
    if fs.width == "s32":
        return _memo(i, lambda r: fmt(_s32(r)))
    if fs.width == "reg":
        mask = w.mask
        return _memo(i, lambda r: fmt(r & mask))
    return _memo(i, lambda r: fmt(r & _M32))


def _mk_decoder(i: int, kind: str, w: _Widths) -> Decoder:
    """The entry decoder of argument ``i`` of ``kind`` (parsed here, once)."""
    base, n = _split(kind)
    fs = FLAGSETS.get(base)
    if fs is not None:
        return _mk_flags(i, fs, w)
    k = _REGISTRY.get(base)
    if k is None:
        raise ValueError(f"unknown argument kind {kind!r}")
    return k.entry(i, n, w)


def _scalar(kind: str) -> Callable[[int, int | None, _Widths], Decoder]:
    return lambda i, n, w: _mk_scalar(i, kind, w)


def _cstr_in(i: int, n: int | None, w: _Widths) -> Decoder:
    """A NUL-terminated string argument, up to ``pathsize`` bytes (paths and
    strings alike: the kernel reads either whole)."""
    mask = w.mask
    return lambda raw, mem, s, p: _cstr(mem, raw[i] & mask, p)


def _inbuf_in(i: int, n: int | None, w: _Widths) -> Decoder:
    assert n is not None
    mask = w.mask
    return lambda raw, mem, s, p: _buf(mem, raw[i] & mask, raw[n] & mask, s)


def _sockaddr_in(i: int, n: int | None, w: _Widths) -> Decoder:
    assert n is not None
    mask = w.mask

    def sockaddr(raw: Sequence[int], mem: Memory, s: int, p: int) -> Value:
        addr = raw[i] & mask
        if addr == 0:
            return Ptr(0)
        try:
            data = mem.read(addr, min(raw[n] & _M32, _SOCKADDR_MAX))
        except OSError:
            return Ptr(addr)
        return unpack_sockaddr(data)
    return sockaddr


def _time_in(wide: bool, sub: str) -> Callable[[int, int | None, _Widths], Decoder]:
    """timespec/timeval (the ABI's time_t width) or the always-64-bit timespec64."""
    def make(i: int, n: int | None, w: _Widths) -> Decoder:
        mask, tsize = w.mask, 8 if wide else w.time
        return lambda raw, mem, s, p: _time_struct(mem, raw[i] & mask, tsize, sub)
    return make


def _argv_in(i: int, n: int | None, w: _Widths) -> Decoder:
    mask, psize = w.mask, w.ptr

    def argv(raw: Sequence[int], mem: Memory, s: int, p: int) -> Value:
        addr = raw[i] & mask
        if addr == 0:
            return Ptr(0)
        ptrs, _ = _ptr_array(mem, addr, psize, _ARGV_CAP)
        items: list[Value] = [_cstr(mem, q, s) for q in ptrs[:_ARGV_SHOWN]]
        if len(ptrs) > _ARGV_SHOWN:
            items.append(Field("more", Int(len(ptrs) - _ARGV_SHOWN)))
        return Array(tuple(items))
    return argv


def _iovec_in(i: int, n: int | None, w: _Widths) -> Decoder:
    assert n is not None
    mask, psize = w.mask, w.ptr

    def iovec(raw: Sequence[int], mem: Memory, s: int, p: int) -> Value:
        addr = raw[i] & mask
        count = _s32(raw[n])
        if addr == 0 or count <= 0:
            return Ptr(addr)
        shown = min(count, 16)
        data = _read_exact(mem, addr, shown * 2 * psize)
        if data is None:
            return Ptr(addr)
        items: list[Value] = []
        budget = s
        for k in range(shown):
            off = k * 2 * psize
            base_ = int.from_bytes(data[off:off + psize], "little")
            ln = int.from_bytes(data[off + psize:off + 2 * psize], "little")
            items.append(_buf(mem, base_, ln, max(budget, 0)))
            budget -= min(ln, budget)
        if count > shown:
            items.append(Field("more", Int(count - shown)))
        return Array(tuple(items))
    return iovec


def _u64_struct_in(layout: tuple[tuple[str, str], ...]) -> Callable[[int, int | None, _Widths], Decoder]:
    def make(i: int, n: int | None, w: _Widths) -> Decoder:
        assert n is not None
        mask = w.mask
        return lambda raw, mem, s, p: _struct_in(mem, raw[i] & mask, raw[n] & mask, layout)
    return make


def _pointer_in(i: int, n: int | None, w: _Widths) -> Decoder:
    """Output memory at entry: only the address (contents come after the call)."""
    mask = w.mask
    return lambda raw, mem, s, p: Ptr(raw[i] & mask)


# u64 structs: (field name, kind of the value)
_OPEN_HOW = (("flags", "open_flags"), ("mode", "mode"), ("resolve", "resolve_flags"))
_CLONE_ARGS = (("flags", "clone3_flags"), ("pidfd", "ptr"), ("child_tid", "ptr"),
               ("parent_tid", "ptr"), ("exit_signal", "signo"), ("stack", "ptr"),
               ("stack_size", "ulong"), ("tls", "ptr"), ("set_tid", "ptr"),
               ("set_tid_size", "ulong"), ("cgroup", "ulong"))


def _struct_in(mem: Memory, addr: int, size: int, layout: tuple[tuple[str, str], ...]) -> Value:
    """A struct of u64 fields (open_how, clone_args), as many as ``size`` covers."""
    if addr == 0:
        return Ptr(0)
    nfields = min(size // 8, len(layout))
    if nfields == 0:
        return Ptr(addr)
    data = _read_exact(mem, addr, nfields * 8)
    if data is None:
        return Ptr(addr)
    out: list[Value] = []
    for k in range(nfields):
        name, kind = layout[k]
        v = int.from_bytes(data[k * 8:k * 8 + 8], "little")
        out.append(Field(name, format_flags(kind, v)))
    return Struct(tuple(out))


# ---------------------------------------------------------------------------
# Output decoders (after the call)
# ---------------------------------------------------------------------------

OutDecoder = Callable[[Sequence[int], int, Memory, int], Value]


def _mk_out(i: int, kind: str, w: _Widths) -> OutDecoder | None:
    base, n = _split(kind)
    k = _REGISTRY.get(base)
    return k.out(i, n, w) if k is not None and k.out is not None else None


def _outbuf_out(i: int, n: int | None, w: _Widths) -> OutDecoder:
    assert n is not None
    mask = w.mask

    def outbuf(raw: Sequence[int], ret: int, mem: Memory, s: int) -> Value:
        size = min(ret, raw[n] & mask)
        return _buf(mem, raw[i] & mask, size, s)
    return outbuf


def _sockaddr_out(i: int, n: int | None, w: _Widths) -> OutDecoder:
    assert n is not None
    mask = w.mask

    def out_sockaddr(raw: Sequence[int], ret: int, mem: Memory, s: int) -> Value:
        addr, lenp = raw[i] & mask, raw[n] & mask
        if addr == 0 or lenp == 0:
            return Ptr(addr)
        ln = _read_exact(mem, lenp, 4)
        if ln is None:
            return Ptr(addr)
        try:
            data = mem.read(addr, min(int.from_bytes(ln, "little"), _SOCKADDR_MAX))
        except OSError:
            return Ptr(addr)
        return unpack_sockaddr(data)
    return out_sockaddr


def _time_out(wide: bool, sub: str) -> Callable[[int, int | None, _Widths], OutDecoder]:
    def make(i: int, n: int | None, w: _Widths) -> OutDecoder:
        mask, tsize = w.mask, 8 if wide else w.time
        return lambda raw, ret, mem, s: _time_struct(mem, raw[i] & mask, tsize, sub)
    return make


def _pipefd_out(i: int, n: int | None, w: _Widths) -> OutDecoder:
    mask = w.mask

    def pipefd(raw: Sequence[int], ret: int, mem: Memory, s: int) -> Value:
        addr = raw[i] & mask
        data = _read_exact(mem, addr, 8) if addr else None
        if data is None:
            return Ptr(addr)
        a, b = struct.unpack("<ii", data)
        return Array((Int(a), Int(b)))
    return pipefd


# ---------------------------------------------------------------------------
# Rewrites: a value standing for a memory argument becomes a blob
# ---------------------------------------------------------------------------

#: (blob, pointer offsets to relocate inside it, value for argument N or None)
Packed = tuple[bytes, tuple[int, ...], int | None]
Packer = Callable[[Value, _Widths], Packed]
_WHAT = {Str: "a string", Struct: "a struct", Array: "an array"}


def _packer(want: type, pack: Callable[[Any, _Widths], Packed]) -> Packer:
    """A packer for values of type ``want`` (anything else: ValueError)."""
    def packer(v: Value, w: _Widths) -> Packed:
        if not isinstance(v, want):
            raise _Mismatch
        return pack(v, w)
    return packer


def _either(*packers: Packer) -> Packer:
    """The first of ``packers`` that takes the value's type."""
    def packer(v: Value, w: _Widths) -> Packed:
        for p in packers:
            try:
                return p(v, w)
            except _Mismatch:
                continue
        raise _Mismatch
    return packer


class _Mismatch(Exception):
    """This kind takes no value of that type (encode_args names both)."""


_CSTR_PACK = _packer(Str, lambda v, w: (v.data + b"\0", (), None))
_BYTES_PACK = _packer(Str, lambda v, w: (v.data, (), None))


def _time_pack(wide: bool, sub: str) -> Packer:
    return _packer(Struct, lambda v, w: (_pack_time(v, 8 if wide else w.time, sub), (), None))


def _u64_pack(layout: tuple[tuple[str, str], ...], what: str) -> Packer:
    def pack(v: Struct, w: _Widths) -> Packed:
        data = _pack_u64_struct(v, layout, what)
        return data, (), len(data)
    return _packer(Struct, pack)


def _sockaddr_pack(v: Struct, w: _Widths) -> Packed:
    data = pack_sockaddr(v)
    return data, (), len(data)


def _strings_pack(cstr: bool) -> Packer:
    """argv/envp (pointer table + strings) or iovec:N (N = the item count)."""
    def pack(v: Array, w: _Widths) -> Packed:
        data, offs = _pack_strings(v.items, w.ptr, cstr=cstr, with_len=not cstr)
        return data, tuple(offs), None if cstr else len(v.items)
    return _packer(Array, pack)


# ---------------------------------------------------------------------------
# The registry of argument kinds: one row per kind, what each step does
# ---------------------------------------------------------------------------

class _Kind(Record):
    """One argument kind: its decoder at entry, its decoder after the call
    (output memory), and how a rewrite's memory value becomes a blob.
    ``with_n``: written ``kind:N``, N naming the length/count argument;
    ``scalar``: the register is the value (no memory behind it)."""

    __slots__ = ("entry", "out", "pack", "with_n", "scalar")
    entry: Callable[[int, int | None, _Widths], Decoder]
    out: Callable[[int, int | None, _Widths], OutDecoder] | None
    pack: Packer | None
    with_n: bool
    scalar: bool

    def __init__(self, entry: Callable[[int, int | None, _Widths], Decoder],
                 out: Callable[[int, int | None, _Widths], OutDecoder] | None = None,
                 pack: Packer | None = None, with_n: bool = False, scalar: bool = False) -> None:
        _set(self, "entry", entry)
        _set(self, "out", out)
        _set(self, "pack", pack)
        _set(self, "with_n", with_n)
        _set(self, "scalar", scalar)


_REGISTRY: dict[str, _Kind] = {
    **{k: _Kind(_scalar(k), scalar=True)
       for k in ("int", "uint", "long", "ulong", "hex", "ptr", "fd", "pid", "uid", "mode")},
    "path": _Kind(_cstr_in, pack=_CSTR_PACK),
    # NUL-terminated strings the kernel reads whole (xattr names, memfd and key names, mount
    # strings...): up to pathsize, as PROTOCOL.md section 8 says; a strsize prefix would be judged
    # as a prefix, and the stable copy refuses a judged prefix (ENAMETOOLONG where natively it works)
    "str": _Kind(_cstr_in, pack=_CSTR_PACK),
    "inbuf": _Kind(_inbuf_in, pack=_BYTES_PACK, with_n=True),
    "sockaddr": _Kind(_sockaddr_in, pack=_either(_BYTES_PACK, _packer(Struct, _sockaddr_pack)), with_n=True),
    "iovec": _Kind(_iovec_in, pack=_strings_pack(cstr=False), with_n=True),
    "open_how": _Kind(_u64_struct_in(_OPEN_HOW), pack=_u64_pack(_OPEN_HOW, "open_how"), with_n=True),
    "clone_args": _Kind(_u64_struct_in(_CLONE_ARGS), pack=_u64_pack(_CLONE_ARGS, "clone_args"), with_n=True),
    "argv": _Kind(_argv_in, pack=_strings_pack(cstr=True)),
    "envp": _Kind(_argv_in, pack=_strings_pack(cstr=True)),
    "timespec": _Kind(_time_in(False, "tv_nsec"), pack=_time_pack(False, "tv_nsec")),
    "timespec64": _Kind(_time_in(True, "tv_nsec"), pack=_time_pack(True, "tv_nsec")),
    "timeval": _Kind(_time_in(False, "tv_usec"), pack=_time_pack(False, "tv_usec")),
    "outbuf": _Kind(_pointer_in, _outbuf_out, pack=_BYTES_PACK, with_n=True),
    "out_sockaddr": _Kind(_pointer_in, _sockaddr_out, pack=_BYTES_PACK, with_n=True),
    "out_timespec": _Kind(_pointer_in, _time_out(False, "tv_nsec"), pack=_time_pack(False, "tv_nsec")),
    "out_timespec64": _Kind(_pointer_in, _time_out(True, "tv_nsec"), pack=_time_pack(True, "tv_nsec")),
    "out_timeval": _Kind(_pointer_in, _time_out(False, "tv_usec"), pack=_time_pack(False, "tv_usec")),
    "pipefd": _Kind(_pointer_in, _pipefd_out),
}

#: Every base kind (without the ``:N``): the registry's and the flag sets'.
KINDS: frozenset[str] = frozenset(_REGISTRY) | frozenset(FLAGSETS)


# ---------------------------------------------------------------------------
# Per-spec plans, built once
# ---------------------------------------------------------------------------


class _Plan(Record):
    __slots__ = ("spec", "widths", "entry", "out", "decode")
    spec: SyscallSpec
    widths: _Widths
    entry: tuple[Decoder, ...]
    out: tuple[tuple[int, OutDecoder], ...]
    #: every entry decoder at once, as the tuple of their values (:func:`_joined`)
    decode: Callable[[Sequence[int], Memory, int, int], tuple[Value, ...]]

    def __init__(self, spec: SyscallSpec, widths: _Widths, entry: tuple[Decoder, ...],
                 out: tuple[tuple[int, OutDecoder], ...]) -> None:
        _set(self, "spec", spec)
        _set(self, "widths", widths)
        _set(self, "entry", entry)
        _set(self, "out", out)
        _set(self, "decode", _joined(entry))


def _joined(fs: tuple[Decoder, ...], given: int | None = None) -> Callable[..., tuple[Value, ...]]:
    """One function returning the tuple of ``fs``'s values: a call's decode
    in one frame (every judged call, issue #13): no comprehension, and a
    memoized register (:func:`_memo`: flags, ints, modes) looked up inline in
    its dict, its decoder called only when the value is not there yet (the
    ``or``: every Value is truthy, and a falsy one would only cost the call).
    With ``given``, the function takes a fifth argument, the value of
    argument ``given`` already decoded (a path the compiled stop read with
    the stop: :func:`entry_decoder_given`)."""
    env: dict[str, object] = {}
    parts = []
    for n, f in enumerate(fs):
        if n == given:
            parts.append("v")
            continue
        env[f"f{n}"] = f
        call = f"f{n}(r, m, s, p)"
        memo = getattr(f, "memo", None)
        if memo is not None:
            env[f"g{n}"] = memo[1].get  # (the dict is cleared, never replaced: the bound get stays right)
            call = f"(g{n}(r[{memo[0]}]) or {call})"
        parts.append(call)
    params = "r, m, s, p" if given is None else "r, m, s, p, v"
    body = ", ".join(parts) + ("," if len(parts) == 1 else "")
    return eval(f"lambda {params}: ({body})", env)  # noqa: S307 - source made here from names only


_PLANS: dict[int, _Plan] = {}


def _widths(spec: SyscallSpec) -> _Widths:
    try:
        return _WIDTHS[spec.abi]
    except KeyError:
        raise ValueError(f"unknown ABI {spec.abi!r}") from None


def _build(spec: SyscallSpec) -> _Plan:
    w = _widths(spec)
    entry = tuple(_mk_decoder(i, k, w) for i, k in enumerate(spec.args))
    out = []
    for i, k in enumerate(spec.args):
        f = _mk_out(i, k, w)
        if f is not None:
            out.append((i, f))
    plan = _Plan(spec, w, entry, tuple(out))
    if len(_PLANS) < 65536:
        _PLANS[id(spec)] = plan
    return plan


def _plan(spec: SyscallSpec) -> _Plan:
    p = _PLANS.get(id(spec))
    if p is None or p.spec is not spec:
        p = _build(spec)
    return p


def _prebuild() -> None:
    """Compile every table spec (tests: every kind in the tables is known).
    Not run at import: that was a tenth of brokerctl's start-up, and a spec
    is compiled on its first call (a few microseconds, once)."""
    for abi in ABIS.values():
        for spec in abi.by_nr.values():
            _build(spec)


def decode_args(spec: SyscallSpec, raw: Sequence[int], mem: Memory, *, strsize: int = 64,
                pathsize: int = 4096) -> tuple[Value, ...]:
    """The call's arguments as protocol values, read at syscall entry.

    ``raw`` holds at least ``len(spec.args)`` register values; strings and
    buffers longer than ``strsize`` (paths: ``pathsize``) come back truncated
    (``Str.total`` set); unreadable pointers come back as ``Ptr``.
    """
    p = _PLANS.get(id(spec))
    if p is None or p.spec is not spec:
        p = _build(spec)
    return p.decode(raw, mem, strsize, pathsize)


def entry_decoder(spec: SyscallSpec) -> Callable[[Sequence[int], Memory, int, int], tuple[Value, ...]]:
    """:func:`decode_args` of ``spec`` as one function ``(raw, mem, strsize,
    pathsize) -> values``, for a caller that keeps it per call (the shim's
    entry plan): no lookup, no keywords per call (issue #13)."""
    return _plan(spec).decode


def entry_decoders(spec: SyscallSpec) -> tuple[Decoder, ...]:
    """The decoders :func:`entry_decoder` joins, one per argument (a
    memoized one has ``memo``: its register and dict, see :func:`_memo`),
    for a caller that joins them itself (the broker's compiled road)."""
    return _plan(spec).entry


def entry_decoder_given(spec: SyscallSpec, i: int) -> Callable[..., tuple[Value, ...]]:
    """:func:`entry_decoder` whose argument ``i`` is given already decoded,
    as a fifth argument: ``(raw, mem, strsize, pathsize, value) -> values``
    (the shim's path read with the stop: no decoder frames for it)."""
    plan = _plan(spec)
    return _joined(plan.entry, i)


def decode_result(spec: SyscallSpec, retval: int) -> Result:
    """The return register as ``Fail(errno)`` (-4095..-1) or ``Ok(Int|Ptr)`` per ``spec.ret``."""
    w = _widths(spec)
    v = _s32(retval) if w.mask == _M32 else _s64(retval)
    if -MAX_ERRNO <= v <= -1:
        return Fail(-v)
    if spec.ret == "ptr":
        return Ok(Ptr(v & w.mask))
    return Ok(Int(v))


def decode_outbufs(spec: SyscallSpec, raw: Sequence[int], retval: int, mem: Memory,
                   strsize: int = 64) -> tuple[tuple[int, Value], ...]:
    """After the call: ``(arg index, value)`` for its output arguments (outbuf,
    out_sockaddr, out_timespec, pipefd...).  Empty when the call failed."""
    p = _plan(spec)
    if not p.out:
        return ()
    v = _s32(retval) if p.widths.mask == _M32 else _s64(retval)
    if -MAX_ERRNO <= v <= -1:
        return ()
    return tuple((i, f(raw, v, mem, strsize)) for i, f in p.out)


# ---------------------------------------------------------------------------
# Encoding rewritten calls
# ---------------------------------------------------------------------------


class Encoded(Record):
    """Registers and memory for a rewritten call.

    ``regs`` has the six argument registers.  For each ``(i, data)`` in
    ``blobs`` the shim writes ``data`` into scratch memory of the tracee and
    puts its address in register ``i`` (the ``regs[i]`` value is then
    meaningless).  ``relocs`` lists ``(i, offset)``: the pointer-sized
    (``ptr_size``) little-endian slot at ``offset`` in blob ``i`` holds an
    offset from that blob's start, to which the shim adds the blob's address
    (argv arrays, iovecs).
    """

    __slots__ = ("regs", "blobs", "relocs", "ptr_size")
    regs: tuple[int, ...]
    blobs: tuple[tuple[int, bytes], ...]
    relocs: tuple[tuple[int, int], ...]
    ptr_size: int

    def __init__(self, regs: tuple[int, ...], blobs: tuple[tuple[int, bytes], ...] = (),
                 relocs: tuple[tuple[int, int], ...] = (), ptr_size: int = 8) -> None:
        _set(self, "regs", regs)
        _set(self, "blobs", blobs)
        _set(self, "relocs", relocs)
        _set(self, "ptr_size", ptr_size)


class _Keep(Exception):
    """Internal: keep the original register (a truncated value was echoed back)."""


def _unwrap(v: Value) -> Value:
    while isinstance(v, Field):
        v = v.value
    return v


def _pack_time(v: Value, tsize: int, sub: str) -> bytes:
    if not isinstance(v, Struct):
        raise ValueError(f"a time value must be a struct {{tv_sec=S, {sub}=N}}, not {v!r}")
    named = {f.name: f.value for f in v.fields if isinstance(f, Field)}
    pos = [f for f in v.fields if not isinstance(f, Field)]
    sec = named.get("tv_sec", pos[0] if pos else None)
    frac = named.get(sub, pos[1] if len(pos) > 1 else None)
    if sec is None or frac is None:
        raise ValueError(f"a time value needs tv_sec and {sub}: {v!r}")
    m = (1 << (8 * tsize)) - 1
    return ((value_to_int(sec, "long") & m).to_bytes(tsize, "little")
            + (value_to_int(frac, "long") & m).to_bytes(tsize, "little"))


def _pack_u64_struct(v: Value, layout: tuple[tuple[str, str], ...], what: str) -> bytes:
    """open_how / clone_args: named fields in any order, or positional."""
    if not isinstance(v, Struct):
        raise ValueError(f"{what} must be a struct, not {v!r}")
    names = [n for n, _ in layout]
    vals: dict[str, int] = {}
    for pos, f in enumerate(v.fields):
        if isinstance(f, Field):
            if f.name not in names:
                raise ValueError(f"{what} has no field {f.name!r} (fields: {', '.join(names)})")
            vals[f.name] = value_to_int(f.value, dict(layout)[f.name])
        else:
            if pos >= len(layout):
                raise ValueError(f"too many fields for {what}")
            vals[layout[pos][0]] = value_to_int(f, layout[pos][1])
    nfields = max((names.index(n) + 1 for n in vals), default=0)
    if what == "clone_args":
        nfields = max(nfields, 8)  # CLONE_ARGS_SIZE_VER0
    elif what == "open_how":
        nfields = 3
    return b"".join((vals.get(names[k], 0) & _M64).to_bytes(8, "little") for k in range(nfields))


def _pack_strings(items: Sequence[Value], psize: int, cstr: bool,
                  with_len: bool) -> tuple[bytes, list[int]]:
    """An argv-like (NULL-terminated pointer table) or iovec table followed by
    the data; returns (blob, offsets of the pointer slots to relocate)."""
    strs: list[bytes] = []
    for it in items:
        if isinstance(it, Field) and it.name == "more":  # the array was cut: cannot rebuild it
            raise _Keep
        it = _unwrap(it)
        if not isinstance(it, Str):
            raise ValueError(f"array items must be strings, got {it!r}")
        if it.truncated:
            raise _Keep
        strs.append(it.data + (b"\0" if cstr else b""))
    slot = 2 * psize if with_len else psize
    table = len(strs) * slot + (0 if with_len else psize)
    blob = bytearray(table)
    relocs = []
    off = table
    for k, s in enumerate(strs):
        blob[k * slot:k * slot + psize] = off.to_bytes(psize, "little")
        if with_len:
            blob[k * slot + psize:(k + 1) * slot] = len(s).to_bytes(psize, "little")
        relocs.append(k * slot)
        blob += s
        off += len(s)
    return bytes(blob), relocs


def encode_args(spec: SyscallSpec, values: Sequence[Value], original_raw: Sequence[int]) -> Encoded:
    """Registers and blobs for a rewritten call ``spec.name values...``.

    Rules, per argument ``i`` of kind ``k``:

    * ``Int``/``Ptr``/``Oct``/``Sym`` (any kind): the register value itself,
      names resolved with :func:`value_to_int`, masked to the ABI's register
      width (negatives as two's complement).  So a rewrite may point an
      argument at any address, e.g. the original buffer.
    * ``Str`` for ``path``/``str``: a NUL-terminated blob; for
      ``inbuf``/``outbuf``: the bytes as they are.  The length argument keeps
      the value the rewrite line gives (so an author can shorten a write by
      editing the length only); it is not recomputed.
    * A truncated ``Str`` (``"..."...TOTAL``), or an array cut with
      ``more=N``: "unchanged": the original register is kept, so an authorizer
      can echo a long buffer back and change another argument only.
    * ``Struct`` for ``sockaddr:N``: packed sockaddr blob, and argument N (the
      socklen) set to its size; ``open_how:N``/``clone_args:N`` likewise;
      ``timespec``/``timeval`` kinds: a packed struct of the ABI's width.
    * ``Array`` of ``Str`` for ``argv``/``envp``: a pointer table plus strings
      in one blob, with ``relocs``; for ``iovec:N``: an iovec table plus data,
      argument N set to the item count.

    Arguments beyond ``values`` keep their ``original_raw`` value; a Value
    that fits no rule raises ValueError naming the argument.
    """
    w = _widths(spec)
    mask = w.mask
    nargs = len(spec.args)
    if len(values) > nargs:
        raise ValueError(f"{spec.name} takes {nargs} arguments, {len(values)} given")
    regs = [(original_raw[k] & mask) if k < len(original_raw) else 0 for k in range(6)]
    blobs: list[tuple[int, bytes]] = []
    relocs: list[tuple[int, int]] = []
    lengths: dict[int, int] = {}
    for i, v0 in enumerate(values):
        kind = spec.args[i]
        base, n = _split(kind)
        v = _unwrap(v0)
        try:
            if isinstance(v, Int | Ptr | Oct | Sym):
                regs[i] = value_to_int(v, kind) & mask
            elif isinstance(v, Str | Struct | Array):
                if isinstance(v, Str) and v.truncated:
                    raise _Keep
                k = _REGISTRY.get(base)
                try:
                    if k is None or k.pack is None:
                        raise _Mismatch
                    data, offs, count = k.pack(v, w)
                except _Mismatch:
                    raise ValueError(f"{_WHAT[type(v)]} cannot stand for a {kind!r} argument") from None
                if count is not None:
                    assert n is not None
                    lengths[n] = count
                blobs.append((i, data))
                relocs.extend((i, o) for o in offs)
                regs[i] = 0
            else:
                raise ValueError(f"a {type(v).__name__} cannot stand for a {kind!r} argument")
        except _Keep:
            continue
        except ValueError as e:
            raise ValueError(f"{spec.name} argument {i + 1} ({kind}): {e}") from None
    for n, ln in lengths.items():
        regs[n] = ln & mask
    return Encoded(tuple(regs), tuple(blobs), tuple(relocs), w.ptr)

