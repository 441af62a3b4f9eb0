"""Authorizers that live inside the broker process (the operator at the
terminal of ``brokerctl attach``): same interface as a connection, so the
shim stacks them like any other, with no pipe in between."""

from __future__ import annotations

import errno as _errno
from collections.abc import Callable

from brokerd.decision.stack import NO_RULES, StaticRules
from brokerd.protocol.types import Reply, SkipFail

Answer = Callable[[Reply, str], None]


class LocalAuthorizer:
    """Base class: answers synchronously with :meth:`decide`; subclasses may
    keep questions and answer later from :meth:`on_readable` (``rfd`` is then
    a descriptor the loop watches, e.g. the terminal)."""

    pid = None
    wfd = -1
    wants_write = False
    ready = True
    caller = False
    strsize = None
    static: StaticRules = NO_RULES
    rules: tuple = ()
    verdicts = None
    greeting_timeout = 0.0

    def __init__(self, name: str, trace: frozenset[str] | None = None, *, rfd: int = -1,
                 signals: bool = False, events: frozenset[str] = frozenset()) -> None:
        self.name = name
        self.trace = trace
        self.rfd = rfd
        self.signals = signals
        self.events = events
        self.mode = "plain"
        self.timeout = float("inf")
        self.default: object = SkipFail(_errno.EPERM)

    def wants(self, name: str) -> bool:
        return self.trace is None or name in self.trace

    def action(self, name: str) -> tuple[str, int]:
        return self.static.action(name, self.wants(name))

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
