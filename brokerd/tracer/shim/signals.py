"""Signals: those to the program, asked of the authorizers that subscribed to
them; those to the broker (Ctrl-C, Ctrl-Z, SIGTERM), forwarded or followed."""

from __future__ import annotations

import os
import signal
import time
from functools import partial

from brokerd.protocol.types import (
    Deliver,
    Kill,
    Reply,
    SignalEvent,
    Suppress,
)

from .. import ptrace as pt
from .base import ShimBase
from .consts import FORWARDED_SIGNALS, MASK64, SI_USER, TERMINAL_SIGNALS, TTY_STOP_SIGNALS
from .thread import _Thread, changed_regs

#: ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND: the kernel runs the call again with the
#: registers it then has (ERESTART_RESTARTBLOCK runs restart_syscall instead)
RESTARTING = frozenset({512, 513, 514})


class Signals(ShimBase):
    """Signals to the program and to the broker."""

    def _on_broker_signal(self, signo: int, code: int) -> None:
        """A signal to the broker itself (the loop's ``on_signal``; SIGCHLD goes to _reap)."""
        if signo in TTY_STOP_SIGNALS:
            # Ctrl-Z: the program got it too; follow it into the stop
            self._tty_stop = not self.attached
            self._maybe_stop_self()
        elif self.attached:
            self.leave(signo in FORWARDED_SIGNALS)
        elif not self.main_pid:  # no program yet: nothing may start (launch.greet, the cli)
            self.loop.stop_signal = self.loop.stop_signal or signo
        elif signo in FORWARDED_SIGNALS or (signo in TERMINAL_SIGNALS and code == SI_USER):
            self._forward(signo)

    def _forward(self, signo: int) -> None:
        """A signal sent to the broker goes to the program; once the main
        process is over, to every traced process left (the broker waits for
        them, like strace -f), so SIGTERM still ends the session."""
        targets = [self.main_pid] if self.main_status is None else sorted({t.tgid for t in self.threads.values()})
        for pid in targets:
            try:
                os.kill(pid, signo)
            except ProcessLookupError:
                pass

    def _on_signal(self, t: _Thread, sig: int) -> None:
        if t.repointed is not None and t.state != "inject":
            self._unpoint_restart(t)
        if t.state == "inject":  # mid-injection: deliver as is, keep catching our calls' exits
            self._mark_run(t)
            pt.syscall(t.tid, sig)
            return
        if not self._signal_order:
            self._resume(t.tid, sig)
            return
        ev_id = self._next_id
        self._next_id += 1
        ev = SignalEvent(ev_id, t.tgid, t.tid, sig)
        t.state = "ask"
        t.t0 = time.monotonic()
        self._ask_signal(t, ev, 0, sig)

    def _unpoint_restart(self, t: _Thread) -> None:
        """A signal interrupted the call the broker had pointed at its scratch
        slot (a stable copy, a rewrite, a pinned open), and the kernel will
        run that call again (``-ERESTART*``) after the handler, with the
        registers as they are: by then the handler's own judged calls may
        have filled the slot with their bytes, and the call would run with
        them (an open of a FIFO returned the handler's file).  The program's
        own registers go back instead, so the call comes back as the program
        made it, stops and is judged again, as natively it simply runs again."""
        repointed, t.repointed = t.repointed, None
        assert repointed is not None
        changed = changed_regs(repointed)
        regs = pt.getregs(t.tid, self._regs)
        if (-regs.rax) & MASK64 not in RESTARTING or any(getattr(regs, n) != v for n, (v, _) in changed.items()):
            return  # not our call, or not to be restarted
        for name, (_, own) in changed.items():
            setattr(regs, name, own)
        pt.setregs(t.tid, regs)

    def _ask_signal(self, t: _Thread, ev: SignalEvent, i: int, sig: int) -> None:
        if i == len(self._signal_order):
            t.state = "run"
            self._resume(t.tid, sig)
            return
        pos = self._signal_order[i]
        ev = ev if ev.signo == sig else SignalEvent(ev.id, ev.pid, ev.tid, sig)
        marker = object()
        t.walk = marker  # type: ignore[assignment]

        def answer(reply: Reply, reason: str) -> None:
            if t.walk is not marker or self.threads.get(t.tid) is not t:
                return
            v = reply.verdict
            if isinstance(v, Kill):
                t.state, t.walk = "run", None
                os.kill(t.tgid, signal.SIGKILL)
            elif isinstance(v, Suppress):
                t.state, t.walk = "run", None
                self._resume(t.tid, 0)
            else:
                new = v.signo if isinstance(v, Deliver) and v.signo else sig
                self._ask_signal(t, ev, i + 1, new)

        self.stack[pos].ask(ev, partial(self._answered, t, answer), time.monotonic())
