"""The shim never crashes on ordinary (or hostile) program behaviour: tracees
that vanish while their question is out, many threads and commands, paths
that disappear under the resolver, bad `set` replies (issue 16, "Crashes and
hangs").  Each test fails without its fix."""

from __future__ import annotations

import subprocess
import sys

from conftest import brokerctl

ALLOW_ALL = r'''
import subprocess
import sys
print("hello 1 role=authorizer name=allow trace=all", flush=True)
for line in sys.stdin:
    if line.startswith("syscall "):
        print(line.split()[1], "cont", flush=True)
'''

# Holds the open of SLOW until the process that made it is gone (exit_group
# or execve by another thread), telling the program through FLAG when it
# has the question.
HOLD = r'''
import os, sys, time
slow, flag = sys.argv[1], sys.argv[2]
print("hello 1 role=authorizer name=hold trace=openat", flush=True)
for line in sys.stdin:
    if not line.startswith("syscall "):
        continue
    w = line.split()
    if slow in line:
        tid = w[3]
        open(flag, "w").close()
        end = time.monotonic() + 20
        def waiting():
            try:
                with open(f"/proc/{tid}/stat") as f:
                    return f.read().rsplit(") ", 1)[1][0] not in "ZX"
            except OSError:
                return False
        while waiting() and time.monotonic() < end:
            time.sleep(0.005)  # polls the condition: the thread must be gone first
    print(w[1], "cont", flush=True)
'''


def _no_traceback(r) -> None:
    assert "Traceback" not in r.stderr, r.stderr


def test_children_killed_while_asking(authz):
    """Item 1: `sleep 5 & kill -9 $!` thirty times: each child dies with its
    first calls' questions out; the shell goes on and prints done."""
    script = "for i in $(seq 30); do sleep 5 & kill -9 $!; done; wait; echo done"
    r = brokerctl("run", "-a", authz(ALLOW_ALL), "--", "bash", "-c", script, timeout=120)
    _no_traceback(r)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "done\n"


def _hold(authz, tmp_path, cprog, mode):
    slow, flag = tmp_path / "slow", tmp_path / "flag"
    slow.write_text("x")
    cmd = authz(HOLD) + f" {slow} {flag}"
    return brokerctl("run", "-a", cmd, "--", str(cprog("vanish")), mode, str(slow), str(flag), timeout=60)


def test_sibling_exit_group_while_asking(authz, tmp_path, cprog):
    """Item 1: the main thread exits while another thread's open is being
    decided; the late answer meets a dead thread: the session ends with the
    program's own status."""
    r = _hold(authz, tmp_path, cprog, "exitgroup")
    _no_traceback(r)
    assert r.returncode == 3, r.stderr


def test_sibling_execve_while_asking(authz, tmp_path, cprog):
    """Item 1: execve by the main thread kills the asking thread."""
    r = _hold(authz, tmp_path, cprog, "execve")
    _no_traceback(r)
    assert r.returncode == 0, r.stderr


if __name__ == "__main__":
    sys.exit("run with pytest")


def test_bad_set_offset_gets_an_error_and_the_default(rules, cprog):
    """Item 4: `set 2+9223372036854775807` is grammar-valid; it gets an error
    (logged, plain mode) and the default verdict (EPERM), not a traceback."""
    r = brokerctl("run", "-e", "trace=openat", "-a",
                  rules('*openat *"/etc/hostname"* => cont ; set 2+9223372036854775807 "x"'),
                  "--", str(cprog("opener")), "/etc/hostname", "/etc/passwd")
    _no_traceback(r)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "/etc/hostname EPERM"
    assert r.stdout.splitlines()[1].startswith("/etc/passwd ok")
    assert "outside the address space" in r.stderr


def test_on_failure_deny_lets_the_program_exit(tmp_path, cprog):
    """Item 6: once the daemon is lost with --on-failure deny, calls are
    denied but exit_group, exit and rt_sigreturn are not: the program ends
    with its own status instead of spinning (or dying of SIGSEGV)."""
    import os
    import signal

    from daemon_fixtures import Daemon, Served, popen_ctl, release_fifo
    from waiting import wait_for

    d = Daemon(tmp_path / "d")
    spy = tmp_path / "spy.py"
    spy.write_text("import sys\nlog = open(sys.argv[1], 'a')\nsys.stdin.readline()\nprint('cont', flush=True)\n"
                   "for line in sys.stdin:\n    log.write(line); log.flush()\n    print('cont', flush=True)\n")
    seen = tmp_path / "seen"
    served = Served(d, "spy", f"{sys.executable} -u {spy} {seen}", "--trace",
                    "openat,exit_group,exit,rt_sigreturn")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    errors = tmp_path / "stderr"
    p = popen_ctl("run", "--on-failure", "deny", "--", str(cprog("opener")), str(fifo), "/etc/hostname",
                  env=d.env, stderr=open(errors, "w"))  # noqa: SIM115 - the child holds it
    try:
        wait_for(lambda: seen.exists() and str(fifo) in seen.read_text(), what="the program to wait on the fifo")
        d.stop(signal.SIGKILL)
        # the shim must have noticed the loss before the program goes on
        wait_for(lambda: "failure mode deny" in errors.read_text(), timeout=30, what="the shim to notice")
        wait_for(lambda: release_fifo(fifo), what="the program to open the fifo")
        out, _ = p.communicate(timeout=20)
        err = errors.read_text()
        assert p.returncode == 0, err
        assert out.splitlines()[-1] == "/etc/hostname EPERM", err
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=120)
        served.kill()
        d.stop()


