"""Pinned opens: an allowed open made as ``openat2`` of the judged real path, following no symlink.

The check at exit (``stable.py``) costs a second stop per judged open.  When
the path the program gave is already the real path the broker resolved (an
absolute path with no symlink, no ``..``, no ``.`` or doubled or trailing
slash: the kernel walks exactly the components that were judged), the call
is rewritten at its seccomp stop into ``openat2(AT_FDCWD, REALPATH, &how,
sizeof how)`` with ``how.resolve = RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS``,
path and ``how`` in the sealed scratch region.  A component swapped for a
symlink after the decision then fails with ELOOP in the kernel (fail closed),
so there is nothing to check at exit and the tracee is resumed with
PTRACE_CONT: one stop per open.  Since Linux 4.8 seccomp runs its filters
again on the changed call and lets a RET_TRACE through then
(``recheck_after_trace``), so every filter still judges ``openat2``: the
broker pins only where its own filter lets ``openat2`` run, where the
program has installed no filter of its own (``seccomp``/``prctl`` installs
stop and mark the process), and where ``openat2`` works for the broker
itself (a container's profile may refuse it).

``how`` is built as the kernel's ``build_open_how`` builds it for ``open``,
``openat`` and ``creat`` (mode only with O_CREAT/O_TMPFILE, O_PATH keeping
only its own flags, O_LARGEFILE forced on x86_64 by both calls), so the open
is the one the program asked for; flags with bits this table does not know
(which ``openat`` ignores and ``openat2`` refuses) keep the check at exit.
"""

from __future__ import annotations

import ctypes
import functools
import re
import struct
from collections.abc import Callable, Sequence

from brokerd.decision.stack import Decision
from brokerd.protocol.abi import Abi
from brokerd.protocol.args import constant, open_follows

from .. import ptrace as pt
from ..accel import accel
from ..resolve import plain_ident_at
from ..states import RUN
from .base import ShimBase
from .consts import MASK64, O_CREAT, O_EXCL, O_NOFOLLOW, O_TMPFILE_BIT, OPEN_CALLS
from .thread import _Thread

SYS_OPENAT2 = 437  # x86_64
AT_FDCWD = -100
RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS = 0x02, 0x04
PIN_RESOLVE = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
OPEN_HOW = struct.Struct("<QQQ")  # struct open_how {u64 flags, mode, resolve}
HOW_ROOM = 32  # the path follows the struct in the slot, 16-byte aligned
#: x86_64 calls that can be pinned: name -> (flags argument index, None for
#: creat's implied flags; mode argument index).  i386 and x32 keep the check
#: at exit (their openat does not force O_LARGEFILE, openat2 would)
PIN_FORMS: dict[str, tuple[int | None, int]] = {"open": (1, 2), "openat": (2, 3), "creat": (None, 1)}
CREAT_FLAGS = O_CREAT | constant("O_WRONLY") | constant("O_TRUNC")
#: the same calls: name -> (path argument index, flags argument index or None, mode argument index)
PIN_ARGS: dict[str, tuple[int, int | None, int]] = {
    name: (OPEN_CALLS[name][0], fidx, midx) for name, (fidx, midx) in PIN_FORMS.items()}
O_PATH = constant("O_PATH")
#: the kernel's VALID_OPEN_FLAGS (x86_64)
VALID_OPEN_FLAGS = 0
for _name in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK",
              "O_SYNC", "O_DSYNC", "FASYNC", "O_DIRECT", "O_LARGEFILE", "O_DIRECTORY", "O_NOFOLLOW",
              "O_NOATIME", "O_CLOEXEC", "O_PATH", "O_TMPFILE"):
    VALID_OPEN_FLAGS |= constant(_name)
O_PATH_FLAGS = constant("O_DIRECTORY") | constant("O_NOFOLLOW") | O_PATH | constant("O_CLOEXEC")
S_IALLUGO = 0o7777
PATH_MAX = 4096
_AT_FDCWD_REG = AT_FDCWD & MASK64  # (the pinned call's registers, made at every pinned open)
_HOW_SIZE = OPEN_HOW.size


