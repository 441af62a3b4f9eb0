"""The broker protects itself: whatever the policy says, a traced program may
not signal, stop, ptrace or read the memory of the shim or its authorizers.

The calls that name another process (the tables' ``process-access`` class:
kill and friends, ptrace, process_vm_readv/writev, pidfd_open, pidfd_getfd,
pidfd_send_signal, process_madvise, process_mrelease, kcmp) always stop
(they are rare), and are judged here before any authorizer sees them:

* aimed at a protected process (any of its ``pid`` arguments, or the process
  behind its pidfd): EPERM;
* aimed at a whole process group (``kill(0, sig)``, ``kill(-pgrp, sig)``,
  the ``signal-group`` class) that includes a protected process: the call
  is skipped and the signal sent by the shim to every other member the
  caller could signal itself, so ``kill -STOP 0`` stops the program's job
  but not its broker;
* aimed at everything (``kill(-1, sig)``, which always includes the
  broker): EPERM.  Emulating it would signal every process the caller may
  signal (as root, the machine) before any policy saw the call;
* anything else goes on to the authorizers like any other call.

Which argument names the target is read from the argument kinds of the
tables, not from a list of names here.
"""

from __future__ import annotations

import errno as E
import os
from collections.abc import Iterable
from dataclasses import dataclass

from brokerd.protocol.abi import ABIS, names_in

from .procfs import pgrp_and_ppid, tgid_of, uids_of

GUARDED = names_in("process-access")
_GROUP = names_in("signal-group")


@dataclass(frozen=True)
class _Target:
    """Where a guarded call names its target: ``pid`` argument indices, or a
    pidfd in argument 0; whether the first kind is a ptrace request."""

    pids: tuple[int, ...]
    pidfd: bool
    ptrace: bool


def _targets() -> dict[str, _Target]:
    out: dict[str, _Target] = {}
    for abi in ABIS.values():
        for name in GUARDED & abi.by_name.keys():
            kinds = abi.by_name[name].args
            out.setdefault(name, _Target(tuple(i for i, k in enumerate(kinds) if k == "pid"),
                                         kinds[:1] == ("fd",), kinds[:1] == ("ptrace_request",)))
    return out


_TARGETS = _targets()
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
        target = _TARGETS.get(name)
        if target is None:
            return None
        if target.ptrace and raw[0] == PTRACE_TRACEME:
            return None  # names no other process
        pids = [_s32(raw[i]) for i in target.pids if i < len(raw)]
        if name in _GROUP and pids and pids[0] <= 0:
            return self._group_kill(pids[0], _s32(raw[1]), caller_tgid)
        if not pids and target.pidfd:
            pidfd = _pidfd_target(caller_tid, _s32(raw[0]))
            pids = [pidfd] if pidfd is not None else []
        # a thread id names its process too (tkill, tgkill, ptrace): tgid_of
        hit = any(p > 0 and (self._is_protected(p) or self._is_protected(tgid_of(p))) for p in pids)
        return ("deny", E.EPERM) if hit else None

    def _group_kill(self, pid: int, sig: int, caller: int) -> tuple[str, int] | None:
        if pid == 0:
            st = pgrp_and_ppid(caller)
            if st is None:
                return None
            members = self._pgrp_members(st[0])
        elif pid == -1:
            # kill(-1): every process the caller may signal (as root: the
            # whole machine).  Emulating it here would send it before any
            # policy saw the call, so a sandbox could not refuse it: refused.
            return None if sig == 0 else ("deny", E.EPERM)
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
