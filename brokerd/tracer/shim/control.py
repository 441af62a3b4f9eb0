"""What the daemon session (and brokerctl) may ask of a running shim.

:class:`SessionControl` is the whole interface the daemon connection
(``brokerd.daemon.client.DaemonSession``) uses: it never reads or sets the
shim's attributes.  The shim implements it in :class:`Control`.
"""

from __future__ import annotations

import errno as E
import os
import signal
from collections.abc import Callable
from typing import Protocol

from brokerd.decision.audit import AuditRecord
from brokerd.protocol.types import SkipFail

from .base import ShimBase


class SessionControl(Protocol):
    """A running session as its daemon connection steers it."""

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` from the session's loop whenever ``fd`` is readable."""

    def remove_reader(self, fd: int) -> None:
        """Stop watching ``fd``."""

    def tee_audit(self, sink: Callable[[AuditRecord], None] | None) -> None:
        """Send every audit record to ``sink`` too (after the local one); None stops it."""

    def has_tracees(self) -> bool:
        """Is any process traced yet (or still)?"""

    def kill_all(self) -> None:
        """SIGKILL every traced process."""

    def request_detach(self) -> None:
        """Leave every tracee running, untraced."""

    def fail(self, mode: str, why: str) -> None:
        """The daemon is lost: apply the session's failure mode (kill, deny, allow)."""


class Control(ShimBase):
    """The shim's side of :class:`SessionControl` (request_detach is in launch.py)."""

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` from the loop whenever ``fd`` is readable."""
        self.loop.add_reader(fd, callback)

    def remove_reader(self, fd: int) -> None:
        self.loop.remove_reader(fd)

    def tee_audit(self, sink: Callable[[AuditRecord], None] | None) -> None:
        """The daemon's copy of the audit trail: every record goes to the
        local sink (``audit``, if any) first, then to ``sink``."""
        self._audit_tee = sink

    def has_tracees(self) -> bool:
        return bool(self.threads)

    def kill_all(self) -> None:
        """SIGKILL every traced process (``brokerctl kill``, failure mode kill)."""
        for tgid in {t.tgid for t in self.threads.values()}:
            try:
                os.kill(tgid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def fail(self, mode: str, why: str) -> None:
        """The session lost something it cannot do without (the daemon):
        ``kill`` the tracees (default), ``deny`` every subscribed call with
        EPERM from now on, or ``allow`` (go on with the stack that is left)."""
        self._log(f"{why}; failure mode {mode}")
        if mode == "kill":
            self.kill_all()
        elif mode == "deny":
            self.forced = SkipFail(E.EPERM)
