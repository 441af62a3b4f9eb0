"""The audit record of one decision, and its one JSON form (written by
``brokerctl --audit`` and sent to the daemon's journal alike)."""

from __future__ import annotations

import time

from brokerd.protocol import codec
from brokerd.protocol.record import Record, _set
from brokerd.protocol.types import SignalEvent, SyscallEvent, SysretEvent


class AuditRecord(Record):
    """What one decision was: passed to the shim's ``audit`` callback."""

    __slots__ = ("event", "verdict", "by", "latency", "reason")
    event: SyscallEvent | SysretEvent | SignalEvent
    verdict: str
    by: str  # the authorizer whose verdict ended the walk ("" when all said cont)
    latency: float  # seconds from the stop to the decision
    reason: str  # why a default applied, when one did

    def __init__(self, event: SyscallEvent | SysretEvent | SignalEvent, verdict: str, by: str,
                 latency: float, reason: str = "") -> None:
        _set(self, "event", event)
        _set(self, "verdict", verdict)
        _set(self, "by", by)
        _set(self, "latency", latency)
        _set(self, "reason", reason)

    def to_json(self) -> dict:
        """The record as a JSON object: when (wall clock), who, which call,
        the event line as the authorizers saw it, and the outcome; ``v`` is
        the journal's schema version (docs/policies.md, "The audit journal")."""
        ev = self.event
        if isinstance(ev, SyscallEvent):
            call = ev.call.name
        elif isinstance(ev, SysretEvent):
            call = ev.name
        else:
            call = "signal"
        obj = {"v": 1, "time": round(time.time(), 6), "pid": ev.pid, "tid": ev.tid, "call": call,
               "event": codec.format_event(ev).decode("ascii", "replace").rstrip("\n"),
               "verdict": self.verdict, "by": self.by, "latency_us": round(self.latency * 1e6, 1)}
        if self.reason:
            obj["reason"] = self.reason
        return obj
