"""The decision path without a tracee: the stack walks, static and argument
rules, the verdict cache's key, and one authorizer connection's default
verdicts, driven directly (sans-IO; the connection over a real pipe pair).

These pin the rules the end-to-end tests (test_stack.py, test_static_rules.py,
test_arg_rules.py, test_verdict_cache.py) check through real programs, so a
change to the walk shows up here first, naming the rule it broke."""

from __future__ import annotations

import contextlib
import errno
import os
import signal

import pytest
from brokerd.protocol import codec
from brokerd.protocol.abi import ABIS
from brokerd.protocol.types import (
    Call,
    Cont,
    Deliver,
    Fail,
    Int,
    Kill,
    Ok,
    Reply,
    Rewrite,
    SetMem,
    SignalEvent,
    SkipFail,
    SkipOk,
    Step,
    Str,
    Sym,
    SyscallEvent,
    SysretEvent,
)

from brokerd import spin
from brokerd.decision.authorizer import Authorizer
from brokerd.decision.cache import VerdictCache, cache_key
from brokerd.decision.local import LocalAuthorizer
from brokerd.decision.member import Member
from brokerd.decision.rules import (
    ALLOW,
    KILL,
    TRACE,
    StaticRules,
    combine,
    parse_arg_rule,
    parse_static,
)
from brokerd.decision.stack import EntryWalk, ExitWalk, Stack, VerdictError

OPEN = Call("openat", (Sym(("AT_FDCWD",)), Str(b"/etc/hostname"), Sym(("O_RDONLY",))))
OPEN_KINDS = ("dirfd", "path", "open_flags", "mode")


def _open_event(path: bytes = b"/etc/hostname", flags: str = "O_RDONLY", notes=None) -> SyscallEvent:
    call = Call("openat", (Sym(("AT_FDCWD",)), Str(path), Sym(tuple(flags.split("|")))))
    if notes is None:
        notes = (("path2", Str(path)),)
    return SyscallEvent(7, 100, 100, "x86_64", call, notes)


def _run_entry(walk: EntryWalk, verdicts: dict[int, object]) -> list[tuple[int, SyscallEvent]]:
    """Feed each asked position its verdict; return who was asked with what."""
    asked = []
    while (nxt := walk.next()) is not None:
        asked.append(nxt)
        walk.feed(verdicts.get(nxt[0], Cont()))
    return asked


# -- the entry walk ------------------------------------------------------------


def test_nobody_subscribed_decides_cont_at_once():
    walk = EntryWalk(_open_event(), ())
    assert walk.next() is None
    assert walk.decision is not None and walk.decision.action == "cont"
    assert walk.decision.decided_by is None


def test_entry_walk_asks_in_stack_order_only_the_subscribed():
    walk = EntryWalk(_open_event(), (0, 2, 5))
    asked = _run_entry(walk, {})
    assert [pos for pos, _ in asked] == [0, 2, 5]
    assert walk.decision.action == "cont" and not walk.decision.rewritten


def test_rewrites_accumulate_each_sees_the_previous_result():
    first = Call("openat", (Sym(("AT_FDCWD",)), Str(b"/tmp/a"), Sym(("O_RDONLY",))))
    second = Call("openat", (Sym(("AT_FDCWD",)), Str(b"/tmp/b"), Sym(("O_RDONLY",))))
    walk = EntryWalk(_open_event(), (0, 1, 2))
    asked = _run_entry(walk, {0: Rewrite(first), 1: Rewrite(second)})
    assert asked[0][1].call == _open_event().call
    assert asked[1][1].call == first
    assert asked[2][1].call == second
    assert asked[2][1].id == 7 and asked[2][1].notes == _open_event().notes  # only the call changes
    assert walk.decision.action == "cont" and walk.decision.call == second and walk.decision.rewritten


@pytest.mark.parametrize(
    ("verdict", "action", "value"),
    [(SkipFail(errno.EACCES), "skip-fail", errno.EACCES), (SkipOk(3), "skip-ok", 3), (Kill(), "kill", 0)],
)
def test_denial_anywhere_wins_and_ends_the_walk(verdict, action, value):
    walk = EntryWalk(_open_event(), (0, 1, 2))
    asked = _run_entry(walk, {0: Step(), 1: verdict})
    assert [pos for pos, _ in asked] == [0, 1]  # 2 is never asked
    d = walk.decision
    assert (d.action, d.value, d.decided_by) == (action, value, 1)
    assert d.steppers == []  # a call that does not run has no result to bring back


