"""A stepped call's result (sysret) walked back through those who stepped."""

from __future__ import annotations

import os
import signal
import time
from functools import partial

from brokerd.decision.stack import ExitWalk, VerdictError
from brokerd.protocol.args import (
    decode_outbufs,
    decode_result,
)
from brokerd.protocol.types import (
    Cont,
    Fail,
    Kill,
    Ok,
    Reply,
    SysretEvent,
)

from .. import ptrace as pt
from .base import ShimBase
from .consts import MASK64
from .thread import _Thread


class ExitWalker(ShimBase):
    """A stepped call's result (sysret) walked back through those who stepped."""

    def _sysret(self, t: _Thread, rval: int) -> None:
        """At the exit stop of a stepped call: its ``sysret`` goes back through
        those who stepped (also for a call the broker undid: they hear EACCES)."""
        assert t.decision is not None and t.spec is not None and t.abi is not None
        result = decode_result(t.spec, rval)
        self._mem.pid = t.tid
        try:
            outs = decode_outbufs(t.spec, t.raw, rval, self._mem, self.strsize)
        except OSError:
            outs = ()
        notes = tuple((f"buf{i + 1}", v) for i, v in outs)
        ev = SysretEvent(t.event_id, t.tgid, t.tid, t.abi.name, t.spec.name, result, notes)
        t.state = "ret"
        t.walk = ExitWalk(ev, t.decision.steppers)
        self._advance_exit(t, t.walk)

    def _after_skip(self, t: _Thread) -> None:
        """Exit stop of a skipped call (attach mode): make sure the value stands."""
        d = t.decision
        t.state = "run"
        if d is not None and d.action in ("skip-fail", "skip-ok"):
            regs = pt.getregs(t.tid, self._regs)
            regs.rax = (-d.value if d.action == "skip-fail" else d.value) & MASK64
            pt.setregs(t.tid, regs)
        self._resume(t.tid)

    def _advance_exit(self, t: _Thread, walk: ExitWalk) -> None:
        nxt = walk.next()
        if nxt is None:
            t.walk = None
            self._apply_exit(t, walk)
            return
        pos, ev = nxt
        self.stack[pos].ask(ev, partial(self._answered, t, partial(self._on_exit_answer, t, walk, pos)), time.monotonic())

    def _on_exit_answer(self, t: _Thread, walk: ExitWalk, pos: int, reply: Reply, reason: str) -> None:
        if t.walk is not walk or self.threads.get(t.tid) is not t:
            return
        if reason:
            self._log(f"{reason}: the result of {walk.event.name} is kept (pid {t.tgid})")
        try:
            self._check_sets(t, reply.sets)
            walk.feed(reply.verdict, reply.sets)
        except VerdictError as e:
            self.stack[pos].report_error(e.code, str(e))
            walk.feed(Cont(), ())
        self._advance_exit(t, walk)

    def _apply_exit(self, t: _Thread, walk: ExitWalk) -> None:
        result = walk.result
        t.state = "run"
        if isinstance(result, Kill):
            os.kill(t.tgid, signal.SIGKILL)
            return
        for s in walk.sets:
            self._set_memory(t, s)
        if result != walk.event.result:
            regs = pt.getregs(t.tid, self._regs)
            if isinstance(result, Fail):
                regs.rax = (-result.errno) & MASK64
            elif isinstance(result, Ok):
                regs.rax = result.value.value & MASK64
            pt.setregs(t.tid, regs)
        self._resume(t.tid)
