"""Stable arguments and the check at exit: what the kernel runs is what was judged."""

from __future__ import annotations

import ctypes
import errno as E
import os
from collections.abc import Callable, Sequence
from typing import Any

from brokerd.decision.stack import Decision
from brokerd.protocol.abi import Abi, SyscallSpec
from brokerd.protocol.args import SOCKADDR_MAX
from brokerd.protocol.types import (
    Call,
    Str,
)

from .. import ptrace as pt
from ..guard import OWNER_MEMORY, owner_form
from ..resolve import plain_ident, plain_ident_at, resolve
from ..scratch import Region
from .base import ShimBase
from .consts import (
    CLONE_ARGS_SIZES,
    CLONE_UNTRACED,
    MAP_FIXED,
    MASK64,
    MREMAP_FIXED,
    MSGHDR,
    O_CREAT,
    O_TMPFILE_BIT,
    OLD_MMAP_ARGS,
    OPEN_CALLS,
    OPEN_HOW_SIZES,
    SHM_REMAP,
    WRITES_AT_OPEN,
)
from .entry import _absolute
from .pin import CREAT_FLAGS, PIN_ARGS, Pinned, follows, pinned, pinned_path, plain_pin
from .thread import _Thread


def names_a_directory(path: bytes) -> bool:
    """Does ``path``'s spelling require a directory (a trailing slash, or a
    last component ``.`` or ``..``)?"""
    return path.endswith((b"/", b"/.", b"/..")) or path in (b".", b"..")


def _maps_over(r: Region, a: tuple[int, ...]) -> bool:
    return bool(a[3] & MAP_FIXED) and r.covers(a[0], a[1])


#: per call of the ``remap`` class: do these arguments (registers, or the
#: copied struct of i386's old mmap) unmap, move or replace part of region r?
REGION_HITS: dict[str, Callable[[Region, tuple[int, ...]], bool]] = {
    "munmap": lambda r, a: r.covers(a[0], a[1]),
    "remap_file_pages": lambda r, a: r.covers(a[0], a[1]),
    "mremap": lambda r, a: r.covers(a[0], a[1]) or bool(a[3] & MREMAP_FIXED) and r.covers(a[4], a[2]),
    "mmap": _maps_over,
    "mmap2": _maps_over,
    "shmat": lambda r, a: bool(a[2] & SHM_REMAP) and a[1] < r.addr + r.size,
}


#: ``t.verify`` of an open whose judged path is gone (_judged_plain): no
#: object opened at exit is it
JUDGED_AWAY: tuple = ("inode",)