def test_steppers_are_kept_in_stack_order_when_the_call_runs():
    walk = EntryWalk(_open_event(), (0, 1, 3))
    _run_entry(walk, {0: Step(), 3: Step()})
    assert walk.decision.action == "cont" and walk.decision.steppers == [0, 3]


def test_memory_edits_accumulate_in_order_even_when_denied_later():
    walk = EntryWalk(_open_event(), (0, 1))
    walk.feed(Cont(), (SetMem(2, b"/a"),))
    walk.feed(SkipFail(errno.EPERM), (SetMem(2, b"/b"),))
    assert walk.decision.sets == [SetMem(2, b"/a"), SetMem(2, b"/b")]


@pytest.mark.parametrize("verdict", [Ok(Int(1)), Fail(errno.EPERM), Deliver(), "cont", None])
def test_a_verdict_not_valid_at_entry_is_refused_and_the_walk_waits(verdict):
    walk = EntryWalk(_open_event(), (0, 1))
    with pytest.raises(VerdictError) as e:
        walk.feed(verdict)
    assert e.value.code == "bad-verdict"
    assert walk.next()[0] == 0  # still this authorizer's turn: the caller feeds its default
    walk.feed(SkipFail(errno.EPERM))
    assert walk.decision.action == "skip-fail" and walk.decision.decided_by == 0


def test_feeding_a_decided_walk_is_a_bug():
    walk = EntryWalk(_open_event(), (0,))
    walk.feed(Cont())
    with pytest.raises(RuntimeError):
        walk.feed(Cont())


# -- the exit walk -------------------------------------------------------------


def _sysret(result=None) -> SysretEvent:
    return SysretEvent(7, 100, 100, "x86_64", "getppid", result or Ok(Int(1)))


def test_results_flow_back_in_reverse_each_seeing_the_last_replacement():
    walk = ExitWalk(_sysret(), [0, 2])
    pos, ev = walk.next()
    assert pos == 2 and ev.result == Ok(Int(1))  # nearest the kernel first
    walk.feed(Ok(Int(1000)))
    pos, ev = walk.next()
    assert pos == 0 and ev.result == Ok(Int(1000))
    walk.feed(Cont())
    assert walk.done and walk.next() is None and walk.result == Ok(Int(1000))


def test_exit_walk_without_steppers_is_done():
    walk = ExitWalk(_sysret(), [])
    assert walk.done and walk.next() is None and walk.result == Ok(Int(1))


def test_kill_at_exit_ends_the_walk():
    walk = ExitWalk(_sysret(), [0, 1])
    walk.feed(Kill())
    assert walk.done and isinstance(walk.result, Kill)


def test_a_failure_can_replace_success_and_sets_accumulate():
    walk = ExitWalk(_sysret(), [0, 1])
    walk.feed(Fail(errno.EIO), (SetMem(1, b"x"),))
    walk.feed(Cont(), (SetMem(1, b"y"),))
    assert walk.result == Fail(errno.EIO) and walk.sets == [SetMem(1, b"x"), SetMem(1, b"y")]


@pytest.mark.parametrize("verdict", [Step(), SkipFail(1), Rewrite(OPEN), Deliver()])
def test_a_verdict_not_valid_at_exit_is_refused(verdict):
    walk = ExitWalk(_sysret(), [0])
    with pytest.raises(VerdictError):
        walk.feed(verdict)
    assert not walk.done and walk.result == Ok(Int(1))


# -- static rules --------------------------------------------------------------


def test_static_precedence_kill_deny_allow_then_subscription():
    rules = StaticRules(
        allow=frozenset({"read", "openat"}),
        deny=(("openat", errno.EACCES), ("mknod", errno.EPERM)),
        kill=frozenset({"ptrace", "mknod"}),
    )
    assert rules.action("ptrace", True) == KILL
    assert rules.action("mknod", False) == KILL  # kill outranks deny
    assert rules.action("openat", True) == ("deny", errno.EACCES)  # deny outranks allow
    assert rules.action("read", True) == ALLOW  # allowed even though subscribed
    assert rules.action("write", True) == TRACE
    assert rules.action("write", False) == ALLOW


def test_unknown_applies_only_to_calls_named_nowhere():
    rules = StaticRules(allow=frozenset({"read"}), unknown=("deny", errno.ENOSYS))
    assert rules.action("read", False) == ALLOW
    assert rules.action("getppid", True) == TRACE
    assert rules.action("getpid", False) == ("deny", errno.ENOSYS)


