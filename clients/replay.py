"""Replay a recorded journal through authorizers and list the decisions that change.

A journal is JSON lines with ``"event"`` (a ``syscall`` wire line) and
``"verdict"`` (the decision taken then), as written by ``brokerctl run
--audit FILE`` and by the audit policy (which adds ``"result"``).  Each
recorded call is sent, as the broker would, through a stack of authorizers:
processes (started with ``sh -c``) and library policies asked in this
process, as ``brokerctl run --policy`` asks them (:class:`LocalPeer`, no
process and no text round trip).  The greeting says ``replay=yes`` so the
client library does not look the long-gone process up in ``/proc``; the
combined decision is compared with the recorded one.

Stacking follows the broker: each authorizer subscribed to the call sees it
as the ones before left it; ``skip-fail``/``skip-ok``/``kill`` end the walk;
``step`` from any of them sends the recorded result (when the journal has one)
back through them in reverse order, each able to replace it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from brokerd.clients.authorizer import Authorizer
from brokerd.clients.policies.network import DESTS_NOTE
from brokerd.protocol import codec
from brokerd.protocol.consts import errno_name
from brokerd.protocol.errors import ProtocolError
from brokerd.protocol.linebuf import LineBuffer
from brokerd.protocol.types import (
    Cont,
    Fail,
    Hello,
    Kill,
    Ok,
    Reply,
    Rewrite,
    SkipFail,
    SkipOk,
    Step,
    Str,
    SyscallEvent,
    SysretEvent,
)

from brokerd.decision.rules import NO_RULES, StaticRules, parse_static
from brokerd.decision.tether import PYTHON_IGNORED, Ward, sh_argv, spawn_warded


class JournalError(Exception):
    """A journal line that cannot be replayed: ``line`` is its number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True)
class Entry:
    line: int
    event: SyscallEvent
    verdict: str  # canonical text
    result: Ok | Fail | None


@dataclass(frozen=True)
class Change:
    entry: Entry
    before: str
    after: str

    def describe(self) -> str:
        ev = self.entry.event
        return (f"line {self.entry.line}: pid {ev.pid} {codec.format_call(ev.call)}: "
                f"{self.before} -> {self.after}")


def canonical(verdict: object) -> str:
    """A decision as text both sides can be compared by: ``cont``, ``kill``,
    ``skip-fail EACCES``, ``skip-ok 0``, ``rewrite CALL``."""
    if isinstance(verdict, Cont | Step):
        return "cont"
    if isinstance(verdict, Kill):
        return "kill"
    if isinstance(verdict, SkipFail):
        return f"skip-fail {errno_name(verdict.errno)}"
    if isinstance(verdict, SkipOk):
        return f"skip-ok {verdict.value}"
    if isinstance(verdict, Rewrite):
        return "rewrite " + codec.format_call(verdict.call)
    return type(verdict).__name__.lower()


def _recorded_verdict(text: str) -> str:
    """The journal's verdict (``skip-fail 13``, ``cont (rewritten) openat ...``) in canonical form."""
    head, sep, call = text.partition(" (rewritten) ")
    if sep:
        return "rewrite " + codec.format_call(codec.parse_call(call))
    r = codec.parse_reply(head)
    if not isinstance(r, Reply):
        raise ValueError(f"{text!r} is not a verdict")
    return canonical(r.verdict)


def _result_text(r: Ok | Fail | None) -> str:
    if r is None:
        return "?"
    return f"ok {codec.format_value(r.value)}" if isinstance(r, Ok) else f"fail {errno_name(r.errno)}"


def read_journal(lines: Iterator[str] | Sequence[str]) -> list[Entry]:
    """Parse a journal; lines without a syscall event (proc, signal) are skipped."""
    out: list[Entry] = []
    for n, raw in enumerate(lines, 1):
        raw = raw.strip()
        if not raw:
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as e:
            raise JournalError(n, f"not JSON: {e.msg}") from None
        if not isinstance(rec, dict):
            raise JournalError(n, "not a JSON object")
        ev_text = rec.get("event")
        if not isinstance(ev_text, str) or not ev_text.startswith("syscall "):
            continue
        try:
            ev = codec.parse_event(ev_text)
            verdict = _recorded_verdict(str(rec.get("verdict", "cont")))
            result = None
            if isinstance(rec.get("result"), str):
                r = codec.parse_reply(rec["result"])
                if isinstance(r, Reply) and isinstance(r.verdict, Ok | Fail):
                    result = r.verdict
        except (ProtocolError, ValueError) as e:
            raise JournalError(n, getattr(e, "message", str(e))) from None
        assert isinstance(ev, SyscallEvent)
        out.append(Entry(n, with_recorded_dests(with_recorded_paths(ev, rec.get("paths")), rec.get("dests")),
                         verdict, result))
    return out


