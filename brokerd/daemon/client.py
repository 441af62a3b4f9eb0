"""Clients of the daemon socket, in plain blocking/non-blocking sockets (no
trio: the shim is a hand-written epoll loop, the hot path).

* :func:`open_session` is the shim's side (``brokerctl run``/``attach``): it
  connects, says ``hello 1 role=tracer``, asks for a session and receives one
  descriptor per registered authorizer, each turned into an
  :class:`~brokerd.decision.authorizer.Authorizer` (``rfd == wfd``) that goes
  after the ``-a`` ones in the stack.  :meth:`DaemonSession.bind` then hooks
  the daemon connection into the shim's loop through the shim's one control
  interface (``brokerd.tracer.shim.control.SessionControl``) (audit records out; ``detach``,
  ``kill``, ``audit on|off`` in; the session's failure mode when the daemon is
  lost).
* :class:`Registration` is an authorizer's side: register, then receive one
  ``session`` offer (with its socket) per session.
* :func:`control` is one request of ``brokerctl sessions|authorizers|...``.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from brokerd.decision.defaults import default_verdict
from brokerd.protocol import codec
from brokerd.protocol.errors import ProtocolError
from brokerd.protocol.linebuf import LineBuffer, PartialLine, TooLong
from brokerd.protocol.selection import TraceError, parse_trace

from . import wire

if TYPE_CHECKING:
    from brokerd.tracer.shim.control import SessionControl

CONNECT_TIMEOUT = 2.0
AUDIT_BUFFER = 4 << 20  # bytes of audit lines held while the daemon is slow; beyond: dropped
UNREACHABLE = (errno.ENOENT, errno.ECONNREFUSED, errno.EACCES, errno.EPERM, errno.ENOTSOCK, errno.ENOTDIR)


class DaemonError(OSError):
    """The daemon cannot be used (unreachable when asked for explicitly, or it
    refused).  An OSError so that brokerctl reports it as one line, exit 1."""


class _Lines:
    """A blocking line reader over a stdlib socket that also collects the
    descriptors that arrive (in order: each ``session``/``ok`` line's come
    with or before its newline)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = LineBuffer()
        self._lines: deque = deque()
        self.fds: deque[int] = deque()

    def readline(self, timeout: float | None) -> bytes | None:
        end = None if timeout is None else time.monotonic() + timeout
        while not self._lines:
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no answer from the brokerd daemon")
                self.sock.settimeout(left)
            else:
                self.sock.settimeout(None)
            try:
                data, fds = wire.recv_with_fds(self.sock)
            except TimeoutError:
                raise TimeoutError("no answer from the brokerd daemon") from None
            self.fds.extend(fds)
            if not data:
                return None
            self._buf.feed(data)
            self._lines.extend(self._buf)
        item = self._lines.popleft()
        if isinstance(item, TooLong | PartialLine):
            raise item.to_error()
        return item

    def take_fds(self, n: int) -> list[int]:
        if len(self.fds) < n:
            raise DaemonError(f"brokerd daemon sent {len(self.fds)} descriptors, expected {n}")
        return [self.fds.popleft() for _ in range(n)]

    def close_fds(self) -> None:
        while self.fds:
            os.close(self.fds.popleft())