def test_greeting_answered_with_an_endless_line(authz, cprog):
    """Item 5: more than 64 KiB and no newline in answer to the greeting: the
    authorizer is failed at once, no hang; an authorizer failed at start stops
    brokerctl before the program starts (one line, exit 1)."""
    cmd = authz("import sys, time\nsys.stdout.write('x' * 70000); sys.stdout.flush()\ntime.sleep(600)\n")
    r = brokerctl("run", "-e", "trace=openat", "-a", cmd, "--", str(cprog("opener", ("-static",))), "/etc/hostname",
                  timeout=25)
    _no_traceback(r)
    assert (r.returncode, r.stdout) == (1, ""), r.stderr
    assert "over-long line" in r.stderr and "the program was not started" in r.stderr, r.stderr


def test_authorizer_that_stops_reading_is_bounded(authz, tmp_path):
    """Item 5: an authorizer that greets and then never reads again: the
    event lines waiting for it are bounded; past the bound it counts as
    failed (said once) and the rest of the calls get the default at once."""
    cmd = authz("import sys, time\nsys.stdin.readline()\nprint('cont', flush=True)\ntime.sleep(600)\n")
    long = "d" * 250 + "/"
    script = (f'p=/nonexistent/$(printf "{long}%.0s" $(seq 12)); i=0; '
              'while [ $i -lt 600 ]; do true < $p; i=$((i+1)); done 2>/dev/null; echo done')
    r = brokerctl("run", "-e", "trace=openat", "--timeout", "0.02", "--default", "allow", "-a", cmd,
                  "--", "sh", "-c", script,
                  timeout=60)
    _no_traceback(r)
    assert r.stdout == "done\n", r.stderr
    said = [ln for ln in r.stderr.splitlines() if ln.startswith("brokerd: authorizer python stopped reading")
            and ln.endswith("its questions get the default verdict")]
    assert len(said) == 1, r.stderr


def test_greeting_has_its_own_deadline(authz):
    """Item 5: a tiny --timeout does not starve a Python authorizer's greeting."""
    r = brokerctl("run", "--timeout", "0.001", "-a", authz(ALLOW_ALL.replace("trace=all", "trace=getppid")),
                  "--", "sh", "-c", "exit 7")
    _no_traceback(r)
    assert "did not answer the greeting" not in r.stderr
    assert r.returncode == 7, r.stderr


def test_authorizer_ignoring_sigterm_is_killed(tmp_path):
    """Item 5: an authorizer that ignores SIGTERM (and EOF) does not outlive
    its session: SIGKILL after a grace period."""
    import os
    import signal

    from waiting import wait_for

    pidfile = tmp_path / "pid"
    cmd = f"trap '' TERM; echo $$ > {pidfile}; read x; echo cont; while :; do sleep 1; done"
    r = brokerctl("run", "-e", "trace=getppid", "-a", cmd, "--", "true", timeout=30)
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())

    def gone() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(") ", 1)[1][0] in "ZX"
        except OSError:
            return True

    try:
        wait_for(gone, timeout=10, what="the authorizer to be gone")
    finally:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def test_userfaultfd_cannot_freeze_the_broker(cprog):
    """Item 7: a path in a userfaultfd page nobody fills would freeze the
    shim inside process_vm_readv.  Only user-mode-only userfaultfds may be
    created (EPERM otherwise, as natively for unprivileged users)."""
    r = brokerctl("run", "-e", "trace=openat", "-a", "while read l; do echo cont; done", "--",
                  str(cprog("uffd")), "kernel", timeout=30)
    assert r.stdout == "userfaultfd EPERM\n", r.stderr


def test_user_mode_userfaultfd_works_as_natively(cprog):
    """Item 7: a UFFD_USER_MODE_ONLY userfaultfd is allowed; the kernel's
    read of its unfilled page fails with EFAULT, under the broker as natively."""
    native = subprocess.run([str(cprog("uffd")), "user"], capture_output=True, text=True, timeout=30)
    r = brokerctl("run", "-e", "trace=openat", "-a", "while read l; do echo cont; done", "--",
                  str(cprog("uffd")), "user", timeout=30)
    assert r.stdout == native.stdout == "open EFAULT\n", r.stderr


KILL_THEN_ANSWER = r'''
import os, signal, sys
slow = sys.argv[1]
print("hello 1 role=authorizer name=killer trace=openat", flush=True)
for line in sys.stdin:
    if not line.startswith("syscall "):
        continue
    w = line.split()
    if slow in line:
        os.kill(int(w[2]), signal.SIGKILL)  # as `timeout -s KILL` would, while the question is out
    print(w[1], "cont", flush=True)
'''


def test_tracee_killed_just_before_its_answer(authz, tmp_path, cprog):
    """Item 1: SIGKILL from outside, then the answer at once: the answer
    meets a thread that is no longer stopped (ESRCH).  The session reports
    the program killed (brokerctl dies of SIGKILL too), no traceback."""
    slow = tmp_path / "slow"
    slow.write_text("x")
    statuses = set()
    for _ in range(5):
        r = brokerctl("run", "-a", authz(KILL_THEN_ANSWER) + f" {slow}", "--", str(cprog("opener")), str(slow),
                      timeout=60)
        _no_traceback(r)
        statuses.add(r.returncode)
    assert statuses == {-9}, r.stderr
