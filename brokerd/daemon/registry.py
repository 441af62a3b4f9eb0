"""The daemon's state, without I/O: registered authorizers, live sessions,
who may see and steer what, and which authorizers a session gets.

Access rules (docs/daemon.md, "Access control"):

* a session belongs to the uid of the shim that asked for it (SO_PEERCRED);
  a user sees and steers only their own sessions, root sees all;
* ``scope=system`` registrations need uid 0; every session gets them, nearest
  the kernel (last in the stack);
* a ``scope=user`` registration serves only sessions of the uid that made it,
  so one user's events never reach another user's authorizer;
* a user sees their own registrations and the system ones (those watch their
  sessions too); root sees all;
* a uid holds at most ``Limits.sessions`` sessions at once (each one makes
  every system authorizer start a process, typically as root).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import wire
from .quota import Limits

SCOPES = ("user", "system")


class Refused(Exception):
    """A request the daemon answers with ``error CODE text``."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass(slots=True, eq=False)
class AuthorizerReg:
    id: int
    name: str
    scope: str
    uid: int
    gid: int
    pid: int
    trace: str | None = None  # as registered: "openat,connect", "all" or None
    events: str | None = None
    signals: str | None = None
    default: str = "deny"
    deadline: float | None = None  # seconds; None: the daemon's
    registered: float = field(default_factory=time.time)
    sessions_served: int = 0
    handle: object = None  # the server's connection object

    def info(self) -> dict:
        return {
            "id": self.id, "name": self.name, "scope": self.scope, "uid": self.uid, "pid": self.pid,
            "trace": self.trace or "all", "default": self.default, "deadline": self.deadline,
            "registered": self.registered, "sessions": self.sessions_served,
        }


@dataclass(slots=True, eq=False)
class SessionRec:
    id: int
    uid: int
    gid: int
    pid: int  # the shim (brokerctl) process
    mode: str
    failure: str
    argv: list[str]
    target: int = 0  # the traced program, once known
    started: float = field(default_factory=time.time)
    stack: list[tuple[int, str]] = field(default_factory=list)  # (registration id, name)
    audit_records: int = 0
    state: str = "running"  # running | detaching | killing | ended
    exit_status: int | None = None
    handle: object = None

    def info(self, registry: Registry) -> dict:
        return {
            "id": self.id, "uid": self.uid, "pid": self.pid, "target": self.target, "mode": self.mode,
            "failure": self.failure, "argv": self.argv, "started": self.started, "state": self.state,
            "authorizers": [
                {"id": rid, "name": name, "alive": rid in registry.authorizers} for rid, name in self.stack
            ],
            "audit_records": self.audit_records,
        }


class Registry:
    def __init__(self) -> None:
        self.authorizers: dict[int, AuthorizerReg] = {}
        self.sessions: dict[int, SessionRec] = {}
        self._next_auth = 1
        self._next_session = 1
        self.started = time.time()
        self.counters = {
            "sessions_total": 0, "authorizers_total": 0, "authorizers_lost": 0,
            "audit_records": 0, "connections": 0, "refused": 0,
            "connections_open": 0, "accept_failures": 0, "sessions_refused": 0,
        }

    # -- authorizers --------------------------------------------------------
    def register(self, *, name: str, scope: str, uid: int, gid: int, pid: int, **kw) -> AuthorizerReg:
        if scope not in SCOPES:
            raise Refused("bad-hello", f"scope must be user or system, not {scope!r}")
        if scope == "system" and uid != 0:
            raise Refused("permission", "scope=system needs uid 0 (root)")
        reg = AuthorizerReg(self._next_auth, name, scope, uid, gid, pid, **kw)
        self._next_auth += 1
        self.authorizers[reg.id] = reg
        self.counters["authorizers_total"] += 1
        return reg

    def unregister(self, reg: AuthorizerReg) -> bool:
        return self.authorizers.pop(reg.id, None) is not None

    def applicable(self, owner_uid: int) -> list[AuthorizerReg]:
        """The registered part of a session's stack, in order: the owner's
        own (scope=user) in registration order, then root's system ones."""
        regs = sorted(self.authorizers.values(), key=lambda r: r.id)
        own = [r for r in regs if r.scope == "user" and r.uid == owner_uid]
        system = [r for r in regs if r.scope == "system" and r.uid == 0]
        return own + system

    def visible_authorizers(self, uid: int) -> list[AuthorizerReg]:
        regs = sorted(self.authorizers.values(), key=lambda r: r.id)
        if uid == 0:
            return regs
        return [r for r in regs if r.uid == uid or r.scope == "system"]

    # -- sessions -----------------------------------------------------------
    def new_session(self, *, limits: Limits | None = None, **kw) -> SessionRec:
        """Record a session of ``kw["uid"]``; Refused (``busy``) when that uid
        already holds its limit of sessions."""
        uid = kw["uid"]
        if limits is not None and limits.sessions:
            held = sum(1 for s in self.sessions.values() if s.uid == uid)
            if limits.over(uid, held + 1, limits.sessions):
                self.counters["sessions_refused"] += 1
                raise Refused("busy", f"uid {uid} already has {held} sessions open (the limit is "
                              f"{limits.sessions}: max_sessions_per_uid)")
        s = SessionRec(self._next_session, **kw)
        self._next_session += 1
        self.sessions[s.id] = s
        self.counters["sessions_total"] += 1
        return s

    def end_session(self, s: SessionRec) -> None:
        self.sessions.pop(s.id, None)

    def visible_sessions(self, uid: int) -> list[SessionRec]:
        return sorted((s for s in self.sessions.values() if uid == 0 or s.uid == uid), key=lambda s: s.id)

    def session_for(self, uid: int, text: str) -> SessionRec:
        """The session ``text`` names, if ``uid`` may steer it.  Another
        user's session is reported exactly like a missing one."""
        n = wire.number(text)
        if n is None:
            raise Refused("bad-request", f"session id must be a number, not {text[:40]!r}")
        s = self.sessions.get(n)
        if s is None or (uid != 0 and s.uid != uid):
            raise Refused("unknown-session", f"no session {n}")
        return s

    def stats(self, uid: int) -> dict:
        """Counts the caller may know: their own sessions and the authorizers
        they can see; the daemon-wide counters only for root."""
        out: dict = {
            "uptime": round(time.time() - self.started, 3),
            "sessions": len(self.visible_sessions(uid)),
            "authorizers": len(self.visible_authorizers(uid)),
        }
        if uid == 0:
            out.update(self.counters)
        return out
