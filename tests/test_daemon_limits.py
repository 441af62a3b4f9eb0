"""What one user can make the machine-wide daemon hold or do, measured with
real unprivileged uids (65534, 65533) against a real ``brokerd``: sessions
(each one starts every system authorizer's process as root), connections,
unfinished lines, audit records, log lines; and that running out of
descriptors or a hostile line never ends the daemon for everyone."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import termios
import threading

import pytest
from daemon_fixtures import (
    Daemon,
    Served,
    connect_as,
    raise_nofile,
    read_lines,
    run_ctl,
    shared_dir,
    tracer_session,
)
from waiting import wait_for

U1, U2 = 65534, 65533

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as other users")

CONT = "sh -c 'read g; echo cont; while read l; do echo cont; done'"


class World:
    """A daemon in a directory other uids can reach; what a test connects is
    closed, and the daemon stopped, when it ends."""

    def __init__(self, root) -> None:
        self.root = root
        self.daemons: list[Daemon] = []
        self.socks: list[socket.socket | None] = []
        self.cleanup: list = []

    def daemon(self, *args, **kw) -> Daemon:
        d = Daemon(self.root / "d", *args, **kw)
        (self.root / "d").chmod(0o755)
        self.daemons.append(d)
        return d

    def connect(self, uid: int, d: Daemon, n: int, **kw) -> list:
        got = connect_as(uid, d.socket, n, **kw)
        self.socks += got
        return got

    def close(self) -> None:
        for s in self.socks:
            if s is not None:
                s.close()
        for f in self.cleanup:
            f()
        for d in self.daemons:
            d.stop()


@pytest.fixture
def world(tmp_path):
    raise_nofile()
    root = shared_dir(tmp_path)
    root.chmod(0o1777)
    w = World(root)
    yield w
    w.close()


def _unread(sock: socket.socket) -> int:
    """Bytes we sent on ``sock`` that the daemon has not read yet (SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]


def test_sessions_per_uid_are_limited_and_refused_runs_never_start(world):
    d = world.daemon()
    sysauth = Served(d, "sysauth", CONT, "--scope", "system", "--trace", "openat")
    world.cleanup.append(sysauth.kill)
    # user 1 holds 64 sessions (the default limit): each one got the system authorizer
    socks = world.connect(U1, d, 65)
    answers = [tracer_session(s) for s in socks[:64]]
    assert all(a.startswith(b"ok ") for a in answers), answers[:3]
    # the 65th is refused with a clear line, before any system authorizer is asked
    over = tracer_session(socks[64])
    assert over.startswith(b"error busy uid 65534 already has 64 sessions open"), over
    assert len(d.query("sessions")) == 64
    [reg] = [a for a in d.query("authorizers") if a["name"] == "sysauth"]
    assert reg["sessions"] == 64  # 64 root processes, not 65
    # brokerctl run as that user fails closed: one line, exit 1, the program never ran
    marker = world.root / "ran"
    r = run_ctl("run", "--", "/bin/sh", "-c", f"echo yes > {marker}", env=d.env, user=U1)
    assert r.returncode == 1, r
    assert "refused the session: busy uid 65534 already has 64 sessions open" in r.stderr
    assert r.stderr.count("\n") == 1 and not marker.exists()
    # another user and root are not affected
    assert run_ctl("run", "--", "/bin/true", env=d.env, user=U2).returncode == 0
    assert run_ctl("run", "--", "/bin/true", env=d.env).returncode == 0
    # when one of user 1's sessions ends, user 1 may open one again
    socks[0].close()
    wait_for(lambda: len(d.query("sessions")) == 63, what="the session to end")
    r = run_ctl("run", "--", "/bin/sh", "-c", f"echo yes > {marker}", env=d.env, user=U1)
    assert r.returncode == 0 and marker.read_text() == "yes\n", r.stderr
    assert "over its" not in d.logtext() and "refused a session of pid" in d.logtext()


def test_connections_per_uid_are_limited_at_accept(world):
    d = world.daemon()
    # idle connections: the 129th and later are turned away at once, before any hello
    socks = world.connect(U1, d, 160)
    assert all(s is not None for s in socks)
    late = [read_lines(s, 1, timeout=3.0) for s in socks[128:]]
    assert all(x and x[0].startswith(b"error busy too many connections from uid 65534 (limit 128)")
               for x in late), late[:2]
    st = d.query("stats")
    assert st["connections_open"] <= 128 + 1 and st["refused"] >= 32
    # another user still gets through
    assert d.ctl("stats", user=U2).returncode == 0


