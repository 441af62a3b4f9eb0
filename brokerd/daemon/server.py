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
  they are waiting for sessions and for their program;
* what a peer can make the daemon hold is budgeted per uid (``quota``):
  connections, sessions, unfinished lines, audit records; running out of
  descriptors in ``accept`` backs off instead of ending the daemon, and no
  error in one connection's handler reaches the others.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import socket
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import trio

from brokerd.protocol.errors import ProtocolError
from brokerd.protocol.linebuf import LineBuffer, PartialLine, TooLong
from brokerd.protocol.selection import TraceError, parse_trace

from . import auditlog, wire
from .auditlog import AuditSink
from .quota import Ledger, Limits, LogBudget, OverBudget
from .registry import AuthorizerReg, Refused, Registry, SessionRec
from .sdnotify import JOURNAL_SOCKET

HELLO_TIMEOUT = 5.0
SEND_TIMEOUT = 2.0
CONTROL_IDLE = 300.0
RECV_SIZE = 16384
# accept() failing for want of descriptors or memory: back off, keep serving
OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_TRANSIENT = (errno.ECONNABORTED, errno.EINTR, errno.EPROTO, errno.EPERM)
ACCEPT_BACKOFF = (0.05, 1.0)  # first and longest pause after an accept failure
# registration attributes that logs and listings show: their longest values
SHOWN_ATTRS = {"name": 64, "trace": 8192, "events": 256, "signals": 16}


def attr_ok(value: str, longest: int) -> bool:
    """A value logs and root's terminal may show as is: printable ASCII."""
    return 0 < len(value) <= longest and all(" " <= c <= "~" for c in value)


