"""Rewrites: the decided call into the registers, its memory arguments into the scratch region."""

from __future__ import annotations

import errno as E
from collections.abc import Sequence

from brokerd.decision.stack import Decision
from brokerd.protocol.args import (
    Encoded,
    encode_args,
)
from brokerd.protocol.types import (
    Str,
    Struct,
)

from .. import ptrace as pt
from ..scratch import Region
from .base import ShimBase
from .consts import (
    ARG_REGS_32,
    ARG_REGS_64,
    MASK64,
    STABLE_KINDS,
)
from .thread import _Thread


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
            judged = [(i, v) for i, (k, v) in enumerate(zip(spec.args, d.call.args, strict=False))
                      if k in STABLE_KINDS and type(v) is Str]
            if any(v.total is not None for _, v in judged):
                # longer than PATH_MAX: only a prefix was judged; the kernel would refuse it anyway
                return self._refuse(t, d, E.ENAMETOOLONG)
            blobs = [(i, v.data + b"\0") for i, v in judged]
            socks = [i for i, k in enumerate(spec.args[: len(d.call.args)]) if k.startswith("sockaddr:")
                     and type(d.call.args[i]) is Struct]
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
        regs = pt.getregs(t.tid, self._regs)
        if blobs:
            region = self._regions.get(t.tgid)
            if region is None:
                self._inject_region(t, regs, d)
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
        names = ARG_REGS_32 if t.abi.name == "i386" else ARG_REGS_64
        for name, v in zip(names, values, strict=False):
            setattr(regs, name, v & MASK64)
        regs.orig_rax = spec.nr | t.abi.nr_bit
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