def test_out_of_descriptors_the_daemon_backs_off_and_keeps_serving(world):
    # a descriptor limit small enough to reach with a few dozen connections
    d = world.daemon(nofile=48)
    socks = world.connect(U1, d, 70, timeout=3.0)
    wait_for(lambda: "accept failed: Too many open files" in d.logtext() or d.proc.poll() is not None,
             what="the daemon to run out of descriptors")
    assert d.proc.poll() is None, d.logtext()
    # the peers it could not take were told why, not left hanging
    told = [read_lines(s, 1, timeout=0.5) for s in socks[-10:] if s is not None]
    assert any(x and b"out of file descriptors" in x[0] for x in told), told
    for s in socks:
        if s is not None:
            s.close()
    # descriptors free again: it serves as before
    st = wait_for(lambda: d.ctl("stats", "--json").returncode == 0 and d.query("stats"),
                  what="the daemon to serve again")
    assert st["accept_failures"] >= 1
    assert run_ctl("run", "--", "/bin/true", env=d.env, user=U2).returncode == 0
    assert d.proc.poll() is None


def test_unfinished_lines_are_bounded_per_uid(world):
    d = world.daemon()
    rss0 = d.rss()
    # 120 connections (under the connection limit), each with a 60 KiB line and no newline
    socks = world.connect(U1, d, 120)
    chunk = b"x" * (60 << 10)
    for s in socks:
        s.sendall(b"hello 1 role=control\n" + chunk)

    def settled(s) -> bool:  # the daemon read all of it, or dropped the connection
        return s.fileno() < 0 or _unread(s) == 0
    wait_for(lambda: all(settled(s) for s in socks), timeout=30, what="the daemon to read every connection")
    dropped = []
    for s in socks:
        s.settimeout(0.01)
        try:
            data = s.recv(65536)
        except TimeoutError:
            continue
        if b"error busy uid 65534 holds more than 1048576 bytes of unfinished lines" in data:
            dropped.append(s)
    kept = len(socks) - len(dropped)
    assert kept * len(chunk) <= (1 << 20) + len(chunk), (kept, len(dropped))
    grown = d.rss() - rss0
    assert grown < 6 << 20, f"daemon RSS grew by {grown >> 20} MiB"
    # the uid's other connections and other users carry on
    assert d.ctl("stats", user=U2).returncode == 0
    assert d.ctl("stats", user=U1).returncode == 0


