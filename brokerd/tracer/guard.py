"""The broker protects itself: whatever the policy says, a traced program may
not signal, stop, ptrace or read the memory of the shim or its authorizers.

The calls that name another process (the tables' ``process-access`` class:
kill and friends, ptrace, process_vm_readv/writev, pidfd_open, pidfd_getfd,
pidfd_send_signal, process_madvise, process_mrelease, kcmp, get_robust_list,
move_pages, migrate_pages, perf_event_open), and setns (which joins the
namespaces of the process a pidfd names: :data:`JOINS`), always stop (they
are rare), and are judged here before any authorizer sees them:

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

The calls that change another process where the kernel checks only uids
(the ``process-control`` class: prlimit64, sched_setaffinity,
sched_setparam/setscheduler/setattr, setpriority, ioprio_set) always stop
too, because no Landlock domain covers them: a program under the wall could
otherwise kill any process of its uid with ``prlimit(RLIMIT_CPU)`` (the
kernel's SIGXCPU/SIGKILL), its own broker or another session's included.
Aimed at a protected process, or at a user's every process
(``PRIO_USER``): EPERM; aimed outside the session: EPERM too, unless the
user opted out of the wall (``--no-landlock``) or attached.

The /proc/PID files that change their process when written and whose open
the kernel checks by the file's owner only (:data:`.procfs.PROC_WRITABLE`:
``oom_score_adj``, ``uid_map``...) pass any Landlock domain too: opens for
writing stop (a flag test in the filter) and such an entry of a process outside
the session is refused (EACCES), at entry and, on ptrace, at the exit stop on
what the kernel opened (:meth:`Guard.checks_exit`, :meth:`Guard.opened_ok`).

Which argument names the target is read from the tables' argument kinds
(``pid``, a pidfd ``fd``, ``dirfd``/``path`` of the opens), not from lists
of names here.

A launched session's Landlock domain (:mod:`.landlock`) already keeps the
program away from every process outside it.  Where there is none (no
Landlock, ``--no-landlock``, attach), the guard also checks the roads the
domain would close:

* opens through ``/proc/PID/{mem,fd/N,map_files/N,ns/NS}`` of a process outside the
  session: refused at entry when the path (resolved as the program would,
  ``/proc/self`` and symlinks included) leads there, and checked again at the
  exit stop on what the kernel really opened (a ``/proc`` entry of such a
  process, an anonymous pipe no process of the session holds, a namespace
  only processes outside the session are in), which is closed again and
  fails with EACCES;
* the owner commands that choose who gets SIGIO/SIGURG (``fcntl``'s
  ``F_SETOWN``/``F_SETOWN_EX``, a socket's ``ioctl(FIOSETOWN/SIOCSPGRP)``)
  naming a protected process, where the kernel has no Landlock signal scope
  (ABI < 6).  The owner of ``F_SETOWN_EX`` and the ioctls is in memory: the
  shim judges it on a read-only copy (:data:`OWNER_MEMORY`), so another
  thread cannot change it after the check.
"""

from __future__ import annotations

import errno as E
import os
import re
import struct
from collections.abc import Callable, Iterable, Sequence

from brokerd.protocol.abi import ABIS, names_in
from brokerd.protocol.args import WHO_TARGETS
from brokerd.protocol.record import Record, _set

from . import cgroupfs
from .procfs import (
    AT_FDCWD,
    CGROUP_DEFAULT_RULE,
    CGROUP_WRITABLE,
    NS_LINK,
    PROC_FILES,
    PROC_PATH,
    PROC_WRITABLE,
    holds,
    in_namespace,
    pgrp_and_ppid,
    proc_entry_of,
    tgid_of,
    uids_of,
)

