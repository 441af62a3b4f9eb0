"""The broker protects itself: whatever the policy says, a traced program may
not signal, stop, ptrace or read the memory of the shim or its authorizers.

The calls that name another process (kill and friends, ptrace,
process_vm_readv/writev, pidfd_open, pidfd_send_signal) always stop (they are
rare), and are judged here before any authorizer sees them:

* aimed at a protected process: EPERM;
* aimed at a whole process group (``kill(0, sig)``, ``kill(-pgrp, sig)``) or
  at everything (``kill(-1, sig)``) that includes a protected process: the
  call is skipped and the signal sent by the shim to every other member the
  caller could signal itself, so ``kill -STOP 0`` stops the program's job but
  not its broker;
* anything else goes on to the authorizers like any other call.
"""

from __future__ import annotations

import errno as E
import os
from collections.abc import Iterable

from .procfs import pgrp_and_ppid, tgid_of, uids_of

GUARDED = frozenset({
    "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open", "pidfd_send_signal",
    "ptrace", "process_vm_readv", "process_vm_writev",
})

PTRACE_TRACEME = 0


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


class Guard:
    """Knows which processes are the broker's and judges calls aimed at them."""

    def __init__(self, protected: Iterable[int], groups: Iterable[int] = ()) -> None:
        self.protected = set(protected)
        #: process groups that are wholly the broker's (each spawned authorizer
        #: leads its own, so its `sh -c` children are covered too)
        self.protected_groups = set(groups)

    def _is_protected(self, pid: int) -> bool:
        if pid in self.protected:
            return True
        if not self.protected_groups:
            return False
        st = pgrp_and_ppid(pid)
        return st is not None and st[0] in self.protected_groups

    def judge(self, name: str, raw: tuple[int, ...], caller_tid: int, caller_tgid: int) -> tuple[str, int] | None:
        """``("deny", errno)``, ``("emulated", 0)`` (the shim already signalled
        the group; the call returns 0) or None (not the broker's business)."""
        if name == "kill":
            pid, sig = _s32(raw[0]), _s32(raw[1])
            if pid > 0:
                return ("deny", E.EPERM) if self._is_protected(pid) else None
            return self._group_kill(pid, sig, caller_tgid)
        if name in ("tkill",):
            return ("deny", E.EPERM) if self._is_protected(tgid_of(_s32(raw[0]))) else None
        if name in ("tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open", "process_vm_readv",
                    "process_vm_writev"):
            return ("deny", E.EPERM) if self._is_protected(_s32(raw[0])) else None
        if name == "ptrace":
            if raw[0] == PTRACE_TRACEME:
                return None
            return ("deny", E.EPERM) if self._is_protected(tgid_of(_s32(raw[1]))) else None
        if name == "pidfd_send_signal":
            target = _pidfd_target(caller_tid, _s32(raw[0]))
            return ("deny", E.EPERM) if target is not None and self._is_protected(target) else None
        return None

    def _group_kill(self, pid: int, sig: int, caller: int) -> tuple[str, int] | None:
        if pid == 0:
            st = pgrp_and_ppid(caller)
            if st is None:
                return None
            members = self._pgrp_members(st[0])
        elif pid == -1:
            members = [p for p in _all_pids() if p != caller and p != 1]
        else:
            members = self._pgrp_members(-pid)
        if not any(self._is_protected(p) for p in members):
            return None
        if sig == 0:
            return None  # a probe: harmless, the kernel answers it
        mine = uids_of(caller)
        sent = 0
        for p in members:
            if self._is_protected(p):
                continue
            theirs = uids_of(p)
            if mine and mine[1] != 0 and not ({mine[0], mine[1]} & {theirs[0], theirs[2]} if theirs else set()):
                continue  # the caller itself could not signal it
            try:
                os.kill(p, sig)
                sent += 1
            except (ProcessLookupError, PermissionError):
                pass
        return ("emulated", 0) if sent else ("deny", E.ESRCH)

    @staticmethod
    def _pgrp_members(pgrp: int) -> list[int]:
        out = []
        for p in _all_pids():
            st = pgrp_and_ppid(p)
            if st is not None and st[0] == pgrp:
                out.append(p)
        return out


def _all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _pidfd_target(tid: int, fd: int) -> int | None:
    try:
        with open(f"/proc/{tid}/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"Pid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None