def with_recorded_paths(ev: SyscallEvent, paths: object) -> SyscallEvent:
    """The event with the journal's resolved paths (the audit policy's
    ``"paths"``, resolved while the process lived) as its ``realN`` notes: in
    replay the library judges those, so relative paths and dirfds are known
    instead of denied.  An unresolvable (null) path drops the note: unknown."""
    if not isinstance(paths, dict) or not paths:
        return ev
    keys = {f"real{k}" for k in paths if isinstance(k, str) and k.isdigit()}
    notes = [(k, v) for k, v in ev.notes if k not in keys]
    notes += [(f"real{k}", Str(os.fsencode(v))) for k, v in sorted(paths.items())
              if isinstance(k, str) and k.isdigit() and isinstance(v, str)]
    return dataclasses.replace(ev, notes=tuple(notes))


def with_recorded_dests(ev: SyscallEvent, dests: object) -> SyscallEvent:
    """The event with the journal's ``"dests"`` (where it sent, read while the
    process lived) as its ``dests`` note, which network.destinations reads in
    replay.  An unknown (null) one drops them all: unknown is judged as such."""
    if not isinstance(dests, list) or not dests or not all(isinstance(d, str) and "\n" not in d for d in dests):
        return ev
    return dataclasses.replace(ev, notes=(*ev.notes, (DESTS_NOTE, Str("\n".join(dests).encode()))))


class PeerError(Exception):
    pass


#: the broker's greeting to a peer in a replay
def _greeting(session: str) -> Hello:
    return Hello((codec.VERSION,), (("role", "broker"), ("session", session), ("replay", "yes")))


class Asked(Protocol):
    """What :func:`decide` asks: a process (:class:`Peer`) or a policy in this process (:class:`LocalPeer`)."""

    name: str
    static: StaticRules

    def start(self, session: str = "replay") -> None: ...

    def wants(self, name: str) -> bool: ...

    def ask(self, event: SyscallEvent | SysretEvent) -> Reply: ...

    def close(self) -> None: ...


def _static(name: str, hello: Hello) -> StaticRules:
    """A handshake's static rules (allow=, deny=, kill=, unknown=); PeerError if bad."""
    try:
        return parse_static(dict(hello.attrs))
    except ValueError as e:
        raise PeerError(f"{name}: bad handshake: {e}") from None


def _subscription(hello: Hello) -> frozenset[str] | None:
    """The calls a handshake subscribes to (None: every call)."""
    t = hello.get("trace")
    return None if t in (None, "all") else frozenset(x for x in t.split(",") if x)


@dataclass
class LocalPeer:
    """A library policy asked in this process, as ``brokerctl run --policy``
    does (:mod:`brokerd.decision.inproc`): its session takes the event
    objects and gives Reply objects back.  A handler that raises gets the
    library's failsafe answer, as in a session."""

    policy: Authorizer
    trace: frozenset[str] | None = None  # None: every call
    name: str = ""
    mode: str = "new"
    static: StaticRules = NO_RULES
    _session: object = None

    def start(self, session: str = "replay") -> None:
        s = self.policy.session()
        self._session = s
        self.name = self.policy.name
        ours = s.start_event(_greeting(session))
        if isinstance(ours, Hello):
            self.mode = "hello"
            self.trace = _subscription(ours)
            self.static = _static(self.name, ours)
            s.start_event(Hello((codec.VERSION,), (("role", "broker"),)))

    def wants(self, name: str) -> bool:
        return self.trace is None or name in self.trace

    def ask(self, event: SyscallEvent | SysretEvent) -> Reply:
        r = self._session.decide(event)  # type: ignore[attr-defined]
        if not isinstance(r, Reply):
            raise PeerError(f"{self.name} gave no answer to {type(event).__name__}")
        return r

    def close(self) -> None:
        pass