def test_combine_denial_first_met_wins_else_trace_else_allow():
    assert combine([ALLOW, TRACE, ("deny", 13), KILL]) == ("deny", 13)
    assert combine([KILL, ("deny", 13)]) == KILL
    assert combine([ALLOW, TRACE, ALLOW]) == TRACE
    assert combine([ALLOW, ALLOW]) == ALLOW
    assert combine([]) == ALLOW


def test_combine_only_narrows_whatever_the_order():
    allow = StaticRules(allow=frozenset({"openat"}))
    deny = StaticRules(deny=(("openat", errno.EACCES),))
    for stack in ((allow, deny), (deny, allow)):
        assert combine([r.action("openat", True) for r in stack]) == ("deny", errno.EACCES)


def test_parse_static_names_errnos_and_defaults():
    rules = parse_static({"allow": "read,close", "deny": "openat:EACCES,mknod", "kill": "ptrace",
                          "unknown": "deny:ENOSYS"})
    assert rules.allow == frozenset({"read", "close"})
    assert rules.deny == (("openat", errno.EACCES), ("mknod", errno.EPERM))  # no errno: EPERM
    assert rules.kill == frozenset({"ptrace"})
    assert rules.unknown == ("deny", errno.ENOSYS)
    assert parse_static({}).empty
    assert parse_static({"unknown": "trace"}).unknown == TRACE


@pytest.mark.parametrize("attrs", [{"unknown": "maybe"}, {"deny": "openat:ENOTANERRNO"}])
def test_parse_static_refuses_bad_values(attrs):
    with pytest.raises(ValueError):
        parse_static(attrs)


# -- argument rules ------------------------------------------------------------


def test_path_rule_matches_the_resolved_path_note_by_glob():
    rule = parse_arg_rule("openat path2=/usr/lib/** => cont")
    assert rule.verdict == Cont()
    assert rule.matches(_open_event(b"/usr/lib/x/libc.so"), OPEN_KINDS)
    assert not rule.matches(_open_event(b"/usr/libexec/x"), OPEN_KINDS)
    # the note, not the argument's spelling, is what counts
    relative = _open_event(b"libc.so", notes=(("path2", Str(b"/usr/lib/libc.so")),))
    assert rule.matches(relative, OPEN_KINDS)
    assert not rule.matches(_open_event(b"/usr/lib/x", notes=()), OPEN_KINDS)  # no note: no match


def test_flag_rules_any_and_none():
    any_w = parse_arg_rule("openat arg3&O_WRONLY|O_RDWR => skip-fail EROFS")
    assert any_w.verdict == SkipFail(errno.EROFS)
    assert any_w.matches(_open_event(flags="O_WRONLY|O_CREAT"), OPEN_KINDS)
    assert any_w.matches(_open_event(flags="O_RDWR"), OPEN_KINDS)
    assert not any_w.matches(_open_event(flags="O_RDONLY|O_CLOEXEC"), OPEN_KINDS)
    none_w = parse_arg_rule("openat arg3!&O_WRONLY|O_RDWR => cont")
    assert none_w.matches(_open_event(flags="O_RDONLY|O_CLOEXEC"), OPEN_KINDS)
    assert not none_w.matches(_open_event(flags="O_RDWR"), OPEN_KINDS)


def test_equality_rule_and_other_calls_never_match():
    rule = parse_arg_rule("openat arg3=O_RDONLY => skip-fail EACCES")
    assert rule.matches(_open_event(flags="O_RDONLY"), OPEN_KINDS)
    assert not rule.matches(_open_event(flags="O_RDONLY|O_CLOEXEC"), OPEN_KINDS)
    other = SyscallEvent(1, 1, 1, "x86_64", Call("open", (Str(b"/etc/hostname"), Sym(("O_RDONLY",)))))
    assert not rule.matches(other, ("path", "open_flags"))
    short = SyscallEvent(1, 1, 1, "x86_64", Call("openat", (Int(3),)))
    assert not rule.matches(short, OPEN_KINDS)  # a missing argument never matches


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("openat path2=/x", "expected 'NAME"),
        ("=> cont", "expected 'NAME"),
        ("openat arg9&O_WRONLY => cont", "bad matcher 'arg9&O_WRONLY'"),
        ("openat path2=/x => ok 1", "is not a verdict for a syscall"),
        ("openat path2=/x => skip-fail ENOTANERRNO", "bad verdict"),
        ("openat arg3=\"unterminated => cont", "bad value"),
    ],
)
def test_bad_rules_are_refused_naming_the_problem(text, problem):
    with pytest.raises(ValueError) as e:
        parse_arg_rule(text)
    assert problem in str(e.value)


