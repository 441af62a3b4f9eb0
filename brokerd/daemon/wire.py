"""The daemon socket's dialects: small helpers both ends share.

Every line on the daemon socket is a protocol v1 line (printable ASCII, LF,
at most 64 KiB).  Peers open with ``hello 1 role=authorizer|tracer|control``;
the daemon answers ``hello 1 role=broker ...`` or ``error CODE text``.  After
that each dialect has a few verbs (docs/daemon.md is the reference):

* daemon -> authorizer: ``session ID uid=U pid=P mode=M argv="..."`` with one
  descriptor attached (SCM_RIGHTS): the authorizer's end of a socketpair whose
  other end the session's shim holds.
* tracer -> daemon: ``session mode=run|attach [failure=MODE] [argv="..."]
  [target=PID]``, answered ``ok JSON`` with one descriptor per authorizer in the
  JSON's ``stack`` attached; then ``pid P``, ``audit JSON``, ``end STATUS``
  (unanswered).  daemon -> tracer: ``detach``, ``kill``, ``audit on|off``.
* control -> daemon: ``sessions``, ``authorizers``, ``detach ID``, ``kill ID``,
  ``stats``, each answered by one ``ok JSON`` or ``error CODE text``.

Attribute lists (``KEY=VALUE ...``) use exactly the syntax of ``hello``
attributes, so the protocol codec parses and formats them.
"""

from __future__ import annotations

import array
import json
import socket
import struct
from typing import Any

from brokerd.protocol import codec
from brokerd.protocol.codec import VERSION
from brokerd.protocol.errors import ProtocolError
from brokerd.protocol.types import Hello

from .sockets import SOCKET_NAME, SYSTEM_SOCKET, candidate_sockets, user_socket  # noqa: F401 (their old home)

FAILURE_MODES = ("kill", "deny", "allow")
MAX_FDS = 64  # most authorizers one session can get


def peercred(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the peer of a connected Unix socket (SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)


#: attribute lists borrow the hello line's syntax: this is its head
_HELLO = f"hello {VERSION}"


def format_attrs(pairs: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> str:
    """``KEY=VALUE ...`` in hello syntax (values quoted when they must be)."""
    line = codec.format_event(Hello((VERSION,), tuple(pairs))).decode("ascii").rstrip("\n")
    return line[len(_HELLO):].lstrip(" ")


def parse_attrs(text: str | bytes) -> dict[str, str]:
    """The inverse of :func:`format_attrs`; raises ProtocolError."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    parsed = codec.parse_event(f"{_HELLO} {text}" if text.strip() else _HELLO)
    assert isinstance(parsed, Hello)
    return dict(parsed.attrs)


def hello_line(role: str, **attrs: object) -> bytes:
    pairs = [("role", role)] + [(k, str(v)) for k, v in attrs.items() if v is not None]
    return codec.format_event(Hello((VERSION,), tuple(pairs)))


def parse_hello(line: bytes) -> Hello:
    """A peer's opening line; ProtocolError unless it is a ``hello`` with a role."""
    parsed = codec.parse_reply(line)
    if not isinstance(parsed, Hello):
        raise ProtocolError("bad-hello", f"the first line must be: {_HELLO} role=authorizer|tracer|control")
    if VERSION not in parsed.versions:
        raise ProtocolError("version", f"no common version (I speak {VERSION})")
    if parsed.get("role") is None:
        raise ProtocolError("bad-hello", "hello without role=")
    return parsed


def ok_line(obj: object) -> bytes:
    return b"ok " + json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


LOG_TEXT = 300  # characters of a peer's text a log line carries at most


def printable(text: str | bytes, limit: int = LOG_TEXT) -> str:
    """A peer's text made safe for root's log and the journal: one line of
    printable ASCII (anything else, and backslash, as ``\\xNN``), at most
    ``limit`` characters of it, then ``...(N more)``.  Peers are other users'
    processes: their text must not forge log lines, priorities (``<0>``
    after a newline) or terminal control sequences, nor fill the log."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    out = []
    for i, c in enumerate(text):
        if i >= limit:
            out.append(f"...({len(text) - limit} more)")
            break
        out.append(c if " " <= c <= "~" and c != "\\" else f"\\x{ord(c):02x}" if ord(c) < 256 else "?")
    return "".join(out)


def number(text: str, *, signed: bool = False) -> int | None:
    """A peer's decimal number (ASCII digits, ``-`` if ``signed``, at most 18
    digits), else None.  Never ``int()`` a peer's digits unchecked: past
    4300 digits it raises ValueError."""
    digits = text[1:] if signed and text.startswith("-") else text
    if not (0 < len(digits) <= 18 and digits.isascii() and digits.isdigit()):
        return None
    return int(text)


def error_line(code: str, text: str) -> bytes:
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return f"error {code} {text}".rstrip(" ").encode("ascii") + b"\n"


def split_verb(line: bytes) -> tuple[str, str]:
    text = line.decode("ascii", "replace").strip(" ")
    verb, _, rest = text.partition(" ")
    return verb, rest.strip(" ")


def parse_answer(line: bytes) -> Any:
    """``ok JSON`` -> the object; ``error CODE text`` -> (code, text) raised as ProtocolError."""
    verb, rest = split_verb(line)
    if verb == "ok":
        return json.loads(rest) if rest else None
    if verb == "error":
        code, _, text = rest.partition(" ")
        raise ProtocolError(code or "error", text)
    raise ProtocolError("syntax", f"unexpected answer {line[:80]!r}")


def fds_ancillary(fds: list[int]) -> list[tuple[int, int, bytes]]:
    if not fds:
        return []
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]


def fds_from_ancillary(ancdata) -> list[int]:
    """Descriptors from recvmsg's ancillary data (truncated trailing bytes ignored)."""
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[: len(data) - len(data) % a.itemsize])
            fds.extend(a)
    return fds


def recv_with_fds(sock: socket.socket, bufsize: int = 65536) -> tuple[bytes, list[int]]:
    """One recvmsg on a blocking or non-blocking stdlib socket; descriptors
    arrive close-on-exec."""
    data, anc, _flags, _addr = sock.recvmsg(
        bufsize, socket.CMSG_SPACE(MAX_FDS * 4), getattr(socket, "MSG_CMSG_CLOEXEC", 0))
    return data, fds_from_ancillary(anc)
