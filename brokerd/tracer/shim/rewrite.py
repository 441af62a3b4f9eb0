"""Rewrites: the decided call into the registers, its memory arguments into the scratch region."""

from __future__ import annotations

import errno as E
from collections.abc import Sequence

from brokerd.decision.stack import Decision
from brokerd.protocol.abi import SyscallSpec
from brokerd.protocol.args import (
    SOCKADDR_MAX,
    Encoded,
    encode_args,
)
from brokerd.protocol.types import (
    Ptr,
    Str,
    Struct,
)

from .. import ptrace as pt
from ..scratch import Region
from .base import ShimBase
from .consts import (
    MASK64,
    STABLE_KINDS,
)
from .thread import _Thread, read_cstr_py

#: the kernel's longest path, its NUL included (getname reads no further)
PATH_MAX = 4096


class Rewriter(ShimBase):
    """Rewrites: the decided call into the registers, its memory arguments into the scratch region."""

    def _rewrite(self, t: _Thread, d: Decision) -> bool:
        """Put the decided call in the registers, its memory arguments in the
        read-only scratch region.  For a call that was only judged
        (``d.stabilize``), just its strings and paths are copied there, so the
        kernel reads exactly what the authorizers saw."""
        assert t.abi is not None
        spec = t.abi.by_name[d.call.name]
        if d.rewritten:
            enc = encode_args(spec, d.call.args, t.raw)
            values = list(enc.regs)
            blobs = list(enc.blobs)
        else:  # judged strings go as they were shown (NUL-terminated), the rest stays
            enc = None
            values = list(t.raw) + [0] * (6 - len(t.raw))
            strs, sockaddrs = stable_positions(spec)
            args = d.call.args
            judged: list[tuple[int, Str]] = []
            for i in strs:
                a = args[i] if i < len(args) else None
                if type(a) is Str:
                    judged.append((i, a))
            err = unreadable(t.tid, spec, args, t.raw)
            if err:
                # judged as an address the broker could not read: the kernel would read what is
                # there when the call runs, which nobody judged (another thread can map it meanwhile)
                return self._refuse(t, d, err)
            if any(v.total is not None for _, v in judged):
                # longer than PATH_MAX: only a prefix was judged; the kernel would refuse it anyway
                return self._refuse(t, d, E.ENAMETOOLONG)
            blobs = [(i, v.data + b"\0") for i, v in judged]
            socks = [i for i in sockaddrs if i < len(args) and type(args[i]) is Struct]
            if socks:  # the judged address, packed again, with its own length
                enc = encode_args(spec, d.call.args, t.raw)
                for i, b in enc.blobs:
                    if i in socks:
                        blobs.append((i, b))
                        n = int(spec.args[i].split(":")[1])
                        values[n] = enc.regs[n]
                enc = None
            if not blobs:
                return True
        if blobs:
            region = self._regions.get(t.tgid)
            if region is None:
                self._inject_region(t, pt.getregs(t.tid, self._regs), d)
                return False
            sizes = [len(b) for _, b in blobs]
            if not region.fits(sizes):  # a rewrite bigger than a slot: the call fails, as an oversized one would
                return self._refuse(t, d, E.E2BIG)
            addrs = region.reserve(t.tid, sizes)
            if addrs is None:  # every slot is held by a live thread: wait for one, never kill
                t.state = "slotwait"
                self._slot_waiters.append(t)
                return False
            for (i, blob), addr in zip(blobs, addrs, strict=True):
                region.write(addr, _relocate(enc, i, blob, addr) if enc is not None else blob)
                values[i] = addr
        names = t.abi.arg_regs
        if not d.rewritten:  # the same call: only the copied pointers (and a sockaddr's length) move
            moved = {}
            for i, v in enumerate(values):
                if i >= len(t.raw) or v != t.raw[i]:
                    pt.set_reg(t.tid, names[i], v & MASK64)  # one POKEUSER each, not GETREGS+SETREGS
                    moved[names[i]] = (v & MASK64, t.raw[i] if i < len(t.raw) else 0)
            if moved:  # the call's number too, so only this very call matches (signals.py)
                nr = spec.nr | t.abi.nr_bit
                moved["orig_rax"] = (nr, nr)
            t.repointed = moved or None
            t.spec = spec
            return True
        regs = pt.getregs(t.tid, self._regs)
        new = {name: v & MASK64 for name, v in zip(names, values, strict=False)}
        new["orig_rax"] = spec.nr | t.abi.nr_bit
        t.repointed = {name: (v, getattr(regs, name)) for name, v in new.items()}
        for name, v in new.items():
            setattr(regs, name, v)
        pt.setregs(t.tid, regs)
        t.spec = spec
        return True

    def _refuse(self, t: _Thread, d: Decision, errno: int) -> bool:
        """The decided call cannot be made as judged: it fails with ``errno``."""
        regs = pt.getregs(t.tid, self._regs)
        regs.orig_rax = MASK64
        regs.rax = (-errno) & MASK64
        pt.setregs(t.tid, regs)
        d.action, d.value = "skip-fail", errno
        return True

    def _release_slots(self, region: Region, tids: Sequence[int]) -> None:
        """Threads that are gone (exit) or left the address space (exec) give
        their scratch slots back; calls waiting for a slot go on."""
        for tid in tids:
            region.release(tid)
        waiting, self._slot_waiters = self._slot_waiters, []
        for w in waiting:
            if self.threads.get(w.tid) is w and w.state == "slotwait" and w.decision is not None:
                self._on_tracee(w.tid, self._apply_entry, w, w.decision)