class Stable(ShimBase):
    """Stable arguments and the check at exit: what the kernel runs is what was judged."""

    def _expected_object(self, t: _Thread, spec: SyscallSpec, raw: tuple, args: tuple,
                         pin: bool = False) -> tuple:
        """Resolve the path of an open as the tracee would, once, before anyone
        judges it: (what the open must turn out to have opened, the real path
        for the ``realN`` note).  Checked again at the exit stop, so a symlink
        swapped after this snapshot cannot make the kernel open something else.
        The expectation is the inode it names or, for a path that does not
        exist yet, whatever is at that very place (in that very directory)
        when the call returns: never the target of a link put there meanwhile.
        With ``pin``, ``t.pin`` is set where the open can be pinned instead (pin.py)."""
        pidx, fidx = OPEN_CALLS[spec.name]
        v = args[pidx] if pidx < len(args) else None
        if not isinstance(v, Str) or v.truncated or not v.data:
            return None, None
        path = _absolute(t.tid, spec.args, raw, pidx, v.data)
        if path is None:
            return None, None
        exec_ = fidx == -1
        flags = 0 if exec_ else raw[fidx] if fidx is not None and fidx < len(raw) else O_CREAT
        if spec.name == "openat2":
            try:
                flags = int.from_bytes(pt.read_memory(t.tid, raw[2], 8), "little")
            except OSError:
                return None, None
        if flags & O_TMPFILE_BIT == O_TMPFILE_BIT:
            return None, None
        follow = follows(flags)
        root = b"/proc/%d/root" % t.tid
        pinnable = pinned(spec.name, raw, v.data, path) if pin else None
        at = self._roots.get(t.tid, t)
        # already its real path, if the kernel's walk meets no symlink (from a kept root
        # _pinned_notes has just asked that, in vain: resolve() below pins it if it is so now)
        if pinnable is not None and at is None:
            expect = self._pin_plain(t, pinnable, path, follow, root)
            if expect is not None:
                return expect, path
        r = resolve(root, path, t.tgid, t.tid, follow, at)  # one resolution: note and expectation agree
        if r is None:
            return None, None
        if pin:
            # an open that creates or truncates is pinned to its real path even when the path it
            # gave leads there otherwise (relative, through symlinks): the check at exit comes
            # after the kernel made or emptied whatever a swapped link led to.  Only while roots
            # are kept (``at``): after a chroot a relative path's base, read from /proc/TID/cwd,
            # is the broker's view of it, and the pin would open another file than the one asked
            # (not a path that names a directory by its spelling, "x/", "x/.": its real path drops
            # that, and the kernel would then create the file "x" where natively the open fails
            # EISDIR; such an open can neither create nor empty a file, so the check at exit holds)
            writes = flags & WRITES_AT_OPEN and at is not None and not names_a_directory(v.data)
            t.pin = pinned(spec.name, raw, r.path if writes else v.data, r.path)
        if not r.exists:
            # what will be there then: the open must have opened what is *then*
            # at the judged place, in the judged directory (not a link's target)
            parent = None
            if r.parent is not None:
                try:
                    pst = os.stat(root + r.parent)
                    parent = (pst.st_dev, pst.st_ino)
                except OSError:
                    pass
            return ("absent-exe" if exec_ else "absent", parent, root + r.path), r.path
        st = r.st
        assert st is not None  # it exists: resolve() gives its lstat
        if exec_:
            # an ELF runs as itself (/proc/PID/exe); a #! script runs its interpreter: unverifiable
            try:
                with open(root + r.path, "rb") as f:
                    elf = f.read(4) == b"\x7fELF"
                st = os.stat(root + r.path)
            except OSError:
                return None, None
            return (("exe", st.st_dev, st.st_ino) if elf else None), r.path
        return ("inode", st.st_dev, st.st_ino), r.path

    def _pinned_notes(self, t: _Thread, plan: Any, raw: tuple[int, ...], args: tuple) -> tuple | None:
        """The common judged open at once: an absolute path that is already
        its real path (canonical, no symlink on the kernel's walk from the
        thread's kept root: :func:`.pin.plain_pin`, one compiled call), to be
        pinned.  Its ``pathN`` and ``realN`` notes (the path itself: folding a
        canonical path changes nothing), with ``t.verify`` and ``t.pin`` set
        as :meth:`_expected_object` sets them for it.  None, nothing set,
        for any other open: the general path then works it out."""
        pidx, fidx, midx = PIN_ARGS[plan.spec.name]
        v = args[pidx] if pidx < len(args) else None
        # (a Str with no total is whole: the note is that very value, no copy made)
        if type(v) is not Str or v.total is not None or midx >= len(raw):
            return None
        rootfd = self._roots.get(t.tid, t)
        if rootfd is None:
            return None
        got = plain_pin(rootfd, v.data, CREAT_FLAGS if fidx is None else raw[fidx], raw[midx])
        if got is None:
            return None
        t.pin, t.verify = got
        return ((plan.paths[0][1], v), (plan.real, v))

    def _judged_plain(self, t: _Thread, plan: Any, raw: tuple[int, ...], args: tuple) -> tuple:
        """:meth:`_pinned_notes` for an open whose path the compiled question
        (ext.py) found plain and asked about as such, its answer not yet
        taken: the event must be the one asked.  When the path is plain no
        longer (a component swapped for a symlink since: looking again would
        resolve it, and check at exit against what the swap leads to, which
        nobody judged), the open is pinned to the judged path all the same:
        the kernel, following no symlink, fails it (ELOOP) while the swap
        stands, as it fails any pinned open swapped after its decision; and
        an answer that does not pin it (a rewrite, a step) finds at exit an
        object it cannot match, undone (EACCES)."""
        notes = self._pinned_notes(t, plan, raw, args)
        if notes is not None:
            return notes
        pidx, fidx, midx = PIN_ARGS[plan.spec.name]
        v = args[pidx]
        t.pin = pinned_path(CREAT_FLAGS if fidx is None else raw[fidx], raw[midx], v.data)
        t.verify = JUDGED_AWAY
        return ((plan.paths[0][1], v), (plan.real, v))

    def _pin_plain(self, t: _Thread, pin: Pinned, path: bytes, follow: bool, root: bytes | None) -> tuple | None:
        """Pin the open (``t.pin``) if the kernel's walk of ``path`` from the
        thread's kept root (else ``root``; None: no pin without a kept root)
        meets no symlink: what it must open, or None (nothing set)."""
        at = self._roots.get(t.tid, t)
        if at is not None:
            ident = plain_ident_at(at, path, follow)
        elif root is not None:
            ident = plain_ident(root, path, follow)
        else:
            return None
        if ident is None:
            return None
        t.pin = pin
        return ("inode", *ident)

    def _opened_expected(self, t: _Thread, fd: int, expect: tuple) -> bool:
        """Is descriptor ``fd`` (or, for an exec, the new program) the very
        object the judged path named when it was resolved?"""
        try:
            if expect[0] in ("exe", "absent-exe"):
                st = os.stat(f"/proc/{t.tid}/exe")
            else:
                st = os.stat(f"/proc/{t.tid}/fd/{fd}")
            if expect[0] in ("absent", "absent-exe"):  # created, or appeared meanwhile: what is now at that place?
                _, parent, where = expect
                if parent is None:
                    return False  # not even its directory existed when judged
                dst = os.stat(os.path.dirname(where))
                ent = os.lstat(where)
                return (dst.st_dev, dst.st_ino) == parent and (ent.st_dev, ent.st_ino) == (st.st_dev, st.st_ino)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == expect[1:]

    def _undo_open(self, t: _Thread, fd: int) -> None:
        """Close the descriptor the open returned (in the tracee) and make the
        call fail with EACCES instead."""
        assert t.abi is not None
        regs = pt.getregs(t.tid, self._regs)
        saved = pt.Regs()
        ctypes.memmove(ctypes.addressof(saved), ctypes.addressof(regs), ctypes.sizeof(regs))
        t.saved_regs = saved
        t.undo_step = t.state == "step"
        t.state = "inject"
        self._hold_signals(t)
        t.inject = [self._undone]
        self._next_call(t, t.abi.nr("close"), (fd,))

    def _undone(self, t: _Thread, rval: int, failed: bool) -> None:
        saved = t.saved_regs
        assert saved is not None
        t.saved_regs = None
        saved.rax = (-E.EACCES) & MASK64
        t.state = "run"
        pt.setregs(t.tid, saved)
        self._release_signals(t)
        if t.undo_step:  # someone stepped this call: it hears how it ended
            t.undo_step = False
            self._sysret(t, -E.EACCES)
            return
        self._resume(t.tid)

    @staticmethod
    def _read_exact(t: _Thread, addr: int, size: int) -> bytearray:
        """``size`` bytes of ``t``'s memory at ``addr``; empty when not all can be read."""
        try:
            got = pt.read_memory(t.tid, addr, size)
        except OSError:
            return bytearray()
        return bytearray(got) if len(got) == size else bytearray()

    def _hits_region(self, t: _Thread, name: str, a: tuple[int, ...]) -> bool:
        """Would this call unmap, move or replace (part of) the scratch region?"""
        hits = REGION_HITS.get(name)
        return hits is not None and hits(self._regions[t.tgid], a)

    def _guard_region(self, t: _Thread, abi: Abi, spec: SyscallSpec,
                      rawargs: Sequence[int]) -> Sequence[int] | None:
        """A call that may unmap, move or replace mappings, in a process with
        a scratch region: denied (EPERM) where it would reach the region.
        i386's old mmap takes its six arguments in a struct in memory, which
        another thread could change after the check: the struct is copied into
        the thread's read-only slot first, the call pointed at the copy and
        the copy checked.  Returns the arguments the call runs with, or None
        when it was answered."""
        args = tuple(a & abi.reg_mask for a in rawargs)
        if spec.args == OLD_MMAP_ARGS:
            copied = self._stable_struct(t, abi, spec.name, args[0], 6 * abi.ptr_bytes)
            if copied is None:
                return None
            where, blob = copied
            rawargs = (where, *args[1:])
            n = abi.ptr_bytes
            args = tuple(int.from_bytes(blob[i:i + n], "little") for i in range(0, len(blob), n))
        if self._hits_region(t, spec.name, args):
            t.raw = ()
            self._log(f"pid {t.tgid}: {spec.name} over the broker's read-only scratch memory: denied")
            self._apply_entry(t, Decision("skip-fail", Call(spec.name), E.EPERM))
            return None
        return rawargs

    def _stable_struct(self, t: _Thread, abi: Abi, name: str, addr: int, size: int) -> tuple[int, bytes] | None:
        """Copy ``size`` bytes at ``addr`` (the struct call ``name`` takes as
        its first argument) into the thread's scratch slot and point that
        argument at the copy: (the copy's address, its bytes).  None: the call
        was answered (EFAULT as natively when unreadable, EAGAIN when every
        slot is held)."""
        region = self._regions[t.tgid]
        try:
            blob = pt.read_memory(t.tid, addr, size)
        except OSError:
            blob = b""
        where = region.reserve(t.tid, [size]) if len(blob) == size else None
        if where is None or region.beyond(where, abi.ptr_bytes):
            t.raw = ()
            self._apply_entry(t, Decision("skip-fail", Call(name), E.EAGAIN if where is None and len(blob) == size
                                          else E.EFAULT))
            return None
        region.write(where[0], blob)
        regs = pt.getregs(t.tid, self._regs)
        setattr(regs, abi.arg_regs[0], where[0])
        pt.setregs(t.tid, regs)
        return where[0], blob

    def _strip_untraced(self, t: _Thread, abi: Abi, rawargs: Sequence[int]) -> Sequence[int]:
        """clone(CLONE_UNTRACED) would create a child no tracer follows: clear
        the flag (it is in a register, so no other thread can race us)."""
        flags = rawargs[0]
        if not flags & CLONE_UNTRACED:
            return rawargs
        regs = pt.getregs(t.tid, self._regs)
        first = abi.arg_regs[0]
        setattr(regs, first, getattr(regs, first) & ~CLONE_UNTRACED)
        pt.setregs(t.tid, regs)
        return (flags & ~CLONE_UNTRACED, *tuple(rawargs)[1:])

    @property
    def _copies_clone3(self) -> bool:
        """clone3 runs (on a stable copy) only where the shim has a region."""
        return self.backend == "ptrace" and self.stable_args

    def _stable_clone3(self, t: _Thread, abi: Abi, rawargs: Sequence[int]) -> Sequence[int] | None:
        """clone3's flags are in memory another thread can change after any
        check: copy its struct clone_args once into the thread's read-only
        scratch slot, without CLONE_UNTRACED, and point the call (and what the
        authorizers are shown) at the copy.  Returns the new arguments, or
        None when the call was answered or a region is being injected."""
        mask = abi.reg_mask
        size = rawargs[1] & mask
        if size not in CLONE_ARGS_SIZES:
            return rawargs  # EINVAL/E2BIG from the kernel, as natively; size is a register

        def untraced(blob: bytearray) -> None:
            flags = int.from_bytes(blob[:8], "little") & ~CLONE_UNTRACED
            blob[:8] = flags.to_bytes(8, "little")

        # no free slot (every one held by a live thread): libc falls back to clone
        return self._stable_copy(t, abi, "clone3", rawargs, 0, size, E.ENOSYS, untraced)

    def _stable_owner(self, t: _Thread, abi: Abi, name: str, rawargs: Sequence[int]) -> Sequence[int] | None:
        """An owner command whose owner is in memory (F_SETOWN_EX, a socket's
        FIOSETOWN/SIOCSPGRP): the guard judges a read-only copy the call then
        uses, so another thread cannot name another process after the check."""
        form = owner_form(name, rawargs)
        if form not in OWNER_MEMORY:
            return rawargs
        return self._stable_copy(t, abi, name, rawargs, 2, OWNER_MEMORY[form], E.EAGAIN)

    def _stable_open_how(self, t: _Thread, abi: Abi, rawargs: Sequence[int]) -> Sequence[int] | None:
        """openat2's ``struct open_how`` (flags, mode, resolve) is in memory:
        a policy judging its flags (a write, O_CREAT) read them there, and
        another thread could change them before the kernel did (a denied
        O_WRONLY opened 125 times in 3000).  Copied once, at the slot's end
        (the path's copy goes to its start at the verdict), before anyone
        judges it; the call, the guard and the authorizers all read the copy."""
        size = rawargs[3] & abi.reg_mask
        if size not in OPEN_HOW_SIZES:
            return rawargs  # EINVAL/E2BIG from the kernel before it reads anything, as natively
        return self._stable_copy(t, abi, "openat2", rawargs, 2, size, E.EAGAIN, tail=True)

    def _stable_msghdr(self, t: _Thread, abi: Abi, rawargs: Sequence[int],
                       name: str = "sendmsg") -> Sequence[int] | None:
        """sendmsg's destination (``msg_name``, and whether there is one) is
        behind a pointer in a ``struct msghdr`` in memory, which a policy
        reads (the network policy) and another thread could re-point or
        change before the kernel reads it (633 datagrams of 3000 reached a
        denied port).  The msghdr and the sockaddr it names are copied once
        into the read-only slot, the copy's ``msg_name`` pointed at the
        sockaddr's copy, before anyone judges it.  The payload (``msg_iov``)
        and ``msg_control`` stay where they are, as a write's buffer does."""
        size, namelen_at = MSGHDR[abi.ptr_bytes]
        width = abi.ptr_bytes

        def msg_name(blob: bytearray) -> tuple[int, int, int] | None:
            name = int.from_bytes(blob[:width], "little")
            namelen = int.from_bytes(blob[namelen_at:namelen_at + 4], "little", signed=True)
            # NULL: no address; a negative length: EINVAL before any read; a longer one is read as 128
            return (0, width, min(namelen, SOCKADDR_MAX)) if name and namelen > 0 else None

        return self._stable_copy(t, abi, name, rawargs, 1, size, E.EAGAIN, inner=msg_name)

    def _stable_mmsghdr(self, t: _Thread, abi: Abi, rawargs: Sequence[int]) -> Sequence[int] | None:
        """sendmmsg's destinations are behind pointers in an array of ``struct
        mmsghdr``, as sendmsg's (:meth:`_stable_msghdr`); a read-only copy of
        the array cannot be the call's, because the kernel writes each sent
        message's ``msg_len`` back into it.  So the call sends the first
        message only, as ``sendmsg`` of its msghdr's copy (sendmmsg may send
        fewer than asked: callers send the rest again), and at its exit stop
        the shim writes the byte count into the program's own ``msg_len`` and
        makes the result 1 (:meth:`_sent_one`).  Only where the broker's filter
        lets that sendmsg run (else the call is judged as it is)."""
        sendmsg = abi.by_name.get("sendmsg")
        if rawargs[2] & 0xFFFFFFFF == 0 or sendmsg is None or not self._runs_rewritten("sendmsg"):
            return rawargs  # nothing to send: 0 at once, as natively
        size = MSGHDR[abi.ptr_bytes][0]
        copied = self._stable_msghdr(t, abi, rawargs, "sendmmsg")
        if copied is None:
            return None
        own = tuple(rawargs)
        new = (copied[0], copied[1], own[3] & abi.reg_mask)  # sendmsg(fd, &copy, flags)
        nr = sendmsg.nr | abi.nr_bit
        regs = pt.getregs(t.tid, self._regs)
        names = abi.arg_regs
        changed = {names[0]: (new[0], own[0]), names[1]: (new[1], own[1]), names[2]: (new[2], own[2]),
                   "orig_rax": (nr, regs.orig_rax)}
        for reg, (v, _) in changed.items():
            setattr(regs, reg, v & MASK64)
        pt.setregs(t.tid, regs)
        t.sent_one = ((own[1] & abi.reg_mask) + size, changed)
        return (copied[0], copied[1], 1, *own[3:])  # what the authorizers judge: one message, the copy

    def _runs_rewritten(self, name: str) -> bool:
        """Does the broker's filter let call ``name`` run when a stopped call
        is made that call (seccomp checks the changed call again): a stop, or
        allowed with no argument rule?"""
        what, _ = self.stack_action(name)
        return what == "trace" or what == "allow" and not self.stack.guards(name)

    def _sent_one(self, t: _Thread, rval: int) -> int:
        """At the exit stop of a sendmmsg made sendmsg of its first message
        (:meth:`_stable_mmsghdr`): the byte count into the program's
        ``msg_len``, 1 as the result; an error as it is (nothing was sent).
        Returns the result the call now has."""
        assert t.sent_one is not None
        at = t.sent_one[0]
        t.sent_one = None
        if rval < 0:
            return rval
        try:
            pt.write_user(t.tid, at, (rval & 0xFFFFFFFF).to_bytes(4, "little"))
            result = 1
        except OSError:
            result = -E.EFAULT  # the kernel's put_user faults too: no message counted
        regs = pt.getregs(t.tid, self._regs)
        regs.rax = result & MASK64
        pt.setregs(t.tid, regs)
        return result

    def _stable_copy(self, t: _Thread, abi: Abi, name: str, rawargs: Sequence[int], argi: int, size: int,
                     no_slot: int, patch: Callable[[bytearray], None] | None = None, tail: bool = False,
                     inner: Callable[[bytearray], tuple[int, int, int] | None] | None = None,
                     ) -> Sequence[int] | None:
        """Copy the ``size`` bytes argument ``argi`` points to once into the
        thread's read-only scratch slot (``patch`` may change the copy; at
        the slot's end with ``tail``) and point the call at it.  ``inner``
        names a pointer in the copy whose bytes are copied too, after it:
        (its offset, its width, how many bytes), the copy's pointer then
        pointed at them.  Returns the new arguments, or None when the call
        was answered (EFAULT as natively for unreadable memory, ``no_slot``
        when every slot is held) or a region is being injected (the call
        then stops again and is copied)."""
        mask = abi.reg_mask
        addr = rawargs[argi] & mask
        region = self._regions.get(t.tgid)
        if region is None:
            t.abi = abi
            self._inject_region(t, pt.getregs(t.tid, self._regs), None)
            return None
        blobs = [self._read_exact(t, addr, size)]
        at = inner(blobs[0]) if inner is not None and blobs[0] else None
        if at is not None:
            blobs.append(self._read_exact(t, int.from_bytes(blobs[0][at[0]:at[0] + at[1]], "little"), at[2]))
        if not all(blobs):  # natively the kernel's copy faults too
            t.raw = ()
            self._apply_entry(t, Decision("skip-fail", Call(name), E.EFAULT))
            return None
        blob = blobs[0]
        if patch is not None:
            patch(blob)
        where = region.reserve(t.tid, [len(b) for b in blobs], tail)
        if where is None or region.beyond(where, abi.ptr_bytes):  # (no slot; a high region, a 32-bit call)
            t.raw = ()
            self._apply_entry(t, Decision("skip-fail", Call(name), no_slot if where is None else E.EFAULT))
            return None
        if at is not None:
            blob[at[0]:at[0] + at[1]] = where[1].to_bytes(at[1], "little")
            region.write(where[1], bytes(blobs[1]))
        region.write(where[0], bytes(blob))
        regs = pt.getregs(t.tid, self._regs)
        setattr(regs, abi.arg_regs[argi], where[0])
        pt.setregs(t.tid, regs)
        return tuple(where[0] if i == argi else a for i, a in enumerate(rawargs))