#: calls that join the namespaces of the process a pidfd in argument 0 names (setns; given a
#: namespace descriptor instead, what the open of /proc/PID/ns/* judged).  The kernel checks
#: ptrace-mode access on that process, so the wall refuses one outside the session; where no
#: wall stands (no Landlock, ``--no-landlock``, attach) only the guard does
JOINS = frozenset({"setns"})
GUARDED = names_in("process-access") | JOINS
#: change another process; the kernel checks only uids (no Landlock domain covers these)
CONTROL = names_in("process-control")
_GROUP = names_in("signal-group")
_SIGNALS = names_in("signal-send")
#: reach another process without ptrace-mode access, so a Landlock domain lets them through
_NO_ACCESS_CHECK = frozenset({"pidfd_open", "process_mrelease"})
#: need ptrace-mode access, yet a Landlock domain lets them reach a process
#: outside it (seen on 6.18, as root: process_madvise of another session's
#: process ran; perf_event_open's check is skipped with CAP_PERFMON, so its
#: samples read another session's shim's registers and stack): refused
#: outside the session unless the user opted out of the wall, as the
#: process-control calls are (the kernel-only filter: only the caller)
WALL_BLIND = frozenset({"process_madvise", "perf_event_open"})
#: calls whose ``pid`` argument is no pid when a flag is set: (flags argument,
#: bit).  perf_event_open's PERF_FLAG_PID_CGROUP makes it a cgroup directory's
#: descriptor: every process in that cgroup (and beneath it) on a CPU
PID_AS_CGROUP: dict[str, tuple[int, int]] = {"perf_event_open": (4, 0x4)}
#: calls where a ``pid`` of -1 means every process (perf_event_open: on a CPU)
PID_MEANS_ALL = frozenset({"perf_event_open"})


def _open_args() -> dict[str, tuple[int | None, int]]:
    """The open class's (dirfd index or None, path index), from the kinds."""
    out: dict[str, tuple[int | None, int]] = {}
    for abi in ABIS.values():
        for name in names_in("open") & abi.by_name.keys():
            kinds = abi.by_name[name].args
            out.setdefault(name, (kinds.index("dirfd") if "dirfd" in kinds else None, kinds.index("path")))
    return out


#: opens checked when no Landlock domain walls the session in (all), or for
#: :data:`~.procfs.PROC_WRITABLE` (those for writing): name -> (dirfd index or None, path index)
PROC_OPENS = _open_args()
PROC_OPEN_CALLS = frozenset(PROC_OPENS)
#: an open's access mode bits (O_WRONLY, O_RDWR); an O_PATH descriptor reads and writes nothing
O_ACCMODE, O_PATH = 0o3, 0o10000000


def _open_access() -> dict[str, tuple[str, int]]:
    """Where each open call says whether it opens for writing (the tables'
    kinds): ``("reg", i)``, its ``open_flags`` register; ``("how", i)``, a
    ``struct open_how`` in memory (openat2); ``("always", -1)``: always (creat)."""
    out: dict[str, tuple[str, int]] = {}
    for abi in ABIS.values():
        for name in names_in("open") & abi.by_name.keys():
            kinds = [k.split(":")[0] for k in abi.by_name[name].args]
            form = (("reg", kinds.index("open_flags")) if "open_flags" in kinds
                    else ("how", kinds.index("open_how")) if "open_how" in kinds else ("always", -1))
            out.setdefault(name, form)
    return out


#: how each open call gives its access mode (the filter tests the register form)
OPEN_ACCESS = _open_access()
#: commands that choose who gets SIGIO (checked without Landlock's signal scope)
F_SETOWN, F_SETOWN_EX = 8, 15
FIOSETOWN, SIOCSPGRP = 0x8901, 0x8902
F_OWNER_TID, F_OWNER_PID, F_OWNER_PGRP = 0, 1, 2
#: the command kind (argument 1) -> its owner commands -> how the owner is given:
#: ``value`` (argument 2; negative: a process group), ``int`` (an int argument 2
#: points to, the same meaning), ``owner_ex`` (a struct f_owner_ex it points to)
OWNER_COMMANDS: dict[str, dict[int, str]] = {
    "fcntl_cmd": {F_SETOWN: "value", F_SETOWN_EX: "owner_ex"},
    "ioctl_req": {FIOSETOWN: "int", SIOCSPGRP: "int"},
}
#: bytes behind argument 2 of the memory forms
OWNER_MEMORY = {"int": 4, "owner_ex": 8}