#: what a pinned open writes to its scratch slot: ``struct open_how`` padded
#: to HOW_ROOM bytes, then the real path and its NUL (one write; pinned())
Pinned = bytes


@functools.lru_cache(maxsize=256)
def open_how(flags: int, mode: int) -> bytes | None:
    """``struct open_how`` for an ``openat(flags, mode)``, as the kernel's
    ``build_open_how`` makes it (so ``openat2`` opens alike), with the pin's
    resolve flags, padded to HOW_ROOM bytes (the path follows it); None for
    flag bits the table does not know.  Cached: a program uses a handful of
    flag and mode combinations."""
    flags &= 0xFFFFFFFF
    if flags & ~VALID_OPEN_FLAGS:
        return None
    if flags & O_PATH:
        flags &= O_PATH_FLAGS
    mode &= S_IALLUGO
    if not flags & (O_CREAT | O_TMPFILE_BIT):
        mode = 0
    return OPEN_HOW.pack(flags, mode, PIN_RESOLVE) + bytes(HOW_ROOM - OPEN_HOW.size)


def pinned(name: str, raw: tuple[int, ...], given: bytes, real: bytes) -> Pinned | None:
    """The pinned form of open call ``name`` (x86_64 registers ``raw``) whose
    path argument was ``given`` and resolved to ``real`` (what its scratch
    slot is to hold: ``struct open_how``, then the path); None where the
    check at exit must stay: another call, a path the kernel would walk
    differently from the judged one (relative, a symlink or ``..`` in it,
    ``.``, doubled or trailing slashes), anything under ``/proc``, unknown
    flag bits.  A relative path stays unpinned because an absolute walk would
    need search permission on the ancestors of the cwd, which natively it
    does not."""
    form = PIN_FORMS.get(name)
    if form is None or given != real:
        return None
    fidx, midx = form
    return pinned_path(CREAT_FLAGS if fidx is None else raw[fidx], raw[midx] if midx < len(raw) else 0, real)


@functools.lru_cache(maxsize=256)
def pinned_path(flags: int, mode: int, real: bytes) -> Pinned | None:
    """:func:`pinned` for a path given as its real path, from the call's
    flags and mode.  Cached: a program opens the same few paths the same way
    again and again (a loop, a build), and the tests below (a regular
    expression, the ``/proc`` test, ``struct open_how``) were a microsecond
    of every pinned open; at most 256 entries (about 2 MiB for the longest paths)."""
    if len(real) >= PATH_MAX or not canonical(real):
        return None
    if real.startswith(b"/proc") and (len(real) == 5 or real[5] == 47):  # b"/proc", b"/proc/..."
        return None  # magic links and per-process files: their own rules (security.md)
    how = open_how(flags, mode)
    return None if how is None else how + real + b"\0"


#: what a canonical path (but ``/`` itself) never holds: a doubled slash, a
#: ``.`` or ``..`` component, a trailing slash
NOT_CANONICAL = re.compile(rb"//|/\.\.?(?:/|\Z)|/\Z")


def canonical(path: bytes) -> bool:
    """Is ``path`` absolute with no ``.`` or ``..`` component and no doubled
    or trailing slash (the form a resolved real path has)?  One regular
    expression search: a third of the time of six substring tests."""
    return path[:1] == b"/" and (path == b"/" or NOT_CANONICAL.search(path) is None)


#: does an open with these flags follow a final symlink (one answer for the tracer and the client library)
follows = open_follows


def _plain_pin_py(rootfd: int, path: bytes, flags: int, mode: int) -> tuple[Pinned, tuple] | None:
    if flags & O_TMPFILE_BIT == O_TMPFILE_BIT or b"\0" in path:
        return None
    pin = pinned_path(flags, mode, path)
    if pin is None:
        return None
    ident = plain_ident_at(rootfd, path, follows(flags))
    return None if ident is None else (pin, ("inode", *ident))


