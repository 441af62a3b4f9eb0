"""Daemon-registered authorizers in a session's stack: the order (-a ones,
the owner's registered ones, root's system ones nearest the kernel), rewrites
accumulating across them, step results flowing back, audit records reaching
the daemon's log and the journal, garbage and an authorizer killed
mid-decision.  Real daemon, real sockets, real traced programs."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest
from conftest import brokerctl
from daemon_fixtures import Daemon, Served, popen_ctl
from waiting import wait_for

HOST = '*openat *"/etc/hostname"*'


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "d")
    yield d
    d.stop()


@pytest.fixture
def served(daemon):
    started: list[Served] = []

    def serve(name: str, command: str, *opts: str) -> Served:
        s = Served(daemon, name, command, *opts)
        started.append(s)
        return s

    yield serve
    for s in started:
        s.kill()


def _files(tmp_path, *names):
    out = []
    for n in names:
        p = tmp_path / n
        p.write_text(f"file {n}\n")
        out.append(str(p))
    return out


def test_stack_order_and_rewrites_accumulate(daemon, served, rules, cprog, tmp_path):
    a, b, c = _files(tmp_path, "a", "b", "c")
    # registered first, but a system authorizer always sits nearest the kernel
    served("third", rules(f'*openat *"{b}"* => openat AT_FDCWD, "{c}", O_RDONLY'), "--scope", "system",
           "--trace", "openat")
    served("second", rules(f'*openat *"{a}"* => openat AT_FDCWD, "{b}", O_RDONLY'), "--trace", "openat")
    first = rules(f'{HOST} => openat AT_FDCWD, "{a}", O_RDONLY')
    r = brokerctl("run", "-e", "trace=openat", "-a", first, "--", str(cprog("opener")), "/etc/hostname",
                  env=daemon.env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "/etc/hostname ok file c", r.stderr
    [auth_second] = [x for x in daemon.query("authorizers") if x["name"] == "second"]
    assert auth_second["sessions"] == 1
    assert daemon.query("sessions") == []  # ended and gone


def test_denial_in_a_registered_authorizer_is_audited(tmp_path, rules, cprog):
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    jpath = str(tmp_path / "journal.sock")
    journal.bind(jpath)
    audit = tmp_path / "audit.jsonl"
    d = Daemon(tmp_path / "d", "--audit-log", str(audit), "--audit-journal", "--journal-socket", jpath)
    try:
        s = Served(d, "denier", rules(f"{HOST} => skip-fail EACCES"), "--trace", "openat")
        r = brokerctl("run", "-e", "trace=openat", "--", str(cprog("opener")), "/etc/hostname", env=d.env)
        assert r.stdout.strip() == "/etc/hostname EACCES", r.stderr
        wait_for(lambda: audit.exists() and "/etc/hostname" in audit.read_text(), what="the denial's audit record")
        recs = [json.loads(x) for x in audit.read_text().splitlines()]
        [denial] = [x for x in recs if "/etc/hostname" in x["event"]]
        assert denial["verdict"] == "skip-fail 13", denial
        assert denial["by"] == "denier"
        assert denial["call"] == "openat"
        assert denial["uid"] == 0 and isinstance(denial["session"], int) and denial["pid"] > 0
        assert denial["latency_us"] > 0 and denial["time"] > 0
        # the same record, as structured journal fields
        journal.settimeout(5)
        fields = None
        while fields is None or "hostname" not in fields.get("BROKERD_EVENT", ""):
            fields = dict(line.split("=", 1) for line in journal.recv(65536).decode().splitlines())
        assert fields["BROKERD_AUTHORIZER"] == "denier"
        assert fields["BROKERD_CALL"] == "openat"
        assert fields["SYSLOG_IDENTIFIER"] == "brokerd"
        assert fields["PRIORITY"] == "5"
        assert fields["BROKERD_SESSION"] == str(denial["session"])
        assert "MESSAGE" in fields and "openat" in fields["MESSAGE"]
        stats = d.query("stats")
        assert stats["audit_records"] >= len(recs) and stats["audit_written"] >= len(recs)
        s.kill()
    finally:
        d.stop()
        journal.close()


def test_step_results_flow_back_through_registered(daemon, served, rules, cprog):
    # the registered one is below the -a one: it replaces the result first,
    # the -a one sees that result and replaces it again
    served("lower", rules("syscall * getppid* => step", "sysret * getppid ok * => ok 1000"), "--trace", "getppid")
    upper = rules("syscall * getppid* => step", "sysret * getppid ok 1000 => ok 2000")
    r = brokerctl("run", "-e", "trace=getppid", "-a", upper, "--", str(cprog("calls")), "getppid", env=daemon.env)
    assert r.stdout.strip() == "getppid ok 2000", r.stderr


def test_garbage_from_a_registered_authorizer_gets_the_default(daemon, served, rules, cprog, tmp_path):
    other, = _files(tmp_path, "other")
    served("garbage", rules(f"{HOST} => this is not a verdict !!!"), "--trace", "openat")
    r = brokerctl("run", "--", str(cprog("opener")), "/etc/hostname", other, env=daemon.env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["/etc/hostname EPERM", f"{other} ok file other"], r.stderr
    # one bad answer does not unregister it
    assert [a["name"] for a in daemon.query("authorizers")] == ["garbage"]


def test_authorizer_killed_mid_decision(daemon, served, cprog, tmp_path):
    pidfile = tmp_path / "hung.pid"
    hang = (f"read -r g; echo cont; while read -r l; do case \"$l\" in *hostname*) echo $$ > {pidfile}; "
            "exec sleep 1000;; esac; echo cont; done")
    s = served("hangs", hang, "--trace", "openat", "--deadline", "60")
    before, after = _files(tmp_path, "before", "after")
    p = popen_ctl("run", "--", str(cprog("opener")), before, "/etc/hostname", after, env=daemon.env)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the authorizer to hang")
    t0 = time.monotonic()
    os.killpg(int(pidfile.read_text()), signal.SIGKILL)  # the instance holding the session's socket
    s.kill()  # and its registration
    out, err = p.communicate(timeout=30)
    assert time.monotonic() - t0 < 10, "the pending question waited for the deadline"
    # the pending question and the later ones get the (deny) default at once
    assert out.splitlines() == [f"{before} ok file before", "/etc/hostname EPERM", f"{after} EPERM"], err
    assert p.returncode == 0
    wait_for(lambda: "'hangs'" in daemon.logtext() and "disconnected" in daemon.logtext(),
             what="the daemon to report the loss")
    assert daemon.query("authorizers") == []


def test_sessions_listing_shows_the_stack(daemon, served, rules, cprog, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    served("watcher", rules(), "--trace", "openat")
    p = popen_ctl("run", "--", str(cprog("opener")), str(fifo), env=daemon.env)
    try:
        # the program's pid comes after the stack is complete (a session is
        # listed while the daemon still offers it to its authorizers)
        wait_for(lambda: [s for s in daemon.query("sessions") if s["target"]], what="the program's pid")
        [s] = daemon.query("sessions")
        assert s["mode"] == "run" and s["failure"] == "kill" and s["uid"] == 0
        assert [a["name"] for a in s["authorizers"]] == ["watcher"]
        assert s["argv"] == [str(cprog("opener")), str(fifo)]
        human = daemon.ctl("sessions")
        assert human.returncode == 0
        header, row = human.stdout.splitlines()
        assert header.split()[:3] == ["ID", "USER", "BROKER"]
        assert row.split()[0] == str(s["id"]) and "watcher" in row and "opener" in row
    finally:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        p.communicate(timeout=30)
    assert p.returncode == 0


def test_daemon_gone_before_session_means_embedded(tmp_path, cprog):
    # no daemon at the default places: embedded, nothing to set up
    r = brokerctl("run", "--", str(cprog("calls")), "getpid", env={"BROKERD_SOCKET": "none"})
    assert r.returncode == 0 and "getpid ok" in r.stdout
    # a daemon asked for explicitly that is not there: one line, exit 1
    r = brokerctl("run", "--", str(cprog("calls")), "getpid", env={"BROKERD_SOCKET": str(tmp_path / "nope.sock")})
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "cannot reach the brokerd daemon" in r.stderr