def _connect(sock: socket.socket, path: str, timeout: float) -> None:
    """``sock.connect(path)``, waiting up to ``timeout`` while the daemon's
    listen backlog is full: a Unix socket with a timeout gets EAGAIN at once
    there (not EINPROGRESS), which would turn a busy moment of the daemon
    into a failed ``brokerctl run``."""
    end = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() + pause > end:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def connect(role: str, *, path: str | None = None, timeout: float = CONNECT_TIMEOUT,
            **attrs: object) -> tuple[socket.socket, _Lines, str] | None:
    """Connect and greet as ``role``: (socket, reader, path), or None when no
    daemon is reachable at the default places.  A daemon asked for explicitly
    (``path`` or ``BROKERD_SOCKET``) that cannot be reached, or a daemon that
    refuses, raises DaemonError."""
    if path is not None:
        paths, explicit = [path], True
    else:
        paths, explicit = wire.candidate_sockets()
    for p in paths:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            _connect(sock, p, timeout)
        except OSError as e:
            sock.close()
            if e.errno in UNREACHABLE and not explicit:
                continue
            raise DaemonError(f"cannot reach the brokerd daemon at {p}: {e.strerror or e}") from None
        lines = _Lines(sock)
        try:
            try:
                sock.sendall(wire.hello_line(role, **attrs))
            except OSError:
                pass  # refused before our hello: its answer says why
            answer = lines.readline(timeout)
            if answer is None:
                raise DaemonError(f"the brokerd daemon at {p} closed the connection")
            parsed = codec.parse_reply(answer)
        except (TimeoutError, OSError, ProtocolError) as e:
            sock.close()
            lines.close_fds()
            if isinstance(e, DaemonError):
                raise
            why = e.message if isinstance(e, ProtocolError) else (getattr(e, "strerror", None) or str(e))
            raise DaemonError(f"the brokerd daemon at {p} did not greet: {why} "
                              "(BROKERD_SOCKET=none runs without it)") from None
        from brokerd.protocol.types import Error, Hello

        if isinstance(parsed, Error):
            sock.close()
            raise DaemonError(f"the brokerd daemon at {p} refused: {parsed.code} {parsed.text}")
        if not isinstance(parsed, Hello):
            sock.close()
            raise DaemonError(f"the brokerd daemon at {p} answered {answer[:80]!r}")
        sock.settimeout(None)
        return sock, lines, p
    if explicit and not paths:
        return None  # BROKERD_SOCKET=none
    return None


# ----------------------------------------------------------------------
# the shim's side
# ----------------------------------------------------------------------
def open_session(*, mode: str, argv: list[str] | tuple[str, ...] = (), target: int = 0,
                 failure: str | None = None, timeout: float = CONNECT_TIMEOUT,
                 log: Callable[[str], None] | None = None) -> DaemonSession | None:
    """Ask the daemon (if one is reachable) for a session; None: run embedded."""
    import shlex

    got = connect("tracer", timeout=timeout, pid=os.getpid())
    if got is None:
        return None
    sock, lines, path = got
    attrs = [("mode", mode)]
    if failure:
        attrs.append(("failure", failure))
    if target:
        attrs.append(("target", str(target)))
    attrs.append(("argv", shlex.join(argv)))
    try:
        sock.sendall(b"session " + wire.format_attrs(attrs).encode("ascii") + b"\n")
        answer = lines.readline(timeout)
        if answer is None:
            raise DaemonError(f"the brokerd daemon at {path} closed the connection")
        info = wire.parse_answer(answer)
        fds = lines.take_fds(int(info["authorizers"]))
    except ProtocolError as e:
        sock.close()
        lines.close_fds()
        raise DaemonError(f"the brokerd daemon at {path} refused the session: {e.code} {e.message}") from None
    except (TimeoutError, OSError, ValueError, KeyError, TypeError) as e:
        sock.close()
        lines.close_fds()
        if isinstance(e, DaemonError):
            raise
        raise DaemonError(f"the brokerd daemon at {path}: no usable answer to the session request ({e})") from None
    lines.close_fds()  # anything beyond what was announced
    return DaemonSession(sock, lines, path, info, fds, log=log)


