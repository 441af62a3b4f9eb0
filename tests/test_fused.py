"""The fused entry (Stops._on_seccomp_stop -> Entry._ask_entry, issue #13): a
call whose members all answer in process goes from the compiled stop straight
to its decision, skipping the general entry's branches.  It must decide, pin,
guard and deny exactly as the general path does: the same programs give the
same output with the compiled stop loop (fused) and the pure-Python one (not),
and the unit tests below check which path ran."""

from __future__ import annotations

import ctypes
import json
import os
import sys
import textwrap

import pytest
from conftest import brokerctl

#: the real-process tests run fused (the compiled loop) and unfused (BROKERD_ACCEL=0)
AX = pytest.mark.usefixtures("accel_mode")

POLICY = '''
import os
from brokerd.clients.authorizer import Authorizer, cont, skip_fail

az = Authorizer("fusedpol")
bad = os.path.realpath(os.environ.get("FUSED_BAD", "/nonexistent"))

@az.on("openat")
def openat(call):
    path = call.path(1) or ""
    real = call.notes.get("real2")
    if path.endswith("secret"):
        return skip_fail("EACCES")
    if real is not None and real.data == os.fsencode(bad):
        return skip_fail("EACCES")
    return cont()
'''

#: open PATH (for writing: write VALUE) and print the outcome, for each step
PROGRAM = r"""
import errno, os, sys
def attempt(who, path, flags, value=None):
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        print(who, errno.errorcode[e.errno])
        return
    try:
        if value is not None:
            os.write(fd, value)
        else:
            os.read(fd, 1)
        print(who, "ok")
    finally:
        os.close(fd)
d = sys.argv[1]
for i in range(3):  # (the first judged call of a plan takes the general path: then fused)
    attempt("read", "/etc/hostname", os.O_RDONLY)
attempt("broker", f"/proc/{os.getppid()}/oom_score_adj", os.O_WRONLY, b"1000")
attempt("self", "/proc/self/oom_score_adj", os.O_WRONLY, b"500")
attempt("status", "/proc/self/status", os.O_RDONLY)
attempt("create", f"{d}/new", os.O_WRONLY | os.O_CREAT, b"new\n")
attempt("secret", f"{d}/secret", os.O_RDONLY)
os.chdir(d)
attempt("relative", "new", os.O_RDONLY)
attempt("missing", f"{d}/missing", os.O_RDONLY)
print("content", open(f"{d}/new").read().strip(), open("/proc/self/oom_score_adj").read().strip())
"""


@AX
def test_the_fused_entry_decides_pins_and_guards_as_the_general_one(tmp_path):
    """An in-process policy answering cont (and EACCES for "secret"): reads
    run (pinned), an open for writing of the broker's /proc/PID file is
    still refused by the guard (the fused entry's one guard case), the
    program's own is written, a /proc read, a created file, a relative path
    and a missing file all as natively; the policy's denial holds."""
    (tmp_path / "fusedpol.py").write_text(textwrap.dedent(POLICY))
    (tmp_path / "secret").write_text("s\n")
    r = brokerctl("run", "-a", "py:fusedpol:az", "--", sys.executable, "-S", "-c", PROGRAM, str(tmp_path),
                  env={"PYTHONPATH": str(tmp_path)}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "read ok", "read ok", "read ok", "broker EACCES", "self ok", "status ok", "create ok", "secret EACCES",
        "relative ok", "missing ENOENT", "content new 500"], r.stderr


