"""A Python policy inside the broker's process: a
:class:`brokerd.clients.authorizer.Authorizer` made a stack
:class:`~brokerd.decision.member.Member`.

Why: a policy in its own process costs two more wake-ups and a text round
trip per decision (issue #13).  Here the shim's event objects go straight to
the library's :class:`~brokerd.clients.authorizer.Session` and its Reply
objects come straight back; the stack (order, narrowing, rewrites, step
results, defaults) is the same code as for a process.

Failures are those of a process, answered the same way: a handler that
raises gets the library's failsafe (``skip-fail EPERM``) with its traceback
on stderr; anything that escapes the library, and a question that runs past
the member's deadline (``--timeout``), gets the default verdict and one error
line.  The deadline is enforced with ``SIGALRM`` (one interval timer, set
again only when it fires or was stopped, main thread only): it interrupts
Python code and interruptible waits, not a single long C call.  See docs/policies.md.
"""

from __future__ import annotations

import atexit
import math
import signal
import sys
import threading
from collections.abc import Callable
from time import monotonic
from typing import Any

from brokerd.clients.authorizer import _CONT as PLAIN_CONT
from brokerd.clients.authorizer import Authorizer as Policy
from brokerd.clients.authorizer import Session, Syscall
from brokerd.decision.authorizer import DEFAULT_TIMEOUT, apply_hello
from brokerd.decision.defaults import DENY, default_reply
from brokerd.decision.local import LocalAuthorizer
from brokerd.decision.member import Answer
from brokerd.decision.rules import ALLOW, TRACE
from brokerd.protocol import codec
from brokerd.protocol.codec import VERSION
from brokerd.protocol.errors import ProtocolError
from brokerd.protocol.layers import LayerSpec
from brokerd.protocol.types import Error, Hello, Reply, SyscallEvent, Verdict
from brokerd.tracer.makers import maker

#: an alarm this close before the deadline counts (the timer and the clock may differ slightly)
_ALARM_SLACK = 0.005


class Overrun(BaseException):
    """Raised by SIGALRM inside a policy that ran past its deadline (a
    BaseException, so the policy's own ``except Exception`` cannot keep it)."""


class _Alarm:
    """The one SIGALRM handler of the process, and its one timer.

    The timer is not set per question (that was a system call per member
    per decision): a question sets its deadline (``due``) and ``armed``, and
    arms the timer only when it is not running (``ticking``).  When the
    timer fires, the handler raises :class:`Overrun` if the armed question's
    deadline has come; if a question is armed whose deadline has not come (it
    began after the one the timer was set for, or the alarm is a stray one),
    it sets the timer again for what is left of that deadline; with nothing
    armed it lets the timer stop.  So a busy session sets the timer about
    once per deadline, an idle one not at all, and no timer runs for long
    after the last question (a kernel-only session clears it before its
    exec: brokerd.tracer.direct).

    One instance (:data:`_ALARM`), not class attributes: assigning a class
    attribute invalidates the type's attribute cache, and every question
    assigns ``due`` and ``armed`` twice (issue #13)."""

    __slots__ = ("armed", "installed", "ticking", "due")

    def __init__(self) -> None:
        self.armed = False
        self.installed = False
        self.ticking = False  # the timer is set (it will fire, or has and the handler has not run yet)
        self.due = 0.0  # monotonic() of the armed question's deadline

    def install(self) -> bool:
        if not self.installed:
            if threading.current_thread() is not threading.main_thread():
                return False  # signals reach only the main thread: no bound (documented)
            signal.signal(signal.SIGALRM, self._fire)
            atexit.register(self.stop)
            self.installed = True
        return True

    def stop(self) -> None:
        """Stop the timer (at exit: Python puts SIGALRM's default action back
        as it finalizes, and a timer still running then would kill the
        broker with SIGALRM, exit status 142, instead of the program's)."""
        self.armed = False
        if self.ticking:
            self.ticking = False
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _fire(self, signum: int, frame: object) -> None:
        self.ticking = False
        if not self.armed:
            return  # between questions: the timer stops
        left = self.due - monotonic()
        if left <= _ALARM_SLACK:
            self.armed = False
            raise Overrun
        self.start(left)  # a later question (or a stray alarm): on to its own deadline

    def start(self, seconds: float) -> None:
        """Set the timer (it is not running): it fires in ``seconds``."""
        self.ticking = True
        signal.setitimer(signal.ITIMER_REAL, seconds)


