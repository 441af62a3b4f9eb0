"""The operator at the terminal of ``brokerctl attach``: one more authorizer
in the stack, living in the broker process.

It shows each intercepted call live (``[pid N] openat(AT_FDCWD, "/x",
O_RDONLY) = 3 <0.000031>``), and with ``--ask`` pauses the calls that match
the filter until the operator answers at the terminal.  Questions queue (one
prompt at a time) while every other call keeps flowing.  "Always" answers
become rules; on exit they can be saved as a declarative policy file, and a
summary per syscall is printed (like ``strace -c``).
"""

from __future__ import annotations

import errno as _errno
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import TextIO

from brokerd.decision.local import LocalAuthorizer
from brokerd.decision.member import Answer
from brokerd.protocol import codec
from brokerd.protocol.consts import errno_name, errno_number, signal_name
from brokerd.protocol.types import (
    Cont,
    Deliver,
    Fail,
    Kill,
    Reply,
    SignalEvent,
    SkipFail,
    Step,
    Str,
    SyscallEvent,
    SysretEvent,
)

PROMPT = "[a]llow [d]eny [A]lways allow [D]always deny [s]tep [k]ill (d ERRNO to choose): "


@dataclass
class _Stat:
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0


@dataclass
class _Rule:
    syscall: str
    path: bytes | None
    verdict: str  # "allow" | "skip-fail ENAME"