# -- the verdict cache's key ---------------------------------------------------


def test_cache_key_is_position_abi_call_and_resolved_paths_only():
    ev = _open_event(notes=(("path2", Str(b"/a/f")), ("caller", Str(b"libc:open+4")), ("real2", Str(b"/a/f"))))
    assert cache_key(1, ev) == (1, "x86_64", ev.call, (("path2", Str(b"/a/f")),))
    assert cache_key(0, _open_event(notes=()))[3] == ()


def test_same_spelling_elsewhere_has_another_key():
    a = _open_event(b"f", notes=(("path2", Str(b"/a/f")),))
    b = _open_event(b"f", notes=(("path2", Str(b"/b/f")),))
    assert a.call == b.call and cache_key(0, a) != cache_key(0, b)


def test_cache_hits_only_the_same_call_by_the_same_member_and_stays_bounded():
    cache = VerdictCache(size=2)
    deny = Reply(SkipFail(errno.EACCES), cache=True)
    cache.put(0, _open_event(), deny)
    assert cache.get(0, _open_event()) == deny
    assert cache.get(1, _open_event()) is None  # another member's answer is its own
    assert cache.get(0, _open_event(flags="O_RDWR")) is None
    cache.put(0, _open_event(b"/x"), deny)
    cache.put(0, _open_event(b"/y"), deny)  # full: starts over
    assert len(cache) == 1 and cache.get(0, _open_event()) is None


# -- the Stack -----------------------------------------------------------------


class Fixed(LocalAuthorizer):
    """An in-process member answering every question with one verdict."""

    def __init__(self, name, verdict=None, trace=None, static=None, rules=(), signals=False):
        super().__init__(name, trace, signals=signals)
        self.verdict = verdict if verdict is not None else Cont()
        if static is not None:
            self.static = static
        self.rules = tuple(parse_arg_rule(r) for r in rules)
        self.asked: list = []

    def decide(self, event):
        self.asked.append(event)
        return Reply(self.verdict)


def test_stack_order_asks_only_the_subscribed_and_the_statically_silent():
    stack = Stack([
        Fixed("all"),
        Fixed("opens", trace=frozenset({"openat"})),
        Fixed("allows", static=StaticRules(allow=frozenset({"openat"}))),
        Fixed("signals", trace=frozenset(), signals=True),
    ])
    assert stack.order("openat") == (0, 1)
    assert stack.order("read") == (0, 2)
    assert stack.signal_order() == (3,)
    assert stack.subscriptions() is None
    assert Stack([Fixed("a", trace=frozenset({"read"})), Fixed("b", trace=frozenset({"openat"}))]).subscriptions() \
        == {"read", "openat"}
    assert len(stack) == 4 and stack[1].name == "opens" and [m.name for m in stack][0] == "all"


def test_stack_action_narrows_and_the_brokers_own_rules_come_last():
    deny = Fixed("d", trace=frozenset(), static=StaticRules(deny=(("mknod", errno.EPERM),)))
    allow = Fixed("a", trace=frozenset(), static=StaticRules(allow=frozenset({"mknod", "read"})))
    stack = Stack([allow, deny])
    assert stack.action("mknod") == ("deny", errno.EPERM)
    assert stack.action("read") == ALLOW
    assert stack.action("read", KILL) == KILL  # the broker's own rule, below every member
    assert stack.action("mknod", KILL) == ("deny", errno.EPERM)  # the first denial met wins
    assert Stack([Fixed("t", trace=frozenset({"read"}))]).action("read") == TRACE


def test_stack_unknown_call_is_traced_if_anyone_sees_all():
    assert Stack([Fixed("all")]).unknown() == TRACE
    assert Stack([Fixed("some", trace=frozenset({"read"}))]).unknown() == ALLOW
    optin = Fixed("opt-in", trace=frozenset(), static=StaticRules(unknown=("deny", errno.ENOSYS)))
    assert Stack([Fixed("all"), optin]).unknown() == ("deny", errno.ENOSYS)


