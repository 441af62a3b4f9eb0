"""The authorizer interface: what the stack and the shim's loop need from a
member of a session's stack, whatever it is.

Two kinds implement it: :class:`~brokerd.decision.authorizer.Authorizer` (a
line connection to a process: pipes or a socket) and
:class:`~brokerd.decision.local.LocalAuthorizer` (inside the broker process,
e.g. the operator at ``brokerctl attach``'s terminal).  The shim never asks
which one it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from brokerd.decision.rules import ArgRule, StaticRules
from brokerd.protocol.types import Reply, SignalEvent, SyscallEvent, SysretEvent, Verdict

#: Called once per question with the reply (the member's own, or its default)
#: and a reason that is empty when the member itself answered.
Answer = Callable[[Reply, str], None]


@runtime_checkable
class Member(Protocol):
    """One authorizer in a stack, as the broker drives it (never blocking)."""

    name: str
    pid: int | None  # a process to protect and to stop at the end (None: in-process)
    rfd: int  # the descriptor the loop watches for its lines (-1: none)
    wfd: int
    mode: str  # "plain" | "hello" | "dead" once ready ("new", "greeting" before)
    timeout: float  # seconds a question may wait for its answer
    greeting_timeout: float  # seconds its greeting may wait
    default: Verdict  # its default verdict for a syscall entry
    trace: frozenset[str] | None  # calls it subscribed to (None: all)
    signals: bool  # wants signal events
    events: frozenset[str]  # proc event kinds it wants
    caller: bool  # wants the caller note
    strsize: int | None  # the data prefix it wants (None: the broker's)
    static: StaticRules
    rules: tuple[ArgRule, ...]
    verdicts: frozenset[str] | None  # the only verdicts it promised to give
    #: True: :meth:`ask` always calls ``answer`` before it returns (an in-process
    #: policy), so the shim takes the answer inline instead of through a callback
    sync: bool

    @property
    def ready(self) -> bool:
        """Its greeting is settled (answered, refused, or it is gone)."""
        ...

    @property
    def wants_write(self) -> bool:
        """It has output waiting for its descriptor to become writable."""
        ...

    def wants(self, name: str) -> bool:
        """Must it be asked about syscall ``name``?"""
        ...

    def action(self, name: str) -> tuple[str, int]:
        """Its answer for a whole syscall: allow, trace, deny(errno) or kill."""
        ...

    def greet(self, session: str, now: float) -> None: ...

    def ask(self, event: SyscallEvent | SysretEvent | SignalEvent, answer: Answer, now: float) -> None:
        """Send ``event``; ``answer`` is called exactly once, now or later."""
        ...

    def notify(self, line: bytes) -> None:
        """A line that needs no answer (proc events)."""
        ...

    def on_readable(self, now: float) -> None: ...

    def on_writable(self) -> None: ...

    def next_deadline(self) -> float | None: ...

    def expire(self, now: float) -> None:
        """Answer by default every question whose deadline passed."""
        ...

    def report_error(self, code: str, text: str) -> None: ...

    def kill(self, reason: str) -> None: ...

    def reap(self, deadline: float) -> None:
        """After the session: wait (until ``deadline``) for its process to end."""
        ...


class SyncMember(Member, Protocol):
    """A member whose answer to a syscall entry is known when its question
    returns (``sync`` True: an in-process policy), asked without a callback."""

    def ask_entry(self, event: SyscallEvent, now: float | None = None) -> tuple[Reply, str]:
        """:meth:`ask` for a syscall entry: (its reply, "") or (its default, why)."""
        ...
