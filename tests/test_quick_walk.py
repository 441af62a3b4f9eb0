"""The quick walk of members that are processes (issue #13): an external
authorizer's plain ``cont`` read right after its question is taken with
nothing kept (``Authorizer.ask_cont``, ``plan.quick`` in Entry._ask_entry,
on the fused entry too); any other answer, or one that comes later, goes on
through the general walk from that member.  Driven with a real shim judging
openat stops "made" by this very process and authorizers played by the test
over real pipes."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest
from brokerd.protocol.types import Call, Cont, Reply, SkipFail, SyscallEvent

from brokerd.decision.authorizer import Authorizer

AUDIT_ARCH_X86_64 = 0xC000003E


class Peer:
    """One authorizer process's pipes, played by the test (handshake mode)."""

    def __init__(self, name: str) -> None:
        to_r, self.to_w = os.pipe()  # its lines to the broker
        self.from_r, from_w = os.pipe()  # the broker's lines to it
        os.set_blocking(self.from_r, False)
        self.a = Authorizer(name, to_r, from_w, trace=frozenset({"openat"}), log=lambda m: None)
        self.a.greet("1", 0.0)
        self.say(f"hello 1 role=authorizer name={name} trace=openat")
        self.heard()

    def say(self, line: str) -> None:
        os.write(self.to_w, line.encode() + b"\n")
        self.a.on_readable(0.0)

    def ready(self, line: str) -> None:
        """A reply waiting in the pipe before the question is written."""
        os.write(self.to_w, line.encode() + b"\n")

    def heard(self) -> list[str]:
        try:
            return os.read(self.from_r, 1 << 20).decode().splitlines()
        except BlockingIOError:
            return []

    def close(self) -> None:
        self.a.kill("test over")
        os.close(self.to_w)
        os.close(self.from_r)


@pytest.fixture
def shim(monkeypatch):
    """A shim with two process members (nothing launched): decisions kept in ``shim.decided``."""
    from brokerd.tracer.shim import Shim, _Thread

    monkeypatch.setenv("BROKERD_SPIN_US", "0")  # (a reply is there or not: no waiting for one)
    peers = [Peer("first"), Peer("second")]
    s = Shim([p.a for p in peers], stable_args=False, log=lambda m: None)
    s.stack.forget()
    s.decided = []
    s.peers = peers
    monkeypatch.setattr(s, "_apply_entry", lambda t, d: s.decided.append(d))
    pid = os.getpid()
    s.threads[pid] = _Thread(pid, pid)
    yield s
    for p in peers:
        p.close()


def _openat(shim, path: bytes) -> int:
    """One openat(AT_FDCWD, path, O_RDONLY) stop at the compiled stop's entry; its event's ID."""
    from brokerd.protocol.abi import ABIS

    from brokerd.tracer.shim.consts import TRACE_MARK
    from brokerd.tracer.states import State

    buf = ctypes.create_string_buffer(path + b"\0")
    raw = (0xFFFFFF9C, ctypes.addressof(buf), os.O_RDONLY, 0, 0, 0)
    t = shim.threads[os.getpid()]
    t._state = State.RUN
    eid = shim._next_id
    shim._on_seccomp_stop(t.tid, AUDIT_ARCH_X86_64, ABIS["x86_64"].by_name["openat"].nr, raw, 0, TRACE_MARK,
                          (path, True))
    return eid


