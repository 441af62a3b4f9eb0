"""The brokerd daemon's control plane, written with trio.

The daemon is not on the decision path: for each session it hands the shim
one end of a fresh socketpair per applicable registered authorizer and the
authorizer the other end; decisions then flow shim <-> authorizer directly.
What stays here: the registry (authorizers, sessions), access control,
steering (detach, kill), statistics and the audit trail.

Structure (every task has an owner):

* ``Server.run`` owns a nursery with the accept loop, the audit writer and
  one handler task per connection;
* a connection handler owns its socket (closed when the task ends, however it
  ends) and registers what it creates (an authorizer registration, a session)
  in ``try/finally`` so that the registry never outlives the connection;
* every wait on a peer has a timeout: the opening ``hello`` and the
  ``session`` request (``HELLO_TIMEOUT``), each send to a peer
  (``SEND_TIMEOUT``), an idle control connection (``CONTROL_IDLE``).
  Registered authorizers and tracers may stay idle as long as they like:
  they are waiting for sessions and for their program.
"""

from __future__ import annotations

import json
import shlex
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import trio

from brokerd.protocol.errors import ProtocolError
from brokerd.protocol.linebuf import LineBuffer, PartialLine, TooLong
from brokerd.protocol.selection import TraceError, parse_trace

from . import wire
from .auditlog import AuditSink
from .registry import AuthorizerReg, Refused, Registry, SessionRec
from .sdnotify import JOURNAL_SOCKET

HELLO_TIMEOUT = 5.0
SEND_TIMEOUT = 2.0
CONTROL_IDLE = 300.0
MAX_CONNECTIONS_PER_UID = 512
PEER_GONE = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)

try:
    from importlib.metadata import version as _version

    VERSION = _version("brokerd")
except Exception:  # pragma: no cover - not installed
    VERSION = "0"


@dataclass
class Config:
    """What the daemon reads from its configuration file (reloaded on SIGHUP)."""

    socket_group: str | None = None  # None: "brokerd" if that group exists
    socket_mode: int | None = None  # None: 0660 with a group, 0666 without (root); 0600 (user)
    audit_log: str | None = None
    audit_journal: bool = False
    journal_socket: str = JOURNAL_SOCKET
    default_failure: str = "kill"
    authorizer_deadline: float = 5.0

    def check(self) -> None:
        if self.default_failure not in wire.FAILURE_MODES:
            raise ValueError(f"default_failure must be one of {', '.join(wire.FAILURE_MODES)}")
        if not self.authorizer_deadline > 0:
            raise ValueError("authorizer_deadline must be positive")


class Conn:
    """One peer: a trio socket, a line reader with the protocol's limit, and
    a lock so that concurrent senders never interleave lines."""

    def __init__(self, sock: trio.socket.SocketType, pid: int, uid: int, gid: int) -> None:
        self.sock = sock
        self.pid, self.uid, self.gid = pid, uid, gid
        self._lines = LineBuffer()
        self._ready: deque = deque()
        self._lock = trio.Lock()

    async def readline(self) -> bytes | None:
        """The next line, or None at the end of the stream; an over-long line
        raises ProtocolError (the stream stays usable)."""
        while not self._ready:
            data = await self.sock.recv(65536)
            if not data:
                self._lines.eof()
                self._ready.extend(self._lines)
                if not self._ready:
                    return None
                break
            self._lines.feed(data)
            self._ready.extend(self._lines)
        item = self._ready.popleft()
        if isinstance(item, TooLong):
            raise item.to_error()
        if isinstance(item, PartialLine):
            return None
        return item

    async def send(self, data: bytes, fds: list[int] | None = None, timeout: float = SEND_TIMEOUT) -> None:
        """Send ``data`` (the descriptors attached to its first byte); raises
        trio.TooSlowError when the peer does not take it in time, after which
        the connection is closed (a line may have been cut)."""
        try:
            with trio.fail_after(timeout):
                async with self._lock:
                    anc = wire.fds_ancillary(fds or [])
                    view = memoryview(data)
                    while view:
                        n = await (self.sock.sendmsg([view], anc) if anc else self.sock.send(view))
                        anc = []
                        view = view[n:]
        except trio.TooSlowError:
            self.close()
            raise

    def close(self) -> None:
        self.sock.close()


