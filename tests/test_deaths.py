"""Fail closed when a piece of the broker dies: a SIGKILLed brokerctl takes
its authorizers (even one that ignores SIGTERM and EOF) and its traced
program with it.  The failure-mode table in docs/shim.md names these tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import BROKERCTL
from waiting import wait_for

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


#: an authorizer command, as one program, and as compound shell commands whose
#: shell forks it (the process the broker starts is then the shell)
FORMS = {"simple": "{}", "pipeline": "{} | cat", "list": "{}; true", "nested-sh": "sh -c '{}'"}


@pytest.mark.parametrize("form", FORMS)
def test_sigkilled_brokerctl_takes_its_authorizer_and_program(tmp_path, form):
    """kill -9 of brokerctl: the authorizer (ignoring SIGTERM, looping, never
    reading its closed input) and the traced program are both gone.  Without
    the authorizer's parent-death signal it lived on as an orphan for ever;
    with it, but without the warden, one a compound command's shell forked
    did (the tie holds only the process the broker started)."""
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent(STUCK))
    apid, ppid = tmp_path / "authorizer.pid", tmp_path / "program.pid"
    cmd = FORMS[form].format(f"{sys.executable} -u {script} {apid}")
    broker = subprocess.Popen([*BROKERCTL, "run", "-a", cmd, "--", "sh", "-c", f"echo $$ > {ppid}; exec sleep 600"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    authorizer = program = None
    try:
        authorizer = wait_for(lambda: _read_pid(apid), timeout=30, what="the authorizer to start")
        program = wait_for(lambda: _read_pid(ppid), timeout=30, what="the program to start")
        broker.kill()
        broker.wait(timeout=60)
        wait_for(lambda: _gone(program), timeout=10, what="the traced program to die with its broker")
        wait_for(lambda: _gone(authorizer), timeout=10, what="the authorizer to die with its broker")
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait(timeout=60)
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


@pytest.mark.parametrize("form", ["simple", "list"])
def test_sigkilled_serve_takes_its_session_instances(tmp_path, form):
    """kill -9 of `brokerctl serve` (only serve, not its group): the instance
    it started for a session (ignoring SIGTERM, looping) is gone too.  Without
    the tie it lived on as an orphan after serve and its session were gone
    (and, as a compound command's child, without the warden)."""
    from daemon_fixtures import Daemon, Served, popen_ctl

    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent(STUCK_INSTANCE))
    apid, ppid = tmp_path / "instance.pid", tmp_path / "program.pid"
    d = Daemon(tmp_path / "d")
    served = Served(d, "stuck", FORMS[form].format(f"{sys.executable} -u {script} {apid}"), "--trace", "getppid")
    run = popen_ctl("run", "--", "sh", "-c", f"echo $$ > {ppid}; exec sleep 600", env=d.env)
    instance = None
    try:
        instance = wait_for(lambda: _read_pid(apid), timeout=30, what="the instance to start")
        wait_for(lambda: _read_pid(ppid), timeout=30, what="the program to start")
        served.proc.kill()
        served.proc.wait(timeout=60)
        wait_for(lambda: _gone(instance), timeout=10, what="the instance to die with serve")
    finally:
        run.kill()
        run.communicate(timeout=120)
        _kill(instance)
        served.kill()
        d.stop()


# Answers the greeting with a handshake asking about every openat, says its
# pid, then never reads again, ignoring SIGTERM: replay waits for an answer.
STUCK_OPENAT = STUCK.replace("trace=getppid", "trace=openat")


