"""Kernel features a security session relies on, checked before anything is
traced: a session on a kernel that lacks one is refused, naming it."""

from __future__ import annotations

import ctypes
import os

from brokerd.protocol.abi import ABIS

SECCOMP_GET_ACTION_AVAIL = 2
SYS_seccomp = ABIS["x86_64"].nr("seccomp")  # the broker is a 64-bit process
RET_TRACE = 0x7FF00000
RET_KILL_PROCESS = 0x80000000
PR_GET_SECCOMP = 21


def _version() -> tuple[int, int]:
    # os.uname, not platform.release(): the platform module compiles a dozen
    # regular expressions on first use (a tenth of brokerctl's start-up)
    release = os.uname().release
    try:
        major, minor = release.split(".")[:2]
        return int(major), int("".join(c for c in minor if c.isdigit()) or 0)
    except ValueError:
        return (0, 0)


def missing_features() -> list[str]:
    """What this kernel lacks, in words; empty when everything is there."""
    problems = []
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0:
        problems.append("seccomp (CONFIG_SECCOMP) is not available")
    else:
        for action, what in ((RET_TRACE, "SECCOMP_RET_TRACE"), (RET_KILL_PROCESS, "SECCOMP_RET_KILL_PROCESS")):
            act = ctypes.c_uint32(action)
            if libc.syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, ctypes.byref(act)) != 0:
                problems.append(f"seccomp filters with {what} are not available (CONFIG_SECCOMP_FILTER, Linux 4.14+)")
    version = _version()
    if version < (4, 8):
        problems.append(f"Linux {os.uname().release} runs seccomp before ptrace's syscall-entry stop "
                        "(the order brokerd relies on came in 4.8)")
    if version < (5, 3):
        problems.append(f"Linux {os.uname().release} lacks PTRACE_GET_SYSCALL_INFO (5.3+)")
    if os.uname().machine != "x86_64":
        problems.append(f"brokerd decodes x86_64 (and i386/x32) system calls; this machine is {os.uname().machine}")
    return problems