def test_known_answer_argument_rule_first_then_cache_else_ask():
    member = Fixed("r", rules=("openat arg3&O_WRONLY|O_RDWR => skip-fail EROFS",))
    stack = Stack([member])
    abi = ABIS["x86_64"]
    assert stack.known_answer(0, _open_event(flags="O_WRONLY"), abi) == Reply(SkipFail(errno.EROFS))
    assert stack.known_answer(0, _open_event(), abi) is None  # no rule matched, nothing cached: ask
    stack.remember(0, _open_event(), Reply(Cont(), 7))  # not marked cache: forgotten
    assert stack.known_answer(0, _open_event(), abi) is None
    stack.remember(0, _open_event(), Reply(SkipFail(errno.EACCES), 7, cache=True))
    assert stack.known_answer(0, _open_event(), abi).verdict == SkipFail(errno.EACCES)
    # the rule still wins over a cached answer for the same call
    stack.remember(0, _open_event(flags="O_WRONLY"), Reply(Cont(), 8, cache=True))
    assert stack.known_answer(0, _open_event(flags="O_WRONLY"), abi).verdict == SkipFail(errno.EROFS)


def test_a_walk_driven_through_a_stack_of_members():
    """The shim's loop in miniature: ask each member the walk names, feed its answer."""
    first = Fixed("first", Rewrite(Call("openat", (Sym(("AT_FDCWD",)), Str(b"/tmp/x"), Sym(("O_RDONLY",))))))
    second = Fixed("second", Step())
    third = Fixed("third", SkipFail(errno.EACCES), trace=frozenset({"read"}))
    stack = Stack([first, second, third])
    ev = _open_event()
    walk = EntryWalk(ev, stack.order("openat"))
    while (nxt := walk.next()) is not None:
        pos, seen = nxt
        stack[pos].ask(seen, lambda reply, reason: walk.feed(reply.verdict, reply.sets), 0.0)
    assert third.asked == []
    assert second.asked[0].call.args[1] == Str(b"/tmp/x")
    assert walk.decision.action == "cont" and walk.decision.steppers == [1]


# -- one authorizer connection: default verdicts on bad and late replies -------


class Conn:
    """A real Authorizer over two pipes; the test plays the authorizer."""

    def __init__(self, mode: str = "hello", timeout: float = 5.0, attrs: str = "", **kw) -> None:
        to_r, self.to_w = os.pipe()  # the test writes the authorizer's lines here
        self.from_r, from_w = os.pipe()  # and reads what the broker sent here
        self.log: list[str] = []
        self.a = Authorizer("t", to_r, from_w, timeout=timeout, log=self.log.append, **kw)
        self.answers: list[tuple[Reply, str]] = []
        self.a.greet("1", 0.0)
        self.sent()
        if mode == "hello":
            self.say(f"hello 1 role=authorizer name=t {attrs}".strip())
            self.sent()
        else:
            self.say("cont")  # a plain filter answers the greeting like any line
        assert self.a.mode == mode

    def say(self, line: str, now: float = 0.0) -> None:
        os.write(self.to_w, line.encode() + b"\n")
        self.a.on_readable(now)

    def sent(self) -> list[str]:
        try:
            return os.read(self.from_r, 65536).decode().splitlines()
        except BlockingIOError:
            return []

    def ask(self, ev, now: float = 0.0) -> None:
        self.a.ask(ev, lambda reply, reason: self.answers.append((reply, reason)), now)

    def close(self) -> None:
        self.a.kill("test over")
        for fd in (self.to_w, self.from_r):
            os.close(fd)


@pytest.fixture
def conn():
    made: list[Conn] = []

    def make(*args, **kw) -> Conn:
        c = Conn(*args, **kw)
        os.set_blocking(c.from_r, False)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def _ev(n: int, name: str = "openat") -> SyscallEvent:
    return SyscallEvent(n, 100, 100, "x86_64", Call(name))


def test_garbage_in_plain_mode_answers_the_oldest_with_the_default(conn):
    c = conn("plain")
    c.ask(_ev(1))
    c.say("this is not a reply")
    assert c.answers == [(Reply(SkipFail(errno.EPERM)), c.answers[0][1])]
    assert c.answers[0][1].startswith("bad line")
    assert any(m.startswith("authorizer t: bad-value") for m in c.log)  # plain mode: errors go to the log


def test_stray_reply_without_id_answers_nothing_in_handshake_mode(conn):
    c = conn()
    c.ask(_ev(1))
    c.ask(_ev(2))
    c.say("cont")
    assert c.answers == []
    assert any(line.startswith("error missing-id") for line in c.sent())
    c.say("cont")
    assert sum("without an event ID" in m for m in c.log) == 1  # the operator hears of it, once
    assert c.a.next_deadline() is not None  # still open, deadline and all
    c.say("2 skip-fail EACCES")
    c.say("1 cont")
    assert c.answers == [(Reply(SkipFail(errno.EACCES), 2), ""), (Reply(Cont(), 1), "")]


