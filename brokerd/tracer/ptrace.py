"""Raw ptrace, wait and process-memory calls through ctypes.

The x86_64 register structure (``user_regs_struct``) is defined here, field
for field as in python-ptrace (which the tests use for its syscall
prototypes): importing python-ptrace for it cost a tenth of brokerctl's
start-up (its package pulls in logging and traceback).  Its ``ptrace()``
wrapper and debugger loop are not used either: they lack PTRACE_SEIZE,
PTRACE_GET_SYSCALL_INFO, PTRACE_LISTEN and the EXITKILL option, and wrap
every call in Python-level error juggling.  Here each request is one ctypes
call with errno captured, raising OSError.
"""

from __future__ import annotations

import _thread
import ctypes
import errno
import os
import struct
from ctypes import (
    POINTER,
    Structure,
    Union,
    addressof,
    byref,
    c_int,
    c_long,
    c_size_t,
    c_ssize_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_ulong,
    c_void_p,
    sizeof,
)


class Regs(Structure):
    """struct user_regs_struct (x86_64, <sys/user.h>): PTRACE_GETREGS/SETREGS."""

    _fields_ = [(name, c_ulong) for name in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi",
        "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")]


_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.argtypes = (c_long, c_int, c_void_p, c_void_p)
_ptrace.restype = c_long

# Requests
PTRACE_TRACEME = 0
PTRACE_PEEKDATA = 2
PTRACE_CONT = 7
PTRACE_KILL = 8
PTRACE_POKEUSER = 6
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
PTRACE_SYSCALL = 24
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_GETSIGMASK = 0x420A
PTRACE_SETSIGMASK = 0x420B
PTRACE_GET_SYSCALL_INFO = 0x420E
PTRACE_SET_SYSCALL_INFO = 0x4212  # Linux 6.16+

# Options
O_TRACESYSGOOD = 0x1
O_TRACEFORK = 0x2
O_TRACEVFORK = 0x4
O_TRACECLONE = 0x8
O_TRACEEXEC = 0x10
O_TRACEVFORKDONE = 0x20
O_TRACEEXIT = 0x40
O_TRACESECCOMP = 0x80
O_EXITKILL = 0x100000

# Events (status >> 16)
EVENT_FORK = 1
EVENT_VFORK = 2
EVENT_CLONE = 3
EVENT_EXEC = 4
EVENT_VFORK_DONE = 5
EVENT_EXIT = 6
EVENT_SECCOMP = 7
EVENT_STOP = 128

# PTRACE_GET_SYSCALL_INFO ops
INFO_NONE = 0
INFO_ENTRY = 1
INFO_EXIT = 2
INFO_SECCOMP = 3

WALL = 0x40000000  # __WALL: wait for threads and clones too
WNOHANG = os.WNOHANG


class _Entry(Structure):
    _fields_ = (("nr", c_uint64), ("args", c_uint64 * 6))


class _Exit(Structure):
    _fields_ = (("rval", ctypes.c_int64), ("is_error", c_uint8))


class _Seccomp(Structure):
    _fields_ = (("nr", c_uint64), ("args", c_uint64 * 6), ("ret_data", c_uint32))


class _InfoU(Union):
    _fields_ = (("entry", _Entry), ("exit", _Exit), ("seccomp", _Seccomp))


class SyscallInfo(Structure):
    """struct ptrace_syscall_info (linux/ptrace.h)."""

    _fields_ = (
        ("op", c_uint8),
        ("pad", c_uint8 * 3),
        ("arch", c_uint32),
        ("instruction_pointer", c_uint64),
        ("stack_pointer", c_uint64),
        ("u", _InfoU),
    )


#: may :func:`set_syscall_info` be used?  False after the kernel refused the
#: request as unknown (EIO: before 6.16), or when BROKERD_NO_SET_SYSCALL_INFO
#: is set (the tests force the GETREGS/SETREGS fallback that way)
SET_INFO_WORKS = not os.environ.get("BROKERD_NO_SET_SYSCALL_INFO")


class _IOVec(Structure):
    _fields_ = (("base", c_void_p), ("len", c_size_t))


_pvr = _libc.process_vm_readv
_pvr.argtypes = (c_int, POINTER(_IOVec), c_ulong, POINTER(_IOVec), c_ulong, c_ulong)
_pvr.restype = c_ssize_t
_pvw = _libc.process_vm_writev
_pvw.argtypes = _pvr.argtypes
_pvw.restype = c_ssize_t


