"""Authorizers that live inside the broker process (the operator at the
terminal of ``brokerctl attach``): the same interface as a connection
(:class:`~brokerd.decision.member.Member`), so the shim stacks them like any
other, with no pipe in between."""

from __future__ import annotations

from brokerd.decision.defaults import DENY
from brokerd.decision.member import Answer
from brokerd.decision.rules import NO_RULES, TRACE, ArgRule, StaticRules
from brokerd.protocol.types import Reply, Verdict


class LocalAuthorizer:
    """Base class: answers synchronously with :meth:`decide`; subclasses may
    keep questions and answer later from :meth:`on_readable` (``rfd`` is then
    a descriptor the loop watches, e.g. the terminal)."""

    pid: int | None = None
    wfd = -1
    wants_write = False
    ready = True
    caller = False
    strsize: int | None = None
    static: StaticRules = NO_RULES
    rules: tuple[ArgRule, ...] = ()
    verdicts: frozenset[str] | None = None
    greeting_timeout = 0.0
    sync = False  # a subclass may answer later (the operator); InProcess never does

    def __init__(self, name: str, trace: frozenset[str] | None = None, *, rfd: int = -1,
                 signals: bool = False, events: frozenset[str] = frozenset()) -> None:
        self.name = name
        self.trace = trace
        self.rfd = rfd
        self.signals = signals
        self.events = events
        self.mode = "plain"
        self.timeout = float("inf")
        self.default: Verdict = DENY

    def wants(self, name: str) -> bool:
        """Asked about ``name`` unless its static rules settle it (as a connection)."""
        return self.action(name) == TRACE

    def action(self, name: str) -> tuple[str, int]:
        return self.static.action(name, self.trace is None or name in self.trace)

    def greet(self, session: str, now: float) -> None:
        pass

    def ask(self, event, answer: Answer, now: float) -> None:
        answer(self.decide(event), "")

    def decide(self, event) -> Reply:  # pragma: no cover - subclasses decide
        raise NotImplementedError

    def notify(self, line: bytes) -> None:
        pass

    def on_readable(self, now: float) -> None:
        pass

    def on_writable(self) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def expire(self, now: float) -> None:
        pass

    def report_error(self, code: str, text: str) -> None:
        pass

    def kill(self, reason: str) -> None:
        self.mode = "dead"

    def reap(self, deadline: float) -> None:
        pass
