"""The compiled external question (brokerd/tracer/shim/ext.py, ``accel.ask_open``):
a pinned open asked of one authorizer process in one C call.  Its line must be
the Python formatter's, byte for byte; a plain ``cont`` read with the question
is the only answer it takes; everything else (a reply split over two reads,
``contx``, a ``cont`` for another question's ID, a denial, a late reply, a
dead authorizer) goes the Python road from where it happened."""

from __future__ import annotations

import errno
import json
import mmap
import os

import pytest
from brokerd.protocol import codec
from brokerd.protocol.abi import ABIS
from brokerd.protocol.types import Call, Str, SyscallEvent
from conftest import brokerctl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokerd.decision.authorizer import (
    ASK_CONT_UNPINNED,
    ASK_DATA,
    ASK_NOTHING,
    ASK_PARTIAL,
    ASK_READ_FAILED,
    ASK_WRITE_FAILED,
    Authorizer,
)
from brokerd.spin import Spin
from brokerd.tracer.accel import accel
from brokerd.tracer.shim import pin  # noqa: F401 - (its import gives the compiled calls the pin's constants)

needs_accel = pytest.mark.skipif(accel is None, reason="the compiled stop-loop calls are not built")
AUDIT_ARCH_X86_64 = 0xC000003E
AT_FDCWD = 0xFFFFFFFFFFFFFF9C


@pytest.fixture(scope="module")
def shim():
    """A shim with stable arguments and one authorizer process (pipes; plain mode)."""
    from brokerd.tracer.shim import Shim

    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    a = Authorizer("plain", to_r, from_w, trace=frozenset({"open", "openat", "creat"}), log=lambda m: None)
    a.greet("1", 0.0)
    os.write(to_w, b"cont\n")
    a.on_readable(0.0)
    assert a.mode == "plain"
    s = Shim([a], stable_args=True, log=lambda m: None)
    s.stack.forget()
    yield s
    a.kill("test over")
    for fd in (to_w, from_r):
        os.close(fd)


def _plan(shim, name: str):
    plan = shim._plan(AUDIT_ARCH_X86_64, ABIS["x86_64"].by_name[name].nr)
    shim._ask_plan(plan)
    return plan


@needs_accel
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.binary(min_size=0, max_size=300).filter(lambda b: b"\0" not in b),
       name=st.sampled_from(["openat", "open"]),  # (creat is never fused: the guard sees every write open)
       flags=st.sampled_from([0, os.O_RDONLY | os.O_CLOEXEC, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, os.O_PATH,
                              os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW, 0x7FFFFFFF, 2**64 - 1]),
       mode=st.sampled_from([0, 0o644, 0o7777, 2**40 + 0o600]),
       dirfd=st.sampled_from([AT_FDCWD, 3, 0, 2**32 - 1]),
       ids=st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)))
def test_the_compiled_line_is_the_python_formatters(shim, path, name, flags, mode, dirfd, ids):
    """accel.event_line (what ask_open writes) over paths of any bytes (quotes,
    backslashes, control and high bytes), open and openat, odd flags, modes,
    dirfds and IDs: byte for byte codec.format_event of the event the quick
    walk makes (its notes the path itself, as for a pinned open)."""
    plan = _plan(shim, name)
    assert plan.ext is not None
    pidx = plan.given
    raw = [dirfd, flags, mode, 0x5555, 0x6666, 0x7777]
    raw.insert(pidx, 0x7FFF0000)  # (the path's register: never read here)
    raw = tuple(raw[:6])
    parts = shim._ext_parts(plan, raw)
    assert len(parts) == 4
    v = Str(path)
    ev = SyscallEvent(*ids, "x86_64", Call(name, plan.decode_given(raw, shim._mem, shim.strsize, 4096, v)),
                      ((plan.paths[0][1], v), (plan.real, v)))
    assert accel.event_line(*ids, parts, path) == codec.format_event(ev)


