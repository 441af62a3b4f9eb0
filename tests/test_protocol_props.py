"""Property tests: formatting any protocol value then parsing it gives it back.

Hypothesis builds arbitrary events, verdicts and values (strings of arbitrary
bytes, nested structs, extreme integers) and checks that
``parse(format(x)) == x`` and that the canonical line is a fixed point, for
every type the protocol carries.
"""

from __future__ import annotations

import string

import pytest
from brokerd.protocol import (
    MAX_DEPTH,
    REPLY_VERBS,
    Addr,
    Array,
    Call,
    Cont,
    Data,
    Deliver,
    Error,
    Fail,
    Fetch,
    Field,
    Hello,
    Int,
    Kill,
    Oct,
    Ok,
    ProcEvent,
    ProtocolError,
    Ptr,
    Reply,
    Rewrite,
    SetMem,
    SignalEvent,
    SkipFail,
    SkipOk,
    Step,
    Str,
    Struct,
    Suppress,
    Sym,
    SyscallEvent,
    SysretEvent,
    format_call,
    format_event,
    format_reply,
    format_value,
    parse_call,
    parse_event,
    parse_reply,
    parse_value,
    quote,
)
from brokerd.protocol.vectorjson import from_json, to_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

U64 = 2**64 - 1
U63 = 2**63 - 1

idents = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True)
sym_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_+]{0,11}", fullmatch=True)
ids = st.integers(0, U63)
pids = st.integers(0, 2**31 - 1)
abis = st.sampled_from(["x86_64", "i386", "x32", "aarch64"])
errnos = st.integers(1, 4095)
signos = st.integers(1, 64)
argns = st.integers(1, 6)


@st.composite
def strs(draw: st.DrawFn) -> Str:
    data = draw(st.binary(max_size=80))
    if draw(st.booleans()):
        return Str(data)
    return Str(data, draw(st.integers(len(data), U63)))


@st.composite
def syms(draw: st.DrawFn) -> Sym:
    names = tuple(draw(st.lists(sym_names, min_size=1, max_size=4)))
    rest = draw(st.one_of(st.just(0), st.integers(0, U64)))
    if names == ("NULL",) and rest == 0:  # that spelling is Ptr(0)
        names = ("NULL_",)
    return Sym(names, rest)


addrs = st.one_of(
    st.builds(lambda ip, p: Addr(str(ip), p), st.ip_addresses(v=4), st.integers(0, 65535)),
    st.builds(lambda ip, p: Addr(str(ip), p), st.ip_addresses(v=6), st.integers(0, 65535)),
)

scalars = st.one_of(
    st.builds(Int, st.integers(-(2**63), U64)),
    st.builds(Ptr, st.integers(0, U64)),
    st.builds(Oct, st.integers(0, U64)),
    syms(),
    strs(),
    addrs,
)

values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.builds(lambda xs: Struct(tuple(xs)), st.lists(inner, max_size=4)),
        st.builds(lambda xs: Array(tuple(xs)), st.lists(inner, max_size=4)),
        st.builds(Field, idents, inner),
    ),
    max_leaves=12,
)


def depth(v: object) -> int:
    if isinstance(v, (Struct, Array)):
        items = v.fields if isinstance(v, Struct) else v.items
        return 1 + max((depth(x) for x in items), default=0)
    if isinstance(v, Field):
        return 1 + depth(v.value)
    return 0


arg_lists = st.lists(values, max_size=6).map(tuple)
notes = st.lists(st.tuples(idents, values), max_size=3).map(tuple)
calls = st.builds(Call, idents, arg_lists)

printable = st.text(alphabet=string.printable[:95], max_size=40).map(lambda s: s.strip(" "))

events = st.one_of(
    st.builds(SyscallEvent, ids, pids, pids, abis, calls, notes),
    st.builds(SysretEvent, ids, pids, pids, abis, idents,
              st.one_of(st.builds(Ok, st.one_of(st.builds(Int, st.integers(-(2**63), U64)),
                                                st.builds(Ptr, st.integers(0, U64)))),
                        st.builds(Fail, errnos)),
              notes),
    st.builds(SignalEvent, ids, pids, pids, signos),
    st.builds(ProcEvent, pids, pids, st.sampled_from(["fork", "vfork", "clone", "exec", "exit",
                                                      "killed"]), arg_lists),
    st.builds(Hello, st.lists(st.integers(1, 2**31 - 1), min_size=1, max_size=3).map(tuple),
              st.lists(st.tuples(st.from_regex(r"[A-Za-z_][A-Za-z0-9_\-]{0,8}", fullmatch=True),
                                 st.text(max_size=12)), max_size=4).map(tuple)),
    st.builds(Error, st.from_regex(r"[a-z0-9][a-z0-9\-]{0,14}", fullmatch=True), printable),
    st.builds(Data, ids, argns, ids, strs()),
)

rewrite_calls = st.one_of(
    calls.filter(lambda c: c.name not in REPLY_VERBS),
    st.builds(Call, st.just("kill"), st.lists(values, min_size=1, max_size=3).map(tuple)),
)

