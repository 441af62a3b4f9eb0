"""The fused stop in C (``accel.fused_stop``, issue #13): the compiled loop
works the common judged open itself (the event, each in-process member's
handler under its own deadline, the plain cont, the pin) and hands anything
else to the Python road at the point it met it.  It must decide exactly as
the Python road does: the same programs give the same output, the same error
lines and the same counts with it (the default) and without it
(``BROKERD_CSTOP=0``), and it is really taken (``accel.counts()["fused"]``)."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap

import pytest
from conftest import brokerctl

from brokerd.tracer.accel import accel

pytestmark = pytest.mark.skipif(getattr(accel, "fused_stop", None) is None, reason="the compiled calls are not built")

POLICY = '''
import os, sys
from brokerd.clients.authorizer import Authorizer, cont, rewrite, skip_fail
from brokerd.protocol.types import Sym

def base(call):
    return os.path.basename(call.path(1) or "")

first = Authorizer("first")

@first.on("openat")
def first_openat(call):
    name = base(call)
    if name == "rewrite1":  # the second member sees the rewritten call
        return rewrite("openat", Sym(("AT_FDCWD",)), call.path(1)[:-len(name)] + "fine", Sym(("O_RDONLY",)))
    return skip_fail("EACCES") if name == "deny1" else cont()

second = Authorizer("second")

@second.on("openat")
def second_openat(call):
    name = base(call)
    if name == "deny2":
        return skip_fail("EROFS")
    if name == "raises2":
        raise RuntimeError("policy bug 2")
    if name == "loops2":
        while True:
            pass
    if name == "none2":  # no answer: the library's default verdict (cont)
        return None
    if name == "exits2":
        sys.exit(3)
    return cont()
'''

#: open each path given and print what came of it (the last line: the stop counts' accel part)
PROGRAM = r"""
import errno, os, sys
for path in sys.argv[1:]:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        print(os.path.basename(path), errno.errorcode[e.errno])
        continue
    print(os.path.basename(path), "ok", os.read(fd, 64).decode().strip())
    os.close(fd)
"""


def _run(tmp_path, names: list[str], cstop: bool, timeout: str = "1"):
    counts = tmp_path / f"stops-{cstop}.jsonl"
    counts.unlink(missing_ok=True)
    env = {"PYTHONPATH": str(tmp_path), "BROKERD_STOP_COUNTS": str(counts)}
    if not cstop:
        env["BROKERD_CSTOP"] = "0"
    r = brokerctl("run", "--timeout", timeout, "-a", "py:fusedcpol:first", "-a", "py:fusedcpol:second", "--",
                  sys.executable, "-S", "-c", PROGRAM, *(str(tmp_path / n) for n in names), env=env, timeout=120)
    summary = json.loads(counts.read_text().splitlines()[-1])
    # the broker's lines, pids and the traceback's line numbers aside
    lines = [re.sub(r"\d+", "N", line) for line in r.stderr.splitlines() if line.startswith("brokerd:")]
    return r, lines, summary


def test_the_compiled_road_decides_as_the_python_one(tmp_path):
    """Two stacked in-process policies: plain reads (many: the compiled
    road), a denial by each member, a rewrite by the first that the second
    sees, the second raising (the failsafe, the traceback), running past its
    deadline (the default, one error line), answering nothing, a path
    through a symlink (not plain: the general notes), and at last exiting
    (gone: the default from then on): the same output, error lines and stop
    counts on both roads, and the compiled road did work the plain reads."""
    (tmp_path / "fusedcpol.py").write_text(textwrap.dedent(POLICY))
    for name in ("fine", "deny1", "deny2", "rewrite1", "raises2", "loops2", "none2", "exits2", "after"):
        (tmp_path / name).write_text(f"{name}\n")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "linked").write_text("linked\n")
    (tmp_path / "via").symlink_to("real")
    names = ["fine"] * 30 + ["deny1", "deny2", "rewrite1", "fine", "raises2", "fine", "loops2", "fine", "none2",
                             "via/linked", "fine", "exits2", "after"]
    runs = {cstop: _run(tmp_path, names, cstop) for cstop in (True, False)}
    (r, lines, summary), (r0, lines0, summary0) = runs[True], runs[False]
    assert r.returncode == 0 and r0.returncode == 0, (r.stderr, r0.stderr)
    assert r.stdout.splitlines() == ["fine ok fine"] * 30 + [
        "deny1 EACCES", "deny2 EROFS", "rewrite1 ok fine", "fine ok fine", "raises2 EPERM", "fine ok fine",
        "loops2 EPERM", "fine ok fine", "none2 ok none2", "linked ok linked", "fine ok fine", "exits2 EPERM",
        "after EPERM"], r.stderr
    assert r.stdout == r0.stdout, (r.stderr, r0.stderr)
    assert lines == lines0, (r.stderr, r0.stderr)
    assert "RuntimeError: policy bug 2" in r.stderr and "RuntimeError: policy bug 2" in r0.stderr
    assert r.stderr.count("did not answer within 1s") == 1 == r0.stderr.count("did not answer within 1s")
    assert "authorizer second exited (3)" in r.stderr and "authorizer second exited (3)" in r0.stderr
    assert summary["stops"] == summary0["stops"]
    assert summary["accel"]["fused"] >= 30 and summary0["accel"]["fused"] == 0, (summary, summary0)


def test_the_compiled_road_keeps_the_guard_and_the_pin(tmp_path, cprog):
    """On the compiled road too: an open for writing of the broker's own
    /proc file is refused by the guard, the program's own is written, and a
    read open is pinned (one stop, no exit stop), over many opens."""
    (tmp_path / "fusedcpol.py").write_text(textwrap.dedent(POLICY))
    counts = tmp_path / "stops.jsonl"
    prog = r"""
