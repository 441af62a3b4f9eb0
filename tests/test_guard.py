"""The guard (brokerd/tracer/guard.py) judged directly: which argument names
the target comes from the syscall tables' argument kinds, and kill(-1) is
never emulated past the policies."""

from __future__ import annotations

import errno
import os
import signal
import subprocess

import pytest
from brokerd.protocol.abi import names_in

from brokerd.tracer import guard as guard_mod
from brokerd.tracer.guard import GUARDED, JOINS, Guard

SIGTERM = int(signal.SIGTERM)


@pytest.fixture
def protected():
    """A real process standing in for an authorizer (in its own group)."""
    p = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield p.pid
    p.kill()
    p.wait(timeout=60)


def test_guarded_calls_are_the_process_access_class() -> None:
    assert GUARDED == names_in("process-access") | JOINS  # setns: a pidfd's namespaces
    assert {"kill", "tgkill", "ptrace", "process_vm_readv", "pidfd_send_signal", "pidfd_getfd",
            "process_madvise", "kcmp"} <= GUARDED


def test_every_pid_argument_is_checked(protected: int) -> None:
    g = Guard([protected])
    me = os.getpid()
    deny = ("deny", errno.EPERM)
    assert g.judge("kill", (protected, SIGTERM), me, me) == deny
    assert g.judge("tgkill", (protected, protected, SIGTERM), me, me) == deny
    assert g.judge("process_vm_readv", (protected, 0, 0, 0, 0, 0), me, me) == deny
    assert g.judge("kcmp", (me, protected, 0, 0, 0), me, me) == deny  # the second pid too
    assert g.judge("ptrace", (16, protected, 0, 0), me, me) == deny  # PTRACE_ATTACH
    assert g.judge("ptrace", (0, protected, 0, 0), me, me) is None  # PTRACE_TRACEME names nobody
    assert g.judge("kill", (me, 0), me, me) is None
    assert g.judge("getpid", (), me, me) is None


def test_pidfd_targets_are_resolved(protected: int) -> None:
    """pidfd_getfd/process_madvise/pidfd_send_signal name their target by a
    pidfd: the guard reads its process from /proc/TID/fdinfo."""
    g = Guard([protected])
    me = os.getpid()
    fd = os.pidfd_open(protected)
    try:
        for name in ("pidfd_send_signal", "pidfd_getfd", "process_madvise", "process_mrelease"):
            assert g.judge(name, (fd, 0, 0, 0, 0), me, me) == ("deny", errno.EPERM), name
    finally:
        os.close(fd)


def test_kill_minus_one_is_refused_never_emulated(protected: int, monkeypatch) -> None:
    """kill(-1, sig) always includes the broker.  Before, the guard emulated
    it by signalling every other process itself, before any policy saw the
    call: as root inside a sandbox that must refuse it, this signalled the
    whole machine.  os.kill is replaced by a recorder here so that a
    regression cannot do that again."""
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(guard_mod.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    g = Guard([protected])
    me = os.getpid()
    assert g.judge("kill", (0xFFFFFFFF, SIGTERM), me, me) == ("deny", errno.EPERM)
    assert g.judge("kill", (0xFFFFFFFF, 0), me, me) is None  # a probe signals nobody
    assert sent == []