verdicts = st.one_of(
    st.sampled_from([Cont(), Step(), Kill(), Suppress(), Deliver()]),
    st.builds(SkipFail, errnos),
    st.builds(SkipOk, st.integers(-(2**63), U64)),
    st.builds(Rewrite, rewrite_calls),
    st.builds(Deliver, signos),
    st.builds(Ok, st.one_of(st.builds(Int, st.integers(-(2**63), U64)),
                            st.builds(Ptr, st.integers(0, U64)))),
    st.builds(Fail, errnos),
)

replies = st.one_of(
    st.builds(Reply, verdicts, st.one_of(st.none(), ids),
              st.lists(st.builds(SetMem, argns, st.binary(max_size=40),
                                 st.one_of(st.just(0), ids)), max_size=3).map(tuple)),
    st.builds(Fetch, ids, argns, ids, ids),
    events.filter(lambda e: isinstance(e, (Hello, Error))),
)


@PROPS
@given(values)
def test_value_roundtrip(v: object) -> None:
    if depth(v) > MAX_DEPTH:
        with pytest.raises(ProtocolError) as info:
            format_value(v)  # type: ignore[arg-type]
        assert info.value.code == "too-deep"
        return
    text = format_value(v)  # type: ignore[arg-type]
    assert text.isascii() and text.isprintable()
    assert parse_value(text) == v
    assert format_value(parse_value(text)) == text
    assert from_json(to_json(v)) == v


@PROPS
@given(events)
def test_event_roundtrip(ev: object) -> None:
    try:
        line = format_event(ev)  # type: ignore[arg-type]
    except ProtocolError as e:  # only nesting can make a generated event unformattable
        assert e.code == "too-deep"
        return
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert len(line) <= 65536
    body = line[:-1]
    assert all(0x20 <= b <= 0x7E for b in body)
    back = parse_event(line)
    assert back == ev
    assert format_event(back) == line
    assert parse_event(body.decode("ascii")) == ev
    assert from_json(to_json(ev)) == ev


@PROPS
@given(replies)
def test_reply_roundtrip(r: object) -> None:
    try:
        line = format_reply(r)  # type: ignore[arg-type]
    except ProtocolError as e:
        assert e.code == "too-deep"
        return
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert all(0x20 <= b <= 0x7E for b in line[:-1])
    back = parse_reply(line)
    assert back == r
    assert format_reply(back) == line
    assert from_json(to_json(r)) == r


@PROPS
@given(calls)
def test_call_roundtrip(c: Call) -> None:
    try:
        text = format_call(c)
    except ProtocolError as e:
        assert e.code == "too-deep"
        return
    assert parse_call(text) == c


@PROPS
@given(st.binary(max_size=300))
def test_quote_roundtrip_arbitrary_bytes(data: bytes) -> None:
    q = quote(data)
    assert all(0x20 <= ord(ch) <= 0x7E for ch in q)
    assert parse_value(q) == Str(data)
    assert parse_reply(f'cont ; set 1 {q}') == Reply(Cont(), None, (SetMem(1, data),))


def test_all_256_bytes_roundtrip_in_every_position() -> None:
    everything = bytes(range(256))
    ev = SyscallEvent(1, 2, 3, "x86_64", Call("write", (Int(1), Str(everything), Int(256))),
                      (("buf", Str(everything[::-1], 4096)),))
    assert parse_event(format_event(ev)) == ev
    r = Reply(SkipOk(256), 5, (SetMem(2, everything, 8),))
    assert parse_reply(format_reply(r)) == r
    assert parse_event(format_event(Data(1, 2, 0, Str(everything)))) == Data(1, 2, 0, Str(everything))


def test_nesting_exactly_at_the_limit() -> None:
    v: object = Int(1)
    for _ in range(MAX_DEPTH):
        v = Struct((v,))
    assert parse_value(format_value(v)) == v  # type: ignore[arg-type]
    with pytest.raises(ProtocolError) as info:
        format_value(Array((v,)))  # type: ignore[arg-type]
    assert info.value.code == "too-deep"


@pytest.mark.parametrize("bad", [
    Int(2**64), Int(-(2**63) - 1), Ptr(-1), Oct(-1), Sym(("a b",)), Sym(("A",), -1),
    Str("text"),  # type: ignore[arg-type]
    Str(b"abc", 2), Addr("not-an-ip", 1), Addr("::1", 70000), Field("a b", Int(1)), Int(True),
])
def test_unformattable_values_raise_protocol_error(bad: object) -> None:
    with pytest.raises(ProtocolError):
        format_value(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [
    Reply(Rewrite(Call("cont"))), Reply(Rewrite(Call("kill"))), Reply(Rewrite(Call("set", (Int(1),)))),
    Reply(SkipFail(0)), Reply(SkipFail(4096)), Reply(Deliver(65)), Reply(Cont(), -1),
    Reply(Cont(), None, (SetMem(0, b"x"),)), Reply(Cont(), None, (SetMem(7, b"x"),)),
    Reply(Ok(Oct(8))),  # type: ignore[arg-type]
    Fetch(1, 0, 0, 1), Hello(()), Hello((1,), (("bad key", "v"),)), Hello((1,), (("k", "\ud800"),)),
    Error("Bad Code", "x"),
])
def test_unformattable_replies_raise_protocol_error(bad: object) -> None:
    with pytest.raises(ProtocolError):
        format_reply(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [
    SyscallEvent(-1, 1, 1, "x86_64", Call("getpid")), SyscallEvent(1, 1, 1, "x86-64", Call("getpid")),
    SyscallEvent(1, 1, 1, "x86_64", Call("get pid")), SignalEvent(1, 1, 1, 0),
    SysretEvent(1, 1, 1, "x86_64", "read", Fail(0)), ProcEvent(1, 1, "not a kind"),
    Data(1, 9, 0, Str(b"")), SyscallEvent(1, 1, 1, "x86_64", Call("f"), (("1x", Int(1)),)),
    "cont",
])
def test_unformattable_events_raise_protocol_error(bad: object) -> None:
    with pytest.raises(ProtocolError):
        format_event(bad)  # type: ignore[arg-type]