@needs_accel
def test_a_line_too_long_is_left_to_the_python_formatter(shim):
    plan = _plan(shim, "openat")
    parts = shim._ext_parts(plan, (AT_FDCWD, 0, 0, 0, 0, 0))
    assert accel.event_line(1, 2, 3, parts, b"\x01" * 4096) is not None  # 3 x 16 KiB: under the limit
    assert accel.event_line(1, 2, 3, parts + parts[1:], b"\x01" * 4096) is None  # (more than MAX_LINE)


#: an authorizer that answers every question as REPLY (a function of the event's line, its ID
#: ``eid`` and ``k``, the number of the program's opens asked so far) says; it writes what it was sent to LOG (one JSON string per line read)
AUTHZ = '''
import json, os, sys, time
log = open(sys.argv[1], "a")
hello = len(sys.argv) > 2 and sys.argv[2] == "hello"
n = 0  # the questions so far; k: those about the program's own opens (of a file named target)
k = 0
for raw in sys.stdin.buffer:
    line = raw.decode()
    if line.startswith("hello "):
        if hello:
            os.write(1, b"hello 1 role=authorizer name=t trace=openat\\n")
        else:
            os.write(1, b"cont\\n")
    elif line.startswith("syscall "):
        n += 1
        k += "/target" in line
        eid = line.split()[1]
        REPLY
    log.write(json.dumps(line) + "\\n"); log.flush()  # (after the reply: a quick one is read with the question)
'''


def _run(cprog, authz, tmp_path, reply: str, paths: list[str], *opts: str, hello: bool = False, env=None):
    log = tmp_path / "heard.jsonl"
    counts = tmp_path / "counts.jsonl"
    src = AUTHZ.replace("REPLY", reply)
    cmd = authz(src) + f" {log}" + (" hello" if hello else "")
    r = brokerctl("run", *opts, "-e", "trace=openat", "-a", cmd, "--", str(cprog("opener")), *paths,
                  env={"BROKERD_STOP_COUNTS": str(counts), **(env or {})})
    heard = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    stats = json.loads(counts.read_text().splitlines()[-1]) if counts.exists() else {}
    return r, heard, stats


def _results(r) -> list[str]:
    return [" ".join(x.split()[1:2]) for x in r.stdout.splitlines()]


@pytest.fixture
def target(tmp_path):
    f = tmp_path / "target"
    f.write_text("hi\n")
    return str(f)


def _one_cpu() -> str:
    return str(min(os.sched_getaffinity(0)))


@needs_accel
def test_plain_cont_is_taken_by_the_compiled_road(cprog, authz, tmp_path, target):
    """All on one CPU (the issue's placement, ``--cpu``): the wait yields the
    CPU to the authorizer and takes its plain cont with the question."""
    r, heard, stats = _run(cprog, authz, tmp_path, 'os.write(1, b"cont\\n")', [target] * 30, "--cpu", _one_cpu())
    assert r.returncode == 0, r.stderr[-2000:]
    assert _results(r) == ["ok"] * 30, r.stdout
    assert stats["accel"]["asked"] >= 1, stats  # (most; a loaded machine may run others in the yield)


@needs_accel
@pytest.mark.parametrize("mode", ["default", "python"])
def test_the_lines_sent_are_the_same_either_road(cprog, authz, tmp_path, target, mode):
    """The whole conversation (pids aside) is the same with the pure-Python
    stop loop: the compiled line is the one the Python road writes."""
    name = os.path.basename(target)
    paths = [target, target + "\\q\"x", target, target + "\x01\xff", target]
    env = {"BROKERD_ACCEL": "0"} if mode == "python" else {}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    r1, heard1, _ = _run(cprog, authz, tmp_path / "a", 'os.write(1, b"cont\\n")', paths)
    r2, heard2, _ = _run(cprog, authz, tmp_path / "b", 'os.write(1, b"cont\\n")', paths, env=env)
    assert r1.returncode == r2.returncode == 0, (r1.stderr[-2000:], r2.stderr[-2000:])

    def norm(heard: list[str]) -> list[str]:
        out = []
        for line in heard:
            if line.startswith("syscall "):
                w = line.split(" ", 4)
                line = " ".join([w[0], w[1], "PID", "TID", w[4]])
            out.append(line)
        return [x for x in out if name in x or not x.startswith("syscall ")]

    assert norm(heard1) == norm(heard2) and len(norm(heard1)) >= 6