def test_garbage_in_handshake_mode_defaults_only_the_question_it_names(conn):
    c = conn(attrs="default=allow")
    c.ask(_ev(1))
    c.say("debug: still thinking")  # no ID: answers nothing (default=allow would let it through)
    c.say("hello 1 role=authorizer")  # a second hello: refused, answers nothing
    assert c.answers == []
    c.say("1 skip-fail NOTANERRNO")  # names question 1: garbled, so 1 gets the default
    assert c.answers == [(Reply(Cont()), c.answers[0][1])] and c.answers[0][1].startswith("bad line")
    assert sum(line.startswith("error ") for line in c.sent()) == 3


def test_timed_out_question_leaves_no_placeholder_in_handshake_mode(conn):
    c = conn(timeout=1.0)
    for n in range(1, 4):
        c.ask(_ev(n), now=0.0)
    c.a.expire(2.0)
    assert len(c.answers) == 3 and c.a.next_deadline() is None
    assert not c.a._fifo and not c.a._by_id  # nothing kept that only a stray line could clear


def test_late_reply_is_dropped_and_never_answers_the_next_question_plain(conn):
    c = conn("plain", timeout=1.0)
    c.ask(_ev(1), now=0.0)
    assert c.a.next_deadline() == 1.0
    c.a.expire(1.5)
    assert c.answers == [(Reply(SkipFail(errno.EPERM)), "authorizer t did not answer within 1s")]
    c.ask(_ev(2), now=2.0)
    c.say("cont", now=2.1)  # the late answer to question 1: kept in order, dropped
    assert len(c.answers) == 1
    c.say("skip-fail EACCES", now=2.2)
    assert c.answers[1] == (Reply(SkipFail(errno.EACCES)), "")


def test_late_reply_by_id_is_refused_in_hello_mode(conn):
    c = conn(timeout=1.0)
    c.ask(_ev(1), now=0.0)
    c.a.expire(2.0)
    c.ask(_ev(2), now=2.0)
    c.say("1 cont")
    assert len(c.answers) == 1
    assert any("unknown-id" in line for line in c.sent())
    c.say("2 cont")
    assert c.answers[1] == (Reply(Cont(), 2), "")


def test_a_reply_already_waiting_is_taken_when_the_question_is_sent(conn):
    """The write wakes the authorizer, which often answers before the write
    returns: ask() reads that reply at once (no loop turn, no epoll_wait)."""
    for mode, reply, expect in (("hello", "1 skip-fail EACCES", Reply(SkipFail(errno.EACCES), 1)),
                                ("plain", "skip-fail EACCES", Reply(SkipFail(errno.EACCES)))):
        c = conn(mode)
        os.write(c.to_w, reply.encode() + b"\n")
        c.ask(_ev(1))
        assert c.answers == [(expect, "")]
        assert c.sent()[0].startswith("syscall 1 ")  # the question went out first
        c.ask(_ev(2))  # nothing waiting: the question stays open for the loop
        assert len(c.answers) == 1 and c.a.next_deadline() is not None


def test_a_plain_cont_read_with_its_question_answers_it_and_keeps_nothing(conn):
    """The usual round trip (nothing else outstanding, the reply ``cont``
    read right after the question) is answered without a question kept or
    a line parsed: the same answer as ever, nothing left open, and only the
    very line ``cont`` (``ID cont`` with this ID in handshake mode) taken so."""
    for mode, line, expect in (("plain", "cont", Reply(Cont())), ("hello", "1 cont", Reply(Cont(), 1))):
        c = conn(mode)
        os.write(c.to_w, line.encode() + b"\n")
        c.ask(_ev(1))
        assert c.answers == [(expect, "")]
        assert c.a.next_deadline() is None and not c.a._fifo and not c.a._by_id
        assert (c.a.answered, c.a.defaulted) == (1, 0)
    c = conn()
    os.write(c.to_w, b"2 cont\n")  # another question's ID: answers nothing, question 1 stays open
    c.ask(_ev(1))
    assert c.answers == [] and c.a.next_deadline() is not None
    assert any(line.startswith("error unknown-id") for line in c.sent())