def test_error_text_is_sanitized_not_rejected() -> None:
    line = format_event(Error("unknown-syscall", "bad name 'a\nb\x00\u00e9'"))
    assert line.count(b"\n") == 1
    assert all(0x20 <= b <= 0x7E for b in line[:-1])
    ev = parse_event(line)
    assert isinstance(ev, Error) and ev.code == "unknown-syscall" and "a\\nb" in ev.text


def test_formatting_refuses_lines_over_the_limit() -> None:
    big = Str(b"\x00" * 16384)  # 4 characters per byte once escaped
    with pytest.raises(ProtocolError) as info:
        format_event(SyscallEvent(1, 1, 1, "x86_64", Call("write", (Int(1), big, Int(1)))))
    assert info.value.code == "line-too-long"
    with pytest.raises(ProtocolError) as info:
        format_reply(Reply(Cont(), None, (SetMem(1, big.data),)))
    assert info.value.code == "line-too-long"
    ok = Str(b"\x00" * 16000)
    assert parse_event(format_event(Data(1, 1, 0, ok))) == Data(1, 1, 0, ok)


def test_protocol_error_to_line() -> None:
    e = ProtocolError("line-too-long", "line of 70000 bytes")
    assert e.to_line() == b"error line-too-long line of 70000 bytes\n"
    assert parse_event(e.to_line()) == Error("line-too-long", "line of 70000 bytes")
    assert str(e) == "line-too-long: line of 70000 bytes"


def test_the_formatters_memos_never_let_a_bad_line_through() -> None:
    """format_event keeps the last event's line and the names it checked
    (a stack formats the same event once per member): still a fresh check
    for everything else, and a refused event is refused every time."""
    ev = SyscallEvent(1, 2, 2, "x86_64", Call("openat", (Sym(("AT_FDCWD",)), Str(b"/x"))), (("path2", Str(b"/x")),))
    line = format_event(ev)
    assert format_event(ev) is line and parse_event(line) == ev
    assert format_event(SyscallEvent(2, 2, 2, "x86_64", ev.call, ev.notes)).startswith(b"syscall 2 ")
    for bad in (None, SyscallEvent(1, 2, 2, "x86_64", Call("openat", (Sym(("AT FDCWD",)),))),
                SyscallEvent(1, 2, 2, "x86_64", ev.call, (("path 2", Str(b"/x")),)),
                SyscallEvent(1, 2, 2, "x86_64", Call("write", (Int(1), Str(b"\x00" * 16384))))):
        for _ in range(2):
            with pytest.raises(ProtocolError):
                format_event(bad)  # type: ignore[arg-type]


odd_fields = st.one_of(st.just(True), st.just(-1), st.just(2**63), st.just("x86-64"), st.just("a b"))


@PROPS
@given(st.builds(SyscallEvent, st.one_of(ids, odd_fields), st.one_of(pids, odd_fields), pids,
                 st.one_of(abis, odd_fields), st.one_of(calls, st.builds(Call, st.just("a b"))),
                 st.one_of(notes, st.just((("bad key", Int(1)),)), st.just(((1, Int(1)),)))),
       st.sampled_from([Str(bytearray(b"x")), Str("x"), Str(b"x" * 300), Str(b"\x00\"\\"), Sym(("O_RDONLY",))]))
def test_the_syscall_line_shortcut_writes_what_the_general_formatter_does(ev: SyscallEvent, extra: Str) -> None:
    """format_event's shortcut for syscall events (the texts it keeps by
    bytes and by identity, its header checks) gives the general formatter's
    line, or refuses what it refuses, the first time and the second."""
    from brokerd.protocol import codec

    for e in (ev, SyscallEvent(ev.id, ev.pid, ev.tid, ev.abi, Call(ev.call.name, ev.call.args + (extra,))
                               if type(ev.call.name) is str else ev.call, ev.notes + (("k", extra),))):
        for _ in range(2):
            try:
                want: bytes | str = codec._format_event(e)
            except ProtocolError as err:
                want = err.code
            try:
                got: bytes | str = codec._fmt_syscall(e)
            except ProtocolError as err:
                got = err.code
            assert got == want
