"""Ways around the broker that the broker closes (docs/security.md)."""

from __future__ import annotations

import subprocess

from conftest import brokerctl

DENY_HOST = '*openat *"/etc/hostname"* => skip-fail EACCES'


def test_clone_untraced_child_is_still_traced(cprog, rules):
    prog = str(cprog("calls"))
    native = subprocess.run([prog, "untraced"], capture_output=True, text=True).stdout
    assert native == "untraced-child-open ok 0\n"
    r = brokerctl("run", "-e", "trace=openat", "-a", rules(DENY_HOST), "--", prog, "untraced")
    assert r.stdout == "untraced-child-open fail EACCES\n", r.stderr
    # and with every call subscribed (no filter shortcut)
    r = brokerctl("run", "-a", rules(DENY_HOST), "--", prog, "untraced")
    assert r.stdout == "untraced-child-open fail EACCES\n", r.stderr


def test_clone3_fails_with_enosys_so_libc_falls_back(cprog, rules):
    prog = str(cprog("calls"))
    r = brokerctl("run", "-e", "trace=openat", "-a", rules(DENY_HOST), "--", prog, "clone3-untraced", "threads:2", "fork:1")
    lines = r.stdout.splitlines()
    assert lines[0] == "clone3-untraced fail ENOSYS"
    # threads and fork still work (glibc uses clone when clone3 says ENOSYS) and stay traced
    assert lines.count("thread-open fail EACCES") == 2
    assert "child-open fail EACCES" in lines


def test_io_uring_denied_by_default(cprog):
    prog = str(cprog("calls"))
    assert brokerctl("run", "--", prog, "io_uring").stdout == "io_uring_setup fail EPERM\n"
    r = brokerctl("run", "--allow-io-uring", "--", prog, "io_uring")
    native = subprocess.run([prog, "io_uring"], capture_output=True, text=True).stdout
    assert r.stdout == native


def _state(pid: int) -> str:
    """The process's state letter; "?" once it is gone (pgrep may list a short-lived child)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0]
    except (FileNotFoundError, ProcessLookupError):
        return "?"


def test_stopping_own_group_does_not_stop_the_broker(rules, tmp_path):
    import os
    import signal
    import sys
    import time

    from conftest import BROKERCTL

    # like a shell job: brokerctl leads a process group the program shares
    p = subprocess.Popen([*BROKERCTL, "run", "-a", rules(), "--", "sh", "-c", "kill -STOP 0; echo resumed"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        sh = None
        while time.monotonic() < deadline:
            # by name: the launch may pass through a short-lived, also ptrace-stopped child first
            kids = subprocess.run(["pgrep", "-P", str(p.pid), "-x", "sh"], capture_output=True, text=True).stdout.split()
            sh = next((int(k) for k in kids if _state(int(k)) in "tT"), None)
            if sh:
                break
            time.sleep(0.05)
        assert sh, "the program did not stop itself"
        time.sleep(0.3)  # give a wrongly sent SIGSTOP time to land on the broker
        assert _state(p.pid) not in "tT", "the broker was stopped with its program's group"
        # "t" may still be the signal-delivery stop: SIGCONT until the job goes on
        for _ in range(100):
            os.kill(sh, signal.SIGCONT)
            try:
                out, err = p.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
        assert out == "resumed\n", err
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    del sys


def test_program_cannot_kill_its_broker(rules):
    r = brokerctl("run", "-a", rules(), "--", "sh", "-c", "kill -9 $PPID; echo still here")
    assert r.returncode == 0
    assert "still here" in r.stdout
    assert "aimed at the broker" in r.stderr


def test_program_cannot_ptrace_an_authorizer(rules, tmp_path):
    pidfile = tmp_path / "authz.pid"
    authz = f"sh -c 'echo $$ > {pidfile}; exec {rules()}'"
    r = brokerctl("run", "-a", authz, "--", "sh", "-c",
                  f"strace -o /dev/null -p $(cat {pidfile}) & sleep 0.5; kill $! 2>/dev/null; wait $!; echo done")
    assert "Operation not permitted" in r.stderr, r.stderr
    assert "done" in r.stdout
