"""The broker's own rules, below every authorizer (docs/security.md): what
it denies (io_uring, clone3 where it cannot copy its arguments) and which
calls stop for its own checks whatever the stack says.  Plain functions of
the session's options, so the backend can be chosen before a shim exists."""

from __future__ import annotations

from collections.abc import Callable

from brokerd.decision.rules import StaticRules
from brokerd.decision.stack import Stack

from ..guard import GUARDED, PROC_OPEN_CALLS
from .consts import CLONE3_DENIED, IO_URING_DENIED, REGION_CALLS_ALWAYS

#: calls that always stop on ptrace for the broker's own checks (clone flags, the guard, the region)
PTRACE_TRACE = frozenset({"clone", "clone3"}) | GUARDED | REGION_CALLS_ALWAYS


def broker_rules(allow_io_uring: bool, copies_clone3: bool) -> StaticRules:
    """io_uring denied unless allowed; clone3 fails with ENOSYS (libc falls
    back to clone) unless the shim copies its arguments (ptrace, stable args)."""
    return StaticRules(deny=(() if allow_io_uring else IO_URING_DENIED)
                       + (() if copies_clone3 else CLONE3_DENIED))


def ptrace_action(stack: Stack, *, allow_io_uring: bool, stable_args: bool,
                  proc_checks: bool) -> Callable[[str], tuple[str, int]]:
    """What a ptrace session with these options would do with each call before
    its arguments are seen (as :meth:`Filter.stack_action`), for choosing the
    backend before the shim exists."""
    internal = broker_rules(allow_io_uring, stable_args)
    trace = PTRACE_TRACE | (PROC_OPEN_CALLS if proc_checks else frozenset())
    return lambda name: stack.action(name, internal.action(name, name in trace))