@dataclass
class Peer:
    """An authorizer process spoken to the way the broker does (blocking)."""

    command: str
    timeout: float = 5.0
    trace: frozenset[str] | None = None  # None: every call
    #: its handshake's static rules (allow=, deny=, kill=, unknown=): answered
    #: without asking it, as the broker's kernel filter would
    static: StaticRules = NO_RULES
    name: str = ""
    mode: str = "new"
    pid: int = 0
    _to: int = -1  # its stdin
    _from: int = -1  # its stdout
    _ward: Ward | None = None
    _buf: LineBuffer = field(default_factory=LineBuffer)
    _lines: list[bytes] = field(default_factory=list)

    def start(self, session: str = "replay") -> None:
        """Start it as the broker does (:func:`spawn_warded`): in a process
        group of its own, SIGKILLed with everything it forked if we die."""
        to_r, self._to = os.pipe()
        self._from, from_w = os.pipe()
        try:
            self.pid, self._ward = spawn_warded("/bin/sh", sh_argv(self.command), os.environ,
                                                fds=[(to_r, 0), (from_w, 1)],
                                                sigdef=PYTHON_IGNORED)
        finally:
            os.close(to_r)
            os.close(from_w)
        self.name = self.name or self.command.split()[0].rsplit("/", 1)[-1]
        self._send(codec.format_event(_greeting(session)))
        first = self._read_line()
        try:
            parsed = codec.parse_reply(first)
        except ProtocolError:
            parsed = None
        if isinstance(parsed, Hello) and parsed.get("role") == "authorizer":
            self.mode = "hello"
            self.name = parsed.get("name") or self.name
            self.trace = _subscription(parsed)
            self.static = _static(self.name, parsed)
            self._send(codec.format_event(Hello((codec.VERSION,), (("role", "broker"),))))
        else:
            self.mode = "plain"

    def wants(self, name: str) -> bool:
        return self.trace is None or name in self.trace

    def ask(self, event: SyscallEvent | SysretEvent) -> Reply:
        self._send(codec.format_event(event))
        while True:
            line = self._read_line()
            try:
                r = codec.parse_reply(line)
            except ProtocolError as e:
                raise PeerError(f"{self.name} answered {line[:60]!r}: {e.message}") from None
            if isinstance(r, Reply):
                if r.id is not None and r.id != event.id:
                    raise PeerError(f"{self.name} answered id {r.id} while {event.id} was asked")
                return r
            # error/hello lines are not answers: keep reading

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._to, view):]
        except OSError:
            raise PeerError(f"{self.name or self.command} exited") from None

    def _read_line(self) -> bytes:
        fd = self._from
        deadline = time.monotonic() + self.timeout
        while not self._lines:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise PeerError(f"{self.name or self.command} did not answer within {self.timeout:g}s")
            data = os.read(fd, 65536)
            if not data:
                raise PeerError(f"{self.name or self.command} closed its output (exited?)")
            self._buf.feed(data)
            for item in self._buf:
                if not isinstance(item, bytes):  # TooLong (PartialLine comes only after eof())
                    raise PeerError(f"{self.name} sent an over-long line")
                self._lines.append(item)
        return self._lines.pop(0)

    def close(self) -> None:
        """End of its input; it has 2 s to exit, then its group is SIGKILLed."""
        if not self.pid:
            return
        os.close(self._to)
        deadline = time.monotonic() + 2
        while not os.waitpid(self.pid, os.WNOHANG)[0]:
            if time.monotonic() > deadline:
                os.killpg(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.01)
        assert self._ward is not None
        self._ward.release()  # what it left in its group goes too
        os.close(self._from)
        self.pid = 0


def decide(peers: Sequence[Asked], entry: Entry) -> tuple[str, Ok | Fail | None]:
    """The stack's decision for one recorded call, and the result it leaves
    (the recorded one, maybe replaced by a stepper)."""
    ev = entry.event
    call = ev.call
    steppers: list[Asked] = []
    decision = "cont"
    for p in peers:
        action, err = p.static.action(call.name, p.wants(call.name))
        if action == "kill":
            return "kill", None
        if action == "deny":
            return canonical(SkipFail(err)), None
        if action == "allow":
            continue
        r = p.ask(SyscallEvent(ev.id, ev.pid, ev.tid, ev.abi, call, ev.notes))
        v = r.verdict
        if isinstance(v, SkipFail | SkipOk | Kill):
            return canonical(v), None
        if isinstance(v, Step):
            steppers.append(p)
        elif isinstance(v, Rewrite):
            call = v.call
            decision = canonical(v)
        elif not isinstance(v, Cont):
            raise PeerError(f"{p.name} answered {canonical(v)} to a syscall")
    result = entry.result
    if steppers and result is not None:
        for p in reversed(steppers):
            r = p.ask(SysretEvent(ev.id, ev.pid, ev.tid, ev.abi, call.name, result))
            if isinstance(r.verdict, Ok | Fail):
                result = r.verdict
            elif isinstance(r.verdict, Kill):
                return "kill", None
    return decision, result


def replay(entries: Sequence[Entry], stack: Sequence[str | Authorizer], *, timeout: float = 5.0,
           trace: frozenset[str] | None = None) -> list[Change]:
    """Run ``entries`` through ``stack`` (authorizer commands, started as
    processes, and library policies, asked in this process); the decisions
    that differ."""
    peers: list[Asked] = [Peer(a, timeout=timeout, trace=trace) if isinstance(a, str)
                          else LocalPeer(a, trace=trace) for a in stack]
    changes: list[Change] = []
    try:
        for p in peers:
            p.start()
        for e in entries:
            after, result = decide(peers, e)
            before = e.verdict
            if after == "cont" and before == "cont" and e.result is not None and result != e.result:
                changes.append(Change(e, f"cont, {_result_text(e.result)}", f"cont, {_result_text(result)}"))
            elif after != before:
                changes.append(Change(e, before, after))
    finally:
        for p in peers:
            p.close()
    return changes