#: The common judged open pinned at once: an open with ``flags`` and ``mode``
#: (an x86_64 call's own registers; creat's implied flags) of ``path``, which
#: is absolute and canonical (:func:`pinned_path`, no O_TMPFILE), and names
#: under the thread's kept root descriptor ``rootfd`` an object with no
#: symlink on the kernel's walk (:func:`.resolve.plain_ident_at`, the final
#: one followed as the open follows it): ``(what its scratch slot is to
#: hold, ("inode", st_dev, st_ino))``, what the open must have opened if it
#: ends up unpinned.  None otherwise.  One compiled call where
#: brokerd.tracer.accel is built (``accel.pin_plain``, tests/test_accel.py
#: holds it to this Python): its tests, the check's three system calls and
#: the slot's bytes were a dozen Python calls of every judged open.
plain_pin: Callable[[int, bytes, int, int], tuple[Pinned, tuple] | None] = _plain_pin_py
if accel is not None:
    accel.pin_setup(VALID_OPEN_FLAGS, O_PATH, O_PATH_FLAGS, O_CREAT, O_TMPFILE_BIT, O_EXCL, O_NOFOLLOW,
                    PIN_RESOLVE, HOW_ROOM, PATH_MAX)
    plain_pin = accel.pin_plain


_OPENAT2_WORKS: bool | None = None


def openat2_works() -> bool:
    """Does ``openat2`` with the pin's resolve flags work here (kernel 5.6+,
    no seccomp profile above the broker refusing it)?  Asked once."""
    global _OPENAT2_WORKS
    if _OPENAT2_WORKS is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        how = ctypes.create_string_buffer(OPEN_HOW.pack(O_PATH | constant("O_CLOEXEC"), 0, PIN_RESOLVE))
        fd = libc.syscall(SYS_OPENAT2, AT_FDCWD, b"/", how, OPEN_HOW.size)
        _OPENAT2_WORKS = fd >= 0
        if fd >= 0:
            libc.close(fd)
    return _OPENAT2_WORKS


SECCOMP_SET_MODE_FILTER, PR_SET_SECCOMP = 1, 22
#: calls that install a seccomp filter of the program's own, by their first
#: argument (the filter makes exactly these stop where the broker pins opens):
#: such a filter would judge the pinned ``openat2`` too, maybe otherwise than ``openat``
FILTER_INSTALLS: dict[str, int] = {"seccomp": SECCOMP_SET_MODE_FILTER, "prctl": PR_SET_SECCOMP}


def _set_info(tid: int, op: int, nr: int, args: tuple[int, ...]) -> bool:
    """:func:`.ptrace.set_syscall_info`, in one compiled call where brokerd.tracer.accel is built."""
    if accel is None or not pt.SET_INFO_WORKS:
        return pt.set_syscall_info(tid, op, nr, args)
    if accel.set_info(tid, op, nr, args):
        return True
    pt.SET_INFO_WORKS = False  # refused as unknown: GETREGS/SETREGS from now on, as ptrace.py does
    return False