class DaemonSession:
    """One session's daemon connection, driven by the shim's loop."""

    def __init__(self, sock: socket.socket, lines: _Lines, path: str, info: dict, fds: list[int],
                 log: Callable[[str], None] | None = None) -> None:
        from brokerd.decision.authorizer import Authorizer

        self.sock = sock
        self.path = path
        self.id = int(info["id"])
        self.failure = str(info.get("failure", "kill"))
        self.audit_on = bool(info.get("audit"))
        self._log = log or (lambda m: print(f"brokerd: {m}", file=sys.stderr, flush=True))
        self._buf = LineBuffer()
        # lines that came right after the answer (a command sent at once)
        self._early = [x for x in lines._lines if isinstance(x, bytes)]
        self._out = bytearray()
        self.dropped = 0
        #: the session it steers, through brokerd.tracer.shim.control.SessionControl only
        self.control: SessionControl | None = None
        self.lost = False
        self.killed = False
        self.detach_asked = False
        self.authorizers = []
        for fd, entry in zip(fds, info.get("stack", []), strict=False):
            trace = entry.get("trace")
            self.authorizers.append(Authorizer(
                str(entry.get("name", "authorizer")), fd, fd,
                timeout=float(entry.get("deadline") or 5.0),
                default=default_verdict(str(entry.get("default", "deny"))),
                trace=_selection(trace),
                log=self._log,
            ))
        sock.setblocking(False)

    # -- hooking into the shim ----------------------------------------------
    def bind(self, control: SessionControl) -> None:
        """Steer ``control`` (the shim): its loop reads this connection, the
        audit records go to the daemon too while it wants them."""
        self.control = control
        self._set_audit(self.audit_on)
        control.add_reader(self.sock.fileno(), self.on_readable)
        early, self._early = self._early, []
        for line in early:
            self._command(line)

    def _set_audit(self, on: bool) -> None:
        self.audit_on = on
        if self.control is not None:
            self.control.tee_audit(self.send_audit if on else None)

    def send_audit(self, rec) -> None:
        line = b"audit " + json.dumps(rec.to_json(), ensure_ascii=True, separators=(",", ":")).encode() + b"\n"
        if len(self._out) + len(line) > AUDIT_BUFFER:
            self.dropped += 1
            return
        self._out += line
        self._flush()

    def _flush(self) -> None:
        if not self._out or self.lost:
            return
        try:
            n = self.sock.send(self._out)
        except BlockingIOError:
            return
        except OSError:
            self._out.clear()
            return  # the reader sees the loss
        del self._out[:n]

    # -- from the daemon ----------------------------------------------------
    def on_readable(self) -> None:
        self._flush()
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self._lost(e.strerror or str(e))
            return
        if not data:
            self._lost("it closed the connection")
            return
        self._buf.feed(data)
        for line in self._buf:
            if isinstance(line, bytes):
                self._command(line)

    def _command(self, line: bytes) -> None:
        verb, rest = wire.split_verb(line)
        control = self.control
        assert control is not None  # commands are read once bound
        if verb == "kill":
            self._log(f"session {self.id}: killed through the brokerd daemon")
            self.killed = True
            control.kill_all()
        elif verb == "detach":
            self._log(f"session {self.id}: detached through the brokerd daemon")
            self.detach_asked = True
            if control.has_tracees():
                control.request_detach()
        elif verb == "audit":
            self._set_audit(rest == "on")
        elif verb == "error":
            self._log(f"brokerd daemon: {rest}")

    def _lost(self, why: str) -> None:
        if self.lost:
            return
        self.lost = True
        control = self.control
        assert control is not None  # only a bound session reads the connection
        control.remove_reader(self.sock.fileno())
        self._set_audit(False)
        self.sock.close()
        control.fail(self.failure, f"lost the brokerd daemon ({why})")

    # -- called by brokerctl around the program -----------------------------
    def started(self, pid: int) -> None:
        """The program runs (pid known): tell the daemon; apply what came before."""
        assert self.control is not None  # bound before the program starts
        if self.killed or (self.lost and self.failure == "kill"):
            self.control.kill_all()
        elif self.detach_asked:
            self.control.request_detach()
        if not self.lost:
            self._out += f"pid {pid}\n".encode()
            self._flush()

    def end(self, status: int) -> None:
        """The session is over: flush the audit records (a short, bounded wait)
        and say goodbye."""
        if self.control is not None:
            self.control.remove_reader(self.sock.fileno())
        if self.lost:
            return
        self.lost = True
        if self.dropped:
            self._out += f"error audit-dropped {self.dropped} audit records dropped\n".encode()
        self._out += f"end {status}\n".encode()
        try:
            self.sock.settimeout(1.0)
            self.sock.sendall(self._out)
        except OSError:
            pass
        self.sock.close()


def started(session: DaemonSession | None, pid: int) -> None:
    """brokerctl's program runs: tell the session's daemon, if it has one."""
    if session is not None:
        session.started(pid)