def _flood(sock: socket.socket, n: int) -> None:
    line = b'audit {"pid":1,"tid":1,"call":"flood","event":"syscall 1 1 1 x86_64 getpid","verdict":"cont"}\n'
    try:
        for _ in range(n // 500):
            sock.sendall(line * 500)
    except OSError:
        pass


def test_one_users_audit_flood_keeps_the_others_records(world):
    log = world.root / "audit.jsonl"
    d = world.daemon(config=f'audit_log = "{log}"\n')
    [mine] = world.connect(U1, d, 1)
    socks = world.connect(U2, d, 4) + [mine]
    for s in socks:
        assert tracer_session(s).startswith(b"ok "), "session refused"
    flooders = [threading.Thread(target=_flood, args=(s, 40_000), daemon=True) for s in socks[:4]]
    for t in flooders:
        t.start()
    wait_for(lambda: d.query("stats")["audit_dropped"], timeout=60, what="user 2's flood to overflow")
    # while user 2's queue overflows, user 1's decisions arrive
    for i in range(300):
        mine.sendall(f'audit {{"pid":{i},"tid":{i},"call":"mine","verdict":"skip-fail 13"}}\n'.encode())
    for t in flooders:
        t.join(60)

    def done() -> bool:  # every record received was written or dropped
        st = d.query("stats")
        return st["audit_records"] == 4 * 40_000 + 300 == st["audit_written"] + st["audit_dropped"]
    wait_for(done, timeout=60, what="the audit writer to catch up")
    mine = sum(1 for line in log.read_text().splitlines() if '"call": "mine"' in line)
    assert mine == 300, d.query("stats")
    st = d.query("stats")
    assert st["audit_dropped_by_uid"].get(str(U1), 0) == 0 and st["audit_dropped_by_uid"][str(U2)] > 0
    assert json.loads(d.ctl("stats", "--json", user=U1).stdout)["audit_dropped"] == 0
    assert json.loads(d.ctl("stats", "--json", user=U2).stdout)["audit_dropped"] > 0
    # one log line says so (per uid, when its queue has drained), not one per record
    wait_for(lambda: f"of uid {U2}: over its quota" in d.logtext(), what="the drop report")
    assert d.logtext().count("audit: dropped") <= 2


def test_authorizer_and_shim_error_lines_are_escaped_bounded_and_marked(world):
    d = world.daemon()
    reg, shim = world.connect(U2, d, 2)
    reg.sendall(b"hello 1 role=authorizer name=evil\n")
    assert read_lines(reg)[0].startswith(b"hello 1 role=broker")
    forged = b"\x1b[2J\r<0>brokerd: authorizer 'root-policy' registered: id 1, scope system, uid 0\r"
    reg.sendall(b"error " + forged + b"A" * 60000 + b"\n" + b"error again\n" * 50)
    assert tracer_session(shim, argv="\"'x\\n<0>brokerd: forged'\"").startswith(b"ok ")
    shim.sendall(b"error audit-dropped 7 \x1b]0;owned\x07\n")
    wait_for(lambda: d.logtext().count("says:") >= 11 and "shim says" in d.logtext(),
             what="the error lines in the log")
    text = d.logtext()
    assert not any(c in text for c in "\x1b\r\x07"), repr(text[-2000:])
    lines = text.splitlines()
    assert max(map(len, lines)) < 1000
    assert not any(line.startswith(("<0>", "brokerd: authorizer 'root-policy'", "brokerd: forged"))
                   for line in lines)
    said = [line for line in lines if "says: error" in line]
    assert said[0].startswith(f"brokerd: authorizer 'evil' (id 1, uid {U2}, pid ")
    assert "\\x1b[2J\\x0d<0>brokerd" in said[0] and "...(" in said[0]
    assert sum("authorizer 'evil'" in line for line in said) == 10  # the rest are counted, not logged
    [shim_line] = [line for line in lines if "its shim says" in line]
    assert f"(uid {U2}, pid " in shim_line and "\\x1b]0;owned\\x07" in shim_line
    assert d.query("stats")["audit_dropped_by_uid"] == {str(U2): 7}
    # a name or trace list that would carry control characters into logs and
    # root's listings is refused
    for attrs, key in ((b'name="a\\nb"', b"name"), (b'name=ok trace="openat\\x1b]0;x\\x07"', b"trace")):
        [bad] = world.connect(U2, d, 1)
        bad.sendall(b"hello 1 role=authorizer " + attrs + b"\n")
        assert read_lines(bad)[0].startswith(b"error bad-hello " + key + b" must be"), attrs


def test_hostile_audit_json_does_not_end_the_daemon(world):
    log = world.root / "audit.jsonl"
    d = world.daemon(config=f'audit_log = "{log}"\n')
    socks = world.connect(U1, d, 1) + world.connect(U2, d, 1)
    for s in socks:
        assert tracer_session(s).startswith(b"ok ")
    evil, other = socks
    evil.sendall(b"audit " + b"[" * 60000 + b"\n" + b'audit {"pid": {"deep": [1]}, "call": 7}\n')
    evil.sendall(b'audit {"pid": 99999999999999999999999, "tid": -1, "latency_us": NaN, "time": 1e999, '
                 b'"call": "odd"}\n')
    evil.sendall(b"pid 1\n")

    def read_past() -> bool:
        assert d.proc.poll() is None, d.logtext()[-2000:]
        return [s["target"] for s in d.query("sessions") if s["uid"] == U1] == [1]
    wait_for(read_past, what="the daemon to read past the hostile lines")
    assert sorted(s["uid"] for s in d.query("sessions")) == [U2, U1]
    other.sendall(b"end 0\n")
    # what reached root's audit log is strict JSON, with the daemon's own fields
    wait_for(lambda: log.exists() and '"odd"' in log.read_text(), what="the audit record")

    def strict(c):
        raise ValueError(f"not JSON: {c}")
    recs = [json.loads(line, parse_constant=strict) for line in log.read_text().splitlines()]
    odd = [r for r in recs if r.get("call") == "odd"]
    assert odd and set(odd[0]) == {"time", "session", "uid", "call"} and odd[0]["uid"] == U1, odd


def test_an_authorizer_that_cannot_be_given_the_session_still_judges_it(world, cprog):
    # root's system policy (trace getppid, default deny) stops reading its
    # registration connection: the daemon cannot hand it a user's session.
    # The session must not start without it: the shim gets a socket for it
    # whose other end is closed, so its calls get its default (deny)
    d = world.daemon()
    prog = world.root / "calls"
    prog.write_bytes(cprog("calls").read_bytes())
    prog.chmod(0o755)
    [reg] = world.connect(0, d, 1)
    reg.sendall(b"hello 1 role=authorizer name=policy scope=system trace=getppid default=deny\n")
    assert read_lines(reg)[0].startswith(b"hello 1 role=broker")
    reg.shutdown(socket.SHUT_RD)  # the daemon's offers now fail (EPIPE)
    r = run_ctl("run", "--", str(prog), "getppid", env=d.env, user=U1)
    assert r.returncode == 0, r.stderr
    # denied (-EPERM; glibc's getppid never sets errno), not "getppid ok PID"
    assert r.stdout.startswith("getppid fail"), r
    assert "policy's default applies to getppid" in r.stderr
    assert "could not be given session" in d.logtext()


def test_huge_numbers_from_peers_get_an_error_not_a_crash(world):
    # int() of more than 4300 digits raises ValueError in Python 3.11: a
    # control request or a shim line with one must get a clear error line
    # (or be ignored), and the daemon goes on
    d = world.daemon()
    ctl, shim = world.connect(U1, d, 2)
    huge = b"1" * 5000
    ctl.sendall(b"hello 1 role=control\nkill " + huge + b"\nsessions\n")
    hello, refused, listing = read_lines(ctl, 3)
    assert refused.startswith(b"error bad-request session id must be a number"), refused
    assert listing == b"ok []\n"
    assert tracer_session(shim).startswith(b"ok ")
    shim.sendall(b"pid " + huge + b"\nend -" + huge + b"\nerror audit-dropped " + huge + b" x\npid 7\n")
    wait_for(lambda: [s["target"] for s in d.query("sessions")] == [7], what="the shim's later lines")
    assert d.proc.poll() is None and "internal error" not in d.logtext()


def test_limits_are_configurable_apply_to_root_on_request_and_reload(world):
    log = world.root / "audit.jsonl"
    d = world.daemon(config=f'max_sessions_per_uid = 1\nlimit_root = true\naudit_log = "{log}"\n'
                            'audit_bytes_per_uid = 2000\n')
    a, b, c = world.connect(0, d, 3)
    assert tracer_session(a).startswith(b"ok ")
    assert tracer_session(b).startswith(b"error busy uid 0 already has 1 sessions open")
    # the byte quota: records of about 600 bytes, 2000 bytes queued at most
    long = "x" * 500
    a.sendall(b"".join(f'audit {{"pid": {i}, "call": "c{i}", "event": "{long}"}}\n'.encode() for i in range(40)))
    wait_for(lambda: d.query("stats")["audit_records"] == 40, what="the records to be read")
    st = wait_for(lambda: (s := d.query("stats"))["audit_written"] + s["audit_dropped"] == 40 and s,
                  what="the records to be written or dropped")
    assert st["audit_dropped_by_uid"].get("0", 0) > 0 and st["audit_written"] >= 3, st
    assert len(log.read_text().splitlines()) == st["audit_written"]
    # a reload applies new limits to new sessions
    d.config.write_text("max_sessions_per_uid = 2\nlimit_root = true\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in d.logtext(), what="the reload")
    assert tracer_session(c).startswith(b"ok ")
    # bad values are refused at reload, the old configuration stays
    d.config.write_text("max_sessions_per_uid = -1\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "max_sessions_per_uid must not be negative" in d.logtext(), what="the refused reload")
    [e] = world.connect(0, d, 1)
    assert tracer_session(e).startswith(b"error busy uid 0 already has 2 sessions open")



def test_listings_never_print_another_users_control_characters(world):
    """`brokerctl sessions` on root's terminal shows another user's command
    line: its terminal escapes and newlines come out as \\xNN, never raw."""
    d = world.daemon()
    [shim] = world.connect(U2, d, 1)
    assert tracer_session(shim, argv='"\\x1b]0;owned\\x07 prog\\nforged-row"').startswith(b"ok ")
    [s] = wait_for(lambda: d.query("sessions"), what="the session")
    assert "\x1b" in " ".join(s["argv"])  # the daemon kept the bytes; only the table escapes them
    out = d.ctl("sessions").stdout
    assert not any(c in out for c in "\x1b\x07"), repr(out)
    assert len(out.splitlines()) == 2 and "\\x1b]0;owned\\x07" in out
