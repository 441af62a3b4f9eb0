"""The tracer shim: runs a program under ptrace and makes the kernel do what
the authorizer stack decides.

One thread does everything: a plain epoll loop waits on a signalfd for
SIGCHLD (ptrace stops) and on every authorizer's descriptor.  A tracee
waiting for its verdict is just a record in a table, so other tracees keep
running and many decisions are in flight at once.  All ptrace requests come
from this thread, as the kernel requires.

Launched programs get a seccomp-bpf filter (see :mod:`.seccomp`) that stops
only the calls some authorizer subscribed to (PTRACE_EVENT_SECCOMP); the
tracee is then resumed with PTRACE_CONT, so a call that needs no result costs
exactly one stop.  ``step`` resumes with PTRACE_SYSCALL to get the exit stop.

Per-thread states (``_Thread.state``) and the one table of their moves are
in :mod:`.states` (docs/shim.md quotes it).
"""

from __future__ import annotations

from .base import ShimBase
from .consts import BROKER_RULES_IO_URING
from .control import Control
from .entry import Entry
from .errors import LaunchError
from .exitwalk import ExitWalker
from .ext import Ext
from .filter import Filter
from .inject import Inject
from .launch import Launch, attach_refusal, greet
from .loop import EventLoop
from .pin import Pin
from .rewrite import Rewriter
from .signals import Signals
from .stable import Stable
from .stops import Stops
from .thread import _Thread

__all__ = ["BROKER_RULES_IO_URING", "EventLoop", "LaunchError", "Shim", "_Thread", "attach_refusal", "greet"]


class Shim(Launch, Filter, Control, Stops, Entry, Ext, Rewriter, ExitWalker, Stable, Pin, Inject, Signals,
           ShimBase):
    """One traced session: a program, its descendants and an authorizer stack.

    The parts (one module each) share the state of :class:`.base.ShimBase`;
    the event loop (:class:`.loop.EventLoop`) is a separate object, made
    first when the handshake runs before the shim (brokerctl)."""