def finish(session: DaemonSession | None, status: int) -> int:
    """The session is over: say so to its daemon, if it has one; returns ``status``."""
    if session is not None:
        session.end(status)
    return status


# ----------------------------------------------------------------------
# an authorizer's side
# ----------------------------------------------------------------------
@dataclass
class Offer:
    """A session the daemon gives a registered authorizer: speak the ordinary
    per-session protocol on ``sock`` (the shim greets first)."""

    id: int
    uid: int
    pid: int
    mode: str
    argv: str
    sock: socket.socket


class Registration:
    """``hello 1 role=authorizer ...`` on the daemon socket, then offers."""

    def __init__(self, name: str, *, path: str | None = None, scope: str = "user", trace: str | None = None,
                 events: str | None = None, signals: str | None = None, default: str | None = None,
                 deadline: float | None = None, timeout: float = CONNECT_TIMEOUT) -> None:
        got = connect("authorizer", path=path, timeout=timeout, name=name, scope=scope, trace=trace,
                      events=events, signals=signals, default=default, deadline=deadline)
        if got is None:
            raise DaemonError("no brokerd daemon is reachable (start one, or set BROKERD_SOCKET)")
        self.sock, self._lines, self.path = got
        self.name = name

    def fileno(self) -> int:
        return self.sock.fileno()

    def next_offer(self, timeout: float | None = None) -> Offer | None:
        """The next session (blocking); None when the daemon goes away."""
        while True:
            try:
                line = self._lines.readline(timeout)
            except ProtocolError:
                continue
            except TimeoutError:
                raise
            except OSError:
                return None
            if line is None:
                return None
            verb, rest = wire.split_verb(line)
            if verb != "session":
                continue
            sid, _, attrs = rest.partition(" ")
            a = wire.parse_attrs(attrs)
            fd = self._lines.take_fds(1)[0]
            return Offer(int(sid), int(a.get("uid", -1)), int(a.get("pid", 0)), a.get("mode", ""),
                         a.get("argv", ""), socket.socket(fileno=fd))

    def close(self) -> None:
        self.sock.close()
        self._lines.close_fds()


# ----------------------------------------------------------------------
# control requests
# ----------------------------------------------------------------------
def control(request: str, *, path: str | None = None, timeout: float = 5.0) -> object:
    """One control request; the ``ok`` object, ProtocolError for ``error``,
    DaemonError when no daemon is reachable."""
    got = connect("control", path=path, timeout=timeout)
    if got is None:
        paths, _ = wire.candidate_sockets()
        raise DaemonError("no brokerd daemon is running" + (f" (tried {', '.join(paths)})" if paths else "")
                          if paths else "no brokerd daemon: BROKERD_SOCKET=none")
    sock, lines, p = got
    try:
        sock.settimeout(timeout)
        sock.sendall(request.encode("ascii") + b"\n")
        answer = lines.readline(timeout)
        if answer is None:
            raise DaemonError(f"the brokerd daemon at {p} closed the connection")
        return wire.parse_answer(answer)
    except TimeoutError:
        raise DaemonError(f"the brokerd daemon at {p} did not answer within {timeout:g}s") from None
    finally:
        sock.close()
        lines.close_fds()


def from_args(args) -> DaemonSession | None:
    """The daemon session for ``brokerctl run``/``attach`` options, or None
    (no daemon reachable: embedded)."""
    mode = "attach" if getattr(args, "command", "run") == "attach" else "run"
    argv = list(getattr(args, "argv", None) or [])
    if argv and argv[0] == "--":
        argv = argv[1:]
    target = int(args.pid) if mode == "attach" and str(getattr(args, "pid", "")).isdigit() else 0
    return open_session(mode=mode, argv=argv, target=target, failure=getattr(args, "on_failure", None))


def _selection(trace: object) -> frozenset[str] | None:
    """A registered authorizer's ``trace=`` (checked by the daemon at
    registration); one the tables cannot resolve selects every call: such an
    authorizer is asked about everything rather than about nothing."""
    if trace in (None, ""):
        return None
    try:
        return parse_trace(str(trace))
    except TraceError:
        return None