class Pin(ShimBase):
    """Pinned opens: an allowed open made as ``openat2`` of the judged real path, following no symlink."""

    def _pins_opens(self) -> bool:
        """May this session pin opens at all?  Launched under ptrace with
        stable arguments, ``openat2`` working, and the broker's own filter
        letting it run (a stop, or allowed with no argument rule)."""
        if self._pin_ok is None:
            what, _ = self.stack_action("openat2")
            self._pin_ok = (self.backend == "ptrace" and self.stable_args and not self.attached
                            and (what == "trace" or what == "allow" and not self.stack.guards("openat2"))
                            and openat2_works())
        return self._pin_ok

    def _may_pin(self, t: _Thread, abi: Abi) -> bool:
        """May this call of thread ``t`` be pinned?  A 64-bit call, of a
        process known to have no seccomp filter of its own (a forked child
        counts once its parent's fork event has told whose filters it has)."""
        if abi.name != "x86_64" or t.tgid in self._own_filters or not (self._pin_ok or self._pins_opens()):
            return False
        if t.tgid == self.main_pid:
            return True
        leader = self.threads.get(t.tgid)
        return leader is not None and leader.announced

    def _note_filter(self, t: _Thread, name: str, rawargs: Sequence[int]) -> None:
        """A ``seccomp``/``prctl`` call installing a filter: no more pinned
        opens in this process (nor in what it forks afterwards)."""
        op = FILTER_INSTALLS.get(name)
        if op is not None and rawargs[0] & 0xFFFFFFFF == op:
            self._own_filters.add(t.tgid)

    def _pin_open(self, t: _Thread, d: Decision) -> str:
        """Make the judged open ``openat2(AT_FDCWD, REALPATH, &how, sizeof how)``
        from the read-only scratch region: nothing is left to check at exit.
        "pinned": the caller resumes it; "resumed": pinned and resumed in one
        compiled call (brokerd.tracer.accel; the caller has nothing left to
        do); "wait": the region is being made or every slot is held (the call
        comes back to :meth:`_apply_entry`)."""
        pin, abi = t.pin, t.abi
        assert pin is not None and abi is not None
        region = self._regions.get(t.tgid)
        if region is None:
            self._inject_region(t, pt.getregs(t.tid, self._regs), d)
            return "wait"
        off = region.slots.get(t.tid)  # (its slot, held since its first one: no call to take it)
        if off is None:
            how_at = region.slot(t.tid)  # one write: how, then the path
            if how_at is None:
                t.state = "slotwait"
                self._slot_waiters.append(t)
                return "wait"
            off = how_at - region.addr
        else:
            how_at = region.addr + off
        t.verify = None  # the kernel follows no symlink: what it opens is the judged path
        own = t.raw
        if accel is not None and pt.SET_INFO_WORKS and not self._detaching and len(own) == 6:
            args = accel.pin_open(t.tid, region.view, off, how_at, pin, own)  # (None: no SET_SYSCALL_INFO)
            if args is not None:  # written, made openat2, resumed; _repointed and _mark_run written out:
                assert t.spec is not None  # two Python calls of every pinned open
                t.repointed = (abi.arg_regs, args, own, SYS_OPENAT2, t.spec.nr | abi.nr_bit)
                t._state = RUN  # (a move to RUN is always in states.MOVES: the property's check skipped)
                self._resume_count = n = self._resume_count + 1
                t.resumed = n
                t.running = True
                return "resumed"
        region.write(how_at, pin)
        self._repoint(t, abi, SYS_OPENAT2, (_AT_FDCWD_REG, how_at + HOW_ROOM, how_at, _HOW_SIZE))
        return "pinned"

    def _repointed(self, t: _Thread, abi: Abi, nr: int, args: tuple[int, ...]) -> None:
        """Keep in ``t.repointed`` that the call at its seccomp stop was made
        ``nr`` with ``args`` instead of its own values (``t.raw``)."""
        assert t.spec is not None  # kept as a tuple: the dict (thread.changed_regs) only at a signal
        t.repointed = (abi.arg_regs, args, t.raw, nr, t.spec.nr | abi.nr_bit)

    def _repoint(self, t: _Thread, abi: Abi, nr: int, args: tuple[int, ...]) -> None:
        """Make the call thread ``t`` is stopped at (its seccomp stop) call
        ``nr`` with ``args`` (its other arguments as they were), and keep in
        ``t.repointed`` what was changed from what (signals.py puts the
        program's own values back if a signal restarts the call).  One
        PTRACE_SET_SYSCALL_INFO where the kernel has it (6.16+): the program's
        values are the stop's own (``t.raw``, the call's number), so no
        GETREGS is needed; GETREGS + SETREGS otherwise."""
        own = t.raw
        if len(own) == 6 and _set_info(t.tid, pt.INFO_SECCOMP, nr, args + own[len(args):]):
            self._repointed(t, abi, nr, args)
            return
        regs = pt.getregs(t.tid, self._regs)
        new = dict(zip(abi.arg_regs, args, strict=False))
        new["orig_rax"] = nr
        t.repointed = {name: (v, getattr(regs, name)) for name, v in new.items()}
        for name, v in new.items():
            setattr(regs, name, v)
        pt.setregs(t.tid, regs)
