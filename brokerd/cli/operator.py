"""The operator at the terminal of ``brokerctl attach`` (and the trace of
``brokerctl run``): one more authorizer in the stack, living in the broker
process.

It shows each intercepted call live (``[pid N] openat(AT_FDCWD, "/x",
O_RDONLY) = 3 <0.000031>``), and with ``--ask`` pauses the calls that match
the filter until the operator answers at the terminal.  Questions queue (one
prompt at a time) while every other call keeps flowing.  "Always" answers
become rules; on exit they can be saved as a declarative policy file, and a
summary per syscall is printed (like ``strace -c``).  :class:`Display`
holds strace's display options (``-t``, ``-T``, ``-y``, ``-c``).
"""

from __future__ import annotations

import errno as _errno
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from brokerd.cli.output import say
from brokerd.decision.local import LocalAuthorizer
from brokerd.decision.member import Answer
from brokerd.protocol import codec
from brokerd.protocol.abi import ABIS
from brokerd.protocol.consts import errno_name, errno_number, signal_name
from brokerd.protocol.types import (
    Cont,
    Deliver,
    Fail,
    Int,
    Kill,
    Reply,
    SignalEvent,
    SkipFail,
    Step,
    Str,
    SyscallEvent,
    SysretEvent,
)

if TYPE_CHECKING:  # not imported at run time: learn imports this module's users
    from brokerd.cli.learn import AskSession

#: the kernel's own codes for an interrupted call it will restart (never seen
#: by the program), shown as strace shows them: ``= ? ERESTARTSYS (...)``
RESTART_CODES = {
    512: "ERESTARTSYS (To be restarted if SA_RESTART is set)",
    513: "ERESTARTNOINTR (To be restarted)",
    514: "ERESTARTNOHAND (To be restarted if no handler)",
    516: "ERESTART_RESTARTBLOCK (Interrupted by signal)",
}
PROMPT = "[a]llow [d]eny [A]lways allow [D]always deny [s]tep [k]ill (d ERRNO to choose): "


