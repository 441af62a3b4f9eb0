"""What the daemon session (and brokerctl) may ask of a running shim."""

from __future__ import annotations

import errno as E
import os
import signal

from brokerd.protocol.types import SkipFail

from .base import ShimBase


class Control(ShimBase):
    """What the daemon session (and brokerctl) may ask of a running shim."""

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