def _owner_kinds() -> dict[str, str]:
    """Call name -> the kind of its argument 1 where that names owner commands (the tables' kinds)."""
    return {name: spec.args[1] for abi in ABIS.values() for name, spec in abi.by_name.items()
            if len(spec.args) > 2 and spec.args[1] in OWNER_COMMANDS}


OWNER_KIND = _owner_kinds()
OWNER_BY_CALL = {name: OWNER_COMMANDS[kind] for name, kind in OWNER_KIND.items()}
OWNER_CALLS = frozenset(OWNER_BY_CALL)
#: a bit the filter tests to stop only the owner commands, where one bit is
#: set in all of them (F_SETOWN 8, F_SETOWN_EX 15) and in few others; the
#: other kinds stop on each command's value
OWNER_CMD_BIT = {"fcntl_cmd": 8}


def owner_form(name: str, raw: Sequence[int]) -> str | None:
    """How an owner command gives its owner (``value``, ``int``, ``owner_ex``),
    None when the call sets no owner.  Commands are 32-bit (the kernel's
    ``unsigned int cmd``), whatever the register's high half says."""
    return OWNER_BY_CALL.get(name, {}).get(raw[1] & 0xFFFFFFFF) if len(raw) > 2 else None


class _Target(Record):
    """Where a guarded call names its target: ``pid`` argument indices, or a
    pidfd in argument 0; whether the first kind is a ptrace request; the
    index of a ``which`` kind whose next argument is the target (``who``)."""

    __slots__ = ("pids", "pidfd", "ptrace", "which")
    pids: tuple[int, ...]
    pidfd: bool
    ptrace: bool
    which: int | None

    def __init__(self, pids: tuple[int, ...], pidfd: bool, ptrace: bool,
                 which: int | None = None) -> None:
        _set(self, "pids", pids)
        _set(self, "pidfd", pidfd)
        _set(self, "ptrace", ptrace)
        _set(self, "which", which)


def _targets() -> dict[str, _Target]:
    out: dict[str, _Target] = {}
    for abi in ABIS.values():
        for name in (GUARDED | CONTROL) & abi.by_name.keys():
            kinds = abi.by_name[name].args
            which = next((i for i, k in enumerate(kinds[:-1]) if k in WHO_TARGETS), None)
            out.setdefault(name, _Target(tuple(i for i, k in enumerate(kinds) if k == "pid"),
                                         kinds[:1] == ("fd",), kinds[:1] == ("ptrace_request",),
                                         which))
            _WHICH_KIND[name] = kinds[which] if which is not None else ""
    return out


_WHICH_KIND: dict[str, str] = {}
_TARGETS = _targets()

PTRACE_TRACEME = 0


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