@AX
def test_a_symlink_swap_never_wins_on_the_fused_entry(cprog, tmp_path):
    """tests/progs/dirswap.c (see test_pin) with an in-process policy that
    refuses the outside file: DIR/sub swapped for a symlink between the
    decision and the open never reaches the outside file, and the opens are
    pinned (one stop each, no exit check) on the fused entry too."""
    (tmp_path / "fusedpol.py").write_text(textwrap.dedent(POLICY))
    for i in range(3):  # (a swapper thread descheduled for the whole run meets one shape only: again)
        d, out = tmp_path / str(i) / "d", tmp_path / str(i) / "out"
        (d / "sub").mkdir(parents=True)
        out.mkdir()
        (d / "sub" / "f").write_text("good\n")
        (out / "f").write_text("bad\n")
        counts = tmp_path / str(i) / "stops.jsonl"
        r = brokerctl("run", "-a", "py:fusedpol:az", "--", str(cprog("dirswap")), str(d), str(out), "3000",
                      env={"PYTHONPATH": str(tmp_path), "FUSED_BAD": str(out / "f"),
                           "BROKERD_STOP_COUNTS": str(counts)}, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        words = r.stdout.split()
        c = dict(zip(words[::2], map(int, words[1::2]), strict=True))
        assert c["bad"] == 0, c
        if c["good"] > 0 and c["denied"] > 0:
            break
    assert c["good"] > 0 and c["denied"] > 0, c
    stops = json.loads(counts.read_text().splitlines()[0])["stops"]
    assert stops["openat"] >= 3000 and stops.get("exit:openat", 0) <= 5, stops


# -- which path ran: a shim judging calls "made" by this very process ------

AUDIT_ARCH_X86_64 = 0xC000003E


@pytest.fixture
def shim(tmp_path, monkeypatch):
    """A Shim with one in-process member (POLICY), nothing launched: its
    decisions are kept in ``shim.decided`` instead of being applied."""
    from brokerd.decision.inproc import InProcess
    from brokerd.tracer.shim import Shim, _Thread

    (tmp_path / "fusedpol.py").write_text(textwrap.dedent(POLICY))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fusedpol", None)
    az = __import__("fusedpol").az
    member = InProcess(az, timeout=5.0, trace=frozenset({"openat"}))
    s = Shim([member], stable_args=False, log=lambda m: None)
    member.greet("1", 0.0)
    s.stack.forget()
    s.decided = []
    monkeypatch.setattr(s, "_apply_entry", lambda t, d: s.decided.append((t.raw, d)))
    pid = os.getpid()
    s.threads[pid] = _Thread(pid, pid)
    return s


def _openat(shim, path: bytes, flags: int):
    """One openat(AT_FDCWD, path, flags) stop of this process at the shim's
    compiled-stop entry (the path read with the stop): (its registers, its Decision)."""
    from brokerd.protocol.abi import ABIS

    from brokerd.tracer.shim.consts import TRACE_MARK
    from brokerd.tracer.states import State

    buf = ctypes.create_string_buffer(path + b"\0")
    raw = (0xFFFFFF9C, ctypes.addressof(buf), flags, 0, 0, 0)
    t = shim.threads[os.getpid()]
    t._state = State.RUN
    shim._on_seccomp_stop(t.tid, AUDIT_ARCH_X86_64, ABIS["x86_64"].by_name["openat"].nr, raw, 0, TRACE_MARK,
                          (path, True))
    return shim.decided.pop()


def test_the_fused_entry_is_taken_and_decodes_alike(shim, monkeypatch):
    """After a plan's first judged call, a read open goes fused (the general
    entry is not called) with the same event as the general decoder makes;
    an open for writing is the guard's (it is asked); a denial is the
    policy's; with fail("deny") in force the general path runs."""
    from brokerd.protocol.types import SkipFail

    from brokerd.tracer.shim.entry import Entry

    via: list[str] = []
    general = Entry._seccomp_entry
    monkeypatch.setattr(shim, "_seccomp_entry", lambda *a: (via.append("general"), general(shim, *a)))
    guarded: list[int] = []
    guard_entry = Entry._guard_entry
    monkeypatch.setattr(shim, "_guard_entry", lambda t, p, raw: (guarded.append(raw[2]), guard_entry(shim, t, p, raw))[1])
    _openat(shim, b"/etc/hostname", os.O_RDONLY)
    assert via == ["general"]  # the plan's first judged call works it out
    via.clear()
    seen = []
    monkeypatch.setattr(shim.stack.members[0], "_decide_entry", lambda ev, f=shim.stack.members[0]._decide_entry: (
        seen.append(ev), f(ev))[1])
    raw, d = _openat(shim, b"/etc/hostname", os.O_RDONLY | os.O_CLOEXEC)
    assert via == [] and d.action == "cont" and guarded == []
    plan = shim._action_cache.plans[(AUDIT_ARCH_X86_64, shim.threads[os.getpid()].spec.nr)]
    assert seen[0].call.args == plan.decode(raw, shim._mem, shim.strsize, 4096)  # the general decoder's event
    _, d = _openat(shim, b"/tmp/x", os.O_WRONLY | os.O_CREAT)
    assert via == [] and d.action == "cont" and guarded == [os.O_WRONLY | os.O_CREAT]
    _, d = _openat(shim, b"/tmp/secret", os.O_RDONLY)
    assert via == [] and (d.action, d.value) == ("skip-fail", 13)
    shim.forced = SkipFail(1)
    _, d = _openat(shim, b"/etc/hostname", os.O_RDONLY)
    assert via == ["general"] and (d.action, d.value) == ("skip-fail", 1)


def test_made_objects_are_the_constructed_ones(monkeypatch):
    """brokerd.tracer.makers: what a maker makes (one compiled call where
    built) equals what the class makes, for every class the judged call's
    path makes that way; a maker refuses what is not a slot; without the
    compiled calls a maker is the class itself."""
    from brokerd.clients.authorizer import Syscall
    from brokerd.protocol.types import Call, Int, Str, SyscallEvent

    from brokerd.decision.stack import Decision
    from brokerd.tracer import makers
    from brokerd.tracer.accel import accel

    s = makers.maker(Str)(b"/etc/passwd", None)
    assert s == Str(b"/etc/passwd") and type(s) is Str and hash(s) == hash(Str(b"/etc/passwd"))
    c = makers.maker(Call)("openat", (Int(-100), s))
    assert c == Call("openat", (Int(-100), Str(b"/etc/passwd")))
    e = makers.maker(SyscallEvent)(7, 1, 2, "x86_64", c, (("path2", s),))
    assert e == SyscallEvent(7, 1, 2, "x86_64", c, (("path2", s),))
    d = makers.maker(Decision)("cont", c, 0, (), (), None, False, True)
    assert [getattr(d, n) for n in Decision.__slots__] == ["cont", c, 0, (), (), None, False, True]
    call = makers.maker(Syscall, (("_spec", False), ("_notes", None)))(e, None)
    assert (call.event, call.session, call.name, call.notes, call.spec.name) == (e, None, "openat", {"path2": s},
                                                                                 "openat")
    if accel is not None:
        with pytest.raises(TypeError):
            accel.maker(Str, ("data", "total"))(b"x")  # every field, positionally
        with pytest.raises((TypeError, AttributeError)):
            accel.maker(Str, ("data", "nothere"))
        with pytest.raises(TypeError):
            accel.maker(int, ())  # not a class of slots
        with pytest.raises(TypeError):
            accel.maker(Syscall, ("event",), (("_spec",),))  # fixed: (name, value) pairs
    monkeypatch.setattr(makers, "accel", None)
    assert makers.maker(Str) is Str