@dataclass(frozen=True)
class Display:
    """How calls are shown: strace's -c/-C (``calls``), -T (``times``),
    -t/-tt (``stamps`` 1/2) and -y (``fd_paths``)."""

    calls: bool = True
    times: bool = True
    stamps: int = 0
    fd_paths: bool = False


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
                 tty: int = -1, display: Display = Display(), start: AskSession | None = None) -> None:
        super().__init__("operator", trace, rfd=tty if ask else -1)
        #: a learned policy to start from (brokerd.cli.learn.AskSession): what
        #: it allows is not asked about; "always allow" answers are added to it
        self.start = start
        self.out = out
        self.display = display
        self.asking = ask
        self.tty = tty
        self.stats: dict[str, _Stat] = {}
        self.always: list[_Rule] = []
        self._started: dict[int, tuple[float, str]] = {}  # event id -> (start, "[pid N] call(...)")
        self._queue: deque[tuple[SyscallEvent, Answer]] = deque()
        self._inbuf = b""
        self.output_lost = False
        self.results = True  # step each call to show its result (ptrace backend)
        #: called once when the output's reader is gone (``| head``)
        self.on_output_lost: Callable[[], None] = lambda: None

    # -- the stack interface --------------------------------------------
    def ask(self, event, answer: Answer, now: float) -> None:
        if isinstance(event, SyscallEvent):
            rule = self._match(event)
            if rule is not None:
                answer(Reply(Step()) if rule.verdict == "allow" else _deny(rule.verdict), "")
                if rule.verdict != "allow":
                    self._show_denied(event, rule.verdict, "an always-deny answer")
                else:
                    self._started[event.id] = (time.monotonic(), self._text(event))
            elif self.asking and (self.start is None or not self.start.allows(event)):
                self._queue.append((event, answer))
                if len(self._queue) == 1:
                    self._prompt()
            else:
                self._started[event.id] = (time.monotonic(), self._text(event))
                answer(Reply(Step() if self.results else Cont()), "")
        elif isinstance(event, SysretEvent):
            self._show_result(event)
            answer(Reply(Cont()), "")
        elif isinstance(event, SignalEvent):
            self._line(f"[pid {event.tid}] {self._stamp()}--- {signal_name(event.signo)} ---")
            answer(Reply(Deliver()), "")
        else:
            answer(Reply(Cont()), "")

    def on_decision(self, record) -> None:
        """Audit hook: a call someone else denied or killed never reaches our sysret
        (nor does any call when results cannot be seen)."""
        ev = record.event
        if not isinstance(ev, SyscallEvent) or ev.id not in self._started:
            return
        if not record.verdict.startswith("cont"):
            self._started.pop(ev.id)
            self._show_denied(ev, record.verdict, record.by)
        elif not self.results:
            _, text = self._started.pop(ev.id)
            self.stats.setdefault(ev.call.name, _Stat()).calls += 1
            self._line(f"{text} = ?")

    def without_results(self) -> None:
        """On the seccomp-notify backend a result cannot be seen (no step):
        show each call as it is let through (``= ?``) and only ever say cont."""
        self.results = False
        self.verdicts = frozenset({"cont", "skip-fail", "skip-ok"})

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
            self._say(f"unknown errno {arg!r}")
            self._prompt()
            return
        if not key:  # a security prompt has no default: Enter alone decides nothing
            self._say("(Enter alone decides nothing: answer a, d, A, D, s or k)")
            self._prompt()
            return
        if key in ("a", "s"):
            reply = Reply(Step())
            self._started[event.id] = (time.monotonic(), self._text(event))
        elif key == "A":
            self.always.append(_Rule(event.call.name, _path_of(event), "allow"))
            if self.start is not None:
                self.start.add(event)
            reply = Reply(Step())
            self._started[event.id] = (time.monotonic(), self._text(event))
        elif key in ("d", "D"):
            verdict = f"skip-fail {errno_name(errno)}"
            if key == "D":
                self.always.append(_Rule(event.call.name, _path_of(event), verdict))
            reply = Reply(SkipFail(errno))
            self._show_denied(event, verdict, "operator")
        elif key == "k":
            reply = Reply(Kill())
        else:
            self._say(f"? {text!r}: answer a, d, A, D, s or k")
            self._prompt()
            return
        self._queue.popleft()
        answer(reply, "")
        if self._queue:
            self._prompt()

    def _prompt(self) -> None:
        event, _ = self._queue[0]
        waiting = f" ({len(self._queue) - 1} more waiting)" if len(self._queue) > 1 else ""
        self._say(f"{self._text(event)} ?{waiting}\n{PROMPT}", end="")

    def _match(self, event: SyscallEvent) -> _Rule | None:
        path = _path_of(event)
        for r in self.always:
            if r.syscall == event.call.name and r.path == path:
                return r
        return None

    # -- output -------------------------------------------------------------
    def _line(self, text: str) -> None:
        """One call's line, unless only the summary is wanted (-c)."""
        if self.display.calls:
            self._say(text)

    def _stamp(self) -> str:
        if not self.display.stamps:
            return ""
        now = time.time()
        clock = time.strftime("%H:%M:%S", time.localtime(now))
        return f"{clock}.{int(now % 1 * 1e6):06d} " if self.display.stamps > 1 else f"{clock} "

    def _text(self, event: SyscallEvent) -> str:
        """``[pid N] [time ]name(args)[ <- caller]``, fd arguments with paths under -y."""
        return f"[pid {event.tid}] {self._stamp()}{_call_text(event, self.display.fd_paths)}"

    def _say(self, text: str, end: str = "\n") -> None:
        if not say(self.out, text, end) and not self.output_lost:
            self.output_lost = True
            self.on_output_lost()

    def _show_result(self, event: SysretEvent) -> None:
        t0, text = self._started.pop(event.id, (time.monotonic(), f"[pid {event.tid}] {event.name}(...)"))
        dt = time.monotonic() - t0
        st = self.stats.setdefault(event.name, _Stat())
        st.calls += 1
        st.seconds += dt
        if isinstance(event.result, Fail):
            st.errors += 1
            n = event.result.errno
            res = f"? {RESTART_CODES[n]}" if n in RESTART_CODES else f"-1 {errno_name(n)} ({os.strerror(n)})"
        else:
            res = codec.format_value(event.result.value)
            if self.display.fd_paths and _returns_fd(event) and isinstance(event.result.value, Int):
                res += _fd_path(event.pid, event.result.value.value)
        self._line(f"{text} = {res}" + (f" <{dt:.6f}>" if self.display.times else ""))

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
        self._line(f"{self._text(event)} = {res} (by {by or 'policy'})")

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


def _call_text(event: SyscallEvent, fd_paths: bool = False) -> str:
    name, _, args = codec.format_call(event.call).partition(" ")
    if fd_paths:
        spec = _spec(event.abi, name)
        kinds = spec.args if spec is not None else ()
        parts = []
        for i, a in enumerate(event.call.args):
            shown = codec.format_value(a)
            if i < len(kinds) and kinds[i] in FD_KINDS and isinstance(a, Int):
                shown += _fd_path(event.pid, a.value)
            parts.append(shown)
        args = ", ".join(parts)
    caller = next((v for k, v in event.notes if k == "caller" and isinstance(v, Str)), None)
    where = f" <- {caller.data.decode(errors='replace')}" if caller is not None else ""
    return f"{name}({args}){where}"


#: argument kinds that hold a file descriptor (shown as N</path> under -y)
FD_KINDS = frozenset({"fd", "dirfd"})


def _spec(abi: str, name: str):
    table = ABIS.get(abi)
    return table.by_name.get(name) if table is not None else None


def _returns_fd(event: SysretEvent) -> bool:
    spec = _spec(event.abi, event.name)
    return spec is not None and spec.ret == "fd"


def _fd_path(pid: int, fd: int) -> str:
    """``</path>`` of the tracee's descriptor ``fd`` (strace -y), or "" if none."""
    if fd < 0:
        return ""
    try:
        return f"<{os.readlink(f'/proc/{pid}/fd/{fd}')}>"
    except OSError:
        return ""


def _path_of(event: SyscallEvent) -> bytes | None:
    for a in event.call.args:
        if isinstance(a, Str) and not a.truncated:
            return a.data
    return None


def _glob_escape(s: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in s)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


__all__ = ["Display", "Operator"]