def test_sigkilled_replay_takes_its_authorizer(tmp_path):
    """kill -9 of `brokerctl replay` while it waits for an authorizer's
    answer: the authorizer is gone too.  Before, replay started it with a
    plain Popen: it lived on as an orphan for ever."""
    journal = tmp_path / "run.jsonl"
    r = subprocess.run([*BROKERCTL, "run", "--audit", str(journal), "-a", "sed -u s/.*/cont/", "--",
                        "cat", "/etc/hostname"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent(STUCK_OPENAT))
    apid = tmp_path / "authorizer.pid"
    replay = subprocess.Popen([*BROKERCTL, "replay", str(journal), "--timeout", "600", "-a",
                               FORMS["list"].format(f"{sys.executable} -u {script} {apid}")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    authorizer = None
    try:
        authorizer = wait_for(lambda: _read_pid(apid), timeout=30, what="the authorizer to start")
        replay.kill()
        replay.wait(timeout=60)
        wait_for(lambda: _gone(authorizer), timeout=10, what="the authorizer to die with replay")
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.wait(timeout=60)
        _kill(authorizer)


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
        broker.wait(timeout=60)
        n = len(results())
        wait_for(lambda: len(results()) > n + 3, timeout=30, what="the program to go on without its broker")
        lines = results()
        assert set(lines) <= {"4242 0", "-1 38"}, set(lines)
        assert lines[-1] == "-1 38"
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait(timeout=60)
        _kill(program)
        broker.stderr.close()


# Answers every call (the default: cont), and after the end of its input
# takes a moment to write its last record (as an audit journal still
# flushing would).
LAST_WORDS = r'''
import sys, time
from brokerd.clients.authorizer import Authorizer
Authorizer("last", trace=["getppid"]).run()
time.sleep(0.2)
open(sys.argv[1], "w").write("finished\n")
'''


def test_a_finished_session_lets_its_authorizer_write_its_last_records(tmp_path):
    """When the program ends, the authorizers' input ends first and they get
    a moment to finish on their own; SIGTERM comes only to one still there
    after it.  Before, SIGTERM came with the end of input, and a journal's
    last records (or half a record) were lost."""
    script, out = tmp_path / "last.py", tmp_path / "out"
    script.write_text(LAST_WORDS)
    r = subprocess.run([*BROKERCTL, "run", "-a", f"{sys.executable} -u {script} {out}", "--",
                        sys.executable, "-c", "import os; print(os.getppid() > 0)"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "True\n", r.stderr
    assert out.read_text() == "finished\n", r.stderr


# Forks a daemon first (setsid, then a second fork: a session and process
# group of its own, as daemonizing programs do), waits until it says its pid,
# then answers every question with cont.
DAEMONIZES = r'''
import os, signal, sys
pidfile = sys.argv[1]
r, w = os.pipe()
if os.fork() == 0:
    os.close(r)
    os.setsid()
    if os.fork() == 0:
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
        os.write(w, b"x")
        os.close(w)
        while True:  # a daemon: lives until killed
            signal.pause()
    os._exit(0)
os.close(w)
os.read(r, 1)  # the daemon has written its pid (or died: end of file)
os.close(r)
for line in sys.stdin:
    print("cont", flush=True)
'''


def _cells_here() -> bool:
    """Can this process make the cgroups the wardens kill?"""
    from brokerd.decision import tether

    path = tether.cell()
    if path is not None:
        os.rmdir(path)
    return path is not None


@pytest.mark.parametrize("end", ["session-ends", "brokerctl-killed"])
def test_an_authorizers_setsid_child_does_not_outlive_the_session(tmp_path, end):
    """An authorizer whose child leaves its process group (setsid, as every
    daemon does): the warden killed only the group, so the child outlived
    the session, and a SIGKILLed brokerctl, for ever.  Now each authorizer
    runs in a cgroup of its own that the warden kills whole."""
    if not _cells_here():
        pytest.skip("no cgroup v2 with cgroup.kill writable here (root or a delegated subtree, "
                    "Linux 5.14+): a setsid'd child escapes the process group the warden kills")
    script = tmp_path / "daemonizes.py"
    script.write_text(DAEMONIZES)
    dpid = tmp_path / "daemon.pid"
    cmd = f"{sys.executable} -u {script} {dpid}"
    daemon = None
    if end == "session-ends":
        r = subprocess.run([*BROKERCTL, "run", "-a", cmd, "--", "true"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        daemon = _read_pid(dpid)
    else:
        broker = subprocess.Popen([*BROKERCTL, "run", "-a", cmd, "--", "sleep", "600"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            daemon = wait_for(lambda: _read_pid(dpid), timeout=30, what="the authorizer's daemon to start")
        finally:
            broker.kill()
            broker.wait(timeout=60)
    try:
        assert daemon is not None
        wait_for(lambda: _gone(daemon), timeout=30, what="the authorizer's setsid'd child to die with its session")
    finally:
        _kill(daemon)
