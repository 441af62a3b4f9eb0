"""The daemon's audit trail: one JSON line per decision, to a file and/or to
the journal with structured fields.

Records come from the shims (``audit JSON`` lines on their daemon
connection) and are queued on a bounded trio channel; one writer task owns
the file and the journal socket.  Nothing a shim sends can make the daemon
block: a full queue drops the record and counts it (``stats``:
``audit_dropped``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import trio

from .sdnotify import JOURNAL_SOCKET, Journal

QUEUE = 10000
BATCH = 512


class AuditSink:
    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self._send, self._recv = trio.open_memory_channel(QUEUE)
        self.path: str | None = None
        self._fd = -1
        self.journal: Journal | None = None
        self.written = 0
        self.dropped = 0

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

    def submit(self, record: dict) -> None:
        if not self.enabled:
            return
        try:
            self._send.send_nowait(record)
        except trio.WouldBlock:
            self.dropped += 1

    async def run(self) -> None:
        async for rec in self._recv:
            batch = [rec]
            while len(batch) < BATCH:
                try:
                    batch.append(self._recv.receive_nowait())
                except trio.WouldBlock:
                    break
            self._write(batch)
            await trio.sleep(0)

    def _write(self, batch: list[dict]) -> None:
        if self._fd >= 0:
            data = "".join(json.dumps(r, separators=(", ", ": ")) + "\n" for r in batch).encode()
            try:
                while data:
                    n = os.write(self._fd, data)
                    data = data[n:]
            except OSError as e:
                self._log(f"audit log {self.path}: write failed: {e.strerror}")
                self.dropped += len(batch)
        if self.journal is not None:
            for r in batch:
                self.journal.send(journal_fields(r))
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