def _fail(request: int, pid: int) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"ptrace({request:#x}, {pid}): {os.strerror(err)}")


def ptrace(request: int, pid: int, addr: int = 0, data: int = 0) -> int:
    """One ptrace request; raises OSError (with errno) on failure."""
    ret = _ptrace(request, pid, addr, data)
    if ret == -1:
        err = ctypes.get_errno()
        if err:
            raise OSError(err, f"ptrace({request:#x}, {pid}): {os.strerror(err)}")
    return ret


def wait_any() -> tuple[int, int] | None:
    """One ``waitpid`` that does not wait: a stop (or exit) waiting, or None."""
    got = os.waitpid(-1, WNOHANG | WALL)
    return got if got[0] else None


def seize(pid: int, options: int) -> None:
    ptrace(PTRACE_SEIZE, pid, 0, options)


def setoptions(pid: int, options: int) -> None:
    ptrace(PTRACE_SETOPTIONS, pid, 0, options)


def cont(pid: int, sig: int = 0) -> None:
    if _ptrace(PTRACE_CONT, pid, 0, sig) == -1:
        raise _fail(PTRACE_CONT, pid)


def syscall(pid: int, sig: int = 0) -> None:
    if _ptrace(PTRACE_SYSCALL, pid, 0, sig) == -1:
        raise _fail(PTRACE_SYSCALL, pid)


def listen(pid: int) -> None:
    ptrace(PTRACE_LISTEN, pid, 0, 0)


def interrupt(pid: int) -> None:
    ptrace(PTRACE_INTERRUPT, pid, 0, 0)


def detach(pid: int, sig: int = 0) -> None:
    ptrace(PTRACE_DETACH, pid, 0, sig)


def geteventmsg(pid: int) -> int:
    msg = c_ulong()
    ptrace(PTRACE_GETEVENTMSG, pid, 0, addressof(msg))
    return msg.value


def getsigmask(pid: int) -> int:
    """The blocked-signal mask of a stopped tracee (bit N-1: signal N)."""
    mask = c_uint64()
    ptrace(PTRACE_GETSIGMASK, pid, 8, addressof(mask))
    return mask.value


def setsigmask(pid: int, mask: int) -> None:
    """Set a stopped tracee's blocked-signal mask (SIGKILL/SIGSTOP stay unblocked)."""
    value = c_uint64(mask)
    ptrace(PTRACE_SETSIGMASK, pid, 8, addressof(value))


def getsiginfo(pid: int) -> bytes:
    buf = ctypes.create_string_buffer(128)
    ptrace(PTRACE_GETSIGINFO, pid, 0, addressof(buf))
    return buf.raw


def getregs(pid: int, regs: Regs | None = None) -> Regs:
    regs = regs if regs is not None else Regs()
    if _ptrace(PTRACE_GETREGS, pid, 0, addressof(regs)) == -1:
        raise _fail(PTRACE_GETREGS, pid)
    return regs


def setregs(pid: int, regs: Regs) -> None:
    if _ptrace(PTRACE_SETREGS, pid, 0, addressof(regs)) == -1:
        raise _fail(PTRACE_SETREGS, pid)


#: byte offset of each register in struct user (its first member is user_regs_struct)
REG_OFFSET = {f[0]: getattr(Regs, f[0]).offset for f in Regs._fields_}


def set_reg(pid: int, name: str, value: int) -> None:
    """Set one register (PTRACE_POKEUSER): one system call, where changing
    one argument with GETREGS + SETREGS took two."""
    if _ptrace(PTRACE_POKEUSER, pid, REG_OFFSET[name], value) == -1:
        raise _fail(PTRACE_POKEUSER, pid)


_INFO_SIZE = sizeof(SyscallInfo)


def get_syscall_info(pid: int, info: SyscallInfo) -> SyscallInfo:
    """Fill ``info`` with what the tracee's current stop is about (entry, exit, seccomp)."""
    if _ptrace(PTRACE_GET_SYSCALL_INFO, pid, _INFO_SIZE, addressof(info)) == -1:
        raise _fail(PTRACE_GET_SYSCALL_INFO, pid)
    return info


