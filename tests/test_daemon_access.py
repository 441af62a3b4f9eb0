"""Access control between users of one machine-wide daemon: two real uids
(65534 and 65533, switched to with setuid before exec) cannot see or steer
each other's sessions, a user's authorizer never hears about another user's
session, scope=system needs root, and root sees everything."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess

import pytest
from daemon_fixtures import OTHER_PY, Daemon, Served, popen_ctl, python_for, shared_dir
from waiting import wait_for

U1, U2 = 65534, 65533

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as two other users")

SPY = r'''
import sys
log = open(sys.argv[1], "a")
sys.stdin.readline()
print("cont", flush=True)
for line in sys.stdin:
    log.write(line); log.flush()
    print("cont", flush=True)
'''


@pytest.fixture
def world(tmp_path, cprog):
    if not os.path.exists(OTHER_PY):
        pytest.skip("no system python for the other users")
    root = shared_dir(tmp_path)
    root.chmod(0o1777)
    spy = root / "spy.py"
    spy.write_text(SPY)
    opener = root / "opener"
    opener.write_bytes(cprog("opener").read_bytes())
    opener.chmod(0o755)
    d = Daemon(root / "d")
    (root / "d").chmod(0o755)
    served: list[Served] = []
    procs: list[subprocess.Popen] = []
    yield d, root, spy, opener, served, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=120)
    for s in served:
        s.kill()
    d.stop()


def spy_cmd(spy, log, user):
    return shlex.join([*python_for(user), str(spy), str(log)])


def test_users_cannot_see_or_steer_each_other(world):
    d, root, spy, opener, served, procs = world
    u2log, syslog = root / "u2.log", root / "sys.log"
    served.append(Served(d, "u2spy", spy_cmd(spy, u2log, U2), "--trace", "openat", user=U2))
    served.append(Served(d, "sysspy", spy_cmd(spy, syslog, None), "--trace", "openat", "--scope", "system"))

    # user 1's session: a program that waits until we let it go
    fifo = root / "fifo1"
    os.mkfifo(fifo)
    fifo.chmod(0o666)
    p1 = popen_ctl("run", "--", str(opener), str(fifo), "/etc/hostname", env=d.env, user=U1)
    procs.append(p1)
    wait_for(lambda: d.query("sessions"), what="user 1's session")
    # the program waits on the fifo once the system authorizer has seen its open
    wait_for(lambda: syslog.exists() and str(fifo) in syslog.read_text(), what="user 1's program at the fifo")
    # its stack (complete once the program runs: the session is listed while
    # the daemon still offers it to its authorizers): root's system one only
    [s1] = d.query("sessions")
    assert s1["uid"] == U1
    assert [a["name"] for a in s1["authorizers"]] == ["sysspy"]

    # user 1 sees it; user 2 does not, and cannot steer it
    assert [s["id"] for s in d.query("sessions", user=U1)] == [s1["id"]]
    assert d.query("sessions", user=U2) == []
    for verb in ("kill", "detach"):
        r = d.ctl(verb, str(s1["id"]), user=U2)
        assert r.returncode == 3, r
        assert r.stderr.strip() == f"brokerctl: no session {s1['id']}"
    assert p1.poll() is None  # untouched
    # its owner may not detach a launched program either: it would keep its
    # seccomp filter untraced (ENOSYS); the refusal says what to do instead
    r = d.ctl("detach", str(s1["id"]), user=U1)
    assert r.returncode != 0 and "use kill" in r.stderr, r
    assert p1.poll() is None

    # authorizers: a user sees their own and the system ones; root all
    assert sorted(a["name"] for a in d.query("authorizers", user=U1)) == ["sysspy"]
    assert sorted(a["name"] for a in d.query("authorizers", user=U2)) == ["sysspy", "u2spy"]
    assert sorted(a["name"] for a in d.query("authorizers")) == ["sysspy", "u2spy"]
    # stats: own counts only, no daemon-wide counters
    st = d.query("stats", user=U2)
    assert st["sessions"] == 0 and "sessions_total" not in st

    # scope=system needs root
    r = d.ctl("serve", "--once", "--scope", "system", "--", "cat", user=U2)
    assert r.returncode == 1 and "permission" in r.stderr and "uid 0" in r.stderr, r.stderr

    # user 2's own session gets user 2's authorizer (and the system one)
    p2 = popen_ctl("run", "--", str(opener), "/etc/os-release", env=d.env, user=U2)
    out2, err2 = p2.communicate(timeout=30)
    assert p2.returncode == 0 and "/etc/os-release ok" in out2, err2
    assert "/etc/os-release" in u2log.read_text()

    # root sees every user's sessions (user 2's is over: the daemon drops it
    # when its shim's connection ends, which may come after p2 has exited)
    wait_for(lambda: [s["uid"] for s in d.query("sessions")] == [U1], what="only user 1's session left")
    # the owner steers its own
    r = d.ctl("kill", str(s1["id"]), user=U1)
    assert r.returncode == 0, r.stderr
    out1, err1 = p1.communicate(timeout=30)
    assert p1.returncode == -signal.SIGKILL, err1
    # user 1's calls reached the system authorizer, never user 2's
    assert str(fifo) in syslog.read_text()
    assert str(fifo) not in u2log.read_text()


def test_root_kills_any_session_and_json_is_machine_readable(world):
    d, root, spy, opener, served, procs = world
    fifo = root / "fifo2"
    os.mkfifo(fifo)
    fifo.chmod(0o666)
    p = popen_ctl("run", "--", str(opener), str(fifo), env=d.env, user=U2)
    procs.append(p)
    [s] = wait_for(lambda: d.query("sessions"), what="the session")
    r = d.ctl("kill", str(s["id"]), "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"id": s["id"], "sent": "kill"}
    p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL
    wait_for(lambda: d.query("sessions") == [], what="the session to end")