_LIMITS = Limits()  # the defaults
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
    # per-uid budgets (quota.Limits; 0 = unlimited; root exempt unless limit_root)
    max_connections_per_uid: int = _LIMITS.connections
    max_sessions_per_uid: int = _LIMITS.sessions
    max_partial_bytes_per_uid: int = _LIMITS.partial_bytes
    audit_queue_per_uid: int = _LIMITS.audit_records
    audit_bytes_per_uid: int = _LIMITS.audit_bytes
    limit_root: bool = False

    def check(self) -> None:
        if self.default_failure not in wire.FAILURE_MODES:
            raise ValueError(f"default_failure must be one of {', '.join(wire.FAILURE_MODES)}")
        if not self.authorizer_deadline > 0:
            raise ValueError("authorizer_deadline must be positive")
        for key in ("max_connections_per_uid", "max_sessions_per_uid", "max_partial_bytes_per_uid",
                    "audit_queue_per_uid", "audit_bytes_per_uid"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must not be negative (0 = unlimited)")

    def limits(self) -> Limits:
        return Limits(connections=self.max_connections_per_uid, sessions=self.max_sessions_per_uid,
                      partial_bytes=self.max_partial_bytes_per_uid, audit_records=self.audit_queue_per_uid,
                      audit_bytes=self.audit_bytes_per_uid, root=self.limit_root)


class Conn:
    """One peer: a trio socket, a line reader with the protocol's limit, and
    a lock so that concurrent senders never interleave lines.  The bytes of
    its unfinished line are charged to its uid in the ledger (``held``)."""

    def __init__(self, sock: trio.socket.SocketType, pid: int, uid: int, gid: int,
                 ledger: Ledger | None = None) -> None:
        self.sock = sock
        self.pid, self.uid, self.gid = pid, uid, gid
        self._lines = LineBuffer()
        self._ready: deque = deque()
        self._lock = trio.Lock()
        self._ledger = ledger
        self.held = 0

    async def readline(self) -> bytes | None:
        """The next line, or None at the end of the stream; an over-long line
        raises ProtocolError (the stream stays usable); unfinished lines
        beyond the uid's budget raise OverBudget."""
        while not self._ready:
            data = await self.sock.recv(RECV_SIZE)
            if not data:
                self._lines.eof()
                self._ready.extend(self._lines)
                self._account()
                if not self._ready:
                    return None
                break
            self._lines.feed(data)
            self._ready.extend(self._lines)
            self._account()
        item = self._ready.popleft()
        if isinstance(item, TooLong):
            raise item.to_error()
        if isinstance(item, PartialLine):
            return None
        return item

    def _account(self) -> None:
        delta = self._lines.pending - self.held
        self.held = self._lines.pending
        if delta and self._ledger is not None:
            self._ledger.charge(self.uid, delta)

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
                 on_change: Callable[[], object] | None = None, only_uid: int | None = None) -> None:
        self.config = config
        self.listener = trio.socket.from_stdlib_socket(listener)
        self.registry = Registry()
        self.audit = AuditSink(self.log, config.limits())
        self._log = log or (lambda m: print(f"brokerd: {m}", file=sys.stderr, flush=True))
        self._on_change = on_change or (lambda: None)
        self.only_uid = only_uid  # a user's own daemon: only that uid (and root) may connect
        self.ledger = Ledger(config.limits())
        self._refusals = LogBudget()  # log lines about refused peers, all uids together
        self._accept_log = LogBudget(burst=1, period=10.0)
        self._raw_listener = listener
        self._reserve = self._reserve_fd()
        self._nursery: trio.Nursery | None = None
        self.apply_config(config)

    def log(self, msg: str) -> None:
        self._log(msg)

    # ------------------------------------------------------------------
    def apply_config(self, config: Config) -> None:
        was = self.audit.enabled
        self.config = config
        self.ledger.limits = self.audit.limits = config.limits()
        self.audit.configure(config.audit_log, config.audit_journal, config.journal_socket)
        if was != self.audit.enabled and self._nursery is not None:
            line = b"audit on\n" if self.audit.enabled else b"audit off\n"
            for s in list(self.registry.sessions.values()):
                self._nursery.start_soon(self._tell_session, s, line)

    async def _tell_session(self, s: SessionRec, line: bytes) -> None:
        try:
            await s.handle.send(line)
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
                await self._accept_loop(nursery)
            finally:
                self.audit.close()
                if self._reserve >= 0:
                    os.close(self._reserve)
                    self._reserve = -1

    async def _accept_loop(self, nursery: trio.Nursery) -> None:
        pause = ACCEPT_BACKOFF[0]
        while True:
            try:
                sock, _ = await self.listener.accept()
            except OSError as e:
                if e.errno in ACCEPT_TRANSIENT:
                    continue
                if e.errno not in OUT_OF_FDS:
                    raise
                self._out_of_fds(e)
                await trio.sleep(pause)
                pause = min(pause * 2, ACCEPT_BACKOFF[1])
                continue
            pause = ACCEPT_BACKOFF[0]
            nursery.start_soon(self._handle, sock)

    @staticmethod
    def _reserve_fd() -> int:
        """A descriptor kept spare so that, out of descriptors, the daemon can
        still accept a waiting peer to tell it why it is turned away."""
        try:
            return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return -1

    def _out_of_fds(self, e: OSError) -> None:
        """accept() failed for want of descriptors (or memory): turn away the
        peers waiting in the backlog with ``error busy`` (through the reserve
        descriptor) rather than leave them hanging; the caller backs off."""
        self.registry.counters["accept_failures"] += 1
        if self._accept_log.take():
            self.log(f"accept failed: {e.strerror}; {self.registry.counters['connections_open']} connection(s) "
                     f"open; turning new peers away until descriptors are free{self._accept_log.note()}")
        if self._reserve < 0:
            return
        os.close(self._reserve)
        self._reserve = -1
        try:
            for _ in range(128):
                try:
                    peer, _ = self._raw_listener.accept()
                except OSError:
                    break
                with peer:
                    peer.setblocking(False)
                    try:
                        peer.send(wire.error_line("busy", "the brokerd daemon is out of file descriptors; "
                                                  "try again later"))
                    except OSError:
                        pass
                self.registry.counters["refused"] += 1
        finally:
            self._reserve = self._reserve_fd()

    # ------------------------------------------------------------------
    async def _handle(self, sock: trio.socket.SocketType) -> None:
        with sock:
            try:
                pid, uid, gid = wire.peercred(sock)  # type: ignore[arg-type]
            except OSError:
                return
            self.registry.counters["connections"] += 1
            if not self.ledger.admit(uid):
                self._note_refusal(f"uid {uid} (pid {pid}): over its connection limit "
                                   f"({self.ledger.limits.connections})")
                await self._refuse(Conn(sock, pid, uid, gid), "busy",
                                   f"too many connections from uid {uid} (limit {self.ledger.limits.connections})")
                return
            conn = Conn(sock, pid, uid, gid, self.ledger)
            self.registry.counters["connections_open"] += 1
            try:
                await self._serve(conn)
            except PEER_GONE:
                pass
            except trio.TooSlowError:
                self.log(f"peer pid {pid} uid {uid} stopped reading; dropped")
            except OverBudget as e:
                self._note_refusal(f"pid {pid}: {e}; dropped")
                await self._refuse(conn, "busy", str(e))
            except Exception as e:  # a bug must not end the daemon (and every session's failure mode)
                self.log(f"internal error on the connection of pid {pid} uid {uid}; dropped: "
                         f"{type(e).__name__}: {wire.printable(str(e))}")
            finally:
                self.registry.counters["connections_open"] -= 1
                self.ledger.release(uid, conn.held)

    def _note_refusal(self, text: str) -> None:
        if self._refusals.take():
            self.log(f"refused {text}{self._refusals.note()}")

    async def _refuse(self, conn: Conn, code: str, text: str) -> None:
        self.registry.counters["refused"] += 1
        try:
            await conn.send(wire.error_line(code, text), timeout=1.0)
        except (*PEER_GONE, trio.TooSlowError):
            pass

    async def _opening(self, conn: Conn, what: str) -> bytes | None:
        """The peer's first line (its hello, a tracer's session request) within
        ``HELLO_TIMEOUT``; None when it sent a bad one or none in time (it was
        told why) or went away."""
        line = None
        with trio.move_on_after(HELLO_TIMEOUT) as cs:
            try:
                line = await conn.readline()
            except ProtocolError as e:
                await self._refuse(conn, e.code, e.message)
                return None
        if cs.cancelled_caught:
            await self._refuse(conn, "timeout", f"no {what} within {HELLO_TIMEOUT:g}s")
            return None
        return line

    async def _serve(self, conn: Conn) -> None:
        line = await self._opening(conn, "hello")
        if line is None:
            return
        if self.only_uid is not None and conn.uid not in (0, self.only_uid):
            await self._refuse(conn, "permission", f"this is the brokerd of uid {self.only_uid}")
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
        for key, longest in SHOWN_ATTRS.items():
            value = name if key == "name" else hello.get(key)
            if value is not None and not attr_ok(value, longest):
                await self._refuse(conn, "bad-hello", f"{key} must be 1-{longest} printable ASCII characters")
                return
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
        said = LogBudget()
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
                    if said.take():  # else counted, and reported with its next line
                        self.log(f"authorizer {reg.name!r} (id {reg.id}, uid {reg.uid}, pid {reg.pid}) says: "
                                 f"error {wire.printable(rest)}{said.note()}")
                else:
                    await conn.send(wire.error_line("unexpected", f"nothing to answer ({verb[:40]})"))
        finally:
            self.registry.unregister(reg)
            self.registry.counters["authorizers_lost"] += 1
            self.log(f"authorizer {reg.name!r} (id {reg.id}, pid {reg.pid}) disconnected; removed from the"
                     " registry (its sessions see their sockets close and give its questions the default)")
            self._on_change()

    async def _offer(self, reg: AuthorizerReg, s: SessionRec) -> socket.socket:
        """Make the socketpair for ``reg`` in session ``s``; send it its end.
        Returns the shim's end.  An authorizer that cannot take its end (gone,
        not reading) still gets its place in the stack, as one that died at
        once: the shim sees EOF and gives the calls it subscribed to its
        default.  Leaving it out would run the session without that policy."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        line = "session " + str(s.id) + " " + wire.format_attrs(
            [("uid", str(s.uid)), ("pid", str(s.pid)), ("mode", s.mode), ("argv", shlex.join(s.argv))])
        try:
            await reg.handle.send(line.encode("ascii") + b"\n", fds=[theirs.fileno()])
        except (*PEER_GONE, trio.TooSlowError) as e:
            self.log(f"authorizer {reg.name!r} (id {reg.id}) could not be given session {s.id}: "
                     f"{e or 'too slow'}; its calls in that session get its default ({reg.default})")
            return mine
        finally:
            theirs.close()
        reg.sessions_served += 1
        return mine

    # ------------------------------------------------------------------
    # tracers (shims)
    # ------------------------------------------------------------------
    async def _tracer(self, conn: Conn) -> None:
        await conn.send(wire.hello_line("broker", name="brokerd", version=VERSION))
        line = await self._opening(conn, "session request")
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
            target = wire.number(attrs.get("target", "0"))
            if target is None:
                raise Refused("bad-request", "target must be a pid")
            try:
                argv = shlex.split(attrs.get("argv", ""))
            except ValueError:
                argv = [attrs.get("argv", "")]
        except Refused as e:
            await self._refuse(conn, e.code, e.text)
            return
        try:
            s = self.registry.new_session(uid=conn.uid, gid=conn.gid, pid=conn.pid, mode=mode, failure=failure,
                                          argv=argv, target=target, limits=self.ledger.limits)
        except Refused as e:
            self._note_refusal(f"a session of pid {conn.pid}: {e.text}")
            await self._refuse(conn, e.code, e.text)
            return
        s.handle = conn
        ends: list[socket.socket] = []
        try:
            stack = []
            for reg in self.registry.applicable(conn.uid):
                ends.append(await self._offer(reg, s))
                s.stack.append((reg.id, reg.name))
                stack.append({
                    "id": reg.id, "name": reg.name, "scope": reg.scope, "uid": reg.uid,
                    "deadline": reg.deadline or self.config.authorizer_deadline,
                    "default": reg.default, "trace": reg.trace,
                })
            answer = {"id": s.id, "authorizers": len(stack), "stack": stack, "failure": failure,
                      "audit": self.audit.enabled}
            await conn.send(wire.ok_line(answer), fds=[end.fileno() for end in ends])
            for end in ends:
                end.close()
            ends = []
            self.log(f"session {s.id} started: uid {s.uid}, pid {s.pid}, {mode}, failure {failure}, "
                     f"{len(stack)} registered authorizer(s): {wire.printable(shlex.join(s.argv), 200)}")
            self._on_change()
            await self._session_loop(conn, s)
        finally:
            for end in ends:
                end.close()
            self.registry.end_session(s)
            self.log(f"session {s.id} ended" + (f" (status {s.exit_status})" if s.exit_status is not None else
                                               " (its broker went away)"))
            self._on_change()

    async def _session_loop(self, conn: Conn, s: SessionRec) -> None:
        said = LogBudget()
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
            elif verb == "pid":
                s.target = wire.number(rest) or s.target
            elif verb == "end":
                s.exit_status = wire.number(rest, signed=True)
                s.state = "ended"
            elif verb == "error":
                self._shim_error(s, rest, said)
            else:
                await conn.send(wire.error_line("unexpected", f"unknown tracer line ({verb[:40]})"))

    def _shim_error(self, s: SessionRec, text: str, said: LogBudget) -> None:
        """An ``error`` line from a session's shim (the session owner's own
        process): logged marked with its uid, escaped, bounded, rate-limited."""
        code, _, rest = text.partition(" ")
        n = wire.number(rest.split(" ", 1)[0])
        if code == "audit-dropped" and n is not None:
            self.audit.note_dropped(s.uid, n)
        if said.take():
            self.log(f"session {s.id} (uid {s.uid}, pid {s.pid}): its shim says: error {wire.printable(text)}"
                     f"{said.note()}")

    def _audit(self, s: SessionRec, text: str) -> None:
        s.audit_records += 1
        self.registry.counters["audit_records"] += 1
        try:
            claimed = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." 64 KiB deep
            return
        if isinstance(claimed, dict):
            self.audit.submit(s.uid, auditlog.record(s.id, s.uid, claimed))

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
            out["audit_dropped"] = self.audit.dropped_by_uid.get(uid, 0)
            if uid == 0:
                out["audit_written"] = self.audit.written
                out["audit_dropped"] = self.audit.dropped
                out["audit_dropped_by_uid"] = {str(u): n for u, n in sorted(self.audit.dropped_by_uid.items())}
                out["audit_queued_by_uid"] = {str(u): n for u, n in sorted(self.audit.queued().items())}
            return out
        if verb in ("detach", "kill"):
            s = r.session_for(uid, rest)
            if verb == "detach" and s.mode == "run":
                # a launched program carries the session's seccomp filter for
                # life: untraced, its brokered calls would fail with ENOSYS
                raise Refused("not-allowed", f"session {s.id} was started by brokerctl run: it cannot run "
                              "untraced (its seccomp filter stays); use kill, or let it finish")
            try:
                await s.handle.send(verb.encode() + b"\n")
            except trio.TooSlowError:
                raise Refused("timeout", f"session {s.id}'s broker did not take the command") from None
            except PEER_GONE:
                raise Refused("unknown-session", f"session {s.id} has just ended") from None
            s.state = "detaching" if verb == "detach" else "killing"
            self.log(f"session {s.id}: {verb} requested by uid {uid} (pid {conn.pid})")
            return {"id": s.id, "sent": verb}
        raise Refused("unknown-command", f"unknown request {verb[:40]!r} (sessions, authorizers, detach ID,"
                      " kill ID, stats)")
