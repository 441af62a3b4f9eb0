"""Ways around the broker that the broker closes (docs/security.md)."""

from __future__ import annotations

import subprocess

import pytest
from conftest import brokerctl

#: every test here runs with the compiled stop-loop calls and with the pure-Python fallback
pytestmark = pytest.mark.usefixtures("accel_mode")

DENY_HOST = '*openat *"/etc/hostname"* => skip-fail EACCES'


def test_clone_untraced_child_is_still_traced(cprog, rules):
    prog = str(cprog("calls"))
    native = subprocess.run([prog, "untraced"], capture_output=True, text=True, timeout=120).stdout
    assert native == "untraced-child-open ok 0\n"
    r = brokerctl("run", "-e", "trace=openat", "-a", rules(DENY_HOST), "--", prog, "untraced")
    assert r.stdout == "untraced-child-open fail EACCES\n", r.stderr
    # and with every call subscribed (no filter shortcut)
    r = brokerctl("run", "-a", rules(DENY_HOST), "--", prog, "untraced")
    assert r.stdout == "untraced-child-open fail EACCES\n", r.stderr


def _clone3_native(prog: str, *actions: str) -> str:
    return subprocess.run([prog, *actions], capture_output=True, text=True, timeout=60).stdout


def test_clone3_runs_like_native_and_its_children_stay_traced(cprog, rules):
    prog = str(cprog("clone3"))
    # allowed: the same output as natively, bad sizes and pointers included
    acts = ("plain", "untraced", "badsize", "spawn")
    r = brokerctl("run", "-a", rules(), "--", prog, *acts)
    assert r.stdout == _clone3_native(prog, *acts), r.stderr
    # a child made by clone3, with or without CLONE_UNTRACED, is still judged
    for sub in (("-e", "trace=openat"), ()):
        r = brokerctl("run", *sub, "-a", rules(DENY_HOST), "--", prog, "plain", "untraced", "spawn")
        assert r.stdout.splitlines() == ["plain: clone3 ok, child open EACCES", "untraced: clone3 ok, child open EACCES",
                                         "spawned", "posix_spawn ok, exit 0", "thread-open fail EACCES"], r.stderr


def test_clone3_flags_flipped_by_another_thread_do_not_untrace(cprog, rules):
    # the kernel reads the shim's read-only copy, not the struct the flipping thread writes
    prog = str(cprog("clone3"))
    assert _clone3_native(prog, "flip:200") == "flip: 200 of 200 children made, 200 opened, 0 denied by the policy\n"
    r = brokerctl("run", "-e", "trace=openat", "-a", rules(DENY_HOST), "--", prog, "flip:200")
    assert r.stdout == "flip: 200 of 200 children made, 0 opened, 200 denied by the policy\n", r.stderr


def test_clone3_without_stable_args_fails_with_enosys_so_libc_falls_back(cprog, rules):
    prog = str(cprog("calls"))
    r = brokerctl("run", "--no-stable-args", "-e", "trace=openat", "-a", rules(DENY_HOST), "--",
                  prog, "clone3-untraced", "threads:2", "fork:1")
    lines = r.stdout.splitlines()
    assert lines[0] == "clone3-untraced fail ENOSYS"
    # threads and fork still work (glibc uses clone when clone3 says ENOSYS) and stay traced
    assert lines.count("thread-open fail EACCES") == 2
    assert "child-open fail EACCES" in lines


def test_io_uring_denied_by_default(cprog):
    prog = str(cprog("calls"))
    assert brokerctl("run", "--", prog, "io_uring").stdout == "io_uring_setup fail EPERM\n"
    r = brokerctl("run", "--allow-io-uring", "--", prog, "io_uring")
    native = subprocess.run([prog, "io_uring"], capture_output=True, text=True, timeout=120).stdout
    assert r.stdout == native


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(") ", 1)[1][0]