def test_process_members_answer_cont_with_nothing_kept_and_the_rest_walks_as_ever(shim):
    first, second = shim.peers
    first.ready("1 cont")
    second.ready("1 cont")
    _openat(shim, b"/etc/hostname")  # (the plan's first judged call: the general walk)
    assert [d.action for d in shim.decided] == ["cont"]
    t = shim.threads[os.getpid()]
    plan = shim._action_cache.plans[(AUDIT_ARCH_X86_64, t.spec.nr)]
    assert [pos for pos, _ in plan.quick] == [0, 1] and plan.fused
    for p in (first, second):
        p.heard()

    first.ready("2 cont")
    second.ready("2 cont")
    _openat(shim, b"/etc/hostname")
    assert [d.action for d in shim.decided[1:]] == ["cont"] and t.walk is None
    assert first.heard()[0].startswith("syscall 2 ") and second.heard()[0].startswith("syscall 2 ")
    assert not first.a._fifo and not second.a._fifo

    # the second denies: the walk goes on from it (the first's cont stands), the decision is its
    first.ready("3 cont")
    second.ready("3 skip-fail EACCES")
    _openat(shim, b"/etc/hostname")
    assert (shim.decided[-1].action, shim.decided[-1].value, shim.decided[-1].decided_by) == ("skip-fail", 13, 1)
    assert first.heard() and second.heard()

    # the first answers late: nothing decided until its reply is read; then the second is asked
    eid = _openat(shim, b"/etc/hostname")
    assert len(shim.decided) == 3 and t.walk is not None and first.a.next_deadline() is not None
    assert second.heard() == []  # not asked before the first answered
    first.say(f"{eid} cont")
    assert second.heard()[0].startswith(f"syscall {eid} ")
    second.say(f"{eid} cont")
    assert shim.decided[-1].action == "cont" and len(shim.decided) == 4 and t.walk is None

    # a reply naming another question: not taken as this one's (the question stays open)
    first.ready("999 cont")
    eid = _openat(shim, b"/etc/hostname")
    assert len(shim.decided) == 4 and t.walk is not None
    assert any(line.startswith("error unknown-id") for line in first.heard())
    first.say(f"{eid} skip-fail EPERM")
    assert (shim.decided[-1].action, shim.decided[-1].value, shim.decided[-1].decided_by) == ("skip-fail", 1, 0)


def test_a_dead_process_member_gives_its_default_on_the_quick_walk(shim):
    first, second = shim.peers
    first.ready("1 cont")
    second.ready("1 cont")
    _openat(shim, b"/etc/hostname")
    first.a.kill("gone")
    _openat(shim, b"/etc/hostname")
    assert (shim.decided[-1].action, shim.decided[-1].value, shim.decided[-1].decided_by) == ("skip-fail", 1, 0)


def test_ask_cont_makes_the_callback_only_when_it_is_needed():
    """Authorizer.ask_cont: True after a plain ``cont`` read with the
    question, the callback never made; any other reply, a late one, or a
    dead authorizer: the callback made once, before its answer, which it
    then gets exactly once."""
    p = Peer("one")
    made: list[str] = []
    answers: list[tuple[Reply, str]] = []

    def later(tag: str):
        def make():
            made.append(tag)
            return lambda reply, reason: answers.append((reply, reason))
        return make

    def ev(n: int) -> SyscallEvent:
        return SyscallEvent(n, 100, 100, "x86_64", Call("openat"))

    try:
        p.ready("1 cont")
        assert p.a.ask_cont(ev(1), later("cont"), 0.0) is True
        assert made == [] and answers == [] and p.a.next_deadline() is None
        p.ready("2 skip-fail EACCES")
        assert p.a.ask_cont(ev(2), later("deny"), 0.0) is False
        assert made == ["deny"] and answers == [(Reply(SkipFail(errno.EACCES), 2), "")]
        assert p.a.ask_cont(ev(3), later("late"), 0.0) is False  # nothing waiting: left to the loop
        assert made == ["deny", "late"] and len(answers) == 1
        p.say("3 cont")
        assert answers[1] == (Reply(Cont(), 3), "")
        p.a.kill("gone")
        assert p.a.ask_cont(ev(4), later("dead"), 0.0) is False
        assert made[-1] == "dead" and answers[2][0] == Reply(SkipFail(errno.EPERM)) and "gone" in answers[2][1]
    finally:
        p.close()
