"""Landlock's own denials (kernel audit records) in brokerd's journal.

A call a Landlock layer settles never stops, so the per-call journal never
sees it.  Landlock ABI 7 reports each denial to the kernel's audit subsystem
when audit is enabled: ``AUDIT_LANDLOCK_ACCESS`` (the domain, what blocked,
the path), ``AUDIT_LANDLOCK_DOMAIN`` once per domain (the pid that made it)
and the ``AUDIT_SYSCALL`` record of the same event (pid, call number, result).
Root (CAP_AUDIT_READ) can read them all from the ``AUDIT_NLGRP_READLOG``
netlink group.  Parsing and correlating are pure functions and one small
state object (:class:`Correlator`); :func:`open_readlog` is the only I/O.
"""

from __future__ import annotations

import errno
import os
import re
import select
import socket
import struct
import time
from collections.abc import Callable

from brokerd.protocol.abi import abi_from_audit

NETLINK_AUDIT = 9
AUDIT_GET = 1000
AUDIT_SET = 1001
AUDIT_SYSCALL = 1300
AUDIT_EOE = 1320
AUDIT_LANDLOCK_ACCESS = 1423
AUDIT_LANDLOCK_DOMAIN = 1424
AUDIT_NLGRP_READLOG = 1
AUDIT_STATUS_ENABLED = 1
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
_NLMSGHDR = struct.Struct("=IHHII")
#: struct audit_status up to backlog_wait_time (the fields AUDIT_GET/SET use here)
_STATUS = struct.Struct("=10I")
#: fields whose values the kernel writes as untrusted strings: "quoted", or hex when unsafe
_UNTRUSTED = frozenset({"path", "exe", "comm", "name", "proctitle"})
_HEAD = re.compile(r"audit\((\d+\.\d+):(\d+)\):\s*")
_FIELD = re.compile(r'(\w+)=("[^"]*"|\S*)')


def parse_record(text: str) -> tuple[int, dict[str, str]]:
    """One record's text (``audit(T:SERIAL): k=v ...``) as its event serial
    and fields; untrusted strings decoded (quoted, or hex when they hold
    spaces or control bytes).  Raises ValueError on text of another shape."""
    m = _HEAD.match(text)
    if m is None:
        raise ValueError(f"not an audit record: {text[:60]!r}")
    fields: dict[str, str] = {}
    for key, value in _FIELD.findall(text, m.end()):
        if value.startswith('"'):
            value = value[1:-1]
        elif key in _UNTRUSTED and value and re.fullmatch(r"(?:[0-9A-F]{2})+", value):
            value = bytes.fromhex(value).decode("utf-8", "surrogateescape")
        fields.setdefault(key, value)
    return int(m.group(2)), fields


def call_name(arch: str, nr: str) -> str:
    """The syscall's name from a SYSCALL record's hex arch and decimal number
    (the ABI tables, brokerd.protocol.abi); ``syscall_N`` if unknown."""
    try:
        a, n = int(arch, 16), int(nr)
    except ValueError:
        return "?"
    abi = abi_from_audit(a, n)
    spec = abi.by_nr.get(n & ~abi.nr_bit) if abi is not None else None
    return spec.name if spec is not None else f"syscall_{n}"


def verdict(syscall: dict[str, str]) -> str:
    """The call's result as a journal verdict: ``fail EACCES`` from ``exit=-13``
    (what the kernel gave the program; ``cont`` if the call succeeded anyway)."""
    try:
        ret = int(syscall.get("exit", "0"))
    except ValueError:
        return "fail EACCES"
    if ret < 0 and -ret in errno.errorcode:
        return f"fail {errno.errorcode[-ret]}"
    return "fail EACCES" if syscall.get("success") == "no" else "cont"


class LandlockDenial:
    """A Landlock denial as the journal writes it: the per-call record's
    fields, ``by: "landlock"``, plus the blockers, path and domain."""

    __slots__ = ("obj",)

    def __init__(self, obj: dict) -> None:
        self.obj = obj

    def to_json(self) -> dict:
        return dict(self.obj)