def test_a_partial_line_held_before_a_question_is_part_of_its_reply(conn):
    """Bytes of a line read earlier (no newline yet) and a ``cont`` read
    with the next question make one line, judged whole: garbage here, so the
    default (plain mode), or an ID no question has (handshake mode)."""
    c = conn("plain")
    os.write(c.to_w, b"?? ")
    c.a.on_readable(0.0)
    os.write(c.to_w, b"cont\n")
    c.ask(_ev(1))
    assert c.answers == [(Reply(SkipFail(errno.EPERM)), c.answers[0][1])]
    assert c.answers[0][1].startswith("bad line")
    c = conn()
    os.write(c.to_w, b"9")
    c.a.on_readable(0.0)
    os.write(c.to_w, b"1 cont\n")  # the line is "91 cont"
    c.ask(_ev(1))
    assert c.answers == [] and c.a.next_deadline() is not None
    assert any(line.startswith("error unknown-id") for line in c.sent())


def test_a_question_asked_from_an_answer_gets_the_reply_read_with_it(conn):
    """An answer's callback asking the same authorizer again (the next step of
    a walk) while its lines are being handled: no nested read, and the reply
    already read answers it, in order."""
    c = conn()
    os.write(c.to_w, b"1 cont\n2 skip-fail EACCES\n")
    got: list[Reply] = []

    def first(reply: Reply, reason: str) -> None:
        got.append(reply)
        c.a.ask(_ev(2), lambda r, why: got.append(r), 0.0)

    c.a.ask(_ev(1), first, 0.0)
    assert got == [Reply(Cont(), 1), Reply(SkipFail(errno.EACCES), 2)]
    assert not c.a._fifo and not any(line.startswith("error") for line in c.sent())


def test_replies_split_across_reads_or_ending_in_crlf_answer_in_order(conn):
    """A read of one whole line skips the line buffer: a line completed by a
    later read, a CRLF line and several lines in one read still answer
    exactly as the buffer splits them."""
    c = conn("plain")
    for n in range(1, 6):
        c.ask(_ev(n))
    for chunk in (b"skip-fail EA", b"CCES\n", b"cont\r\n", b"kill\nskip-ok 3\n", b"skip-fail EPERM\r\n"):
        os.write(c.to_w, chunk)
        c.a.on_readable(0.0)
    assert [r.verdict for r, _ in c.answers] == [SkipFail(errno.EACCES), Cont(), Kill(), SkipOk(3), SkipFail(errno.EPERM)]
    assert all(reason == "" for _, reason in c.answers)


