"""A traced program's own seccomp filters (issue #16, escape 4): it may not
install a listener that would see its calls before the broker, and its own
SECCOMP_RET_TRACE rules behave as natively (ENOSYS, there is no tracer of its own)."""

from __future__ import annotations

import errno
import subprocess

from brokerd.protocol.abi import ABIS
from conftest import brokerctl

from brokerd.tracer import seccomp
from brokerd.tracer.shim import Shim
from brokerd.tracer.shim.consts import TRACE_MARK

DENY_HOST = '*openat *"/etc/hostname"* => skip-fail EACCES'


def test_own_seccomp_listener_is_refused(cprog, rules):
    prog = str(cprog("ownfilter"))
    native = subprocess.run([prog, "listener", "/etc/hostname"], capture_output=True, text=True, timeout=120).stdout
    assert native == "listener ok\nopen ok\n"
    # under the broker the listener would continue the open the policy denies
    r = brokerctl("run", "-e", "trace=openat", "-a", rules(DENY_HOST), "--", prog, "listener", "/etc/hostname")
    assert r.stdout == "listener fail EBUSY\nopen fail EACCES\n", r.stderr


def test_filter_refuses_new_listener_statically():
    insns = Shim([]).build_filter()
    nr = ABIS["x86_64"].by_name["seccomp"].nr
    listener = seccomp.run(insns, nr, seccomp.AUDIT_ARCH_X86_64, (1, seccomp.SECCOMP_FILTER_FLAG_NEW_LISTENER, 0))
    assert listener == seccomp.ret_errno(errno.EBUSY)
    # any other filter install stops (it marks the process: its opens are not pinned, pin.py)
    plain = seccomp.run(insns, nr, seccomp.AUDIT_ARCH_X86_64, (1, seccomp.SECCOMP_FILTER_FLAG_TSYNC, 0))
    assert plain == seccomp.trace(TRACE_MARK)
    assert seccomp.run(insns, nr, seccomp.AUDIT_ARCH_X86_64, (2, 0, 0)) == seccomp.RET_ALLOW  # not an install
    nr32 = ABIS["i386"].by_name["seccomp"].nr
    assert seccomp.run(insns, nr32, seccomp.AUDIT_ARCH_I386, (1, 8, 0)) == seccomp.ret_errno(errno.EBUSY)


def test_own_ret_trace_filter_fails_with_enosys_as_natively(cprog, rules):
    prog = str(cprog("ownfilter"))
    native = subprocess.run([prog, "trace", "/etc/hostname"], capture_output=True, text=True, timeout=120).stdout
    assert native == "getppid fail ENOSYS\nopen fail ENOSYS\n"
    # getppid: a call the broker does not stop; openat: one it does (and would deny)
    r = brokerctl("run", "-e", "trace=openat", "-a", rules(DENY_HOST), "--", prog, "trace", "/etc/hostname")
    assert r.stdout == native, r.stderr
    # the broker's own stops are still told apart: the same stack judges an ordinary open
    r = brokerctl("run", "-e", "trace=openat", "-a", rules(DENY_HOST), "--", "cat", "/etc/hostname")
    assert "Permission denied" in r.stderr and r.returncode == 1
