"""The seccomp user-notification backend: the same verdicts without ptrace,
chosen automatically when the stack allows it, debuggable with strace, and
static rules that hold in the kernel when the broker is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from conftest import BROKERCTL, brokerctl
from waiting import wait_for

NOTIFY_AUTHZ = r'''
import sys
trace, kill, extra = sys.argv[1], sys.argv[2], " ".join(sys.argv[3:])
sys.stdin.readline()
print(f"hello 1 role=authorizer name=nf trace={trace} verdicts=cont,skip-fail,skip-ok {extra}", flush=True)
answers = {"getppid": "skip-ok 4242", "getuid": "skip-fail EACCES", kill: "kill"}
for line in sys.stdin:
    if line.startswith("syscall"):
        f = line.split()
        print(f[1], answers.get(f[5], "cont"), flush=True)
'''


@pytest.mark.parametrize("backend", ["notify", "ptrace"])
def test_same_verdicts_on_both_backends(authz, cprog, backend):
    cmd = authz(NOTIFY_AUTHZ) + " getppid,getpid,getuid -"
    r = brokerctl("run", "--backend", backend, "-a", cmd, "--", str(cprog("calls")), "getppid", "getpid", "exit:5")
    assert r.returncode == 5, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "getppid ok 4242"
    assert lines[1].startswith("getpid ok ")
    r = brokerctl("run", "--backend", backend, "-a", authz(NOTIFY_AUTHZ) + " getppid getppid",
                  "--", str(cprog("calls")), "write:before\n", "getppid", "write:after\n")
    assert r.stdout == "before\nwrite ok 7\n" and r.returncode == -signal.SIGKILL


def _child_sh(p: subprocess.Popen) -> int:
    """The program (``sh -c 'while ...'``) brokerctl ``p`` launched, once it
    runs (a loaded machine starts slowly); not the ``sh -c`` that starts an
    authorizer, a child of brokerctl too for a moment."""
    def find() -> int | None:
        out = subprocess.run(["pgrep", "-P", str(p.pid), "-f", "^sh -c while"], capture_output=True,
                             text=True, timeout=120).stdout.split()
        assert p.poll() is None, p.communicate(timeout=120)[1]
        return int(out[0]) if out else None
    return wait_for(find, 30, "the launched program")


def _tracer_of(cmd: str, authz_cmd: str, *opts: str) -> str:
    r = brokerctl("run", *opts, "-a", authz_cmd, "--", "sh", "-c", "grep TracerPid /proc/self/status")
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[-1]


def test_auto_picks_notify_only_when_the_stack_allows(authz, rules):
    declared = authz(NOTIFY_AUTHZ) + " getppid -"
    assert _tracer_of("", declared) == "0"  # notify: no tracer at all
    assert _tracer_of("", declared, "--backend", "ptrace") != "0"
    assert _tracer_of("", rules()) != "0"  # a plain authorizer may answer anything: ptrace
    # openat's path would be re-read by the kernel after the decision: ptrace keeps it stable
    assert _tracer_of("", authz(NOTIFY_AUTHZ) + " openat -") != "0"


def test_program_under_notify_can_be_straced(authz, tmp_path):
    out = tmp_path / "strace.out"
    p = subprocess.Popen([*BROKERCTL, "run", "--backend", "notify", "-a", authz(NOTIFY_AUTHZ) + " getppid -",
                          "--", "sh", "-c", "while :; do sleep 0.05; done"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        sh = _child_sh(p)
        # no -f: strace 6.1 (Debian 12) can deadlock on SIGINT while a followed
        # child is forking (strace/strace#277); it once hung CI for 80 minutes
        s = subprocess.run(["timeout", "-k", "10", "-s", "INT", "1", "strace", "-o", str(out), "-p", str(sh)],
                           capture_output=True, text=True, timeout=120)
        assert "Operation not permitted" not in s.stderr, s.stderr
        assert "wait4" in out.read_text() or "clone" in out.read_text()
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=60)


def test_static_rules_hold_when_the_broker_is_killed(authz, tmp_path):
    # notify backend: no EXITKILL, so the program outlives a SIGKILLed broker;
    # the kernel still denies what the static rules deny
    target = tmp_path / "made"
    log = tmp_path / "log"
    # the log is opened once, before: an open for writing is judged by the broker's
    # guard (its /proc check), so without the broker it fails with ENOSYS, as any judged call
    script = f"while :; do mkdir {target} 2>&1 | cut -d: -f3 >&3; sleep 0.05; done 3>>{log}"
    p = subprocess.Popen([*BROKERCTL, "run", "--backend", "notify", "-a",
                          authz(NOTIFY_AUTHZ) + " getppid - deny=mkdir:EACCES,mkdirat:EACCES", "--", "sh", "-c", script],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    sh = 0
    try:
        sh = _child_sh(p)
        wait_for(lambda: log.exists() and log.read_text().count("\n") >= 2, 30, "the program's first denials")
        p.kill()
        p.wait(timeout=60)
        n = len(log.read_text().splitlines())
        wait_for(lambda: len(log.read_text().splitlines()) > n + 3, 30, "the program to go on without its broker")
        lines = log.read_text().splitlines()
        assert all(line.strip() == "Permission denied" for line in lines), set(lines)
        assert not target.exists()
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if sh:
            subprocess.run(["pkill", "-KILL", "-P", str(sh)], capture_output=True, timeout=120)
            try:
                os.kill(sh, signal.SIGKILL)
            except ProcessLookupError:
                pass


SIGNALLING_AUTHZ = r'''
import os, signal, sys, time
sys.stdin.readline()
print("hello 1 role=authorizer name=sig trace=getppid verdicts=cont,skip-fail,skip-ok", flush=True)
for line in sys.stdin:
    if line.startswith("syscall"):
        f = line.split()
        os.kill(int(f[2]), signal.SIGUSR1)  # while the call waits for this answer
        time.sleep(0.2)
        print(f[1], "cont", flush=True)
'''

HANDLED_SIGNAL_PROG = r'''
import ctypes, os, signal
signal.signal(signal.SIGUSR1, lambda *a: None)  # Python's handlers have no SA_RESTART
libc = ctypes.CDLL(None, use_errno=True)
r = libc.syscall(110)  # getppid: never fails natively
print("getppid", "EINTR" if r < 0 and ctypes.get_errno() == 4 else "ok" if r == os.getppid() else r)
'''


def test_a_handled_signal_does_not_fail_a_call_the_broker_is_deciding(authz):
    """A signal caught by a handler without SA_RESTART, arriving while the
    broker decides a notified call, used to end the call with EINTR, even
    getppid or fork, which never fail so natively (Python's fork raised
    InterruptedError).  The filter waits killable once the broker has the
    call (SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, Linux 5.19); the signal
    is handled when the call returns, as for any call that does not block."""
    r = brokerctl("run", "--backend", "notify", "-a", authz(SIGNALLING_AUTHZ), "--",
                  sys.executable, "-c", HANDLED_SIGNAL_PROG)
    assert (r.returncode, r.stdout) == (0, "getppid ok\n"), r.stderr