@needs_accel
def test_a_cont_split_over_two_reads_is_still_a_cont(cprog, authz, tmp_path, target):
    """The reply comes as ``co`` then ``nt\\n``: the first read holds half a
    line, which is no answer: the rest, read later, makes it ``cont``.  (On
    one CPU, as the tests below: the wait gives the CPU to the authorizer,
    so the compiled road is the one that reads the reply's first part.)"""
    reply = 'os.write(1, b"co"); time.sleep(0.02); os.write(1, b"nt\\n")'
    r, heard, stats = _run(cprog, authz, tmp_path, reply, [target] * 6, "--cpu", _one_cpu())
    assert r.returncode == 0, r.stderr[-2000:]
    assert _results(r) == ["ok"] * 6, (r.stdout, r.stderr[-2000:])


@needs_accel
def test_contx_is_not_cont(cprog, authz, tmp_path, target):
    """``contx`` (plain mode) is no ``cont`` (a rewrite to an unknown call:
    refused, the default applies, EPERM), never taken for one by a prefix compare."""
    reply = 'os.write(1, b"contx\\n" if k >= 5 else b"cont\\n")'
    r, heard, stats = _run(cprog, authz, tmp_path, reply, [target] * 7, "--cpu", _one_cpu())
    assert r.returncode == 0, r.stderr[-2000:]
    assert _results(r) == ["ok"] * 4 + ["EPERM"] * 3, (r.stdout, r.stderr[-2000:])


