"""What happens when the daemon goes away under a session (its failure mode:
kill, deny, allow), configuration reload on SIGHUP without dropping sessions,
and brokerctl's control commands on bad input or no daemon."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time

import pytest
from daemon_fixtures import Daemon, Served, popen_ctl, release_fifo, run_ctl
from waiting import wait_for

SPY = r'''
import sys
log = open(sys.argv[1], "a")
sys.stdin.readline()
print("cont", flush=True)
for line in sys.stdin:
    log.write(line); log.flush()
    print("cont", flush=True)
'''


@pytest.mark.parametrize("mode", ["kill", "deny", "allow"])
def test_daemon_killed_applies_the_failure_mode(tmp_path, cprog, mode):
    import sys

    d = Daemon(tmp_path / "d")
    spy = tmp_path / "spy.py"
    spy.write_text(SPY)
    seen = tmp_path / "seen"
    served = Served(d, "spy", f"{sys.executable} -u {spy} {seen}", "--trace", "openat")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    errors = tmp_path / "stderr"
    p = popen_ctl("run", "--on-failure", mode, "--", str(cprog("opener")), str(fifo), "/etc/hostname",
                  env=d.env, stderr=open(errors, "w"))  # noqa: SIM115 - the child holds it
    try:
        wait_for(lambda: seen.exists() and str(fifo) in seen.read_text(), what="the program to wait on the fifo")
        [s] = d.query("sessions")
        assert s["failure"] == mode
        d.stop(signal.SIGKILL)
        if mode == "kill":
            # the program waits on the fifo for ever: only the kill ends it
            out, _ = p.communicate(timeout=60)
            err = errors.read_text()
            assert p.returncode == -signal.SIGKILL, err
            assert "failure mode kill" in err
        else:
            # the shim must have noticed the loss before the program goes on
            wait_for(lambda: f"failure mode {mode}" in errors.read_text(), timeout=30, what="the shim to notice")
            wait_for(lambda: release_fifo(fifo), what="the program to open the fifo")
            out, _ = p.communicate(timeout=30)
            err = errors.read_text()
            assert p.returncode == 0, err
            lines = out.splitlines()
            if mode == "deny":
                assert lines[-1] == "/etc/hostname EPERM", err
            else:
                assert lines[-1].startswith("/etc/hostname ok"), err
                # the registered authorizer still decides: its socket never went through the daemon
                assert "/etc/hostname" in seen.read_text()
            assert f"failure mode {mode}" in err
    finally:
        release_fifo(fifo)
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=120)
        served.kill()
        d.stop()


def test_reload_on_sighup_keeps_sessions(tmp_path, cprog):
    d = Daemon(tmp_path / "d")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    audit = tmp_path / "audit.jsonl"
    p = popen_ctl("run", "-e", "trace=openat", "-a", "sh -c 'read g; echo cont; while read l; do echo cont; done'",
                  "--", str(cprog("opener")), str(fifo), "/etc/hostname", env=d.env)
    try:
        [s] = wait_for(lambda: d.query("sessions"), what="the session")
        assert s["failure"] == "kill"
        d.config.write_text(f'audit_log = "{audit}"\ndefault_failure = "deny"\nauthorizer_deadline = 2.5\n')
        d.proc.send_signal(signal.SIGHUP)
        d.notify.wait("RELOADING=1")
        d.notify.wait("READY=1")
        # the session survived, and now sends its decisions to the new audit log
        assert [x["id"] for x in d.query("sessions")] == [s["id"]]
        wait_for(lambda: release_fifo(fifo), what="the program to open the fifo")
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0 and "/etc/hostname ok" in out, err
        wait_for(lambda: audit.exists() and "/etc/hostname" in audit.read_text(), what="audit after reload")
        # new sessions get the new default failure mode
        p2 = popen_ctl("run", "--", "sleep", "30", env=d.env)
        [s2] = wait_for(lambda: d.query("sessions"), what="the second session")
        assert s2["failure"] == "deny"
        p2.kill()
        p2.communicate(timeout=120)
        # a broken file is refused and the old configuration stays
        d.config.write_text("default_failure = 'sometimes'\n")
        d.proc.send_signal(signal.SIGHUP)
        d.notify.wait("READY=1")
        wait_for(lambda: "reload failed" in d.logtext(), what="the reload error")
        assert d.proc.poll() is None
    finally:
        release_fifo(fifo)
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=120)
        d.stop()


def test_control_errors(tmp_path):
    # no daemon
    r = run_ctl("sessions", env={"BROKERD_SOCKET": str(tmp_path / "none.sock")})
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("brokerctl: cannot reach the brokerd daemon at ") and r.stderr.count("\n") == 1
    r = run_ctl("stats", env={"BROKERD_SOCKET": "none"})
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no brokerd daemon" in r.stderr
    d = Daemon(tmp_path / "d")
    try:
        for args, code, text in [
            (("kill", "42"), 3, "brokerctl: no session 42\n"),
            (("detach", "42"), 3, "brokerctl: no session 42\n"),
            (("kill", "abc"), 2, "brokerctl: kill: session id must be a number, not 'abc'\n"),
            (("detach",), 2, None),
            (("sessions", "--bogus"), 2, None),
        ]:
            r = d.ctl(*args)
            assert r.returncode == code, (args, r)
            assert r.stderr.count("\n") == 1 and r.stderr.startswith("brokerctl: "), (args, r.stderr)
            if text:
                assert r.stderr == text
        assert d.ctl("sessions").stdout == "no sessions\n"
        assert d.ctl("authorizers").stdout == "no authorizers registered\n"
        st = json.loads(d.ctl("stats", "--json").stdout)
        assert st["sessions"] == 0 and st["uptime"] >= 0
        # garbage on the socket: an error line, and the daemon carries on
        for junk in (b"\x00\xff garbage\n", b"hello 7 role=tracer\n", b"hello 1 role=wizard\n", b"x" * 70000 + b"\n"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.settimeout(5)
                c.connect(d.socket)
                c.sendall(junk)
                assert c.recv(4096).startswith(b"error "), junk[:20]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(5)
            c.connect(d.socket)
            c.sendall(b"hello 1 role=control\nfrobnicate\nsessions\n")
            f = c.makefile("rb")
            assert f.readline().startswith(b"hello 1 role=broker")
            assert f.readline().startswith(b"error unknown-command ")
            assert f.readline() == b"ok []\n"
        assert d.ctl("stats").returncode == 0
    finally:
        d.stop()


def test_user_daemon_refuses_other_uids(tmp_path):
    # a user's own daemon (--user) only talks to its uid and root; here the
    # daemon is root's, so another uid is refused
    from daemon_fixtures import shared_dir

    if os.geteuid() != 0 or not os.path.exists("/usr/bin/python3.11"):
        pytest.skip("needs root and a system python")
    root = shared_dir(tmp_path)
    d = Daemon(root / "d", user=True)
    (root / "d").chmod(0o755)
    try:
        os.chmod(d.socket, 0o666)  # even if the socket were open to all
        r = d.ctl("sessions", user=65534)
        assert r.returncode == 1 and "refused: permission" in r.stderr, r.stderr
        assert d.ctl("sessions").returncode == 0
    finally:
        d.stop()
    assert not os.path.exists(d.socket)  # removed on exit


def test_daemon_hangs_decisions_go_on_and_new_runs_fail_closed(tmp_path, cprog):
    # the daemon is not on the decision path: stopped (SIGSTOP), its running
    # sessions are decided as before; a new run waits at most 2 s for its
    # greeting and fails with one line, never running the program unbrokered
    import sys

    d = Daemon(tmp_path / "d")
    spy = tmp_path / "spy.py"
    spy.write_text(SPY)
    seen = tmp_path / "seen"
    served = Served(d, "spy", f"{sys.executable} -u {spy} {seen}", "--trace", "openat")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    p = popen_ctl("run", "--", str(cprog("opener")), str(fifo), "/etc/hostname", env=d.env)
    try:
        wait_for(lambda: seen.exists() and str(fifo) in seen.read_text(), what="the program to wait on the fifo")
        d.proc.send_signal(signal.SIGSTOP)
        marker = tmp_path / "ran"
        t0 = time.monotonic()
        r = run_ctl("run", "--", "/bin/sh", "-c", f"echo yes > {marker}", env=d.env)
        assert r.returncode == 1 and time.monotonic() - t0 < 10, r
        assert "did not greet" in r.stderr and r.stderr.count("\n") == 1 and not marker.exists()
        wait_for(lambda: release_fifo(fifo), what="the program to open the fifo")
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0 and out.splitlines()[-1].startswith("/etc/hostname ok"), err
        assert "/etc/hostname" in seen.read_text()  # decided by the registered authorizer, daemon stopped
    finally:
        d.proc.send_signal(signal.SIGCONT)
        release_fifo(fifo)
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=120)
        served.kill()
        d.stop()


def test_shim_killed_ends_program_session_and_authorizer_instance(tmp_path, cprog):
    # brokerctl (the shim) SIGKILLed: the kernel kills the traced program
    # (PTRACE_O_EXITKILL), the daemon drops the session, and the registered
    # authorizer's instance sees EOF on that session's socket
    d = Daemon(tmp_path / "d")
    bye = tmp_path / "bye"
    served = Served(d, "eof", f"sh -c 'read g; echo cont; while read l; do echo cont; done; echo eof >> {bye}'",
                    "--trace", "openat")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    p = popen_ctl("run", "--", str(cprog("opener")), str(fifo), env=d.env)
    try:
        [s] = wait_for(lambda: d.query("sessions"), what="the session")
        program = wait_for(lambda: d.query("sessions")[0]["target"], what="the program's pid")
        p.kill()
        p.communicate(timeout=120)

        def gone() -> bool:
            try:
                return open(f"/proc/{program}/stat").read().split(") ")[1][0] in "ZX"
            except (FileNotFoundError, ProcessLookupError):
                return True
        wait_for(gone, what="the traced program to die with its shim")
        wait_for(lambda: d.query("sessions") == [], what="the daemon to drop the session")
        wait_for(lambda: bye.exists() and bye.read_text() == "eof\n", what="the authorizer instance to see EOF")
        assert f"session {s['id']} ended (its broker went away)" in d.logtext()
    finally:
        release_fifo(fifo)
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=120)
        served.kill()
        d.stop()


def test_registered_authorizer_hangs_past_its_deadline(tmp_path, cprog):
    # a registered authorizer that never answers: each question it was asked
    # gets its registration's default when its deadline passes (the shim
    # enforces it), and the program goes on
    d = Daemon(tmp_path / "d")
    mute = ("sh -c 'read g; echo cont; while read l; do case \"$l\" in *hostname*|*os-release*) ;; "
            "*) echo cont;; esac; done'")  # answers the loader's opens, never the program's
    served = Served(d, "mute", mute, "--trace", "openat", "--deadline", "0.5")
    try:
        t0 = time.monotonic()
        r = run_ctl("run", "--", str(cprog("opener")), "/etc/hostname", "/etc/os-release", env=d.env)
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["/etc/hostname EPERM", "/etc/os-release EPERM"], r
        assert took >= 1.0, took  # two questions, each waited for its deadline
    finally:
        served.kill()
        d.stop()


def test_client_waits_while_the_listen_backlog_is_full(tmp_path):
    # a daemon whose backlog is full for a moment (flooded, or busy): a
    # Unix connect with a timeout fails with EAGAIN at once; the client
    # retries within its timeout instead of failing the run
    from brokerd.daemon import client

    path = str(tmp_path / "busy.sock")
    attempts = []
    sys.addaudithook(lambda ev, args: ev == "socket.connect" and args[1] == path and attempts.append(ev))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(0)
        fillers = []
        while True:  # fill the backlog
            f = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            f.setblocking(False)
            try:
                f.connect(path)
            except BlockingIOError:
                f.close()
                break
            fillers.append(f)
        attempts.clear()  # from here on, only the client's
        got: list = []
        t = threading.Thread(target=lambda: got.append(_try(client.connect, "control", path=path, timeout=10)))
        t.start()
        # a second attempt means the first met the full backlog
        wait_for(lambda: len(attempts) >= 2 or not t.is_alive(), what="the client to meet the full backlog")
        assert t.is_alive() or not isinstance(got[0], Exception), got  # gave up at once
        for _ in fillers:
            listener.accept()[0].close()
        listener.settimeout(10)
        peer, _ = listener.accept()
        with peer:
            assert peer.recv(4096).startswith(b"hello 1 role=control")
            peer.sendall(b"hello 1 role=broker name=brokerd version=0\n")
            t.join(10)
        for f in fillers:
            f.close()
    assert got and not isinstance(got[0], Exception), got
    got[0][0].close()


def _try(f, *args, **kw):
    try:
        return f(*args, **kw)
    except Exception as e:  # handed to the test thread
        return e