def test_stopping_own_group_does_not_stop_the_broker(rules, tmp_path):
    import os
    import signal

    from conftest import BROKERCTL
    from waiting import wait_for

    # like a shell job: brokerctl leads a process group the program shares
    p = subprocess.Popen([*BROKERCTL, "run", "-a", rules(), "--", "sh", "-c", "kill -STOP 0; echo resumed"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # wait (no fixed sleep) until the program is stopped *after* its kill
        # returned (outside any syscall): any SIGSTOP the group kill sent the
        # broker has been sent by then, so it is pending or has stopped it
        def stopped_sh() -> int | None:
            kids = subprocess.run(["pgrep", "-P", str(p.pid), "-x", "sh"], capture_output=True, text=True, timeout=120).stdout
            return next((int(k) for k in kids.split() if _stopped_after_a_call(int(k))), None)

        sh = wait_for(stopped_sh, 60, "the program to stop itself")
        assert _state(p.pid) not in "tT" and not _pending(p.pid, signal.SIGSTOP), \
            "the broker was stopped with its program's group"

        # "t" may still be the signal-delivery stop: SIGCONT until the job goes on
        def continued() -> tuple[str, str] | None:
            try:
                os.kill(sh, signal.SIGCONT)
            except ProcessLookupError:  # it already went on and ended
                return p.communicate(timeout=60)
            try:
                return p.communicate(timeout=0.2)
            except subprocess.TimeoutExpired:
                return None

        out, err = wait_for(continued, 60, "the program to go on after SIGCONT")
        assert out == "resumed\n", err
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=60)


def _stopped_after_a_call(pid: int) -> bool:
    """Stopped, and not inside a system call (so its kill has returned)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return _state(pid) in "tT" and f.read().startswith("-1 ")
    except (FileNotFoundError, ProcessLookupError):
        return False


def _pending(pid: int, sig: int) -> bool:
    """Is ``sig`` pending for ``pid`` (thread or process-wide)?"""
    with open(f"/proc/{pid}/status") as f:
        masks = [int(line.split()[1], 16) for line in f if line.startswith(("SigPnd:", "ShdPnd:"))]
    return any(m & (1 << (sig - 1)) for m in masks)


def test_program_cannot_kill_its_broker(rules):
    r = brokerctl("run", "-a", rules(), "--", "sh", "-c", "kill -9 $PPID; echo still here")
    assert r.returncode == 0
    assert "still here" in r.stdout
    assert "aimed at the broker" in r.stderr


def test_program_cannot_ptrace_an_authorizer(rules, tmp_path):
    pidfile = tmp_path / "authz.pid"
    authz = f"sh -c 'echo $$ > {pidfile}; exec {rules()}'"
    r = brokerctl("run", "-a", authz, "--", "sh", "-c",
                  f"timeout 30 strace -o /dev/null -p $(cat {pidfile}); echo done")
    assert "Operation not permitted" in r.stderr, r.stderr
    assert "done" in r.stdout


INJECT_DENY = "syscall * mkdir *escaped* => skip-fail EPERM"


@pytest.mark.parametrize("mode", ["signal", "patch"])
def test_no_program_code_runs_unjudged_during_an_injection(cprog, rules, tmp_path, mode):
    """While the broker injects its scratch-region set-up into a thread, no
    code of the program may run in that thread unjudged.  signal: a handler
    due between two injected calls (another thread sends SIGUSR1 meanwhile)
    used to run with every call let through; now signals wait until the
    interrupted call is back.  patch: the call's code rewritten by another
    thread while it is stopped used to run in its place; now a call that is
    not the injected one ends the process.  Both make the denied
    mkdir(escaped) without the fix (within a few fresh processes)."""
    prog = str(cprog("injectsig", ("-static", "-mno-red-zone")))
    r = brokerctl("run", "-e", "trace=mkdir", "-a", rules(INJECT_DENY), "--", prog, str(tmp_path), "30", mode,
                  timeout=300)
    assert not (tmp_path / "escaped").exists(), r.stdout + r.stderr[-2000:]
    assert r.stdout == "held\n", r.stdout + r.stderr[-2000:]
    assert "Traceback" not in r.stderr
