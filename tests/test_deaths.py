"""Fail closed when a piece of the broker dies: a SIGKILLed brokerctl takes
its authorizers (even one that ignores SIGTERM and EOF) and its traced
program with it.  The failure-mode table in docs/shim.md names these tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from conftest import BROKERCTL
from daemon_fixtures import wait_for

# Answers the greeting, says its pid, then never reads again: it ignores
# SIGTERM and loops (as a policy stuck in a bug would), so neither EOF on its
# input nor the broker's end-of-session SIGTERM would stop it.
STUCK = r'''
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("hello 1 role=authorizer name=stuck trace=getppid", flush=True)
open(sys.argv[1], "w").write(str(os.getpid()))
while True:
    time.sleep(0.05)
'''


def _gone(pid: int) -> bool:
    """No such process, or only its zombie left."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] in "ZX"
    except OSError:
        return True


def _read_pid(path) -> int | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return int(text) if text.strip() else None


def _kill(pid: int | None) -> None:
    if pid is not None and not _gone(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_sigkilled_brokerctl_takes_its_authorizer_and_program(tmp_path):
    """kill -9 of brokerctl: the authorizer (ignoring SIGTERM, looping, never
    reading its closed input) and the traced program are both gone.  Without
    the authorizer's parent-death signal it lived on as an orphan for ever."""
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent(STUCK))
    apid, ppid = tmp_path / "authorizer.pid", tmp_path / "program.pid"
    cmd = f"{sys.executable} -u {script} {apid}"
    broker = subprocess.Popen([*BROKERCTL, "run", "-a", cmd, "--", "sh", "-c", f"echo $$ > {ppid}; exec sleep 600"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    authorizer = program = None
    try:
        authorizer = wait_for(lambda: _read_pid(apid), timeout=30, what="the authorizer to start")
        program = wait_for(lambda: _read_pid(ppid), timeout=30, what="the program to start")
        broker.kill()
        broker.wait()
        wait_for(lambda: _gone(program), timeout=10, what="the traced program to die with its broker")
        wait_for(lambda: _gone(authorizer), timeout=10, what="the authorizer to die with its broker")
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()
        _kill(authorizer)
        _kill(program)
        broker.stderr.close()


# A registered authorizer's instance: takes the session's greeting, says its
# pid, then loops ignoring SIGTERM and its input.
STUCK_INSTANCE = r'''
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
sys.stdin.readline()
print("cont", flush=True)
open(sys.argv[1], "w").write(str(os.getpid()))
while True:
    time.sleep(0.05)
'''


def test_sigkilled_serve_takes_its_session_instances(tmp_path):
    """kill -9 of `brokerctl serve` (only serve, not its group): the instance
    it started for a session (ignoring SIGTERM, looping) is gone too.  Without
    the tie it lived on as an orphan after serve and its session were gone."""
    from daemon_fixtures import Daemon, Served, popen_ctl

    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent(STUCK_INSTANCE))
    apid, ppid = tmp_path / "instance.pid", tmp_path / "program.pid"
    d = Daemon(tmp_path / "d")
    served = Served(d, "stuck", f"{sys.executable} -u {script} {apid}", "--trace", "getppid")
    run = popen_ctl("run", "--", "sh", "-c", f"echo $$ > {ppid}; exec sleep 600", env=d.env)
    instance = None
    try:
        instance = wait_for(lambda: _read_pid(apid), timeout=30, what="the instance to start")
        wait_for(lambda: _read_pid(ppid), timeout=30, what="the program to start")
        served.proc.kill()
        served.proc.wait()
        wait_for(lambda: _gone(instance), timeout=10, what="the instance to die with serve")
    finally:
        run.kill()
        run.communicate()
        _kill(instance)
        served.kill()
        d.stop()


def test_authorizer_killed_by_a_signal_mid_session(cprog, tmp_path):
    """An authorizer that crashes (here SIGKILLs itself) while a question is
    out: that call and the later ones get its default (EPERM), nothing hangs,
    and the program goes on to its end."""
    from conftest import brokerctl

    files = []
    for name in ("one", "two", "three"):
        f = tmp_path / name
        f.write_text(name + "\n")
        files.append(str(f))
    crash = ("sh -c 'read -r g; echo cont; while read -r l; do case \"$l\" in *two*) kill -KILL $$;; esac; "
             "echo cont; done'")
    r = brokerctl("run", "-e", "trace=openat", "-a", crash, "--", str(cprog("opener")), *files, timeout=60)
    assert r.stdout.splitlines() == [f"{files[0]} ok one", f"{files[1]} EPERM", f"{files[2]} EPERM"], r.stderr
    assert "Traceback" not in r.stderr


# The notify backend's authorizer: getppid answered skip-ok 4242.
NOTIFY_AUTHZ = r'''
import sys
sys.stdin.readline()
print("hello 1 role=authorizer name=nf trace=getppid verdicts=cont,skip-fail,skip-ok", flush=True)
for line in sys.stdin:
    if line.startswith("syscall"):
        print(line.split()[1], "skip-ok 4242", flush=True)
'''

# Calls getppid in a loop, logging "RESULT ERRNO" per call.
GETPPID_LOOP = r'''
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
open(sys.argv[2], "w").write(str(os.getpid()))
out = open(sys.argv[1], "a", buffering=1)
while True:
    ctypes.set_errno(0)
    r = libc.syscall(110)  # getppid
    out.write(f"{r} {ctypes.get_errno() if r < 0 else 0}\n")
    time.sleep(0.02)
'''


def test_notify_listener_closed_calls_fail_with_enosys(tmp_path):
    """Notify backend, broker SIGKILLed: its listener closes, and a call that
    needed an answer fails with ENOSYS from then on; it never runs unjudged
    (the real parent pid never shows up)."""
    authz, prog = tmp_path / "nf.py", tmp_path / "loop.py"
    authz.write_text(NOTIFY_AUTHZ)
    prog.write_text(GETPPID_LOOP)
    log, pidfile = tmp_path / "log", tmp_path / "pid"
    broker = subprocess.Popen([*BROKERCTL, "run", "--backend", "notify", "-a", f"{sys.executable} -u {authz}",
                               "--", sys.executable, str(prog), str(log), str(pidfile)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    program = None

    def results() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    try:
        wait_for(lambda: "4242 0" in results(), timeout=30, what="a judged getppid")
        program = _read_pid(pidfile)
        broker.kill()
        broker.wait()
        n = len(results())
        wait_for(lambda: len(results()) > n + 3, timeout=30, what="the program to go on without its broker")
        lines = results()
        assert set(lines) <= {"4242 0", "-1 38"}, set(lines)
        assert lines[-1] == "-1 38"
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()
        _kill(program)
        broker.stderr.close()
