"""The event loop: one epoll over the signalfd (SIGCHLD, i.e. ptrace stops,
and the signals the broker acts on), every authorizer's descriptors and extra
readers (the daemon connection, spawned authorizers' stderr), with the
authorizers' deadlines as its timeout.

A collaborator object with a narrow interface: it knows the stack's members
(their descriptors and deadlines) but nothing of tracees.  The shim hands it
two callbacks: ``on_signal`` for each signal to the broker other than
SIGCHLD, ``on_children`` when a SIGCHLD (a stop, an exit) may be waiting.
It exists before the shim: the handshake runs on it, and only then is the
backend chosen and the shim made (brokerd.cli.main).
"""

from __future__ import annotations

import os
import select
import signal
import struct
import time
from collections.abc import Callable, Iterable

from brokerd.decision.local import LocalAuthorizer
from brokerd.decision.member import Member

from ..kernel import missing_features
from .consts import FORWARDED_SIGNALS, TERMINAL_SIGNALS, TTY_STOP_SIGNALS
from .errors import LaunchError
from .libc import _libc, _signalfd

#: every signal the loop reads from its signalfd (blocked while it runs)
WATCHED = (signal.SIGCHLD, *FORWARDED_SIGNALS, *TERMINAL_SIGNALS, *TTY_STOP_SIGNALS)
#: bytes read from the signalfd at once (16 signalfd_siginfo records)
SIGNALFD_READ = 128 * 16
#: the head of a signalfd_siginfo (ssi_signo, ssi_errno, ssi_code), and the rest of its 128 bytes
_SIGINFO = struct.Struct("=Iii116x")
_SIGCHLD = int(signal.SIGCHLD)
#: stops handled per turn of the loop before it looks at its other sources again
REAP_BATCH = 64


def _no_children() -> None:
    """Before a shim exists nothing is reaped."""


class EventLoop:
    """epoll over the signalfd, the members' descriptors and extra readers."""

    def __init__(self, members: Iterable[Member]) -> None:
        self.members = members
        self._sfd = -1
        self._ep: select.epoll | None = None
        self._fds: dict[int, Member] = {}
        self._readers: dict[int, Callable[[], None]] = {}
        self._epollout: set[int] = set()  # one-descriptor members registered for EPOLLOUT too
        self._polled: list[Member] = list(members)  # narrowed by setup
        #: the signal mask before the loop blocked its signals (the launched child gets it back)
        self.old_mask: set[int] = set()
        #: SIGTERM/SIGHUP/SIGINT/SIGQUIT that came before there was a program to forward it to
        #: (during the handshake): the program must then never start (cli: exit 128+N)
        self.stop_signal = 0
        #: a signal to the broker other than SIGCHLD: (signo, si_code); the shim's once it exists
        self.on_signal: Callable[[int, int], None] = self._before_the_program
        #: SIGCHLD arrived and the caller of poll_once asked to reap
        self.on_children: Callable[[], None] = _no_children
        #: set by on_children when it stopped with stops still waiting (their
        #: SIGCHLD may be consumed already): the next turn polls without
        #: waiting and reaps again
        self.more_children = False

    def setup(self) -> None:
        """Check the kernel, block the watched signals, make the signalfd and
        the epoll set (once; later calls do nothing)."""
        if self._ep is not None:
            return
        problems = missing_features()
        if problems:
            raise LaunchError(1, "this kernel cannot run a brokerd session: " + "; ".join(problems))
        # not dumpable: a traced program of the same user cannot ptrace the
        # broker or read its memory through /proc (docs/security.md)
        _libc().prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
        self.old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
        self._sfd = _signalfd(WATCHED)
        self._ep = select.epoll()
        self._ep.register(self._sfd, select.EPOLLIN)
        # the members the loop waits on (descriptors, deadlines): not those in
        # this process that answer as they are asked (in-process policies)
        self._polled = [a for a in self.members if not (isinstance(a, LocalAuthorizer) and a.rfd < 0)]
        for a in self.members:
            if a.rfd >= 0:
                self._fds[a.rfd] = a
                self._ep.register(a.rfd, select.EPOLLIN)

    def poll_once(self, reap: bool) -> None:
        """Wait for one batch of events (or the next member deadline) and
        dispatch it; ``reap``: SIGCHLD calls ``on_children``."""
        assert self._ep is not None
        polled = self._polled
        deadline = None
        for a in polled:
            d = a.next_deadline()
            if d is not None and (deadline is None or d < deadline):
                deadline = d
        timeout = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if self.more_children and reap:
            timeout = 0.0  # stops are waiting: serve the other sources, then them
        reaped = False
        for fd, mask in self._ep.poll(timeout):
            if fd == self._sfd:
                self._on_signals(reap)
                reaped = reap
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
        if self.more_children and reap and not reaped:
            self.on_children()
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
                self._epollout.discard(k)
                try:
                    self._ep.unregister(k)
                except (OSError, ValueError):
                    pass
            return
        want_out = a.wants_write
        if a.wfd == a.rfd:
            if want_out != (a.rfd in self._epollout):
                if want_out:
                    self._epollout.add(a.rfd)
                else:
                    self._epollout.discard(a.rfd)
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
        self.setup()
        assert self._ep is not None
        self._readers[fd] = callback
        self._ep.register(fd, select.EPOLLIN)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None and self._ep is not None:
            try:
                self._ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def _before_the_program(self, signo: int, code: int) -> None:
        """A signal to the broker before any shim exists (the greeting): there
        is no program to forward it to, so nothing may start (Ctrl-Z aside)."""
        if signo not in TTY_STOP_SIGNALS:
            self.stop_signal = self.stop_signal or signo

    def _on_signals(self, reap: bool) -> None:
        """Read the signalfd once (again only if the buffer came back full:
        a signal that arrives later makes it readable again, and epoll says
        so), then reap every stop that is waiting."""
        while True:
            try:
                data = os.read(self._sfd, SIGNALFD_READ)
            except BlockingIOError:
                break
            for signo, _err, code in _SIGINFO.iter_unpack(data):
                if signo != _SIGCHLD:
                    self.on_signal(signo, code)
            if len(data) < SIGNALFD_READ:
                break
        if reap:
            self.on_children()
