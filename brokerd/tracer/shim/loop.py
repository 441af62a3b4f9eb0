"""The event loop: epoll over the signalfd, the authorizers' descriptors and extra readers; deadlines."""

from __future__ import annotations

import errno as E
import os
import select
import signal
import struct
import time
from collections.abc import Callable

from brokerd.decision.authorizer import KILL_GRACE
from brokerd.decision.local import LocalAuthorizer
from brokerd.decision.member import Member

from .. import ptrace as pt
from ..kernel import missing_features
from ..states import strays_text
from .base import ShimBase
from .consts import (
    FORWARDED_SIGNALS,
    SI_USER,
    TERMINAL_SIGNALS,
    TTY_STOP_SIGNALS,
)
from .launch import LaunchError
from .libc import _libc, _signalfd
from .thread import _Thread

#: bytes read from the signalfd at once (16 signalfd_siginfo records)
SIGNALFD_READ = 128 * 16


class Loop(ShimBase):
    """The event loop: epoll over the signalfd, the authorizers' descriptors and extra readers; deadlines."""

    def _setup_loop(self) -> None:
        if self._ep is not None:
            return
        problems = missing_features()
        if problems:
            raise LaunchError(1, "this kernel cannot run a brokerd session: " + "; ".join(problems))
        # not dumpable: a traced program of the same user cannot ptrace the
        # broker or read its memory through /proc (docs/security.md)
        _libc().prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
        watched = (signal.SIGCHLD, *FORWARDED_SIGNALS, *TERMINAL_SIGNALS, *TTY_STOP_SIGNALS)
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        self._sfd = _signalfd(watched)
        self._ep = select.epoll()
        self._ep.register(self._sfd, select.EPOLLIN)
        # the members the loop waits on (descriptors, deadlines): not those in
        # this process that answer as they are asked (in-process policies)
        self._polled = [a for a in self.stack if not (isinstance(a, LocalAuthorizer) and a.rfd < 0)]
        for a in self.stack:
            if a.rfd >= 0:
                self._fds[a.rfd] = a
                self._ep.register(a.rfd, select.EPOLLIN)

    def run(self) -> int:
        """Trace until every tracee is gone; returns the main program's status
        the way a shell reports it (exit code, or 128+signal)."""
        self._setup_loop()
        self._reap()
        while self.threads or self.main_status is None:
            self._poll_once(reap=True)
        if strays_text():
            self._log(f"internal: thread state moves outside the table (a bug, please report): {strays_text()}")
        self.end_authorizers("session ended")
        self.stops.report()
        return self.exit_code()

    def end_authorizers(self, why: str) -> None:
        """Stop every authorizer: SIGTERM, and SIGKILL to one still there after KILL_GRACE."""
        for a in self.stack:
            a.kill(why) if a.mode != "dead" else None
        deadline = time.monotonic() + KILL_GRACE
        for a in self.stack:
            a.reap(deadline)

    def exit_code(self) -> int:
        st = self.main_status or 0
        if os.WIFEXITED(st):
            return os.WEXITSTATUS(st)
        if os.WIFSIGNALED(st):
            return 128 + os.WTERMSIG(st)
        return 1

    def _poll_once(self, reap: bool) -> None:
        assert self._ep is not None
        polled = self._polled
        deadline = None
        for a in polled:
            d = a.next_deadline()
            if d is not None and (deadline is None or d < deadline):
                deadline = d
        timeout = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        for fd, mask in self._ep.poll(timeout):
            if fd == self._sfd:
                self._on_signals(reap)
                continue
            reader = self._readers.get(fd)
            if reader is not None:
                reader()
                continue
            member = self._fds.get(fd)
            if member is None:
                continue
            now = time.monotonic()
            if mask & select.EPOLLOUT:
                member.on_writable()
            if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                member.on_readable(now)
            self._sync_fd(member, fd)
        if polled:
            now = time.monotonic()
            for a in polled:
                if a.mode != "dead":
                    a.expire(now)
                self._sync_fd(a, None)

    def _sync_fd(self, a: Member, fd: int | None) -> None:
        """Keep epoll's view of an authorizer's descriptors current: drop a
        dead one, ask for EPOLLOUT only while it has output waiting.  A socket
        authorizer reads and writes one descriptor; a spawned one has two."""
        assert self._ep is not None
        if a.mode == "dead":
            for k in [k for k, v in self._fds.items() if v is a]:
                del self._fds[k]
                try:
                    self._ep.unregister(k)
                except (OSError, ValueError):
                    pass
            return
        want_out = a.wants_write
        if a.wfd == a.rfd:
            if want_out != getattr(a, "_epollout", False):
                a._epollout = want_out  # type: ignore[attr-defined]
                self._ep.modify(a.rfd, select.EPOLLIN | (select.EPOLLOUT if want_out else 0))
            return
        registered = a.wfd in self._fds
        if want_out and not registered:
            self._fds[a.wfd] = a
            self._ep.register(a.wfd, select.EPOLLOUT)
        elif not want_out and registered:
            del self._fds[a.wfd]
            self._ep.unregister(a.wfd)

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` from the loop whenever ``fd`` is readable."""
        self._setup_loop()
        assert self._ep is not None
        self._readers[fd] = callback
        self._ep.register(fd, select.EPOLLIN)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None and self._ep is not None:
            try:
                self._ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def _on_signals(self, reap: bool) -> None:
        """Read the signalfd once (again only if the buffer came back full:
        a signal that arrives later makes it readable again, and epoll says
        so), then reap every stop that is waiting."""
        while True:
            try:
                data = os.read(self._sfd, SIGNALFD_READ)
            except BlockingIOError:
                break
            for off in range(0, len(data), 128):
                signo, _err, code = struct.unpack_from("=Iii", data, off)
                if signo in TTY_STOP_SIGNALS:
                    # Ctrl-Z: the program got it too; follow it into the stop
                    self._tty_stop = not self.attached
                    self._maybe_stop_self()
                elif self.attached and signo != signal.SIGCHLD:
                    self.leave(signo in FORWARDED_SIGNALS)
                elif not self.main_pid and signo != signal.SIGCHLD:
                    self.stop_signal = self.stop_signal or signo  # no program yet: nothing may start
                elif signo in FORWARDED_SIGNALS or (signo in TERMINAL_SIGNALS and code == SI_USER):
                    if self.main_pid and self.main_status is None:
                        try:
                            os.kill(self.main_pid, signo)
                        except ProcessLookupError:
                            pass
            if len(data) < SIGNALFD_READ:
                break
        if reap:
            self._reap()

    def _reap(self) -> None:
        while True:
            try:
                tid, status = os.waitpid(-1, pt.WNOHANG | pt.WALL)
            except ChildProcessError:
                return
            if tid == 0:
                return
            self.stats["stops"] += 1
            self._on_tracee(tid, self._on_status, tid, status)

    def _on_tracee(self, tid: int, fn: Callable[..., None], *args: object) -> None:
        """Run ``fn(*args)``, which works on tracee ``tid`` (ptrace requests,
        /proc reads, its memory).  Every entry from the loop into per-tracee
        work goes through here (a stop, an authorizer's answer), because a
        tracee may be gone at any moment: SIGKILL from outside, the OOM
        killer, a sibling thread's exit_group or execve.  A gone tracee is
        forgotten quietly (its exit status comes later); any other failure
        on a live one kills its process rather than leave it stopped for ever
        or running unjudged (fail closed), and never ends the session."""
        try:
            fn(*args)
        except (OSError, ValueError, OverflowError) as e:
            t = self.threads.get(tid)
            if not (isinstance(e, OSError) and e.errno == E.ESRCH) and self._alive(tid):
                tgid = t.tgid if t is not None else tid
                self._log(f"pid {tgid}: cannot handle its stop ({e}): killed")
                try:
                    os.kill(tgid, signal.SIGKILL)
                except OSError:
                    pass
            self._gone(tid)

    @staticmethod
    def _alive(tid: int) -> bool:
        """Is ``tid`` still in a ptrace-stop (so still ours to resume)?"""
        try:
            pt.geteventmsg(tid)
        except OSError:
            return False
        return True

    def _answered(self, t: _Thread, fn: Callable[..., None], *args: object) -> None:
        """An authorizer's answer (or its default) about tracee ``t``."""
        self._on_tracee(t.tid, fn, *args)