@pytest.fixture
def cpu_pressure(tmp_path, monkeypatch):
    """The CPU pressure brokerd.spin sees, set by the test (the machine's
    own would make the spin tests depend on the load)."""
    path = tmp_path / "cpu"
    monkeypatch.setattr(spin, "PRESSURE_FILE", str(path))

    def set_to(percent: float) -> None:
        path.write_text(f"some avg10={percent:.2f} avg60=0.00 avg300=0.00 total=0\n"
                        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
        monkeypatch.setattr(spin._Load, "next_read", 0)

    set_to(0.0)
    return set_to


@contextlib.contextmanager
def _reply_later(c: Conn, line: bytes, after: float):
    """The authorizer's reply arrives ``after`` seconds after this starts
    (SIGALRM: the same thread, so a spinning ask() sees it and nothing
    else can race it)."""
    old = signal.signal(signal.SIGALRM, lambda *_: os.write(c.to_w, line))
    signal.setitimer(signal.ITIMER_REAL, after)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_a_reply_that_comes_soon_after_the_question_is_taken_by_ask(conn, cpu_pressure):
    """ask() keeps reading for a short while after the question (the spin):
    the reply of an authorizer that answers within it answers the question
    before ask() returns, without the loop's epoll_wait."""
    c = conn()
    c.a.spin.budget_ns = 60 * 10**9  # the budget is not what is tested: the reply comes after 0.05 s
    with _reply_later(c, b"1 skip-fail EACCES\n", 0.05):
        c.ask(_ev(1))
    assert c.answers == [(Reply(SkipFail(errno.EACCES), 1), "")]


def test_brokerd_spin_us_0_turns_the_spin_off(conn, cpu_pressure, monkeypatch):
    """BROKERD_SPIN_US=0: ask() reads once and leaves a reply that comes a
    little later to the loop (a user who counts CPU cycles over latency)."""
    monkeypatch.setenv("BROKERD_SPIN_US", "0")
    c = conn()
    assert c.a.spin.budget_ns == 0
    with _reply_later(c, b"1 cont\n", 0.05):
        c.ask(_ev(1))
        assert c.answers == []
    c.say("1 cont")  # the loop reads it
    assert [r.id for r, _ in c.answers] == [1]
    monkeypatch.setenv("BROKERD_SPIN_US", "250")
    assert spin.Spin().budget_ns == 250_000
    monkeypatch.setenv("BROKERD_SPIN_US", "lots")
    assert spin.Spin().budget_ns == spin.SPIN_NS


def test_nothing_spins_while_tasks_wait_for_a_cpu(conn, cpu_pressure):
    """On a busy machine (CPU pressure at or above BUSY_PRESSURE) ask() does
    not spin: the CPU goes to whoever waits for it, the authorizer maybe;
    the reply is left to the loop."""
    c = conn()
    c.a.spin.budget_ns = 60 * 10**9
    cpu_pressure(spin.BUSY_PRESSURE + 1)
    with _reply_later(c, b"1 cont\n", 5.0):  # would come during a spin
        c.ask(_ev(1))
        assert c.answers == []
    c.say("1 cont")  # the loop reads it
    cpu_pressure(0.0)
    with _reply_later(c, b"2 cont\n", 0.05):
        c.ask(_ev(2))  # calm again: it spins
    assert [r.id for r, _ in c.answers] == [1, 2]


def test_an_authorizer_that_misses_the_spin_is_then_asked_without_one(conn, cpu_pressure):
    """A spin that saw no reply: the next question is left to the loop at
    once (a slow authorizer costs no CPU spent spinning), and after
    the back-off the spin is back."""
    c = conn()
    c.a.spin.budget_ns = 10**6
    c.ask(_ev(1))  # nobody answers: the spin runs out
    assert c.answers == []
    c.a.spin.budget_ns = 60 * 10**9
    with _reply_later(c, b"1 cont\n2 cont\n", 2.0):
        c.ask(_ev(2))  # no spin: ask() returns before the reply
        assert c.answers == []
        c.ask(_ev(3))  # the back-off is over: this one spins and takes both replies
    assert [r.id for r, _ in c.answers] == [1, 2]
    with _reply_later(c, b"3 cont\n", 0.05):
        c.ask(_ev(4))  # spins; a hit reset the back-off: nothing skipped
    assert [r.id for r, _ in c.answers] == [1, 2, 3]


def test_default_never_denies_exit_and_keeps_results_and_signals(conn):
    c = conn(timeout=1.0)
    c.ask(_ev(1, "exit_group"))
    c.ask(SysretEvent(2, 100, 100, "x86_64", "read", Ok(Int(3))))
    c.ask(SignalEvent(3, 100, 100, 15))
    c.ask(_ev(4, "openat"))
    c.a.expire(5.0)
    assert [r.verdict for r, _ in c.answers] == [Cont(), Cont(), Deliver(), SkipFail(errno.EPERM)]


@pytest.mark.parametrize(("word", "verdict"), [("kill", Kill()), ("allow", Cont()), ("deny", SkipFail(errno.EPERM))])
def test_handshake_default_word_sets_the_default(conn, word, verdict):
    c = conn(timeout=1.0, default=SkipFail(errno.EIO), attrs=f"default={word}")
    c.ask(_ev(1))
    c.a.expire(2.0)
    assert c.answers[0][0] == Reply(verdict)


def test_operator_default_holds_without_a_default_word(conn):
    c = conn(timeout=1.0, default=SkipFail(errno.EIO))
    c.ask(_ev(1))
    c.a.expire(2.0)
    assert c.answers[0][0] == Reply(SkipFail(errno.EIO))


def test_dead_authorizer_answers_with_its_default_at_once(conn):
    c = conn()
    c.ask(_ev(1))
    os.close(c.to_w)
    c.a.on_readable(0.0)  # end of file: it exited
    c.to_w = os.open("/dev/null", os.O_WRONLY)  # keep close() simple
    assert c.answers[0][0] == Reply(SkipFail(errno.EPERM)) and "closed its output" in c.answers[0][1]
    c.ask(_ev(2))
    assert c.answers[1][0] == Reply(SkipFail(errno.EPERM)) and "is gone" in c.answers[1][1]


def test_format_of_sent_event_is_the_codec_line(conn):
    c = conn()
    ev = _open_event()
    c.ask(ev)
    assert c.sent() == [codec.format_event(ev).decode().rstrip("\n")]


def test_both_kinds_of_member_implement_the_authorizer_interface(conn):
    """Every attribute and method of decision.member.Member exists on both (a
    member added to the interface but not to one of them fails here)."""
    assert isinstance(conn().a, Member)
    assert isinstance(LocalAuthorizer("operator"), Member)
    assert not isinstance(object(), Member)
