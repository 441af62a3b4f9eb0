"""Sessions the kernel alone can enforce: no tracer, no broker left.

When, after the handshake, no syscall needs anyone's per-call answer (every
call is allowed, denied or killed by the seccomp filter, or settled by a
kernel layer) and no authorizer wants signals or process events, a tracer
would only add cost and a process to kill.  ``brokerctl run`` then applies
the authorizers' Landlock layers and the filter to itself and execs the
program directly: no ptrace (so strace, gdb and a nested ``brokerctl run``
work on the program), nothing left to kill, and what was declared holds
exactly as in a traced session.

The wall (:func:`.landlock.wall`) is applied all the same: there is no broker
of this session left to protect, but other sessions' shims and authorizers,
and every other process of the uid, are there.  Without it a program whose
policy had no layer could write into another session's authorizer through
``/proc/PID/mem`` or its answer pipe, and with a layer but no signal scope
still SIGSTOP another session's shim.  Where the wall cannot be whole (no
Landlock, or no signal scope: ABI < 6) and the user did not opt out of it
(``--no-landlock``), the session is traced instead: the broker's guard then
stands in for the wall, as in any traced session.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from collections.abc import Sequence

from brokerd.decision.member import Member
from brokerd.decision.stack import Stack
from brokerd.decision.tether import PYTHON_IGNORED
from brokerd.protocol.abi import ABIS

from . import landlock, seccomp
from .shim import LaunchError, Shim
from .shim.filter import rules_need_stop
from .shim.launch import program_path


def why_traced(stack: Sequence[Member], use_landlock: bool = True) -> str:
    """Empty when the (greeted) stack needs no tracer; else the first reason
    it does.  ``use_landlock`` false: the user opted out of the wall."""
    for a in stack:
        if getattr(a, "signals", False) or getattr(a, "events", ()):
            return f"{a.name} wants signals or process events"
        if a.mode == "plain" or a.mode == "greeting":
            return f"{a.name} is a plain authorizer"
    if not stack:
        return "no authorizer"
    whole = Stack(stack)
    for abi in ABIS.values():
        for name, spec in abi.by_name.items():
            if any(a.action(name)[0] == "trace" for a in stack):
                return f"{name} is decided per call"
            if rules_need_stop(whole, abi, spec):
                return f"{name} has an argument rule only the broker can apply"
    unknown = [a.static.unknown for a in stack]
    if any(u is None and a.trace is None or u == ("trace", 0) for a, u in zip(stack, unknown, strict=True)):
        return "calls unknown to the tables are decided per call"
    if use_landlock and landlock.abi_version() < landlock.ABI_SCOPE:
        return "no Landlock wall with the signal scope here: the guard keeps the program from other sessions"
    return ""


def exec_direct(shim: Shim, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Become the program under the stack's filter and layers (returns only
    on failure, with brokerctl's exit status)."""
    path = program_path(argv[0])
    if path is None:
        raise LaunchError(127, f"{argv[0]}: command not found")
    # the broker's own per-call checks guard the broker's processes: there will be none
    shim.internal_trace = frozenset()
    shim.guard.owner_checks = False
    shim.guard.write_checks = False  # (no broker to check opens for writing: docs/security.md says what stays open)
    shim._action_cache.clear()
    # nothing stops: fail closed; the process-control calls the guard would judge reach only the caller
    insns = shim.build_filter(stop=seccomp.RET_KILL_PROCESS, guard_region=False,
                              control_outside=seccomp.ret_errno(errno.EPERM))
    names = ", ".join(a.name for a in shim.stack)
    for a in shim.stack:
        a.kill("the kernel enforces the whole policy")
    for a in shim.stack:
        reap = getattr(a, "reap", None)  # a process we started: make sure it is gone before we exec
        if reap is not None:
            reap(time.monotonic() + 1.0)
    print(f"brokerctl: {names}: enforced by the kernel alone (seccomp filter"
          f"{' and Landlock layers' if shim.layer_plan.layers else ''}); running {argv[0]} with no tracer",
          file=sys.stderr, flush=True)
    # an in-process policy's deadline timer (ITIMER_REAL, left running between
    # questions: decision/inproc.py) survives exec: the program would die of SIGALRM seconds later
    signal.setitimer(signal.ITIMER_REAL, 0)
    for s in PYTHON_IGNORED:  # SIG_IGN survives exec: the program would get EPIPE, not SIGPIPE
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, shim.loop.old_mask)
    try:  # the wall first, as in a launched child; then the layers, each only narrowing
        for layer in ([shim.wall] if shim.wall is not None else []) + list(shim.layer_plan.layers):
            landlock.restrict(layer)
        seccomp.install(insns)
    except OSError as e:  # nothing was exec'd: fail closed
        raise LaunchError(1, f"cannot enforce the policy in the kernel: {e.strerror}") from e
    try:
        os.execve(path, list(argv), dict(os.environ) if env is None else env)
    except OSError as e:
        print(f"brokerctl: {argv[0]}: {e.strerror}", file=sys.stderr, flush=True)
        os._exit(126 if e.errno in (13, 8) else 127)
