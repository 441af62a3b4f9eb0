"""One authorizer as the broker sees it: a line connection with a queue of
questions waiting for answers, deadlines, and a default verdict.

The connection is driven from outside (the shim's epoll loop): it never blocks.
Writes go to an output buffer flushed when the descriptor is writable; reads
are split into lines by the protocol's LineBuffer and parsed by its codec.

Every question gets exactly one answer through its callback: the
authorizer's own, or its default when it answers late, answers garbage, hangs
or dies.  A plain-mode authorizer (one that did not answer the greeting with
``hello``) has its replies matched to questions strictly in order, so a
question that timed out keeps its place and the late reply is read and
dropped, never matched to the next question.  A handshake-mode authorizer's
replies must carry the event's ID: a line without one (a stray debug print,
an injected ``cont``) is refused with ``error missing-id`` and answers
nothing.
"""

from __future__ import annotations

import os
import select
import shlex
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import cast

from brokerd.decision.defaults import DEFAULT_VERDICTS, DENY, default_reply
from brokerd.decision.member import Answer
from brokerd.decision.rules import ALLOW, NO_RULES, TRACE, ArgRule, parse_arg_rule, parse_static
from brokerd.decision.tether import Ward, sh_argv, spawn_warded
from brokerd.protocol import codec
from brokerd.protocol.codec import VERSION
from brokerd.protocol.errors import ProtocolError
from brokerd.protocol.layers import LayerSpec, parse_layer
from brokerd.protocol.linebuf import LineBuffer, PartialLine, TooLong
from brokerd.protocol.selection import TraceError, parse_trace, unknown_names
from brokerd.protocol.types import (
    Cont,
    Data,
    Error,
    Fetch,
    Hello,
    Reply,
    SignalEvent,
    Str,
    SyscallEvent,
    SysretEvent,
    Verdict,
)
from brokerd.spin import Spin, machine_busy
from brokerd.tracer.accel import accel

DEFAULT_TIMEOUT = 5.0
#: the greeting gets at least this long: an interpreter may need a while to
#: start on a loaded machine, whatever the per-question ``--timeout``
GREETING_TIMEOUT = 30.0
#: bytes of event lines waiting for an authorizer that stopped reading; past
#: this it is treated as failed (16 lines of the maximal length)
MAX_PENDING_OUT = 16 * 65536
#: bytes read from an authorizer's output at once
READ_SIZE = 65536
#: a read of one line up to this long is handled without the line buffer
#: (far below its limit, so never a line it would refuse as too long)
ONE_LINE_MAX = 4096
#: after SIGTERM, how long an authorizer process may take to exit before SIGKILL
KILL_GRACE = 2.0
#: when a session ends, how long an authorizer may take after the end of its
#: input to finish on its own (write its last records) before SIGTERM
EOF_GRACE = 1.0


class _Question:
    __slots__ = ("id", "deadline", "answer", "kind", "name")
    id: int
    deadline: float
    answer: Answer | None  # None once answered by default (kept as a placeholder)
    kind: type
    name: str

    def __init__(self, id: int, deadline: float, answer: Answer | None, kind: type,
                 name: str = "") -> None:
        self.id = id
        self.deadline = deadline
        self.answer = answer
        self.kind = kind
        self.name = name


#: What became of a question written without a plain ``cont`` read right
#: after it (:meth:`Authorizer.ask_cont`; the compiled ``accel.ask_open``
#: hands back the same, by these numbers): nothing read yet, bytes read, the
#: write failed (errno), part of the line not written (the rest), the read
#: failed (errno), a plain ``cont`` whose open was not pinned (the shim pins it).
ASK_NOTHING, ASK_DATA, ASK_WRITE_FAILED, ASK_PARTIAL, ASK_READ_FAILED, ASK_CONT_UNPINNED = range(6)


#: the answer of a plain ``cont`` line (immutable: one is shared)
_CONT = Cont()
_CONT_REPLY = Reply(_CONT)


def _leading_id(line: bytes) -> int | None:
    """The ID prefix of a line that did not parse, if it has one."""
    head = line.split(b" ", 1)[0]
    return int(head) if head.isdigit() and len(head) <= 19 else None


def _call_name(event: object) -> str:
    return event.call.name if isinstance(event, SyscallEvent) else ""