_ALARM = _Alarm()


class InProcess(LocalAuthorizer):
    """``policy`` asked synchronously inside the broker, with a deadline."""

    sync = True  # ask() answers before it returns, always (the shim takes the answer inline)

    def __init__(self, policy: Policy, *, timeout: float = DEFAULT_TIMEOUT, default: Verdict = DENY,
                 trace: frozenset[str] | None = None, signals: bool = False,
                 log: Callable[[str], None] | None = None) -> None:
        super().__init__(policy.name, trace, signals=signals)
        self.policy = policy
        self.timeout = timeout
        self.default = default
        self.layer: LayerSpec | None = None
        self.settled: frozenset[str] = frozenset()  # set by the shim, as for a connection
        self.dead_reason = ""
        self._session = policy.session()
        self._session.new_call = _new_call  # (its Syscall objects made in one compiled call where built)
        self._decide_entry = self._session.decide_entry  # (bound once: looked up per question before)
        self._log = log or (lambda msg: print(f"brokerd: {msg}", file=sys.stderr, flush=True))
        self._timed = math.isfinite(timeout) and _ALARM.install()

    def action(self, name: str) -> tuple[str, int]:
        """As a connection: a call its kernel layer settles is not asked about."""
        act = super().action(name)
        return ALLOW if act == TRACE and name in self.settled else act

    def greet(self, session: str, now: float) -> None:
        """The handshake, as objects: its ``hello`` configures this member."""
        hello = Hello((VERSION,), (("role", "broker"), ("session", session)))
        try:
            ours = self._call(self._session.start_event, hello)
            if isinstance(ours, Hello):
                apply_hello(self, ours)
                self.mode = "hello"
        except (ValueError, ProtocolError) as e:
            self._die(f"sent a bad handshake: {e}")
        except _Failed as e:
            self._die(str(e))

    def ask(self, event, answer: Answer, now: float) -> None:
        if type(event) is SyscallEvent:
            answer(*self.ask_entry(event, now))
            return
        if self.mode == "dead":
            answer(self._default(event), f"authorizer {self.name} is gone ({self.dead_reason})")
            return
        try:
            reply = self._call(self._session.decide, event, now)
        except _Failed as e:  # the shim prints the reason, as for a process
            answer(self._default(event), f"authorizer {self.name} {e}")
            return
        answer(reply if isinstance(reply, Reply) else self._default(event), "")

    def ask_entry(self, event: SyscallEvent, now: float | None = None) -> tuple[Reply, str]:
        """:meth:`ask` for a syscall entry, its answer returned: (the reply,
        "") or (the default, why).  The shim's walk of synchronous members
        calls this directly (no answer callback, no walk object: issue #13);
        the deadline runs from ``now``, default the clock's now.  The Reply's
        id is not necessarily set: the shim reads only the verdict, the sets
        and ``cache``."""
        if self.mode == "dead":
            return self._default(event), f"authorizer {self.name} is gone ({self.dead_reason})"
        # _guarded(self._decide_entry, event, now) written out: one frame less per member per
        # decision (issue #13); the same deadline, the same failures
        try:
            if not self._timed:
                reply = self._decide_entry(event)
            else:
                alarm = _ALARM
                alarm.due = (monotonic() if now is None else now) + self.timeout
                alarm.armed = True
                if not alarm.ticking:
                    alarm.start(self.timeout)
                try:
                    reply = self._decide_entry(event)
                finally:
                    alarm.armed = False
        except (Overrun, SystemExit, Exception) as e:  # noqa: BLE001 - as _guarded
            return self._default(event), f"authorizer {self.name} {self._failure(e)}"
        return (reply, "") if type(reply) is Reply else (self._default(event), "")

    def fused_parts(self) -> tuple[object, ...] | None:
        """What the compiled road (``accel.fused_stop``, Entry._fast_plan)
        needs to ask this member itself, as :meth:`ask_entry` and
        ``Session.decide_entry`` would: (its session, the handlers by call
        name, the result handlers, the deadline's alarm, the plain ``cont()``
        reply, the session's counters, how it makes a handler's Syscall,
        whether the deadline is kept, the deadline: fixed when made); None
        when its session decides otherwise (a subclass)."""
        session = self._session
        if type(session) is not Session or self._decide_entry != session.decide_entry:
            return None
        handlers = session.az.handlers
        if type(handlers.entry) is not dict or type(handlers.result) is not dict or type(session.stats) is not dict:
            return None
        return (session, handlers.entry, handlers.result, _ALARM, PLAIN_CONT, session.stats, session.new_call,
                self._timed, self.timeout)

    def _fused_answer(self, event: SyscallEvent, fn: Any, call: Syscall, result: object,
                      error: BaseException | None) -> tuple[Reply, str]:
        """:meth:`ask_entry`'s answer where the compiled road called handler
        ``fn`` itself, its deadline armed, and got anything but the plain
        ``cont()``: ``result``, or ``error`` raised.  The same code from there
        (``Session.entry_answer``, ``entry_crashed``), the same failures."""
        try:
            try:
                if error is None:
                    reply = self._session.entry_answer(event, fn, call, result)
                elif isinstance(error, Exception):
                    reply = self._session.entry_crashed(event, fn, call, error)
                else:
                    raise error  # (Overrun, SystemExit: below; anything else goes on up, as from ask_entry)
            finally:
                if self._timed:
                    _ALARM.armed = False
        except (Overrun, SystemExit, Exception) as e:  # noqa: BLE001 - as ask_entry
            return self._default(event), f"authorizer {self.name} {self._failure(e)}"
        return (reply, "") if type(reply) is Reply else (self._default(event), "")

    def _default(self, event: object) -> Reply:
        """This member's default answer to ``event``."""
        return default_reply(type(event), event.call.name if isinstance(event, SyscallEvent) else "", self.default)

    def notify(self, line: bytes) -> None:
        """Proc events come as lines (the shim formats them once for all members)."""
        if self.mode != "hello":
            return
        try:
            self._call(self._session.start_event, codec.parse_event(line))
        except (ProtocolError, _Failed) as e:
            self._log(f"authorizer {self.name}: event not taken: {e}")

    def report_error(self, code: str, text: str) -> None:
        try:
            self._call(self._session.start_event, Error(code, text))
        except _Failed as e:
            self._log(f"authorizer {self.name}: error {code} {text} ({e})")

    def _call(self, fn: Callable[[Any], object], arg: object, now: float | None = None) -> object:
        """``fn(arg)`` under the deadline (:meth:`_guarded`); what escapes becomes :class:`_Failed`."""
        value, why = self._guarded(fn, arg, now)
        if why:
            raise _Failed(why)
        return value

    def _guarded(self, fn: Callable[[Any], object], arg: object, now: float | None = None) -> tuple[object, str]:
        """``fn(arg)`` under the deadline (``timeout`` from ``now``, default
        the clock's now): (its value, "") or (None, what escaped, as the
        error line says it).  The timer is armed as :class:`_Alarm` says (no
        system call per question while it runs)."""
        try:
            if not self._timed:
                return fn(arg), ""
            alarm = _ALARM
            alarm.due = (monotonic() if now is None else now) + self.timeout
            alarm.armed = True  # (before the test: a handler running in between sees this question)
            if not alarm.ticking:
                alarm.start(self.timeout)
            try:
                return fn(arg), ""
            finally:
                alarm.armed = False
        except (Overrun, SystemExit, Exception) as e:  # noqa: BLE001 - a policy bug must never reach the broker's loop
            return None, self._failure(e)

    def _failure(self, e: BaseException) -> str:
        """What escaped a policy call (:meth:`_guarded`), as
        the error line says it; a policy that exited is gone from now on."""
        if isinstance(e, Overrun):  # also when the alarm lands while the timer is being disarmed
            return f"did not answer within {self.timeout:g}s"
        if isinstance(e, SystemExit):
            self._die(f"exited ({e.code})")
            return f"exited ({e.code})"
        return f"raised {type(e).__name__}: {e}"

    def _die(self, reason: str) -> None:
        if self.mode != "dead":
            self.mode = "dead"
            self.dead_reason = reason
            self._log(f"authorizer {self.name} {reason}; its questions get the default verdict")


def _syscall_maker() -> Callable[[SyscallEvent, Any], Syscall]:
    """:class:`Syscall` made as ``Syscall(event, session)`` does, in one
    compiled call where brokerd.tracer.accel is built (no ``__init__``
    frame per member per decision, issue #13)."""
    made = maker(Syscall, (("_spec", False), ("_notes", None)))
    return Syscall if made is Syscall else made


_new_call = _syscall_maker()


class _Failed(Exception):
    """The policy failed one call (raised, overran, exited): the text says how."""


__all__ = ["InProcess", "Overrun"]