_STABLE: dict[int, tuple[SyscallSpec, tuple[int, ...], tuple[int, ...]]] = {}


def stable_positions(spec: SyscallSpec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The argument positions of ``spec`` whose judged bytes are copied
    into the region: (strings and paths, sockaddrs).  Worked out once per
    spec (it was a scan of the kinds on every judged call)."""
    hit = _STABLE.get(id(spec))
    if hit is None or hit[0] is not spec:
        strs = tuple(i for i, k in enumerate(spec.args) if k in STABLE_KINDS)
        socks = tuple(i for i, k in enumerate(spec.args) if k.startswith("sockaddr:"))
        hit = _STABLE[id(spec)] = (spec, strs, socks)
    return hit[1], hit[2]


def unreadable(tid: int, spec: SyscallSpec, args: Sequence[object], raw: Sequence[int]) -> int:
    """The errno for a call with a string, path or sockaddr argument the
    kernel will read that was judged as an address only (:class:`Ptr`, not
    NULL): memory the broker could not read when it decoded the call (0:
    none).  A ``cont`` must not let the kernel read it later, when another
    thread may have made it readable (``mprotect``, ``mmap``) with bytes
    nobody judged: the call fails as natively it fails on such memory,
    EFAULT, or ENAMETOOLONG for a path of PATH_MAX bytes with no NUL before
    the unreadable page (the kernel reads no further; the broker's read looks
    one byte past).  A sockaddr counts only for a length the kernel reads
    (1..128: other lengths fail with EINVAL before any read)."""
    strs, socks = stable_positions(spec)
    for i in strs:
        a = args[i] if i < len(args) else None
        if type(a) is Ptr and a.value:
            if spec.args[i] == "path":
                try:
                    _, whole = read_cstr_py(tid, a.value, PATH_MAX - 1)
                except OSError:
                    return E.EFAULT
                return E.EFAULT if whole else E.ENAMETOOLONG
            return E.EFAULT
    for i in socks:
        a = args[i] if i < len(args) else None
        if type(a) is Ptr and a.value:
            n = int(spec.args[i].split(":")[1])
            size = raw[n] & 0xFFFFFFFF if n < len(raw) else 0
            if 0 < size <= SOCKADDR_MAX:
                return E.EFAULT
    return 0


def _relocate(enc: Encoded, index: int, blob: bytes, addr: int) -> bytes:
    """Turn the blob-relative pointers of blob ``index`` (argv, iovec) into
    addresses, now that the blob's place in the tracee is known."""
    slots = [off for i, off in enc.relocs if i == index]
    if not slots:
        return blob
    out = bytearray(blob)
    size = enc.ptr_size
    for off in slots:
        rel = int.from_bytes(out[off : off + size], "little")
        out[off : off + size] = (rel + addr).to_bytes(size, "little")
    return bytes(out)