class Authorizer:
    """The broker's side of one authorizer connection."""

    def __init__(
        self,
        name: str,
        rfd: int,
        wfd: int,
        *,
        pid: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        default: Verdict = DENY,
        trace: frozenset[str] | None = None,
        signals: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.rfd = rfd
        self.wfd = wfd
        self.pid = pid
        self.timeout = timeout
        self.default = default
        self.trace = trace  # None: every syscall
        self.signals = signals
        self.events: frozenset[str] = frozenset()
        self.caller = False  # wants the caller note (library:symbol+offset) on events
        self.static = NO_RULES  # answers it declared for whole syscalls (handshake)
        self.rules: tuple[ArgRule, ...] = ()  # argument rules the broker evaluates for it
        self.verdicts: frozenset[str] | None = None  # the only verdicts it promises to give
        self.layer: LayerSpec | None = None  # the kernel layer it declared (PROTOCOL.md 7.6)
        #: set by the shim once its layer is in force: calls the layer decides completely
        self.settled: frozenset[str] = frozenset()
        #: set by the shim: (event id, argn, offset, length) -> bytes of a waiting call
        self.on_fetch: Callable[[int, int, int, int], bytes] | None = None
        self.greeting_timeout = max(timeout, GREETING_TIMEOUT)
        self.pidfd = -1  # set by spawn(): lets close() make sure the process ends
        self.sync = False  # answers come later, from its descriptor
        #: set by spawn(): SIGKILLs the process group when released (reap) or when the broker dies
        self.ward: Ward | None = None
        self.mode = "new"  # new -> greeting -> plain | hello ; dead
        self.strsize: int | None = None
        self.dead_reason = ""
        self._log = log or (lambda msg: print(f"brokerd: {msg}", file=sys.stderr, flush=True))
        self._lines = LineBuffer()
        self._out = bytearray()
        self._fifo: deque[_Question] = deque()
        self._by_id: dict[int, _Question] = {}
        self.answered = 0
        self.defaulted = 0
        self._warned_missing_id = False
        #: inside on_readable: a question asked from an answer's callback (the
        #: next step of a walk) does not read again before the lines already
        #: read are handled (the loop reads the rest)
        self._reading = False
        #: how ask() waits for a reply before leaving it to the loop
        self.spin = Spin()
        #: (event ID, what, value): a question the compiled road asked (:meth:`ask_open`) and
        #: left to :meth:`ask_cont` for that event, which goes on from what happened
        self._sent: tuple[int, int, object] | None = None
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)

    # -- subscriptions ----------------------------------------------------
    def wants(self, name: str) -> bool:
        """Must it be asked about syscall ``name``?  A dead authorizer keeps its
        subscriptions, so its calls keep getting its (deny) default."""
        return self.action(name) == TRACE

    def action(self, name: str) -> tuple[str, int]:
        """Its answer for a whole syscall: allow, trace, deny(errno) or kill.
        A call its kernel layer settles is not asked about: the layer decides."""
        act = self.static.action(name, self.trace is None or name in self.trace)
        return ALLOW if act == TRACE and name in self.settled else act

    # -- greeting / handshake --------------------------------------------
    def greet(self, session: str, now: float) -> None:
        """Send the broker's ``hello``; the reply decides plain or handshake mode."""
        self.mode = "greeting"
        hello = Hello((VERSION,), (("role", "broker"), ("session", session)))
        self._send(codec.format_event(hello))
        self._fifo.append(_Question(0, now + self.greeting_timeout, None, Hello))

    def _on_greeting_reply(self, parsed: object) -> None:
        self._fifo.popleft()
        if isinstance(parsed, Hello) and parsed.get("role") == "authorizer":
            if VERSION not in parsed.versions:
                self._error("version", f"no common version (broker speaks {VERSION})")
                self._die("no common protocol version")
                return
            self.mode = "hello"
            try:
                apply_hello(self, parsed)
            except ValueError as e:  # fail closed: it keeps the -e selection, answered by default
                self._error("bad-hello", str(e))
                self._die(f"sent a bad handshake: {e}")
                return
            self._send(codec.format_event(Hello((VERSION,), (("role", "broker"),))))
        else:
            self.mode = "plain"

    @property
    def ready(self) -> bool:
        return self.mode in ("plain", "hello", "dead")

    # -- questions --------------------------------------------------------
    def ask(self, event: SyscallEvent | SysretEvent | SignalEvent, answer: Answer, now: float) -> None:
        """Send ``event``; ``answer`` is called exactly once, later, or now if
        the authorizer is dead or answers within a short spin
        (:meth:`_await_reply`).  Replies that come later are read by the loop
        as before; deadlines are unchanged."""
        if self.ask_cont(event, lambda: answer, now):
            answer(_CONT_REPLY if self.mode != "hello" else Reply(_CONT, event.id), "")

    def ask_cont(self, event: SyscallEvent | SysretEvent | SignalEvent, later: Callable[[], Answer],
                 now: float) -> bool:
        """:meth:`ask`, for a caller that can go on at once after a plain
        ``cont``: True when the reply read right after the question was that
        (``later`` is then never called); else ``later()`` is called once
        (before anything is read or answered) to make the answer callback,
        which gets the answer exactly once, now or later, as with :meth:`ask`
        (issue #13: the shim's walk needs no callback, walk object or frame
        of its own for the usual answer)."""
        if self._sent is not None:  # asked already by ask_open (for this very event, unless a stale one)
            sent, self._sent = self._sent, None
            if sent[0] == event.id:
                return self._asked(event, later, now, sent[1], sent[2])
            self._lost(sent, now)
        if self.mode == "dead":
            self.defaulted += 1
            later()(default_reply(type(event), _call_name(event), self.default),
                    f"authorizer {self.name} is gone ({self.dead_reason})")
            return False
        try:
            line = codec.format_event(event)
        except ProtocolError as e:  # e.g. longer than the line limit: never sent half
            self.defaulted += 1
            later()(default_reply(type(event), _call_name(event), self.default),
                    f"event cannot be sent to {self.name}: {e.message}")
            return False
        if self._fifo or self._out or self._reading:
            self._enqueue(event, later(), now)
            self._send(line)
            if not self._out and not self._reading and self.mode != "dead":
                self._await_reply(now)
            return False
        # Nothing outstanding (the usual question): the reply read right after
        # it answers it alone, and a plain ``cont`` (one bytes compare) needs
        # no question kept, no line buffer and no parsing (issue #13).
        try:
            n = os.write(self.wfd, line)
        except BlockingIOError:
            n = 0
        except OSError as e:
            return self._asked(event, later, now, ASK_WRITE_FAILED, e.errno)
        if n != len(line):
            return self._asked(event, later, now, ASK_PARTIAL, line[n:])
        try:
            data = self.spin.until(self._read_now)
        except OSError as e:
            return self._asked(event, later, now, ASK_READ_FAILED, e.errno)
        if (data == b"cont\n" if self.mode != "hello" else data == b"%d cont\n" % event.id) and self._lines.idle:
            self.answered += 1
            return True
        return self._asked(event, later, now, ASK_NOTHING if data is None else ASK_DATA, data)

    def _asked(self, event: SyscallEvent | SysretEvent | SignalEvent, later: Callable[[], Answer], now: float,
               what: int, value: object) -> bool:
        """The end of :meth:`ask_cont` for a question written (or begun) without
        a plain ``cont`` read right after it (``what``: see ASK_NOTHING...):
        kept until its answer or deadline, and what happened handled as it
        happened.  True only for ASK_CONT_UNPINNED (the compiled road read the
        plain ``cont``; its open is pinned by the caller)."""
        if what == ASK_CONT_UNPINNED:
            self.answered += 1
            return True
        self._enqueue(event, later(), now)
        self._happened(what, value)
        return False

    def _happened(self, what: int, value: object) -> None:
        """What happened to a question just asked (ASK_*, not a plain
        ``cont``), the question kept already: handled as it happened."""
        if what == ASK_WRITE_FAILED:
            self._die(f"write failed: {os.strerror(cast(int, value))}")
        elif what == ASK_PARTIAL:
            self._send(cast(bytes, value))
        elif what == ASK_READ_FAILED:
            self._die(f"read failed: {os.strerror(cast(int, value))}")
        elif what == ASK_DATA:
            self._take(cast(bytes, value))

    def _lost(self, sent: tuple[int, int, object], now: float) -> None:
        """A question :meth:`ask_open` asked whose event never came to
        :meth:`ask_cont` (the shim's road in between failed: it has nothing
        that can).  It was sent all the same: in plain mode it keeps its
        place as a placeholder, as a question past its deadline does, so its
        reply is read and dropped, never taken for the next question's; in
        handshake mode its reply names its own ID, which is not open."""
        event_id, what, value = sent
        if what == ASK_CONT_UNPINNED:
            return  # (its reply was read: nothing of it is left to come)
        if self.mode != "hello":
            self._fifo.append(_Question(event_id, now + self.timeout, None, SyscallEvent))
        self._happened(what, value)

    def ask_open(self, ev_id: int, pid: int, tid: int, parts: tuple[bytes, ...], path: bytes, rootfd: int,
                 flags: int, mode: int, view: object, off: int, addr: int, own: tuple[int, ...]
                 ) -> tuple[int, ...] | None:
        """The compiled external question (``accel.ask_open``, docs/shim.md):
        event ``ev_id``, an open of ``path`` by thread ``tid`` of ``pid`` that
        the shim pins when allowed (``parts``: its line's constant parts,
        ``rootfd`` ... ``own``: what ``pin_plain`` and ``pin_open`` take),
        asked when nothing else is outstanding, as :meth:`ask_cont` asks it.
        The four arguments of the pinned call when a plain ``cont`` came with
        the question and the open is pinned and resumed; else None, and the
        shim's Python road takes the call from its start: when the question
        was asked, its :meth:`ask_cont` for this event goes on from what
        happened (``_sent``) instead of asking again."""
        if accel is None or (self.mode != "plain" and self.mode != "hello") or self._fifo or self._out \
                or self._reading or not self._lines.idle:
            return None
        got: tuple[int, ...] | None = accel.ask_open(self.wfd, self.rfd, self.spin, machine_busy, self.mode == "hello",
                                                     ev_id, pid, tid, parts, path, rootfd, flags, mode, view, off,
                                                     addr, own)
        if got is None:
            return None
        if len(got) == 2:
            self._sent = (ev_id, got[0], got[1])
            return None
        self.answered += 1
        return got

    def asked(self, ev_id: int) -> bool:
        """Was event ``ev_id`` asked already by :meth:`ask_open`, its answer
        still to be taken up by :meth:`ask_cont`?  The shim then goes on
        with the event that was asked (its path judged plain), not one made
        again (Stops._on_seccomp_stop)."""
        return self._sent is not None and self._sent[0] == ev_id

    def _enqueue(self, event: SyscallEvent | SysretEvent | SignalEvent, answer: Answer, now: float) -> None:
        """Keep a question sent (or about to be) until its answer or deadline."""
        q = _Question(event.id, now + self.timeout, answer, type(event), _call_name(event))
        self._fifo.append(q)
        self._by_id[event.id] = q

    def _await_reply(self, now: float) -> None:
        """Read the reply right after its question, spinning briefly
        (:mod:`brokerd.spin`) instead of leaving it to the loop: the write
        wakes the authorizer, and a plain one answers in microseconds, often
        before the write returns (it preempts the broker on its CPU), else on
        the other CPU some 5-60 us later; had the broker slept in
        ``epoll_wait``, that answer would have had to wake its CPU again."""
        try:
            data = self.spin.until(self._read_now)
        except OSError as e:
            self._die(f"read failed: {e.strerror}")
            return
        if data is not None:
            self._take(data)

    def _read_now(self) -> bytes | None:
        """One non-blocking read: None when nothing is there yet."""
        try:
            return os.read(self.rfd, READ_SIZE)
        except BlockingIOError:
            return None

    def notify(self, line: bytes) -> None:
        """Send a line that needs no answer (proc events) to a handshake authorizer."""
        if self.mode == "hello":
            self._send(line)

    # -- I/O driven by the loop -------------------------------------------
    def _send(self, data: bytes) -> None:
        if self.mode == "dead":
            return
        if not self._out:
            try:
                n = os.write(self.wfd, data)
            except BlockingIOError:
                n = 0
            except OSError as e:
                self._die(f"write failed: {e.strerror}")
                return
            if n == len(data):
                return
            data = data[n:]
        if len(self._out) + len(data) > MAX_PENDING_OUT:
            self._die(f"stopped reading its input ({len(self._out)} bytes waiting)")
            return
        self._out += data

    @property
    def wants_write(self) -> bool:
        return bool(self._out) and self.mode != "dead"

    def on_writable(self) -> None:
        try:
            n = os.write(self.wfd, self._out)
        except BlockingIOError:
            return
        except OSError as e:
            self._die(f"write failed: {e.strerror}")
            return
        del self._out[:n]

    def on_readable(self, now: float) -> None:
        try:
            data = os.read(self.rfd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as e:
            self._die(f"read failed: {e.strerror}")
            return
        self._take(data)

    def _take(self, data: bytes) -> None:
        """Handle bytes read from the authorizer (empty: the end of its output)."""
        if not data:
            self._die("closed its output (exited?)")
            return
        lines = self._lines
        if len(data) <= ONE_LINE_MAX and data.find(b"\n") == len(data) - 1 and lines.idle:
            # One whole line and nothing held (the usual read: one reply, e.g.
            # ``cont``): what the buffer would give, without its bookkeeping.
            self._reading = True
            try:
                self._on_line(data[:-2] if data.endswith(b"\r\n") else data[:-1])
            finally:
                self._reading = False
            return
        lines.feed(data)
        self._reading = True
        try:
            for line in lines:
                if self.mode == "dead":
                    return
                if not isinstance(line, PartialLine):  # only after the end of the stream
                    self._on_line(line)
        finally:
            self._reading = False

    def _on_line(self, line: bytes | TooLong) -> None:
        if isinstance(line, TooLong):
            if self.mode == "greeting":
                self._die("answered the greeting with an over-long line")
                return
            self._error("line-too-long", f"line of {line.length} bytes exceeds the limit")
            self._unusable(None, "line too long")
            return
        if self.mode == "greeting":
            try:
                parsed: object = codec.parse_reply(line)
            except ProtocolError:
                parsed = None
            self._on_greeting_reply(parsed)
            return
        try:
            parsed = codec.parse_reply(line)
        except ProtocolError as e:
            self._error(e.code, e.message)
            self._unusable(_leading_id(line), f"bad line: {e.message}")
            return
        if isinstance(parsed, Reply):
            self._on_reply(parsed)
        elif isinstance(parsed, Error):
            self._log(f"authorizer {self.name} says: error {parsed.code} {parsed.text}")
        elif isinstance(parsed, Fetch):
            self._on_fetch_line(parsed)
        elif isinstance(parsed, Hello):
            self._error("unexpected", "hello after the handshake")
            self._unusable(None, "unexpected hello")

    def _on_fetch_line(self, f: Fetch) -> None:
        if self.on_fetch is None or self.mode != "hello":
            self._error("unsupported", "fetch needs handshake mode")
            return
        if f.id not in self._by_id:
            self._error("unknown-id", f"no question with id {f.id} is waiting")
            return
        try:
            data = self.on_fetch(f.id, f.argn, f.offset, min(f.length, 16000))
        except (LookupError, ValueError, OSError) as e:
            self._error("bad-fetch", str(e))
            return
        self._send(codec.format_event(Data(f.id, f.argn, f.offset, Str(data))))

    def _on_reply(self, reply: Reply) -> None:
        if reply.id is not None:
            q = self._by_id.get(reply.id)
            if q is None:
                self._error("unknown-id", f"no question with id {reply.id} is waiting")
                return
        elif self.mode == "hello":
            # A stray line (a debug print, an injected `cont`) must never pass
            # for the answer to whatever question is open (issue #16 item 6).
            self._error("missing-id", "a reply in handshake mode starts with the ID of the event it answers; ignored")
            if not self._warned_missing_id:  # once: an authorizer that never sends IDs only times out
                self._warned_missing_id = True
                self._log(f"authorizer {self.name} sent a reply without an event ID in handshake mode; "
                          "such lines answer nothing (PROTOCOL.md 7.4)")
            return
        else:
            if not self._fifo:
                self._error("unexpected", "a reply with no question waiting")
                return
            q = self._fifo[0]
        self._resolve(q, reply, "")

    def _resolve(self, q: _Question, reply: Reply, reason: str) -> None:
        """Answer ``q`` (unless it was already answered by default) and drop it."""
        try:
            self._fifo.remove(q)
        except ValueError:
            pass
        self._by_id.pop(q.id, None)
        if q.answer is not None:
            ans, q.answer = q.answer, None
            if reason:
                self.defaulted += 1
            else:
                self.answered += 1
            ans(reply, reason)

    def _unusable(self, qid: int | None, reason: str) -> None:
        """A line that cannot be used as an answer.  In plain mode it stands
        for the oldest question (replies are matched in order, by design),
        which gets the default.  In handshake mode only the question its ID
        prefix names gets the default; a line naming no open question
        answers nothing (that question waits for its reply or deadline)."""
        if self.mode != "hello":
            self._default_head(reason)
        elif qid is not None and (q := self._by_id.get(qid)) is not None:
            self._resolve(q, self._default_for(q), reason)

    def _default_head(self, reason: str) -> None:
        """A malformed line stands for the oldest question: it gets the default."""
        while self._fifo:
            q = self._fifo[0]
            if q.answer is None:  # a placeholder of a timed-out question eats the line
                self._fifo.popleft()
                self._by_id.pop(q.id, None)
                return
            self._resolve(q, self._default_for(q), reason)
            return

    def _default_for(self, q: _Question) -> Reply:
        return default_reply(q.kind, q.name, self.default)

    def report_error(self, code: str, text: str) -> None:
        """Tell the authorizer (or, in plain mode, the log) what was wrong with its answer."""
        self._error(code, text)

    def _error(self, code: str, text: str) -> None:
        if self.mode == "hello":
            self._send(codec.format_event(Error(code, text)))
        else:
            self._log(f"authorizer {self.name}: {code}: {text}")

    def _die(self, reason: str, quiet: bool = False, term: bool = True) -> None:
        if self.mode == "dead":
            return
        was_greeting = self.mode == "greeting"
        self.mode = "dead"
        self.dead_reason = reason
        if not quiet:
            self._log(f"authorizer {self.name} {reason}; its questions get the default verdict")
        pending = [q for q in self._fifo if q.answer is not None]
        self._fifo.clear()
        self._by_id.clear()
        for q in pending:
            self._resolve(q, self._default_for(q), f"authorizer {self.name} {reason}")
        if was_greeting:
            self.mode = "dead"  # stays subscribed to what the operator set
        self.close(term)

    def kill(self, reason: str) -> None:
        """Stop using this authorizer (e.g. the session ends)."""
        self._die(reason, quiet=True)

    def finish(self, reason: str) -> None:
        """The session ended: stop using this authorizer and close its
        input, but let it end on its own (an audit policy still writing its
        last records); :meth:`reap` with ``term_at`` sends SIGTERM later."""
        self._die(reason, quiet=True, term=False)

    def close(self, term: bool = True) -> None:
        """Close the pipes and SIGTERM the process; with ``term`` false only
        its input ends (EOF): its output stays open until :meth:`reap`, so a
        late answer lands in the pipe instead of meeting a broken one."""
        for fd in (self.rfd, self.wfd) if term else (self.wfd,):
            try:
                os.close(fd)
            except OSError:
                pass
        self.wfd = -1
        if term:
            self.rfd = -1
        if self.pid and term:
            self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        # the whole process group: `sh -c` may have children holding our stderr
        if self.pid is None:
            return
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                os.kill(self.pid, sig)
            except OSError:
                pass

    def exited(self, deadline: float) -> bool:
        """Wait (until ``deadline``, monotonic) for the process to exit; whether it did
        (true too for an authorizer that is no process of ours)."""
        if self.pidfd < 0:
            return True
        p = select.poll()
        p.register(self.pidfd, select.POLLIN)
        return bool(p.poll(max(0.0, deadline - time.monotonic()) * 1000))

    def reap(self, deadline: float) -> None:
        """After :meth:`close`: wait (until ``deadline``, monotonic) for the
        process to exit, then SIGKILL it and its group, so an authorizer
        that ignores SIGTERM never outlives its session."""
        try:
            if self.pidfd >= 0 and not self.exited(deadline):
                self._log(f"authorizer {self.name} ignored SIGTERM: killed")
                self._signal(signal.SIGKILL)
        finally:
            if self.pidfd >= 0:
                os.close(self.pidfd)
                self.pidfd = -1
            if self.ward is not None:  # what the process left in its group goes too
                self.ward.release()
            self._close_output()

    def _close_output(self) -> None:
        try:
            os.close(self.rfd)
        except OSError:
            pass
        self.rfd = -1

    # -- deadlines ----------------------------------------------------------
    def next_deadline(self) -> float | None:
        for q in self._fifo:
            if q.answer is not None or self.mode == "greeting":
                return q.deadline
        return None

    def expire(self, now: float) -> None:
        """Give the default to every question whose deadline passed.  In plain
        mode it keeps its place, so that its late reply is read and dropped;
        in handshake mode it is gone (a late reply names an ID not open)."""
        if self.mode == "greeting":
            if self._fifo and self._fifo[0].deadline <= now:
                self._log(f"authorizer {self.name} did not answer the greeting in {self.greeting_timeout:g}s")
                self._die("did not answer the greeting")
            return
        for q in list(self._fifo):
            if q.answer is not None and q.deadline <= now:
                ans, q.answer = q.answer, None
                self.defaulted += 1
                self._by_id.pop(q.id, None)
                if self.mode == "hello":
                    self._fifo.remove(q)
                ans(self._default_for(q), f"authorizer {self.name} did not answer within {self.timeout:g}s")


def apply_hello(m, parsed: Hello) -> None:
    """Take an authorizer's handshake (``hello role=authorizer ...``) into
    member ``m``: its name, subscriptions, default, static and argument rules,
    layer.  Shared by connections and in-process policies
    (:mod:`brokerd.decision.inproc`).  Raises ValueError for a bad handshake."""
    m.name = parsed.get("name") or m.name
    trace = parsed.get("trace")
    if trace is not None:
        try:
            m.trace = parse_trace(trace)
        except TraceError as e:
            raise ValueError(f"trace={trace}: {e}") from None
    m.signals = parsed.get("signals", "no") in ("yes", "all", "1")
    ev = parsed.get("events")
    if ev == "all":
        ev = "fork,vfork,clone,exec,exit,killed"
    m.events = frozenset(ev.split(",")) if ev else frozenset()
    default = parsed.get("default")
    if default in DEFAULT_VERDICTS:
        m.default = DEFAULT_VERDICTS[default]
    m.caller = parsed.get("caller", "no") in ("yes", "1")
    promised = parsed.get("verdicts")
    m.verdicts = frozenset(v for v in promised.split(",") if v) if promised else None
    m.static = parse_static(dict(parsed.attrs))
    unknown_names(m.static.allow | m.static.kill | {n for n, _ in m.static.deny})
    m.rules = tuple(parse_arg_rule(v) for k, v in parsed.attrs if k == "rule")
    m.layer = parse_layer(parsed.attrs)
    size = parsed.get("strsize")
    if size and size.isdigit():
        m.strsize = int(size)


def spawn(command: str, *, name: str | None = None, env: dict[str, str] | None = None,
          stderr: int | None = None, **kw) -> Authorizer:
    """Start ``command`` with ``sh -c`` and speak to it over its stdin/stdout
    (its stderr is ours, or ``stderr``: brokerctl reads it to say in one
    line why an authorizer failed to start).

    It gets its own process group, so a Ctrl-C meant for the traced program
    does not kill the policy, and an unblocked signal mask whatever the
    broker's is.  It is SIGKILLed by the kernel if the broker dies, even by
    SIGKILL, and a warden then kills what it forked (its process group:
    :mod:`brokerd.decision.tether`): call this from the thread that runs the
    session.
    """
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    fds = [(to_r, 0), (from_w, 1)]
    if stderr is not None:
        fds.append((stderr, 2))
    pid, warden = spawn_warded(
        "/bin/sh",
        sh_argv(command),
        env if env is not None else os.environ,
        fds=fds,
        sigdef=(signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGPIPE),
    )
    os.close(to_r)
    os.close(from_w)
    label = name or shlex.split(command)[0].rsplit("/", 1)[-1] if command.strip() else "authorizer"
    a = Authorizer(label, from_r, to_w, pid=pid, **kw)
    a.pidfd = os.pidfd_open(pid)
    a.ward = warden
    return a


__all__ = ["Authorizer", "apply_hello", "spawn"]