class Correlator:
    """Groups one event's records (by serial) and keeps the session's domains.

    ``ours(pid)`` says whether a pid is one of the session's processes: a
    domain is the session's when its DOMAIN record's pid is (that record
    comes with the domain's first denial).  ACCESS records of other domains
    (other sessions, other programs) are dropped."""

    def __init__(self, ours: Callable[[int], bool]) -> None:
        self.ours = ours
        self.domains: dict[str, bool] = {}
        self._pending: dict[int, list[dict[str, str]]] = {}

    def feed(self, rtype: int, text: str) -> list[LandlockDenial]:
        """One record in; the denials it completes out (at the event's SYSCALL
        or EOE record; :meth:`flush` for events that have none)."""
        try:
            serial, f = parse_record(text)
        except ValueError:
            return []
        if rtype == AUDIT_LANDLOCK_DOMAIN:
            if "pid" in f and f.get("domain"):
                self.domains[f["domain"]] = _int(f["pid"]) > 0 and self.ours(_int(f["pid"]))
        elif rtype == AUDIT_LANDLOCK_ACCESS:
            self._pending.setdefault(serial, []).append(f)
        elif rtype in (AUDIT_SYSCALL, AUDIT_EOE) and serial in self._pending:
            return self._emit(self._pending.pop(serial), f if rtype == AUDIT_SYSCALL else {})
        return []

    def flush(self) -> list[LandlockDenial]:
        """Denials still waiting for their SYSCALL record (audit had no
        syscall context for them): out with what is known."""
        out: list[LandlockDenial] = []
        for serial in list(self._pending):
            out += self._emit(self._pending.pop(serial), {})
        return out

    def _emit(self, accesses: list[dict[str, str]], sc: dict[str, str]) -> list[LandlockDenial]:
        out = []
        for a in accesses:
            if not self.domains.get(a.get("domain", "")):
                continue
            pid = _int(sc.get("pid", "0"))
            obj = {"v": 1, "time": round(time.time(), 6), "pid": pid, "tid": pid,
                   "call": call_name(sc.get("arch", ""), sc.get("syscall", "")) if sc else "?",
                   "verdict": verdict(sc) if sc else "fail EACCES", "by": "landlock",
                   "blockers": a.get("blockers", ""), "domain": a.get("domain", "")}
            for key in ("path", "dev"):
                if key in a:
                    obj[key] = a[key]
            if a.get("ino", "").isdigit():
                obj["ino"] = int(a["ino"])
            out.append(LandlockDenial(obj))
        return out


def _int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        return 0


def _request(sock: socket.socket, mtype: int, payload: bytes) -> bytes:
    """One AUDIT_GET/AUDIT_SET request to the kernel; its reply's payload."""
    sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(payload), mtype, NLM_F_REQUEST | NLM_F_ACK, 1, 0) + payload)
    while True:
        data = sock.recv(65536)
        _ln, t, _f, _s, _p = _NLMSGHDR.unpack_from(data)
        body = data[_NLMSGHDR.size:]
        if t == NLMSG_ERROR:
            err = struct.unpack_from("=i", body)[0]
            if err:
                raise OSError(-err, os.strerror(-err))
            if mtype == AUDIT_SET:
                return b""
            continue
        if t == mtype or mtype == AUDIT_GET:
            return body


def audit_enabled() -> int:
    """The kernel's audit_enabled (0 off, 1 on, 2 locked); raises OSError
    where audit cannot be asked (no CAP_AUDIT_CONTROL, no audit)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT) as s:
        body = _request(s, AUDIT_GET, b"")
        return struct.unpack_from("=II", body)[1]


def set_audit_enabled(on: int) -> None:
    """AUDIT_SET enabled=on: machine-wide (tests only; brokerd never calls it)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT) as s:
        _request(s, AUDIT_SET, _STATUS.pack(AUDIT_STATUS_ENABLED, on, *([0] * 8)))


def open_readlog() -> socket.socket | None:
    """The READLOG multicast socket, non-blocking; None where the records
    cannot come (not root / no CAP_AUDIT_READ, audit off, no netlink audit)."""
    try:
        if audit_enabled() == 0:
            return None
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
    except OSError:
        return None
    try:
        s.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
        s.setblocking(False)
    except OSError:
        s.close()
        return None
    return s


def read_records(sock: socket.socket) -> list[tuple[int, str]]:
    """Every record waiting on the socket, as (type, text)."""
    out: list[tuple[int, str]] = []
    while True:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return out
        except OSError:  # ENOBUFS: the kernel dropped some; the next ones still come
            return out
        off = 0
        while off + _NLMSGHDR.size <= len(data):
            ln, t, _f, _s, _p = _NLMSGHDR.unpack_from(data, off)
            if ln < _NLMSGHDR.size:
                break
            out.append((t, data[off + _NLMSGHDR.size:off + ln].decode("utf-8", "replace").rstrip("\0\n")))
            off += (ln + 3) & ~3


def drain(sock: socket.socket, feed: Callable[[int, str], None], quiet: float = 0.05, cap: float = 0.5) -> None:
    """At the session's end: the kernel's audit thread delivers records a
    little after the calls; read until it has been quiet ``quiet`` seconds
    (at most ``cap`` in all)."""
    end = time.monotonic() + cap
    while time.monotonic() < end:
        r, _, _ = select.select([sock], [], [], quiet)
        if not r:
            return
        for t, text in read_records(sock):
            feed(t, text)