class Guard:
    """Knows which processes are the broker's and judges calls aimed at them."""

    def __init__(self, protected: Iterable[int], groups: Iterable[int] = (),
                 in_session: Callable[[int], bool] = lambda pid: False) -> None:
        self.protected = set(protected)
        #: process groups that are wholly the broker's (each spawned authorizer
        #: leads its own, so its `sh -c` children are covered too)
        self.protected_groups = set(groups)
        #: is this process one of the session's programs? (/proc opens of others are checked)
        self.in_session = in_session
        self.proc_checks = False  # no Landlock domain: check /proc opens
        self.owner_checks = False  # no Landlock signal scope: check F_SETOWN
        #: no domain, not by the user's choice: keep the program from every process outside
        #: its session, as a domain would (else, --no-landlock and attach: the broker's own only)
        self.emulate_domain = False
        #: no signal scope, not by the user's choice: signals to outside refused, as the scope would
        self.emulate_signals = False
        #: the tasks of the session the shim has let run (their descriptor tables are compared)
        self.session_tasks: Callable[[], Iterable[int]] = lambda: ()
        #: a launched session the user did not opt out of the wall for: process-control calls
        #: (which no domain covers) aimed outside the session are refused
        self.emulate_control = False
        #: opens for writing stop (a flag test in the filter) and are checked for
        #: /proc/PID entries no domain covers (PROC_WRITABLE): every traced session
        self.write_checks = False
        #: what an open opened can be checked at its exit stop (not the notify backend)
        self.exit_stops = True

    def calls(self) -> frozenset[str]:
        """The calls this guard judges at their entry."""
        return (GUARDED | CONTROL | (PROC_OPEN_CALLS if self.proc_checks or self.write_checks else frozenset())
                | (OWNER_CALLS if self.owner_checks else frozenset()))

    def _outside(self, pid: int, emulated: bool) -> bool:
        """Is ``pid`` out of the program's reach: the broker's, or (where
        the guard stands in for a Landlock domain or scope) outside the session?"""
        if self._is_protected(pid) or self._is_protected(tgid_of(pid)):
            return True
        return emulated and not self.in_session(tgid_of(pid))

    def _unbacked(self, name: str) -> bool:
        """Is the guard's judgement of a pidfd call the only barrier?  A
        Landlock signal scope settles pidfd_send_signal in the kernel, a
        domain the others (their ptrace-mode access check); without them
        (attach, ``--no-landlock``, old kernels) only the guard stands."""
        return self.owner_checks if name in _SIGNALS else self.proc_checks

    def _descriptors_shared(self, tid: int) -> bool:
        """Could another task change what descriptor numbers of ``tid`` name
        while its call waits at this stop?  The guard reads a pidfd's
        process from /proc before the call runs; a thread sharing the
        descriptor table can ``dup2`` another process's pidfd (or /proc/PID
        directory) over that number meanwhile, so for such a caller no
        verdict on the number is sound.  Asked of every task of the session
        the shim has let run, the caller's threads and its children
        (``kcmp(KCMP_FILES)``: the same table); a task that cannot be
        compared counts as sharing (fail closed)."""
        others = set(self.session_tasks())
        tgid = tgid_of(tid)
        others.update(_tasks_and_children(tgid))
        others.discard(tid)
        return any(_same_files(tid, o) for o in others)

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
        if target is not None:
            return self._judge_target(name, target, raw, caller_tid, caller_tgid)
        if name in OWNER_CALLS:
            return self._judge_owner(name, raw, caller_tid) if self.owner_checks else None
        if name in PROC_OPENS:
            return self._judge_open(name, raw, caller_tid, caller_tgid) if self.proc_checks or self.write_checks \
                else None
        return None

    def judge_entry(self, name: str, raw: tuple[int, ...], caller_tid: int,
                    caller_tgid: int) -> tuple[tuple[str, int] | None, bool]:
        """:meth:`judge`, and :meth:`checks_exit` when that lets the call
        through, at once: (the verdict or None, check at exit?).  An open's
        "for writing?" is worked out once (twice before: every judged open
        read its flags, openat2's from memory, in each)."""
        if name not in PROC_OPENS:
            return self.judge(name, raw, caller_tid, caller_tgid), False
        writing = self.write_checks and _for_writing(name, raw, caller_tid)
        if self.proc_checks or writing:
            verdict = self._judge_open(name, raw, caller_tid, caller_tgid, writing)
            if verdict is not None:
                return verdict, False
        return None, self.exit_stops and (self.proc_checks or self.write_checks
                                          and (OPEN_ACCESS[name][0] == "how" or writing))

    def quiet_reads(self, name: str) -> int | None:
        """The flags register of open ``name`` when such an open *not* for
        writing (:func:`writes`) is none of the guard's business: :meth:`judge`
        gives no verdict and :meth:`checks_exit` says False without reading
        anything.  The shim's fused entry (Entry._fused) tests the flags
        inline and asks the guard only about opens for writing; None: every
        open of ``name`` is judged (no wall: /proc opens checked; openat2's
        flags in memory; creat; not an open)."""
        if self.proc_checks or name not in PROC_OPENS:
            return None
        form, at = OPEN_ACCESS[name]
        return at if form == "reg" else None

    def checks_exit(self, name: str, raw: tuple[int, ...], tid: int) -> bool:
        """Is what this open (let through at its entry) opened checked at its
        exit stop?  Every open where the guard stands in for the wall; else
        one for writing (openat2 always: its flags are in memory, which
        another thread can change after the entry's look)."""
        if name not in PROC_OPENS or not self.exit_stops:
            return False
        return self.proc_checks or self.write_checks and (OPEN_ACCESS[name][0] == "how"
                                                          or _for_writing(name, raw, tid))

    def _judge_target(self, name: str, target: _Target, raw: tuple[int, ...], caller_tid: int,
                      caller_tgid: int) -> tuple[str, int] | None:
        if target.ptrace and raw[0] == PTRACE_TRACEME:
            return None  # names no other process
        if _wide(name, target, raw):
            # every process on a CPU, or a cgroup's: the broker's are among them, or can be
            # moved there by the root (or CAP_PERFMON) such a call needs (as kill(-1): refused)
            return ("deny", E.EPERM)
        if name in CONTROL:
            return self._judge_control(name, target, raw, caller_tgid)
        pids = [_s32(raw[i]) for i in target.pids if i < len(raw)]
        if name in _GROUP and pids and pids[0] <= 0:
            return self._group_kill(pids[0], _s32(raw[1]), caller_tgid)
        if not pids and target.pidfd:
            pidfd = _pidfd_target(caller_tid, _s32(raw[0]))
            pids = [pidfd] if pidfd is not None else []
            if self._unbacked(name) and self._descriptors_shared(caller_tid):
                return ("deny", E.EPERM)  # the number judged may name another process when the call runs
        emulated = (self.emulate_signals if name in _SIGNALS
                    else self.emulate_domain and name not in _NO_ACCESS_CHECK
                    or self.emulate_control and name in WALL_BLIND)
        # a thread id names its process too (tkill, tgkill, ptrace): _outside looks at both
        hit = any(p > 0 and self._outside(p, emulated) for p in pids)
        return ("deny", E.EPERM) if hit else None

    def _judge_control(self, name: str, target: _Target, raw: tuple[int, ...], caller: int) -> tuple[str, int] | None:
        """prlimit64, sched_set*, setpriority, ioprio_set: a pid (0: the
        caller), or setpriority/ioprio_set's which/who pair."""
        pids = [p for p in (_s32(raw[i]) for i in target.pids if i < len(raw)) if p > 0]
        if target.which is not None and target.which + 1 < len(raw):
            what = WHO_TARGETS[_WHICH_KIND[name]].get(_s32(raw[target.which]))
            who = _s32(raw[target.which + 1])
            if what == "user":
                return ("deny", E.EPERM)  # every process of a uid: the broker's too
            if what == "process" and who > 0:
                pids.append(who)
            elif what == "group" and who >= 0:
                st = pgrp_and_ppid(caller) if who == 0 else None
                pids += self._pgrp_members(who or (st[0] if st else 0))
        hit = any(self._outside(p, self.emulate_control) for p in pids)
        return ("deny", E.EPERM) if hit else None

    def _judge_owner(self, name: str, raw: tuple[int, ...], tid: int) -> tuple[str, int] | None:
        form = owner_form(name, raw)
        if form is None:
            return None
        try:
            kind, who = _owner_of(form, raw[2], tid)
        except (OSError, struct.error):
            return None  # the kernel answers EFAULT itself
        if who <= 0:
            return None
        members = self._pgrp_members(who) if kind == F_OWNER_PGRP else [who]
        hit = any(self._outside(p, self.emulate_signals) for p in members)
        return ("deny", E.EPERM) if hit else None

    def pin_suffices(self, tid: int, real: bytes) -> bool:
        """May an open of thread ``tid`` pinned to ``real`` (a path with no
        symlink, not under /proc: openat2 follows none) skip the exit check?
        Where the wall stands (no mount can be made under it), when its
        directory is on no procfs: a procfs mounted elsewhere (a chroot's
        ``/srv/jail/proc``) holds /proc/PID entries under other paths; nor on
        a cgroup file system (a cgroup directory renamed after the check puts
        another cgroup's ``cgroup.kill`` at the judged path)."""
        parent = f"/proc/{tid}/root{os.fsdecode(real.rpartition(b'/')[0] or b'/')}"
        return not self.proc_checks and cgroupfs.fs_type(parent) not in _EXIT_CHECKED_FS

    def _judge_open(self, name: str, raw: tuple[int, ...], tid: int, tgid: int,
                    writing: bool | None = None) -> tuple[str, int] | None:
        if writing is None:  # (judge_entry worked it out already)
            writing = self.write_checks and _for_writing(name, raw, tid)
        if not (self.proc_checks or writing):
            return None  # a read under the wall: /proc/PID/mem, fd/... of others are the kernel's to refuse
        dirfd_at, path_at = PROC_OPENS[name]
        try:
            path = _read_cstr(tid, raw[path_at])
        except OSError:
            return None  # the kernel answers EFAULT itself
        dirfd = _s32(raw[dirfd_at]) if dirfd_at is not None else AT_FDCWD
        end: list[str] = []
        hit = proc_entry_of(tid, tgid, dirfd, path, PROC_FILES | PROC_WRITABLE if writing else PROC_FILES,
                            lambda pid: pid == tgid or self.in_session(tgid_of(pid)), end)
        if hit is not None and self._entry_outside(*hit):
            return ("deny", E.EACCES)
        return ("deny", E.EACCES) if writing and end and self._cgroup_path_refused(tid, end[0]) else None

    def _cgroup_path_refused(self, tid: int, real: str) -> bool:
        """At the entry of an open for writing: is ``real`` (where the path
        leads in the thread's root, as the walk that looked for /proc/PID
        entries found it) a cgroup file the program may not write?  On ptrace
        the exit stop judges again what was really opened."""
        where = f"/proc/{tid}/root{real}"
        if not cgroupfs.on_cgroupfs(where):
            return False  # (one statfs: the usual case)
        try:
            fd = os.open(where, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return False  # nothing there (yet): the kernel makes no file on a cgroup file system
        try:
            return self._cgroup_file_refused(fd)
        finally:
            os.close(fd)

    def _cgroup_file_refused(self, fd: int) -> bool:
        """Is the object the broker's descriptor ``fd`` names a cgroup file
        the program may not open for writing (procfs.CGROUP_WRITABLE)?
        ``moves``: unless the user opted out of the wall; ``members``: when
        its cgroup, or one beneath, holds a process outside the session (the
        broker's always); one whose cgroup cannot be told: refused."""
        found = cgroupfs.cgroup_of(fd)
        if found is None:
            return False
        dfd, name = found
        if dfd < 0:
            return True
        try:
            if CGROUP_WRITABLE.get(name, CGROUP_DEFAULT_RULE) == "moves":
                return self.emulate_control
            return cgroupfs.holds_any(f"/proc/self/fd/{dfd}", lambda pid: self._outside(pid, self.emulate_control))
        finally:
            os.close(dfd)

    def _entry_outside(self, pid: int, entry: str) -> bool:
        """Is /proc/PID/ENTRY (opened for writing, if a PROC_WRITABLE one) out of the program's reach?"""
        if entry in PROC_WRITABLE:  # no domain covers these: as the process-control calls
            return self._outside(pid, self.emulate_control)
        return self.proc_checks and self._outside(pid, self.emulate_domain)

    def opened_ok(self, tid: int, tgid: int, fd: int) -> bool:
        """At the exit stop of a checked open: did the kernel open a /proc
        entry of a process outside the session, an anonymous pipe (only
        reachable through /proc/PID/fd) that no process of the session holds,
        or a namespace only processes outside the session are in?"""
        try:
            link = os.readlink(f"/proc/{tid}/fd/{fd}")
        except OSError:
            return True  # gone: nothing left to protect
        if self.write_checks and self._cgroup_opened_refused(tid, fd):
            return False
        entry = _proc_entry_opened(tid, fd, link)
        if entry is not None and entry[1] in PROC_WRITABLE:
            return not (_opened_for_writing(tid, fd) and self._entry_outside(*entry))
        if not self.proc_checks:
            return True  # the wall refuses the rest
        if entry is not None and entry[1] in PROC_FILES:
            return not self._entry_outside(*entry)
        if link.startswith("pipe:["):
            return self._held_in_session(link, tid, tgid, fd)
        if NS_LINK.fullmatch(link):
            return self._namespace_in_reach(link, tgid)
        return True

    def _cgroup_opened_refused(self, tid: int, fd: int) -> bool:
        """Is descriptor ``fd`` of ``tid`` a cgroup file opened for writing that it may not write?"""
        if not cgroupfs.on_cgroupfs(f"/proc/{tid}/fd/{fd}") or not _opened_for_writing(tid, fd):
            return False
        try:
            mine = os.open(f"/proc/{tid}/fd/{fd}", os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return False  # gone: nothing left to protect
        try:
            return self._cgroup_file_refused(mine)
        finally:
            os.close(mine)

    def _namespace_in_reach(self, link: str, tgid: int) -> bool:
        """A namespace descriptor the program opened (for setns): one a
        process it may reach is in (its own, mostly), or that no process is
        in (a bind-mounted one: ``ip netns``), not one only processes out of
        its reach are in (opened through their ``/proc/PID/ns``)."""
        if in_namespace(tgid, link):
            return True
        beyond = False
        for p in _all_pids():
            if in_namespace(p, link):
                if not self._outside(p, self.emulate_domain):
                    return True
                beyond = True
        return not beyond

    def _held_in_session(self, link: str, tid: int, tgid: int, fd: int) -> bool:
        """Does a process that may hold this pipe hold it: the caller (another
        descriptor) or a process of the session; where the guard does not
        stand in for a domain (--no-landlock, attach), anyone but the broker's own processes."""
        if not self.emulate_domain:
            return not any(holds(p, link) for p in self.protected)
        if holds(tgid, link, skip=fd):
            return True
        return any(holds(p, link) for p in _all_pids() if p != tgid and self.in_session(p))

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
        if not any(self._outside(p, self.emulate_signals) for p in members):
            return None
        if sig == 0:
            return None  # a probe: harmless, the kernel answers it
        mine = uids_of(caller)
        sent = 0
        for p in members:
            if self._outside(p, self.emulate_signals):
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


def _wide(name: str, target: _Target, raw: Sequence[int]) -> bool:
    """Does the call aim at a cgroup (its pid argument a descriptor) or at
    every process (pid -1), rather than at one process?"""
    flag = PID_AS_CGROUP.get(name)
    if flag is not None and len(raw) > flag[0] and raw[flag[0]] & flag[1]:
        return True
    return name in PID_MEANS_ALL and any(_s32(raw[i]) == -1 for i in target.pids if i < len(raw))


def _for_writing(name: str, raw: Sequence[int], tid: int) -> bool:
    """Does this open ask for write access (O_WRONLY or O_RDWR, not O_PATH)?
    openat2's flags are read from memory here (the exit check reads what
    the kernel really did); an unreadable ``open_how`` counts as writing."""
    form, at = OPEN_ACCESS[name]
    if form == "always":
        return True
    if form == "how":
        try:
            flags = struct.unpack("=Q", _read(tid, raw[at], 8))[0]
        except (OSError, struct.error, IndexError):
            return True
    else:
        flags = raw[at] if at < len(raw) else 0
    return writes(flags)


def writes(flags: int) -> bool:
    """Do open flags ``flags`` ask for write access (O_WRONLY or O_RDWR, not O_PATH)?
    (Entry._fused tests the same inline, for :meth:`Guard.quiet_reads`'s opens.)"""
    return bool(flags & O_ACCMODE) and not flags & O_PATH


def _opened_for_writing(tid: int, fd: int) -> bool:
    """Was descriptor ``fd`` of ``tid`` opened for writing (its ``fdinfo`` flags)?  Unknown: yes."""
    try:
        with open(f"/proc/{tid}/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"flags:"):
                    flags = int(line.split()[1], 8)
                    return bool(flags & O_ACCMODE) and not flags & O_PATH
    except (OSError, ValueError, IndexError):
        pass
    return True


#: the end of a path to a /proc/PID entry, wherever that procfs is mounted
_PROC_TAIL = re.compile(r"/(\d+)/(?:task/(\d+)/)?([^/]+)")
PROC_SUPER_MAGIC = 0x9FA0
#: file systems whose opens a pin cannot vouch for: /proc/PID entries, cgroup files (a
#: cgroup directory renamed between the check and the open puts another cgroup's file there)
_EXIT_CHECKED_FS = frozenset({PROC_SUPER_MAGIC, *cgroupfs.CGROUP_MAGICS})


def _proc_entry_opened(tid: int, fd: int, link: str) -> tuple[int, str] | None:
    """(PID, entry) when descriptor ``fd`` of ``tid`` is a /proc/PID (or
    /proc/PID/task/TID) entry: by its path, or for a PROC_WRITABLE entry of
    a procfs mounted elsewhere (root may mount one anywhere), by the file
    system it is on and the end of its path."""
    m = PROC_PATH.match(link)
    if m:
        return int(m.group(2) or m.group(1)), m.group(3)
    m = _PROC_TAIL.search(link)
    if m and m.end() == len(link) and m.group(3) in PROC_WRITABLE and _on_procfs(f"/proc/{tid}/fd/{fd}"):
        return int(m.group(2) or m.group(1)), m.group(3)
    return None


def _on_procfs(path: str) -> bool:
    return cgroupfs.fs_type(path) == PROC_SUPER_MAGIC


def _owner_of(form: str, arg: int, tid: int) -> tuple[int, int]:
    """(F_OWNER_* kind, pid or group) an owner command names."""
    if form == "owner_ex":  # struct f_owner_ex {int type; pid_t pid;}
        kind, who = struct.unpack("=ii", _read(tid, arg, OWNER_MEMORY[form]))
        return kind, who
    who = _s32(arg) if form == "value" else struct.unpack("=i", _read(tid, arg, OWNER_MEMORY[form]))[0]
    return (F_OWNER_PID, who) if who >= 0 else (F_OWNER_PGRP, -who)


def _all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _pidfd_target(tid: int, fd: int) -> int | None:
    """The process a pidfd, or a /proc/PID directory descriptor (which
    pidfd_send_signal accepts too), refers to."""
    try:
        with open(f"/proc/{tid}/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"Pid:"):
                    return int(line.split()[1])
        m = PROC_PATH.match(os.readlink(f"/proc/{tid}/fd/{fd}") + "/")
        if m and not m.group(3):
            return int(m.group(1))
    except (OSError, ValueError):
        pass
    return None


def _tasks_and_children(tgid: int) -> set[int]:
    """The threads of process ``tgid`` and the processes its threads forked."""
    out: set[int] = set()
    try:
        tids = os.listdir(f"/proc/{tgid}/task")
    except OSError:
        return out
    for t in tids:
        out.add(int(t))
        try:
            with open(f"/proc/{tgid}/task/{t}/children", "rb") as f:
                out.update(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


_SYS_KCMP, _KCMP_FILES = 312, 2  # x86_64, the broker's own ABI
def _same_files(a: int, b: int) -> bool:
    """Do tasks ``a`` and ``b`` share one descriptor table?  A task gone
    meanwhile shares nothing; one that cannot be compared (no access) may."""
    import ctypes

    from .ptrace import _libc  # the broker's one handle on libc

    r = _libc.syscall(_SYS_KCMP, a, b, _KCMP_FILES, 0, 0)
    return r == 0 if r >= 0 else ctypes.get_errno() != E.ESRCH


def _read(tid: int, addr: int, size: int) -> bytes:
    from .ptrace import read_memory

    return read_memory(tid, addr, size)


def _read_cstr(tid: int, addr: int, limit: int = 4096) -> bytes:
    out = b""
    while len(out) < limit:
        chunk = _read(tid, addr + len(out), 256 - (addr + len(out)) % 256)
        nul = chunk.find(b"\0")
        if nul >= 0:
            return out + chunk[:nul]
        out += chunk
    return out
