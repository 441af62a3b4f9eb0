"""The daemon's audit trail: one JSON line per decision, to a file and/or to
the journal with structured fields.

Records come from the shims (``audit JSON`` lines on their daemon
connection): :func:`record` keeps the fields a shim may claim, with their
types, beside the ones the daemon knows (session, uid).  They are queued
**per uid**, each uid within its quota of records and bytes
(``quota.Limits``, root included), and one writer task takes them in turns
from every uid's queue, so one user's flood drops that user's records only,
never another's.  Nothing a shim sends can make the daemon block: a record
over its uid's quota is dropped and counted per uid (``stats``), and one log
line says how many when that uid's queue has drained (at most one per uid
per ``DROP_LOG_PERIOD``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from collections.abc import Callable

import trio

from .quota import Limits
from .sdnotify import JOURNAL_SOCKET, Journal

TURN = 64  # records written from one uid's queue before the next uid's turn
DROP_LOG_PERIOD = 10.0
# what a shim may say about a decision, and the JSON types each field must have
CLAIMED_FIELDS: dict[str, tuple[type, ...]] = {
    "time": (int, float), "pid": (int,), "tid": (int,), "call": (str,), "event": (str,),
    "verdict": (str,), "by": (str,), "latency_us": (int, float), "reason": (str,),
    "path": (str,), "blockers": (str,), "domain": (str,),  # a Landlock denial (brokerd.tracer.auditlog)
}


def _fits(v: object, kinds: tuple[type, ...]) -> bool:
    """``v`` has one of ``kinds`` and a value every JSON reader takes: no
    NaN or Infinity (Python's json reads and writes them, strict readers
    reject the line), no integer beyond 63 bits, nothing negative."""
    if isinstance(v, bool) or not isinstance(v, kinds):
        return False
    if isinstance(v, int):
        return 0 <= v < 1 << 63
    if isinstance(v, float):
        return math.isfinite(v) and v >= 0
    return True


def record(session: int, uid: int, claimed: dict) -> dict:
    """The audit record of one ``audit`` line: the daemon's own fields
    (session, owner uid) and the claimed ones that have the right type."""
    out: dict = {"time": round(time.time(), 6), "session": session, "uid": uid}
    for key, kinds in CLAIMED_FIELDS.items():
        v = claimed.get(key)
        if _fits(v, kinds):
            out[key] = v
    return out


class AuditSink:
    def __init__(self, log: Callable[[str], None], limits: Limits | None = None) -> None:
        self._log = log
        self.limits = limits or Limits()
        self._queues: dict[int, deque[bytes]] = {}  # uid -> JSON lines waiting
        self._held: dict[int, int] = {}  # uid -> bytes waiting
        self._wake = trio.Event()
        self.path: str | None = None
        self._fd = -1
        self.journal: Journal | None = None
        self.written = 0
        self.write_failed = 0
        self.dropped_by_uid: dict[int, int] = {}
        self._unlogged: dict[int, int] = {}  # drops not yet reported in the log
        self._logged_at: dict[int, float] = {}

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_uid.values()) + self.write_failed

    def queued(self) -> dict[int, int]:
        return {uid: len(q) for uid, q in self._queues.items()}

    @property
    def enabled(self) -> bool:
        return self._fd >= 0 or self.journal is not None

    def configure(self, path: str | None, journal: bool, journal_socket: str = JOURNAL_SOCKET) -> None:
        """(Re)open the targets; also how a rotated log file is reopened (SIGHUP)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.path = path
        if path:
            try:
                d = os.path.dirname(path)
                if d:
                    os.makedirs(d, mode=0o750, exist_ok=True)
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            except OSError as e:
                self._log(f"cannot open audit log {path}: {e.strerror}; file audit is off")
        if self.journal is not None and (not journal or self.journal.path != journal_socket):
            self.journal.close()
            self.journal = None
        if journal and self.journal is None:
            if Journal.available(journal_socket):
                self.journal = Journal(journal_socket)
            else:
                self._log(f"no journal socket at {journal_socket}; journal audit is off")

    def submit(self, uid: int, rec: dict) -> bool:
        """Queue ``rec`` (of ``uid``'s session) if ``uid`` is within its quota;
        else drop and count it."""
        if not self.enabled:
            return False
        line = (json.dumps(rec, separators=(", ", ": ")) + "\n").encode()
        q = self._queues.get(uid)
        n, held = (len(q), self._held[uid]) if q else (0, 0)
        lim = self.limits
        if (lim.audit_records and n + 1 > lim.audit_records) or (lim.audit_bytes and held + len(line) > lim.audit_bytes):
            self.note_dropped(uid, 1)
            return False
        if q is None:
            q = self._queues[uid] = deque()
        q.append(line)
        self._held[uid] = held + len(line)
        self._wake.set()
        return True

    def note_dropped(self, uid: int, n: int) -> None:
        """``n`` records of ``uid`` were lost (here, or in its shim's buffer)."""
        self.dropped_by_uid[uid] = self.dropped_by_uid.get(uid, 0) + n
        self._unlogged[uid] = self._unlogged.get(uid, 0) + n

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()  # before draining: a submit meanwhile wakes the next round
            while self._queues:
                for uid in list(self._queues):
                    self._write(self._take(uid))
                await trio.sleep(0)

    def _take(self, uid: int) -> list[bytes]:
        """Up to TURN lines from ``uid``'s queue; a drained queue is forgotten
        and its drops, if any, reported."""
        q = self._queues[uid]
        batch = [q.popleft() for _ in range(min(TURN, len(q)))]
        self._held[uid] -= sum(map(len, batch))
        if not q:
            del self._queues[uid], self._held[uid]
            self._report_drops(uid)
        return batch

    def _report_drops(self, uid: int) -> None:
        n = self._unlogged.get(uid, 0)
        now = time.monotonic()
        if not n or now - self._logged_at.get(uid, -DROP_LOG_PERIOD) < DROP_LOG_PERIOD:
            return
        self._logged_at[uid] = now
        del self._unlogged[uid]
        lim = self.limits
        self._log(f"audit: dropped {n} record(s) of uid {uid}: over its quota of {lim.audit_records} records / "
                  f"{lim.audit_bytes} bytes queued (other uids' records are kept; brokerctl stats counts them)")

    def _write(self, batch: list[bytes]) -> None:
        if self._fd >= 0:
            data = b"".join(batch)
            try:
                while data:
                    n = os.write(self._fd, data)
                    data = data[n:]
            except OSError as e:
                self._log(f"audit log {self.path}: write failed: {e.strerror}")
                self.write_failed += len(batch)
        if self.journal is not None:
            for line in batch:
                self.journal.send(journal_fields(json.loads(line)))
        self.written += len(batch)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self.journal is not None:
            self.journal.close()
            self.journal = None


def journal_fields(r: dict) -> dict[str, object]:
    verdict = str(r.get("verdict", ""))
    by = r.get("by") or ""
    msg = (f"session {r.get('session')} pid {r.get('pid')}: {r.get('call', '?')} -> {verdict}"
           + (f" by {by}" if by else "") + f" ({r.get('latency_us', 0)} us)")
    denied = verdict.startswith(("skip-fail", "kill"))
    return {
        "MESSAGE": msg,
        "PRIORITY": 5 if denied else 6,
        "SYSLOG_IDENTIFIER": "brokerd",
        "BROKERD_SESSION": r.get("session"),
        "BROKERD_UID": r.get("uid"),
        "BROKERD_PID": r.get("pid"),
        "BROKERD_TID": r.get("tid"),
        "BROKERD_CALL": r.get("call"),
        "BROKERD_EVENT": r.get("event"),
        "BROKERD_VERDICT": verdict,
        "BROKERD_AUTHORIZER": by or None,
        "BROKERD_LATENCY_US": r.get("latency_us"),
    }
