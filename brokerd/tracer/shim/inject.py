"""Region injection: memfd_create, mmap and close made by the tracee on the shim's behalf."""

from __future__ import annotations

import ctypes
import errno as E
import os
import signal
from collections.abc import Sequence

from brokerd.decision.stack import Decision

from .. import ptrace as pt
from .. import scratch
from ..scratch import MEMFD_NAME, MFD_ALLOW_SEALING, MFD_CLOEXEC, Region, adopt, mapped_in
from .base import ShimBase
from .consts import (
    INJECT_ARG,
    MAP_32BIT,
    MASK64,
    nonce_parts,
)
from .thread import _Thread


class Inject(ShimBase):
    """Region injection: memfd_create, mmap and close made by the tracee on the shim's behalf."""

    # -- injection: a few syscalls the tracee makes on the shim's behalf --------
    def _inject_region(self, t: _Thread, regs: pt.Regs, d: Decision | None) -> None:
        """Create the scratch region in the tracee: memfd_create (the shim
        takes and seals it), mmap it read-only and shared, close the fd; then
        rewind so the interrupted call runs again and gets decision ``d``."""
        assert t.abi is not None
        self._set_exec_events(t, True)  # its exec must drop the region (single-threaded, or it has it)
        saved = pt.Regs()
        ctypes.memmove(ctypes.addressof(saved), ctypes.addressof(regs), ctypes.sizeof(regs))
        t.saved_regs = saved
        t.replay = d
        if d is not None:  # its decision is for this very call (checked in _on_entry)
            info = pt.get_syscall_info(t.tid, pt.SyscallInfo())
            u = info.u.seccomp if info.op == pt.INFO_SECCOMP else info.u.entry
            t.replay_key = (info.arch, u.nr, tuple(u.args), info.instruction_pointer)
        t.state = "inject"
        self._hold_signals(t)
        # the memfd's name, briefly on the stack well below the red zone
        name_at = (saved.rsp - 4096) & ~15
        pt.write_memory(t.tid, name_at, MEMFD_NAME.encode() + b"\0")
        t.inject = [self._injected_memfd, self._injected_mmap, self._injected_close]
        self._set_call(t, regs, t.abi.nr("memfd_create"), (name_at, MFD_CLOEXEC | MFD_ALLOW_SEALING))
        self._to_exit_stop(t)

    def _set_call(self, t: _Thread, regs: pt.Regs, nr: int, args: tuple[int, ...]) -> None:
        assert t.abi is not None
        names = t.abi.arg_regs
        mask = t.abi.reg_mask
        for name, v in zip(names, args, strict=False):
            setattr(regs, name, v & mask)
        if len(args) <= INJECT_ARG:  # memfd_create, close: the nonce passes the program's static rules
            # in one register, or in two halves where registers are 32 bits wide
            for i, part in enumerate(nonce_parts(self._inject_nonce, t.abi.reg_bits)):
                setattr(regs, names[INJECT_ARG + i], part)
        regs.orig_rax = nr
        pt.setregs(t.tid, regs)
        t.inject_call = (nr, tuple(getattr(regs, name) & mask for name in names))

    def _hold_signals(self, t: _Thread) -> None:
        """Block every signal of a thread the shim injects calls into.  Between
        two injected calls the thread passes through user mode: a handler run
        there would be program code in the injection, its calls taken for
        ours.  Pending signals wait, with their siginfo, until
        :meth:`_release_signals`: when the interrupted call is back, or done."""
        if t.saved_mask is None:
            t.saved_mask = pt.getsigmask(t.tid)
            pt.setsigmask(t.tid, MASK64)

    def _release_signals(self, t: _Thread) -> None:
        """The thread's own signal mask again (pending signals are delivered as natively)."""
        if t.saved_mask is not None:
            mask, t.saved_mask = t.saved_mask, None
            pt.setsigmask(t.tid, mask)

    def _injected_entry(self, t: _Thread, nr: int, args: Sequence[int]) -> None:
        """An entry of a thread mid-injection: it must be the call the shim
        set.  Anything else is the program's own code (rewritten under the
        stopped call by another thread): it would run unjudged, so its
        process is killed (fail closed)."""
        assert t.abi is not None
        mask = t.abi.reg_mask
        if (nr, tuple(a & mask for a in args)) != t.inject_call:
            self._log(f"pid {t.tgid}: made another call than the one the broker injected (its code was changed "
                      "under it): killed")
            os.kill(t.tgid, signal.SIGKILL)
            return
        self._to_exit_stop(t)

    def _next_call(self, t: _Thread, nr: int, args: tuple[int, ...]) -> None:
        """From an exit stop: run one more syscall at the same instruction."""
        assert t.saved_regs is not None
        regs = pt.Regs()
        ctypes.memmove(ctypes.addressof(regs), ctypes.addressof(t.saved_regs), ctypes.sizeof(regs))
        regs.rip -= 2  # syscall and int $0x80 are both 2 bytes
        regs.rax = nr
        self._set_call(t, regs, nr, args)
        self._to_exit_stop(t)

    def _injected_memfd(self, t: _Thread, rval: int, failed: bool) -> None:
        if failed:
            self._inject_failed(t, f"memfd_create: {os.strerror(-rval)}")
            return
        t.inject_fd = rval
        try:
            view, ident = adopt(t.tid, rval)
        except OSError as e:
            self._inject_failed(t, f"cannot take the scratch memfd ({e.strerror}; the broker needs its tracee's "
                                   "/proc/PID/fd, and --no-stable-args would do without the region, unsafely)")
            return
        t.saved_view = view
        t.region_ident = ident
        assert t.abi is not None
        self._map_region(t, MAP_32BIT if t.abi.ptr_bytes == 8 else 0)

    def _map_region(self, t: _Thread, low: int) -> None:
        """mmap(PROT_READ, MAP_SHARED) the memfd in the tracee; in a 64-bit
        process below 2 GiB (MAP_32BIT) when it can be, so the stable copies
        are within reach of 32-bit pointers (``int $0x80`` calls)."""
        assert t.abi is not None
        t.map_flags = low
        self._next_call(t, t.abi.nr(t.abi.mmap_call), (0, scratch.REGION_SIZE, 1, 1 | low, t.inject_fd, 0))

    def _injected_mmap(self, t: _Thread, rval: int, failed: bool) -> None:
        view = t.saved_view
        assert view is not None
        if failed and t.map_flags:  # no room below 2 GiB: anywhere will do for 64-bit calls
            t.inject.insert(0, self._injected_mmap)
            self._map_region(t, 0)
            return
        if failed:
            view.close()
            self._inject_failed(t, f"mmap of the scratch region: {os.strerror(-rval)}")
            return
        assert t.abi is not None
        region = Region(rval & t.abi.reg_mask, view, ident=t.region_ident)
        if self.seals:  # the program's calls cannot touch it once sealed: it is the program's until then
            t.new_region = region
            t.inject.insert(0, self._injected_mseal)
            self._next_call(t, t.abi.nr("mseal"), (region.addr, region.size, 0))
            return
        self._publish_region(t, region)  # from now on the guard stops what could unmap it
        self._next_call(t, t.abi.nr("close"), (t.inject_fd,))

    def _injected_mseal(self, t: _Thread, rval: int, failed: bool) -> None:
        """The region is sealed: nothing the program calls can unmap, move or
        replace it.  Unsealed, nothing stops those calls (the filter lets them
        run when sealing works): the process cannot go on (fail closed).
        Between the mmap and the mseal another thread could have put a mapping
        of its own there, which the mseal sealed instead: the sealed range must
        be the memfd, or the process cannot go on either."""
        region, t.new_region = t.new_region, None
        assert region is not None and t.abi is not None
        if failed or not mapped_in(t.tid, region):
            why = os.strerror(-rval) if failed else "another mapping is there"
            self._log(f"pid {t.tgid}: mseal of the scratch region: {why}; killed")
            os.kill(t.tgid, signal.SIGKILL)
            return
        self._publish_region(t, region)
        self._next_call(t, t.abi.nr("close"), (t.inject_fd,))

    def _publish_region(self, t: _Thread, region: Region) -> None:
        """The region is complete (mapped, sealed where the kernel can): the
        process's calls may use it, and a child forked by a thread let run
        from now on inherits it (see Stops._inherit_region)."""
        region.ready = self._resume_count
        self._regions[t.tgid] = region

    def _injected_close(self, t: _Thread, rval: int, failed: bool) -> None:
        # signals stay blocked until the interrupted call stops again (_on_status):
        # a handler run on the way back would get that call's decision (t.replay)
        saved = t.saved_regs
        assert saved is not None
        t.saved_regs = None
        saved.rip -= 2  # back onto the interrupted call, which stops again and gets its decision
        saved.rax = saved.orig_rax
        t.state = "run"
        pt.setregs(t.tid, saved)
        self._resume(t.tid)

    def _inject_failed(self, t: _Thread, why: str) -> None:
        """No scratch memory: the interrupted call fails (EPERM) rather than
        run with arguments the broker could not make stable."""
        saved = t.saved_regs
        assert saved is not None
        self._log(f"pid {t.tgid}: {why}; the call fails with EPERM")
        t.saved_regs = None
        t.replay = None
        t.inject = []
        saved.rax = (-E.EPERM) & MASK64
        t.state = "run"
        pt.setregs(t.tid, saved)
        self._release_signals(t)  # the call is over: not run again
        self._resume(t.tid)