class Server:
    def __init__(self, config: Config, listener: socket.socket, *, log: Callable[[str], None] | None = None,
                 on_change: Callable[[], None] | None = None, only_uid: int | None = None) -> None:
        self.config = config
        self.listener = trio.socket.from_stdlib_socket(listener)
        self.registry = Registry()
        self.audit = AuditSink(self.log)
        self._log = log or (lambda m: print(f"brokerd: {m}", file=sys.stderr, flush=True))
        self._on_change = on_change or (lambda: None)
        self.only_uid = only_uid  # a user's own daemon: only that uid (and root) may connect
        self._per_uid: dict[int, int] = {}
        self._nursery: trio.Nursery | None = None
        self.apply_config(config)

    def log(self, msg: str) -> None:
        self._log(msg)

    # ------------------------------------------------------------------
    def apply_config(self, config: Config) -> None:
        was = self.audit.enabled
        self.config = config
        self.audit.configure(config.audit_log, config.audit_journal, config.journal_socket)
        if was != self.audit.enabled and self._nursery is not None:
            line = b"audit on\n" if self.audit.enabled else b"audit off\n"
            for s in list(self.registry.sessions.values()):
                self._nursery.start_soon(self._tell_session, s, line)

    async def _tell_session(self, s: SessionRec, line: bytes) -> None:
        try:
            await s.handle.send(line)  # type: ignore[union-attr]
        except (*PEER_GONE, trio.TooSlowError):
            pass

    def status(self) -> str:
        r = self.registry
        return f"{len(r.sessions)} session(s), {len(r.authorizers)} authorizer(s)"

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.audit.run)
            task_status.started()
            try:
                while True:
                    sock, _ = await self.listener.accept()
                    nursery.start_soon(self._handle, sock)
            finally:
                self.audit.close()

    # ------------------------------------------------------------------
    async def _handle(self, sock: trio.socket.SocketType) -> None:
        with sock:
            try:
                pid, uid, gid = wire.peercred(sock)  # type: ignore[arg-type]
            except OSError:
                return
            conn = Conn(sock, pid, uid, gid)
            n = self._per_uid.get(uid, 0)
            self._per_uid[uid] = n + 1
            self.registry.counters["connections"] += 1
            try:
                await self._serve(conn)
            except PEER_GONE:
                pass
            except trio.TooSlowError:
                self.log(f"peer pid {pid} uid {uid} stopped reading; dropped")
            finally:
                self._per_uid[uid] -= 1
                if not self._per_uid[uid]:
                    del self._per_uid[uid]

    async def _refuse(self, conn: Conn, code: str, text: str) -> None:
        self.registry.counters["refused"] += 1
        try:
            await conn.send(wire.error_line(code, text), timeout=1.0)
        except (*PEER_GONE, trio.TooSlowError):
            pass

    async def _serve(self, conn: Conn) -> None:
        with trio.move_on_after(HELLO_TIMEOUT) as cs:
            try:
                line = await conn.readline()
            except ProtocolError as e:
                await self._refuse(conn, e.code, e.message)
                return
        if cs.cancelled_caught:
            await self._refuse(conn, "timeout", f"no hello within {HELLO_TIMEOUT:g}s")
            return
        if line is None:
            return
        if self.only_uid is not None and conn.uid not in (0, self.only_uid):
            await self._refuse(conn, "permission", f"this is the brokerd of uid {self.only_uid}")
            return
        if self._per_uid[conn.uid] > MAX_CONNECTIONS_PER_UID:
            await self._refuse(conn, "busy", f"too many connections from uid {conn.uid}")
            return
        try:
            hello = wire.parse_hello(line)
        except ProtocolError as e:
            await self._refuse(conn, e.code, e.message)
            return
        role = hello.get("role")
        if role == "authorizer":
            await self._authorizer(conn, hello)
        elif role == "tracer":
            await self._tracer(conn)
        elif role == "control":
            await conn.send(wire.hello_line("broker", name="brokerd", version=VERSION))
            await self._control(conn)
        else:
            await self._refuse(conn, "bad-hello", f"unknown role {role!r} (authorizer, tracer or control)")

    # ------------------------------------------------------------------
    # authorizers
    # ------------------------------------------------------------------
    async def _authorizer(self, conn: Conn, hello) -> None:
        name = hello.get("name") or f"pid{conn.pid}"
        deadline = None
        try:
            if hello.get("deadline") is not None:
                deadline = float(hello.get("deadline"))
                if not 0 < deadline <= 3600:
                    raise ValueError
        except ValueError:
            await self._refuse(conn, "bad-hello", "deadline must be seconds, 0 < deadline <= 3600")
            return
        try:
            parse_trace(hello.get("trace") or "all")
        except TraceError as e:
            await self._refuse(conn, "bad-hello", f"trace: {e}")
            return
        default = hello.get("default") or "deny"
        if default not in ("deny", "allow", "kill"):
            await self._refuse(conn, "bad-hello", "default must be deny, allow or kill")
            return
        try:
            reg = self.registry.register(
                name=name, scope=hello.get("scope") or "user", uid=conn.uid, gid=conn.gid, pid=conn.pid,
                trace=hello.get("trace"), events=hello.get("events"), signals=hello.get("signals"),
                default=default, deadline=deadline,
            )
        except Refused as e:
            await self._refuse(conn, e.code, e.text)
            return
        reg.handle = conn
        self.log(f"authorizer {reg.name!r} registered: id {reg.id}, scope {reg.scope}, uid {reg.uid}, pid {reg.pid}")
        self._on_change()
        try:
            await conn.send(wire.hello_line("broker", name="brokerd", version=VERSION, id=reg.id))
            while True:
                try:
                    line = await conn.readline()
                except ProtocolError as e:
                    await conn.send(wire.error_line(e.code, e.message))
                    continue
                if line is None:
                    break
                verb, rest = wire.split_verb(line)
                if verb == "error":
                    self.log(f"authorizer {reg.name!r} (id {reg.id}) says: {rest}")
                else:
                    await conn.send(wire.error_line("unexpected", f"nothing to answer ({verb[:40]})"))
        finally:
            self.registry.unregister(reg)
            self.registry.counters["authorizers_lost"] += 1
            self.log(f"authorizer {reg.name!r} (id {reg.id}, pid {reg.pid}) disconnected; removed from the"
                     " registry (its sessions see their sockets close and give its questions the default)")
            self._on_change()

    async def _offer(self, reg: AuthorizerReg, s: SessionRec) -> socket.socket | None:
        """Make the socketpair for ``reg`` in session ``s``; send it its end.
        Returns the shim's end, or None if the authorizer did not take it."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        line = "session " + str(s.id) + " " + wire.format_attrs(
            [("uid", str(s.uid)), ("pid", str(s.pid)), ("mode", s.mode), ("argv", shlex.join(s.argv))])
        try:
            await reg.handle.send(line.encode("ascii") + b"\n", fds=[theirs.fileno()])  # type: ignore[union-attr]
        except (*PEER_GONE, trio.TooSlowError) as e:
            self.log(f"authorizer {reg.name!r} (id {reg.id}) could not be given session {s.id}: {e or 'too slow'}")
            mine.close()
            return None
        finally:
            theirs.close()
        reg.sessions_served += 1
        return mine

    # ------------------------------------------------------------------
    # tracers (shims)
    # ------------------------------------------------------------------
    async def _tracer(self, conn: Conn) -> None:
        await conn.send(wire.hello_line("broker", name="brokerd", version=VERSION))
        with trio.move_on_after(HELLO_TIMEOUT) as cs:
            try:
                line = await conn.readline()
            except ProtocolError as e:
                await self._refuse(conn, e.code, e.message)
                return
        if cs.cancelled_caught:
            await self._refuse(conn, "timeout", f"no session request within {HELLO_TIMEOUT:g}s")
            return
        if line is None:
            return
        verb, rest = wire.split_verb(line)
        try:
            if verb != "session":
                raise Refused("bad-request", "a tracer asks for: session mode=run|attach failure=...")
            try:
                attrs = wire.parse_attrs(rest)
            except ProtocolError as e:
                raise Refused(e.code, e.message) from None
            mode = attrs.get("mode", "run")
            failure = attrs.get("failure") or self.config.default_failure
            if mode not in ("run", "attach"):
                raise Refused("bad-request", "mode must be run or attach")
            if failure not in wire.FAILURE_MODES:
                raise Refused("bad-request", "failure must be kill, deny or allow")
            target = attrs.get("target", "0")
            if not target.isdigit():
                raise Refused("bad-request", "target must be a pid")
            try:
                argv = shlex.split(attrs.get("argv", ""))
            except ValueError:
                argv = [attrs.get("argv", "")]
        except Refused as e:
            await self._refuse(conn, e.code, e.text)
            return
        s = self.registry.new_session(uid=conn.uid, gid=conn.gid, pid=conn.pid, mode=mode, failure=failure,
                                      argv=argv, target=int(target))
        s.handle = conn
        ends: list[socket.socket] = []
        try:
            stack = []
            for reg in self.registry.applicable(conn.uid):
                end = await self._offer(reg, s)
                if end is None:
                    continue
                ends.append(end)
                s.stack.append((reg.id, reg.name))
                stack.append({
                    "id": reg.id, "name": reg.name, "scope": reg.scope, "uid": reg.uid,
                    "deadline": reg.deadline or self.config.authorizer_deadline,
                    "default": reg.default, "trace": reg.trace,
                })
            answer = {"id": s.id, "authorizers": len(stack), "stack": stack, "failure": failure,
                      "audit": self.audit.enabled}
            await conn.send(wire.ok_line(answer), fds=[e.fileno() for e in ends])
            for e in ends:
                e.close()
            ends = []
            self.log(f"session {s.id} started: uid {s.uid}, pid {s.pid}, {mode}, failure {failure}, "
                     f"{len(stack)} registered authorizer(s): {shlex.join(s.argv)[:200]}")
            self._on_change()
            await self._session_loop(conn, s)
        finally:
            for e in ends:
                e.close()
            self.registry.end_session(s)
            self.log(f"session {s.id} ended" + (f" (status {s.exit_status})" if s.exit_status is not None else
                                               " (its broker went away)"))
            self._on_change()

    async def _session_loop(self, conn: Conn, s: SessionRec) -> None:
        while True:
            try:
                line = await conn.readline()
            except ProtocolError:
                continue
            if line is None:
                return
            verb, rest = wire.split_verb(line)
            if verb == "audit":
                self._audit(s, rest)
            elif verb == "pid" and rest.isdigit():
                s.target = int(rest)
            elif verb == "end":
                s.exit_status = int(rest) if rest.lstrip("-").isdigit() else None
                s.state = "ended"
            elif verb == "error":
                self.log(f"session {s.id}: the shim says: {rest}")
            else:
                await conn.send(wire.error_line("unexpected", f"unknown tracer line ({verb[:40]})"))

    def _audit(self, s: SessionRec, text: str) -> None:
        s.audit_records += 1
        self.registry.counters["audit_records"] += 1
        try:
            rec = json.loads(text)
            if not isinstance(rec, dict):
                raise ValueError
        except ValueError:
            return
        out = {"time": rec.get("time", time.time()), "session": s.id, "uid": s.uid}
        for k in ("pid", "tid", "call", "event", "verdict", "by", "latency_us", "reason"):
            if k in rec:
                out[k] = rec[k]
        self.audit.submit(out)

    # ------------------------------------------------------------------
    # control clients
    # ------------------------------------------------------------------
    async def _control(self, conn: Conn) -> None:
        while True:
            with trio.move_on_after(CONTROL_IDLE):
                try:
                    line = await conn.readline()
                except ProtocolError as e:
                    await conn.send(wire.error_line(e.code, e.message))
                    continue
                if line is None:
                    return
                verb, rest = wire.split_verb(line)
                try:
                    result = await self._request(conn, verb, rest)
                except Refused as e:
                    await conn.send(wire.error_line(e.code, e.text))
                else:
                    await conn.send(wire.ok_line(result))
                continue
            return  # idle too long

    async def _request(self, conn: Conn, verb: str, rest: str) -> object:
        uid = conn.uid
        r = self.registry
        if verb == "sessions":
            return [s.info(r) for s in r.visible_sessions(uid)]
        if verb == "authorizers":
            return [a.info() for a in r.visible_authorizers(uid)]
        if verb == "stats":
            out = r.stats(uid)
            out["version"] = VERSION
            if uid == 0:
                out["audit_written"] = self.audit.written
                out["audit_dropped"] = r.counters["audit_dropped"] + self.audit.dropped
            return out
        if verb in ("detach", "kill"):
            s = r.session_for(uid, rest)
            if verb == "detach" and s.mode == "run":
                # a launched program carries the session's seccomp filter for
                # life: untraced, its brokered calls would fail with ENOSYS
                raise Refused("not-allowed", f"session {s.id} was started by brokerctl run: it cannot run "
                              "untraced (its seccomp filter stays); use kill, or let it finish")
            try:
                await s.handle.send(verb.encode() + b"\n")  # type: ignore[union-attr]
            except trio.TooSlowError:
                raise Refused("timeout", f"session {s.id}'s broker did not take the command") from None
            except PEER_GONE:
                raise Refused("unknown-session", f"session {s.id} has just ended") from None
            s.state = "detaching" if verb == "detach" else "killing"
            self.log(f"session {s.id}: {verb} requested by uid {uid} (pid {conn.pid})")
            return {"id": s.id, "sent": verb}
        raise Refused("unknown-command", f"unknown request {verb[:40]!r} (sessions, authorizers, detach ID,"
                      " kill ID, stats)")