import errno, os
def attempt(who, path, flags, value=None):
    try:
        fd = os.open(path, flags)
    except OSError as e:
        print(who, errno.errorcode[e.errno]); return
    os.write(fd, value) if value is not None else os.read(fd, 1)
    os.close(fd); print(who, "ok")
for i in range(200):
    attempt("read", "/etc/hostname", os.O_RDONLY)
attempt("broker", f"/proc/{os.getppid()}/oom_score_adj", os.O_WRONLY, b"1000")
attempt("self", "/proc/self/oom_score_adj", os.O_WRONLY, b"500")
"""
    r = brokerctl("run", "-a", "py:fusedcpol:first", "-a", "py:fusedcpol:second", "--", sys.executable, "-S", "-c",
                  prog, env={"PYTHONPATH": str(tmp_path), "BROKERD_STOP_COUNTS": str(counts)}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["read ok"] * 200 + ["broker EACCES", "self ok"], r.stderr
    summary = json.loads(counts.read_text().splitlines()[-1])
    assert summary["accel"]["fused"] >= 200, summary
    assert summary["stops"].get("exit:openat", 0) <= 5, summary  # pinned: no exit stop
    assert os.path.exists("/proc/self/oom_score_adj")


#: a policy whose deadline passes while the broker starts its timer for the question after the open of
#: "arm" (as on a loaded machine that takes the CPU from the broker right after its setitimer): the
#: deadline's Overrun is raised in _Alarm.start itself, before the handler runs
LATE_START_POLICY = '''
import os, time
from brokerd.clients.authorizer import Authorizer, cont
from brokerd.decision import inproc

_start = inproc._Alarm.start
late_next = []

def _late_start(self, seconds):
    _start(self, seconds)
    if late_next:
        late_next.clear()
        time.sleep(seconds + 5)  # the timer fires in here: Overrun from start

inproc._Alarm.start = _late_start

late = Authorizer("late")

@late.on("openat")
def late_openat(call):
    if os.path.basename(call.path(1) or "") == "arm":
        inproc._ALARM.stop()  # (the next question starts the timer)
        late_next.append(1)
    return cont()
'''


@pytest.mark.parametrize("cstop", [True, False], ids=["compiled", "python"])
def test_a_deadline_met_while_the_timer_starts_is_the_default(tmp_path, cprog, cstop):
    """The deadline's Overrun raised where the timer is started (before the
    handler runs) is the member's default answer with its error line, as
    InProcess.ask_entry has it, on the compiled road too: it was raised out
    of accel.fused_stop and ended the broker (the program killed)."""
    (tmp_path / "latepol.py").write_text(textwrap.dedent(LATE_START_POLICY))
    names = [str(tmp_path / name) for name in ("arm", "victim", "after")]
    for name in names:
        with open(name, "w") as f:
            f.write("x\n")
    env = {"PYTHONPATH": str(tmp_path)} if cstop else {"PYTHONPATH": str(tmp_path), "BROKERD_CSTOP": "0"}
    r = brokerctl("run", "--timeout", "0.1", "-a", "py:latepol:late", "--", str(cprog("opener", ("-static",))),
                  *names, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{names[0]} ok x", f"{names[1]} EPERM", f"{names[2]} ok x"], r.stderr
    assert r.stderr.count("did not answer within 0.1s") == 1, r.stderr