@needs_accel
def test_cont_for_another_id_answers_nothing(cprog, authz, tmp_path, target):
    """Handshake mode: ``ID cont`` with another question's ID answers no
    question (error unknown-id back to the authorizer); the answer with this
    question's ID, a denial here, is the one applied."""
    reply = ('os.write(1, f"{int(eid) + 1000} cont\\n".encode()); time.sleep(0.01); '
             'os.write(1, f"{eid} skip-fail EACCES\\n".encode() if k >= 5 else f"{eid} cont\\n".encode())')
    r, heard, stats = _run(cprog, authz, tmp_path, reply, [target] * 7, "--cpu", _one_cpu(), hello=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _results(r) == ["ok"] * 4 + ["EACCES"] * 3, (r.stdout, r.stderr[-2000:])
    assert sum(line.startswith("error unknown-id") for line in heard) >= 6, heard


@needs_accel
def test_handshake_cont_with_its_id_is_taken_by_the_compiled_road(cprog, authz, tmp_path, target):
    r, heard, stats = _run(cprog, authz, tmp_path, 'os.write(1, f"{eid} cont\\n".encode())', [target] * 30,
                           "--cpu", _one_cpu(), hello=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _results(r) == ["ok"] * 30, r.stdout
    assert stats["accel"]["asked"] >= 1, stats


@needs_accel
def test_a_denial_a_late_reply_and_a_dead_authorizer(cprog, authz, tmp_path, target):
    """After some plain conts: a denial, a cont that comes late (past the
    spin: read by the loop), then the authorizer dies: its default (deny)."""
    reply = ('os.write(1, b"skip-fail ENOENT\\n") if k == 5 else None\n'
             '        time.sleep(0.05) if k == 6 else None\n'
             '        sys.exit(0) if k == 7 else None\n'
             '        os.write(1, b"cont\\n") if k != 5 else None')
    r, heard, stats = _run(cprog, authz, tmp_path, reply, [target] * 8, "--cpu", _one_cpu())
    assert r.returncode == 0, r.stderr[-2000:]
    assert _results(r) == ["ok"] * 4 + ["ENOENT", "ok", "EPERM", "EPERM"], (r.stdout, r.stderr[-2000:])
    assert "closed its output" in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize("env", [{"BROKERD_ACCEL": "0"}, {"BROKERD_CLOOP": "0"}], ids=["no-accel", "python-loop"])
def test_the_python_road_without_the_compiled_calls(cprog, authz, tmp_path, target, env):
    """BROKERD_ACCEL=0 (no compiled calls) and BROKERD_CLOOP=0 (the Python
    stop loop, which takes the general road to the quick walk): the same
    answers the same way, none asked by the compiled question."""
    reply = ('os.write(1, b"contx\\n" if k == 5 else b"co" if k > 5 else b"cont\\n")\n'
             '        (time.sleep(0.01), os.write(1, b"nt\\n")) if k > 5 else None')
    r, heard, stats = _run(cprog, authz, tmp_path, reply, [target] * 7, "--cpu", _one_cpu(), env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _results(r) == ["ok"] * 4 + ["EPERM", "ok", "ok"], (r.stdout, r.stderr[-2000:])
    assert stats["accel"] is None or stats["accel"]["asked"] == 0, stats


class Asking:
    """accel.ask_open on real pipes, the authorizer's side played here: the
    reply (if any) waits in the pipe before the question is written.  The
    thread is this very process, which nobody traces: a plain cont then
    comes back unpinned (SET_SYSCALL_INFO refused), its slot written."""

    def __init__(self, tmp_path) -> None:
        self.to_r, self.to_w = os.pipe()  # the authorizer's replies
        self.from_r, self.from_w = os.pipe()  # the broker's lines
        for fd in (self.to_r, self.from_r, self.from_w):
            os.set_blocking(fd, False)
        self.view = mmap.mmap(-1, 8192)
        self.rootfd = os.open("/", os.O_PATH | os.O_DIRECTORY)
        self.file = tmp_path / "f"
        self.file.write_text("x")
        self.parts = (b" x86_64 openat AT_FDCWD, ", b", O_RDONLY, 00 ; path2=", b" real2=", b"\n")

    def ask(self, reply: bytes | None, *, hello: bool = False, ev_id: int = 7, path: bytes | None = None,
            spin: Spin | None = None, rfd: int | None = None):
        if reply:
            os.write(self.to_w, reply)
        path = str(self.file).encode() if path is None else path
        return accel.ask_open(self.from_w, self.to_r if rfd is None else rfd, spin or Spin(budget_ns=0),
                              lambda now: False, hello, ev_id, 1234, os.getpid(), self.parts, path, self.rootfd,
                              os.O_RDONLY, 0, self.view, 64, 0x7F0000000040, (2**64 - 100, 0, 0, 0, 0x55, 0x66))

    def heard(self) -> bytes:
        try:
            return os.read(self.from_r, 1 << 20)
        except BlockingIOError:
            return b""

    def drain(self) -> None:
        try:
            os.read(self.to_r, 1 << 20)
        except BlockingIOError:
            pass

    def close(self) -> None:
        for fd in (self.to_r, self.to_w, self.from_r, self.from_w, self.rootfd):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def asking(tmp_path):
    a = Asking(tmp_path)
    yield a
    a.close()


@needs_accel
def test_ask_open_takes_only_the_plain_cont_of_its_question(asking):
    """Every reply but exactly ``cont\\n`` (handshake mode: ``ID cont\\n``
    with this question's ID) is handed back as read, for the Python road:
    a prefix, half a line, two lines, another ID, no ID."""
    path = str(asking.file).encode()
    assert asking.ask(b"cont\n") == (ASK_CONT_UNPINNED, None)
    q = codec.quote(path).encode()
    assert asking.heard() == b"syscall 7 1234 %d x86_64 openat AT_FDCWD, %s, O_RDONLY, 00 ; path2=%s real2=%s\n" % (
        os.getpid(), q, q, q)
    # the pin's slot was written as pin_plain makes it (then SET_SYSCALL_INFO: refused, nobody traces us)
    slot = accel.pin_plain(asking.rootfd, path, os.O_RDONLY, 0)[0]
    assert asking.view[64:64 + len(slot)] == slot
    for reply in (b"contx\n", b"co", b"cont", b"cont\ncont\n", b"cont \n", b" cont\n", b"7 cont\n", b"CONT\n",
                  b"cont\r\n"):
        assert asking.ask(reply) == (ASK_DATA, reply), reply
        asking.heard()
    assert asking.ask(b"7 cont\n", hello=True) == (ASK_CONT_UNPINNED, None)
    for reply in (b"8 cont\n", b"cont\n", b"07 cont\n", b"7 contx\n", b"7 cont\n7 cont\n", b"17 cont\n"):
        assert asking.ask(reply, hello=True) == (ASK_DATA, reply), reply
        asking.heard()
    assert asking.ask(None) == (ASK_NOTHING, None)


@needs_accel
def test_ask_open_asks_nothing_of_an_open_not_pinned_so(asking, tmp_path):
    os.symlink(asking.file, tmp_path / "link")
    for path in (str(tmp_path / "link").encode(), b"relative", b"/proc/self/status", str(tmp_path).encode() + b"/",
                 str(tmp_path / "absent").encode(), str(tmp_path).encode() + b"/./f"):
        assert asking.ask(b"cont\n", path=path) is None, path
        assert asking.heard() == b""
        asking.drain()


@needs_accel
def test_ask_open_hands_back_failed_and_partial_writes_and_reads(asking):
    # the broker's pipe full: the part not written comes back
    filler = b"x" * 4096
    while True:
        try:
            os.write(asking.from_w, filler)
        except BlockingIOError:
            break
    what, rest = asking.ask(b"cont\n")
    assert what == ASK_PARTIAL and rest.startswith(b"syscall 7 1234 ") and rest.endswith(b"\n")
    asking.drain()
    while asking.heard():
        pass
    # a read that fails
    assert asking.ask(None, rfd=asking.rootfd) == (ASK_READ_FAILED, errno.EBADF)
    asking.heard()
    # the authorizer's end closed: EPIPE (Python ignores SIGPIPE)
    os.close(asking.from_r)
    assert asking.ask(b"cont\n") == (ASK_WRITE_FAILED, errno.EPIPE)


@needs_accel
def test_ask_open_waits_and_backs_off_as_spin_until(asking, monkeypatch):
    """The wait is Spin.until's: a miss sets the back-off (1, then 2...), a
    wait that backs off polls once only, a reply read resets it."""
    monkeypatch.setattr("brokerd.spin.machine_busy", lambda now: False)  # (as the busy test ask() gives)
    sp = Spin(budget_ns=1000, max_skip=8, yields=False)
    py = Spin(budget_ns=1000, max_skip=8, yields=False)
    for _ in range(4):
        assert asking.ask(None, spin=sp) == (ASK_NOTHING, None)
        py.until(lambda: None)
        assert (sp._skip, sp._backoff) == (py._skip, py._backoff)
        asking.heard()
    assert asking.ask(b"cont\n", spin=sp) == (ASK_CONT_UNPINNED, None)
    py.until(lambda: b"cont\n")
    assert (sp._skip, sp._backoff) == (py._skip, py._backoff) and sp._backoff == 0
    # one CPU: the CPU given up once (the reply already there is read after it)
    one = Spin(budget_ns=0, yields=True)
    assert asking.ask(b"cont\n", spin=one) == (ASK_CONT_UNPINNED, None)


@needs_accel
def test_audit_trace_output_and_stacked_members_see_every_call(cprog, authz, tmp_path, target):
    """What needs the event object keeps the Python road: an audit record
    per decision, strace-like output per call; two members are asked in
    turn (the quick walk).  The outcomes are the same."""
    audit, shown = tmp_path / "audit.jsonl", tmp_path / "shown.txt"
    for i, opts in enumerate((("--audit", str(audit)), ("-o", str(shown)), ("-a", authz(AUTHZ.replace(
            "REPLY", 'os.write(1, b"cont\\n")')) + f" {tmp_path / 'second.jsonl'}"))):
        (tmp_path / str(i)).mkdir()
        r, heard, stats = _run(cprog, authz, tmp_path / str(i), 'os.write(1, b"cont\\n")', [target] * 5,
                               "--cpu", _one_cpu(), *opts)
        assert r.returncode == 0 and _results(r) == ["ok"] * 5, r.stderr[-2000:]
        assert stats["accel"]["asked"] == 0, stats
    assert sum('"/target' in line or "/target" in line for line in audit.read_text().splitlines()) == 5
    assert shown.read_text().count("/target\"") == 5
    assert sum("/target" in json.loads(x) for x in (tmp_path / "second.jsonl").read_text().splitlines()) == 5


@pytest.mark.parametrize("what,value", [(ASK_NOTHING, None), (ASK_DATA, b"skip-fail EA"), (ASK_PARTIAL, b"t 1\n")])
def test_a_question_asked_and_never_taken_up_keeps_its_place(what, value):
    """Plain mode: a question the compiled road asked whose event never came
    to ask_cont (``_sent`` for another event: the shim's road in between
    failed) keeps its place, so its reply (here a denial) is read and
    dropped, not taken for the next question's; the next question gets its
    own answer (was: the authorizer was given up, every later question its
    default)."""
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    os.set_blocking(from_r, False)
    a = Authorizer("plain", to_r, from_w, trace=frozenset({"openat"}), log=lambda m: None)
    a.spin = Spin(budget_ns=0)
    try:
        a.greet("1", 0.0)
        os.write(to_w, b"cont\n")
        a.on_readable(0.0)
        assert a.mode == "plain"
        os.read(from_r, 1 << 16)
        a._sent = (99, what, value)
        got: list = []
        ev = SyscallEvent(100, 1, 1, "x86_64", Call("openat", ()), ())
        assert a.ask_cont(ev, lambda: lambda reply, reason: got.append((reply, reason)), 0.0) is False
        sent = os.read(from_r, 1 << 16)
        assert sent.endswith(b"syscall 100 1 1 x86_64 openat\n") and (what != ASK_PARTIAL or sent.startswith(value))
        os.write(to_w, b"skip-fail EACCES\n"[len(value or b""):] if what == ASK_DATA else b"skip-fail EACCES\n")
        os.write(to_w, b"cont\n")
        a.on_readable(0.0)
        if not got:
            a.on_readable(0.0)
        assert [(type(r.verdict).__name__, why) for r, why in got] == [("Cont", "")], got
        assert a.mode == "plain" and not a._fifo
    finally:
        a.kill("test over")
        os.close(to_w)
        os.close(from_r)



#: answers cont; about the open of its first argument it first swaps that path's directory for a
#: symlink to its second argument (as another thread of the program could), then answers late
#: (past the compiled question's wait: the question is handed back to the Python road)
SWAP_THEN_CONT = r'''
import os, sys, time
target, outside = sys.argv[1], sys.argv[2]
sub = os.path.dirname(target)
sys.stdin.readline()
print("hello 1 role=authorizer name=swapper trace=openat,open", flush=True)
for line in sys.stdin:
    f = line.split()
    if not line.startswith("syscall"):
        continue
    if '"' + target + '"' in line and os.path.isdir(sub) and not os.path.islink(sub):
        os.rename(sub, sub + ".aside")
        os.symlink(outside, sub)
        time.sleep(0.05)
    print(f[1], "cont", flush=True)
'''


@needs_accel
def test_a_question_handed_back_keeps_the_path_it_asked_about(cprog, authz, tmp_path):
    """A question the compiled road asked about a plain path, handed back
    because the reply came late: the Python road made the event again and
    looked at the path again.  A directory swapped for a symlink in between
    was then resolved and checked at exit against where the swap led, while
    the authorizer had judged (and allowed) the plain path: the outside file
    was opened.  The walk now goes on with the event asked, pinned as
    judged: the kernel, following no symlink, fails the open (ELOOP)."""
    d, out = tmp_path / "d", tmp_path / "out"
    (d / "sub").mkdir(parents=True)
    out.mkdir()
    target = d / "sub" / "f"
    target.write_text("good\n")
    (out / "f").write_text("bad\n")
    r = brokerctl("run", "--cpu", _one_cpu(), "-a", authz(SWAP_THEN_CONT) + f" {target} {out}", "--",
                  "cat", str(target))
    assert (d / "sub").is_symlink()  # the swap was made while the question was open
    assert "bad" not in r.stdout, (r.stdout, r.stderr[-2000:])
    assert r.returncode == 1 and "Too many levels of symbolic links" in r.stderr, (r.returncode, r.stderr[-2000:])