#: struct ptrace_syscall_info as PTRACE_SET_SYSCALL_INFO reads it: op, reserved
#: and flags (zero), arch, instruction and stack pointers (ignored), nr, six
#: arguments, a seccomp stop's ret_data (ignored), padding
_SET_INFO = struct.Struct("<B3xI2Q7Q8x")
_set_info_buf = ctypes.create_string_buffer(_SET_INFO.size)
_set_info_at = addressof(_set_info_buf)


def set_syscall_info(pid: int, op: int, nr: int, args: tuple[int, ...]) -> bool:
    """Change the call a tracee stopped at a stop of kind ``op`` (its
    seccomp stop, INFO_SECCOMP, or a syscall-entry stop) is about to make:
    its number and all six arguments in one request
    (PTRACE_SET_SYSCALL_INFO), where GETREGS + SETREGS took two.  False,
    nothing changed, where the kernel lacks the request or refuses it
    (then it is never tried again: the shim asks only at stops of the kind
    it names, so a refusal means a kernel whose request differs): the caller
    uses GETREGS/SETREGS.  Raises OSError for other failures (the tracee is gone)."""
    global SET_INFO_WORKS
    if not SET_INFO_WORKS:
        return False
    _SET_INFO.pack_into(_set_info_buf, 0, op, 0, 0, 0, nr, *args)
    if _ptrace(PTRACE_SET_SYSCALL_INFO, pid, _SET_INFO.size, _set_info_at) == -1:
        err = ctypes.get_errno()
        if err in (errno.EIO, errno.EINVAL):  # an unknown request (an older kernel), or refused
            SET_INFO_WORKS = False
            return False
        raise _fail(PTRACE_SET_SYSCALL_INFO, pid)
    return True


class _Reader:
    """One buffer and one pair of iovecs for every read (the broker has one
    thread; a fresh ctypes buffer and two structures per read showed up in
    the stop loop's profile).  Grows to the largest read asked for, up to
    ``_READER_KEEP`` bytes (paths, probes of long strings)."""

    def __init__(self, size: int = 4096) -> None:
        self.buf = ctypes.create_string_buffer(size)
        self.local = _IOVec(addressof(self.buf), size)
        self.remote = _IOVec(0, 0)
        self.local_ref, self.remote_ref = byref(self.local), byref(self.remote)

    def read(self, pid: int, addr: int, size: int) -> bytes:
        if size > len(self.buf):
            if size > _READER_KEEP:  # a rare big read (an authorizer's fetch): its own buffer, not kept
                return _Reader(size).read(pid, addr, size)
            self.buf = ctypes.create_string_buffer(size)
            self.local.base = addressof(self.buf)
        self.local.len = size
        self.remote.base, self.remote.len = addr, size
        n = _pvr(pid, self.local_ref, 1, self.remote_ref, 1, 0)
        if n < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"process_vm_readv({pid}, {addr:#x}, {size}): {os.strerror(err)}")
        return ctypes.string_at(self.buf, n)


_READER_KEEP = 1 << 17
_reader = _Reader()
_reader_thread = _thread.get_ident()


def read_memory(pid: int, addr: int, size: int) -> bytes:
    """Read up to ``size`` bytes at ``addr``; stops short at the first unmapped page."""
    if _thread.get_ident() != _reader_thread:  # the shared buffer is the importing thread's
        return _Reader().read(pid, addr, size)
    return _reader.read(pid, addr, size)


def write_user(pid: int, addr: int, data: bytes) -> None:
    """Write ``data`` at ``addr`` as the kernel writes a call's result into
    the tracee (``put_user``): only where the program may write itself
    (process_vm_writev honours page protections; :func:`write_memory` does
    not).  OSError (EFAULT for a short write) otherwise."""
    buf = ctypes.create_string_buffer(data, len(data))
    local, remote = _IOVec(addressof(buf), len(data)), _IOVec(addr, len(data))
    n = _pvw(pid, byref(local), 1, byref(remote), 1, 0)
    if n != len(data):
        err = ctypes.get_errno() if n < 0 else 14
        raise OSError(err, f"process_vm_writev({pid}, {addr:#x}): {os.strerror(err)}")


def write_memory(pid: int, addr: int, data: bytes) -> None:
    """Write ``data`` at ``addr``.  Uses /proc/PID/mem, which (like ptrace
    POKEDATA) may write pages the tracee mapped read-only."""
    fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
    try:
        n = os.pwrite(fd, data, addr)
    finally:
        os.close(fd)
    if n != len(data):
        raise OSError(5, f"short write to {pid} at {addr:#x}: {n} of {len(data)}")