class Operator(LocalAuthorizer):
    """The terminal's authorizer: shows calls, asks about some, keeps stats and rules."""

    def __init__(self, trace: frozenset[str] | None, *, out: TextIO = sys.stderr, ask: bool = False,
                 tty: int = -1, start: object = None) -> None:
        super().__init__("operator", trace, rfd=tty if ask else -1)
        #: a learned policy to start from (brokerd.cli.learn.AskSession): what
        #: it allows is not asked about; "always allow" answers are added to it
        self.start = start
        self.out = out
        self.asking = ask
        self.tty = tty
        self.stats = {}
        self.always = []
        self._started: dict[int, tuple[float, str]] = {}
        self._queue: deque[tuple[SyscallEvent, Answer]] = deque()
        self._inbuf = b""

    # -- the stack interface --------------------------------------------
    def ask(self, event, answer: Answer, now: float) -> None:
        if isinstance(event, SyscallEvent):
            rule = self._match(event)
            if rule is not None:
                answer(Reply(Step()) if rule.verdict == "allow" else _deny(rule.verdict), "")
                if rule.verdict != "allow":
                    self._show_denied(event, rule.verdict, "an always-deny answer")
                else:
                    self._started[event.id] = (time.monotonic(), _call_text(event))
            elif self.asking and (self.start is None or not self.start.allows(event)):
                self._queue.append((event, answer))
                if len(self._queue) == 1:
                    self._prompt()
            else:
                self._started[event.id] = (time.monotonic(), _call_text(event))
                answer(Reply(Step()), "")
        elif isinstance(event, SysretEvent):
            self._show_result(event)
            answer(Reply(Cont()), "")
        elif isinstance(event, SignalEvent):
            print(f"[pid {event.tid}] --- {signal_name(event.signo)} ---", file=self.out, flush=True)
            answer(Reply(Deliver()), "")
        else:
            answer(Reply(Cont()), "")

    def on_decision(self, record) -> None:
        """Audit hook: a call someone else denied or killed never reaches our sysret."""
        ev = record.event
        if isinstance(ev, SyscallEvent) and ev.id in self._started and not record.verdict.startswith("cont"):
            self._started.pop(ev.id)
            self._show_denied(ev, record.verdict, record.by)

    # -- terminal answers -------------------------------------------------
    def on_readable(self, now: float) -> None:
        try:
            data = os.read(self.tty, 1024)
        except BlockingIOError:
            return
        if not data:
            self.asking = False
            while self._queue:  # no terminal any more: what is waiting proceeds
                ev, answer = self._queue.popleft()
                answer(Reply(Step()), "")
            return
        self._inbuf += data
        while b"\n" in self._inbuf and self._queue:
            line, self._inbuf = self._inbuf.split(b"\n", 1)
            self._answer(line.decode(errors="replace").strip())

    def _answer(self, text: str) -> None:
        event, answer = self._queue[0]
        key, _, arg = text.partition(" ")
        try:
            errno = errno_number(arg) if arg else _errno.EPERM
        except ValueError:
            print(f"unknown errno {arg!r}", file=self.out, flush=True)
            self._prompt()
            return
        if key in ("a", "s", ""):
            reply = Reply(Step())
            self._started[event.id] = (time.monotonic(), _call_text(event))
        elif key == "A":
            self.always.append(_Rule(event.call.name, _path_of(event), "allow"))
            if self.start is not None:
                self.start.add(event)
            reply = Reply(Step())
            self._started[event.id] = (time.monotonic(), _call_text(event))
        elif key in ("d", "D"):
            verdict = f"skip-fail {errno_name(errno)}"
            if key == "D":
                self.always.append(_Rule(event.call.name, _path_of(event), verdict))
            reply = Reply(SkipFail(errno))
            self._show_denied(event, verdict, "operator")
        elif key == "k":
            reply = Reply(Kill())
        else:
            print(f"? {text!r}: answer a, d, A, D, s or k", file=self.out, flush=True)
            self._prompt()
            return
        self._queue.popleft()
        answer(reply, "")
        if self._queue:
            self._prompt()

    def _prompt(self) -> None:
        event, _ = self._queue[0]
        waiting = f" ({len(self._queue) - 1} more waiting)" if len(self._queue) > 1 else ""
        print(f"[pid {event.tid}] {_call_text(event)} ?{waiting}\n{PROMPT}", end="", file=self.out, flush=True)

    def _match(self, event: SyscallEvent) -> _Rule | None:
        path = _path_of(event)
        for r in self.always:
            if r.syscall == event.call.name and r.path == path:
                return r
        return None

    # -- output -------------------------------------------------------------
    def _show_result(self, event: SysretEvent) -> None:
        t0, text = self._started.pop(event.id, (time.monotonic(), event.name + "(...)"))
        dt = time.monotonic() - t0
        st = self.stats.setdefault(event.name, _Stat())
        st.calls += 1
        st.seconds += dt
        if isinstance(event.result, Fail):
            st.errors += 1
            res = f"-1 {errno_name(event.result.errno)} ({os.strerror(event.result.errno)})"
        else:
            res = codec.format_value(event.result.value)
        print(f"[pid {event.tid}] {text} = {res} <{dt:.6f}>", file=self.out, flush=True)

    def _show_denied(self, event: SyscallEvent, verdict: str, by: str) -> None:
        st = self.stats.setdefault(event.call.name, _Stat())
        st.calls += 1
        words = verdict.split()
        if words[0] == "skip-fail":
            st.errors += 1
            n = int(words[1]) if words[1].isdigit() else errno_number(words[1])
            res = f"-1 {errno_name(n)} ({os.strerror(n)})"
        elif words[0] == "skip-ok":
            res = words[1]
        else:
            res = "?"
        print(f"[pid {event.tid}] {_call_text(event)} = {res} (by {by or 'policy'})", file=self.out, flush=True)

    def summary(self) -> str:
        """A per-syscall table like ``strace -c``: calls, errors, time."""
        rows = sorted(self.stats.items(), key=lambda kv: -kv[1].seconds)
        total = sum(s.seconds for _, s in rows) or 1.0
        lines = [f"{'% time':>7} {'seconds':>11} {'calls':>7} {'errors':>7} syscall",
                 f"{'-' * 7} {'-' * 11} {'-' * 7} {'-' * 7} {'-' * 16}"]
        for name, s in rows:
            lines.append(f"{100 * s.seconds / total:7.2f} {s.seconds:11.6f} {s.calls:7d} "
                         f"{s.errors or '':>7} {name}")
        calls = sum(s.calls for _, s in rows)
        errors = sum(s.errors for _, s in rows)
        lines.append(f"{'-' * 7} {'-' * 11} {'-' * 7} {'-' * 7} {'-' * 16}")
        lines.append(f"{100.0:7.2f} {sum(s.seconds for _, s in rows):11.6f} {calls:7d} {errors or '':>7} total")
        return "\n".join(lines)

    def policy_toml(self, pid: int) -> str:
        """The "always" answers as a declarative policy file (docs/policies.md)."""
        out = [f"# saved by brokerctl attach --ask from pid {pid} on {time.strftime('%Y-%m-%d %H:%M:%S')}",
               'name = "attach-session"', 'default = "allow"', ""]
        for r in self.always:
            out.append("[[rule]]")
            out.append(f"syscall = {_toml_str(r.syscall)}")
            if r.path is not None:
                out.append(f"raw_path = {_toml_str(_glob_escape(r.path.decode('utf-8', 'surrogateescape')))}")
            out.append(f"verdict = {_toml_str(r.verdict)}")
            out.append("")
        return "\n".join(out)


def _deny(verdict: str) -> Reply:
    return Reply(SkipFail(errno_number(verdict.split()[1])))


def _call_text(event: SyscallEvent) -> str:
    text = codec.format_call(event.call)
    name, _, args = text.partition(" ")
    caller = next((v for k, v in event.notes if k == "caller" and isinstance(v, Str)), None)
    where = f" <- {caller.data.decode(errors='replace')}" if caller is not None else ""
    return f"{name}({args}){where}"


def _path_of(event: SyscallEvent) -> bytes | None:
    for a in event.call.args:
        if isinstance(a, Str) and not a.truncated:
            return a.data
    return None


def _glob_escape(s: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in s)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


__all__ = ["Operator"]
