"""What one uid may hold in the daemon, and the bookkeeping that enforces it.

Every user of the machine may connect to the system daemon, and each user
shares one uid with everything they run: so the daemon's resources are
budgeted per uid, never per connection (a connection costs nothing to open).
The budgets (docs/daemon.md, "Limits"):

* connections open at once (checked at ``accept``, before the peer speaks);
* sessions open at once (each one makes every system authorizer start a
  process, typically as root);
* bytes of unfinished lines held for the uid's connections together (a line
  may be 64 KiB long, but not on 500 connections at once);
* audit records queued, and their bytes (in ``auditlog``).

Root (uid 0) is exempt unless ``limit_root`` is set.  No I/O here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-uid budgets (0: unlimited)."""

    connections: int = 128
    sessions: int = 64
    partial_bytes: int = 1 << 20
    audit_records: int = 10000
    audit_bytes: int = 4 << 20
    root: bool = False  # apply to uid 0 too

    def applies(self, uid: int) -> bool:
        return uid != 0 or self.root

    def over(self, uid: int, value: int, limit: int) -> bool:
        """``value`` exceeds ``limit`` for ``uid`` (never when it is exempt or unlimited)."""
        return bool(limit) and self.applies(uid) and value > limit


class OverBudget(Exception):
    """A peer went beyond its uid's budget: it gets ``error busy TEXT`` and is dropped."""


@dataclass(slots=True)
class Usage:
    """What one uid holds right now."""

    connections: int = 0
    partial: int = 0  # bytes of unfinished lines, over all its connections
    refused: int = 0  # connections refused for this uid's budgets


class Ledger:
    """The per-uid :class:`Usage` of everyone connected; a uid with nothing
    left open is forgotten."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.uids: dict[int, Usage] = {}

    def admit(self, uid: int) -> bool:
        """Count a new connection of ``uid``; False (and not counted) when
        that would exceed its connection budget."""
        u = self.uids.setdefault(uid, Usage())
        if self.limits.over(uid, u.connections + 1, self.limits.connections):
            u.refused += 1
            self._forget_if_idle(uid)
            return False
        u.connections += 1
        return True

    def release(self, uid: int, partial: int) -> None:
        """A connection of ``uid`` that held ``partial`` unfinished bytes closed."""
        u = self.uids.get(uid)
        if u is None:
            return
        u.connections -= 1
        u.partial -= partial
        self._forget_if_idle(uid)

    def charge(self, uid: int, delta: int) -> None:
        """``uid``'s unfinished lines grew (or shrank) by ``delta`` bytes;
        raises OverBudget (after counting it) when they exceed the budget."""
        u = self.uids.setdefault(uid, Usage())
        u.partial += delta
        if delta > 0 and self.limits.over(uid, u.partial, self.limits.partial_bytes):
            raise OverBudget(f"uid {uid} holds more than {self.limits.partial_bytes} bytes of unfinished "
                             "lines over its connections")

    def _forget_if_idle(self, uid: int) -> None:
        u = self.uids.get(uid)
        if u is not None and u.connections <= 0 and u.partial <= 0:
            del self.uids[uid]


@dataclass(slots=True)
class LogBudget:
    """At most ``burst`` log lines per ``period`` seconds from one peer; the
    rest are counted and the count reported with the next line let through."""

    burst: int = 10
    period: float = 60.0
    _start: float = field(default_factory=time.monotonic)
    _used: int = 0
    suppressed: int = 0

    def take(self) -> bool:
        now = time.monotonic()
        if now - self._start >= self.period:
            self._start, self._used = now, 0
        if self._used < self.burst:
            self._used += 1
            return True
        self.suppressed += 1
        return False

    def note(self) -> str:
        """`` (N earlier lines suppressed)`` once after suppressing, else ``""``."""
        if not self.suppressed:
            return ""
        n, self.suppressed = self.suppressed, 0
        return f" ({n} earlier line(s) suppressed)"
