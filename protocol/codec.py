"""Sans-IO codec of the brokerd line protocol v1 (see ``protocol/PROTOCOL.md``).

Lines in, values out; values in, lines out.  Nothing here reads or writes a
file descriptor, so the same code serves the tracer shim, the daemon, the
client library and the tests, and it can be fuzzed in isolation.

This runs for every intercepted system call (tens of thousands of lines a
second), so the scanner is hand-written around precompiled regular expressions
and ``str`` methods: no per-character Python loops, string escapes are decoded
by :func:`codecs.escape_decode` and encoded by :meth:`str.translate`, and the
most common replies (``cont``, ``step``, ``skip-fail EPERM``...) are answered
from a table without parsing.

Contract: every ``parse_*`` function either returns a value or raises
:class:`~brokerd.protocol.errors.ProtocolError`, whatever bytes it is given.
Every ``format_*`` function either returns a line that parses back to an equal
value, or raises ``ProtocolError`` (code ``bad-value``, ``bad-number``,
``too-deep``...) for a value that has no wire form.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from typing import Any

from . import lazyre
from .consts import ERRNO, ERRNO_NAMES, MAX_ERRNO, SIGNAL_NAMES, SIGNALS
from .errors import ProtocolError
from .types import (
    Addr,
    Array,
    Call,
    Cont,
    Data,
    Deliver,
    Error,
    Event,
    Fail,
    Fetch,
    Field,
    Hello,
    Int,
    Kill,
    Oct,
    Ok,
    ProcEvent,
    Ptr,
    Reply,
    Rewrite,
    SetMem,
    SignalEvent,
    SkipFail,
    SkipOk,
    Step,
    Str,
    Struct,
    Suppress,
    Sym,
    SyscallEvent,
    SysretEvent,
    Value,
    Verdict,
)

__all__ = [
    "MAX_LINE",
    "MAX_DEPTH",
    "MAX_ARGN",
    "VERSION",
    "REPLY_VERBS",
    "parse_event",
    "parse_reply",
    "parse_value",
    "parse_call",
    "format_event",
    "format_reply",
    "format_value",
    "format_call",
    "quote",
]

#: Protocol version implemented here.
VERSION = 1
#: Longest line, in bytes, *including* the terminating newline.
MAX_LINE = 65536
#: Deepest nesting of ``{}``, ``[]`` and ``name=`` inside one argument.
MAX_DEPTH = 32
#: Highest argument number in ``set``/``fetch``/``data`` (1-based).
MAX_ARGN = 6

_U64 = (1 << 64) - 1
_I64_MIN = -(1 << 63)
_U63 = (1 << 63) - 1
_PID_MAX = (1 << 31) - 1
_VERSION_MAX = (1 << 31) - 1

#: First words of a reply line that are not system-call names.  ``kill`` is
#: also a system call: ``kill`` alone is the verdict, ``kill ARGS`` a rewrite.
REPLY_VERBS = frozenset(
    ("cont", "step", "kill", "skip-fail", "skip-ok", "deliver", "suppress", "ok", "fail",
     "fetch", "hello", "error", "set")
)

# ---------------------------------------------------------------------------
# Precompiled scanners
# ---------------------------------------------------------------------------

_BAD_CHAR_B = lazyre.compile(rb"[^\x20-\x7e]")
_BAD_CHAR_S = lazyre.compile(r"[^\x20-\x7e]")
_SPACES = lazyre.compile(r" *")
_VERB = lazyre.compile(r"[^ ;]*")
_SP_TOKEN = lazyre.compile(r" +([^ ;]+)")
_IDENT = lazyre.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ABI = lazyre.compile(r"[A-Za-z0-9_]+")
_SYM_NAME = lazyre.compile(r"[A-Za-z_][A-Za-z0-9_+]*")
_SYM = lazyre.compile(r"([A-Za-z_][A-Za-z0-9_+]*(?:\|[A-Za-z_][A-Za-z0-9_+]*)*)(?:\|0x([0-9A-Fa-f]+))?")
_FIELD = lazyre.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
_NUM = lazyre.compile(r"0x[0-9A-Fa-f]+|-?[0-9]+")
_INT_TOKEN = lazyre.compile(r"0x[0-9A-Fa-f]+|-?(?:0|[1-9][0-9]*)")
_ADDR4 = lazyre.compile(r"([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}):([0-9]{1,5})")
_ADDR6 = lazyre.compile(r"\[([0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?:%[A-Za-z0-9_.\-]+)?)\]:([0-9]{1,5})")
_STRING = lazyre.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"')
_GOOD_BODY = lazyre.compile(r'[^\\]*(?:\\(?:[\\"nrt]|x[0-9A-Fa-f]{2})[^\\]*)*')
_ESCAPE_PAIR = lazyre.compile(r'\\(?:x[0-9A-Fa-f]{2}|[\\"nrt])?')
_TRUNC = lazyre.compile(r"\.\.\.([0-9]+)")
_SET = lazyre.compile(r"set +([0-9]+)(?:\+([0-9]+))? +")
_KEY = lazyre.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
_HELLO_KEY = lazyre.compile(r"([A-Za-z_][A-Za-z0-9_\-]*)=")
_BARE = lazyre.compile(r'[\x21\x23-\x7e]*')
_BARE_FULL = lazyre.compile(r'[\x21\x23-\x7e]+')
_VERSIONS = lazyre.compile(r" +([0-9]+(?:,[0-9]+)*)(?![^ ])")
_ERROR_CODE = lazyre.compile(r"[a-z0-9][a-z0-9\-]*")
_PLAIN_TEXT = lazyre.compile(r"[\x20-\x7e]*")
_NEEDS_ESCAPE = lazyre.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')

# Fast paths: the shapes nearly every event has.  Each only accepts text the
# general scanner would parse to the same value; anything else falls through.
_FAST_HEAD = lazyre.compile(
    r" +([1-9][0-9]{0,17}|0) +([1-9][0-9]{0,8}|0) +([1-9][0-9]{0,8}|0) +([A-Za-z0-9_]+)"
    r" +([A-Za-z_][A-Za-z0-9_]*)(?=[ ;]|\Z)")
_FAST_SCALAR = (r'(?:"([^"\\]*)"|(-?[1-9][0-9]{0,17}|0)'
                r"|([A-Za-z_][A-Za-z0-9_+]*(?:\|[A-Za-z_][A-Za-z0-9_+]*)*))")
_FAST_ARG = re.compile(_FAST_SCALAR + r"( *, *| *(?=;)| *\Z)")
_FAST_NOTE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=" + _FAST_SCALAR + r"(?: +|\Z)")
_fast_arg = _FAST_ARG.match
_fast_note = _FAST_NOTE.match

# Values are immutable, and the same paths, flag sets and small numbers come
# back in call after call: share one object per spelling instead of building
# (slow, frozen) dataclasses again.  Bounded: a table is emptied when full.
_CACHE_MAX = 4096
_STR_CACHE: dict[str, Str] = {}
_NUM_CACHE: dict[str, Int] = {}
_SYM_CACHE: dict[str, Value] = {}


def _plain_str(body: str) -> Str:
    v = Str(body.encode("ascii"))
    if len(body) <= 256:  # paths and short strings repeat; big buffers do not
        if len(_STR_CACHE) >= _CACHE_MAX:
            _STR_CACHE.clear()
        _STR_CACHE[body] = v
    return v


def _small_int(text: str) -> Int:
    if len(_NUM_CACHE) >= _CACHE_MAX:
        _NUM_CACHE.clear()
    v = _NUM_CACHE[text] = Int(int(text))
    return v


def _sym_set(names: str) -> Value:
    if len(_SYM_CACHE) >= _CACHE_MAX:
        _SYM_CACHE.clear()
    v = _SYM_CACHE[names] = Ptr(0) if names == "NULL" else Sym(tuple(names.split("|")))
    return v


_ident_full = _IDENT.fullmatch
_sym_name_full = _SYM_NAME.fullmatch
_abi_full = _ABI.fullmatch
_hello_key_full = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*").fullmatch
_error_code_full = _ERROR_CODE.fullmatch
_needs_escape = _NEEDS_ESCAPE.search
_escape_decode = codecs.escape_decode

#: byte value -> its spelling inside a quoted string (only bytes that need one).
_ESCAPES: dict[int, str] = {i: f"\\x{i:02x}" for i in range(256) if not 0x20 <= i <= 0x7E}
_ESCAPES.update({0x5C: "\\\\", 0x22: '\\"', 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"})



def _err(code: str, message: str) -> ProtocolError:
    return ProtocolError(code, message)


# ---------------------------------------------------------------------------
# Line preparation
# ---------------------------------------------------------------------------


def _prepare(line: bytes | bytearray | memoryview | str) -> str:
    """Strip the terminator, enforce the length and alphabet, return text.

    Doing the alphabet check once, up front, is what lets every scanner below
    work on ``str`` and trust that each character is printable ASCII.
    """
    if isinstance(line, str):
        if line.endswith("\n"):
            line = line[:-1]
        if len(line) >= MAX_LINE:
            raise _err("line-too-long", f"line of {len(line) + 1} bytes (limit {MAX_LINE})")
        if line.endswith("\r"):
            line = line[:-1]
        m = _BAD_CHAR_S.search(line)
        if m is not None:
            ch = line[m.start()]
            raise _err("not-ascii", f"character U+{ord(ch):04X} at column {m.start() + 1}")
        return line
    if not isinstance(line, bytes):
        if not isinstance(line, (bytearray, memoryview)):
            raise TypeError(f"a protocol line is bytes or str, not {type(line).__name__}")
        line = bytes(line)
    if line.endswith(b"\n"):
        line = line[:-1]
    if len(line) >= MAX_LINE:
        raise _err("line-too-long", f"line of {len(line) + 1} bytes (limit {MAX_LINE})")
    if line.endswith(b"\r"):
        line = line[:-1]
    bad = _BAD_CHAR_B.search(line)
    if bad is not None:
        raise _err("not-ascii", f"byte 0x{line[bad.start()]:02x} at column {bad.start() + 1}")
    return line.decode("ascii")


# ---------------------------------------------------------------------------
# Small field parsers (header tokens)
# ---------------------------------------------------------------------------


def _dec(tok: str, lo: int, hi: int, what: str) -> int:
    """A header number: plain decimal digits, in ``lo..hi``."""
    if not tok.isdigit():
        raise _err("bad-number", f"{what} {tok[:40]!r} is not a decimal number")
    core = tok.lstrip("0") or "0"
    n = int(core) if len(core) <= 20 else hi + 1
    if not lo <= n <= hi:
        raise _err("bad-number", f"{what} {n} out of range {lo}..{hi}")
    return n


def _token(s: str, pos: int, what: str) -> tuple[str, int]:
    m = _SP_TOKEN.match(s, pos)
    if m is None:
        raise _err("syntax", f"missing {what} at column {pos + 1}")
    return m.group(1), m.end()


def _num_field(s: str, pos: int, lo: int, hi: int, what: str) -> tuple[int, int]:
    tok, pos = _token(s, pos, what)
    return _dec(tok, lo, hi, what), pos


def _errno(tok: str) -> int:
    if tok.isdigit():
        core = tok.lstrip("0") or "0"
        n = int(core) if len(core) <= 5 else 0
    else:
        n = ERRNO.get(tok, 0)
        if n == 0:
            raise _err("bad-errno", f"unknown errno {tok[:40]!r}")
    if not 1 <= n <= MAX_ERRNO:
        raise _err("bad-errno", f"errno {tok[:40]} out of range 1..{MAX_ERRNO}")
    return n


def _signal(tok: str) -> int:
    if tok.isdigit():
        core = tok.lstrip("0") or "0"
        n = int(core) if len(core) <= 3 else 0
    else:
        n = SIGNALS.get(tok if tok.startswith("SIG") else "SIG" + tok, 0)
        if n == 0:
            raise _err("bad-signal", f"unknown signal {tok[:40]!r}")
    if not 1 <= n <= 64:
        raise _err("bad-signal", f"signal {tok[:40]} out of range 1..64")
    return n


def _ident_field(s: str, pos: int, what: str) -> tuple[str, int]:
    tok, pos = _token(s, pos, what)
    if _ident_full(tok) is None:
        raise _err("syntax", f"{what} {tok[:40]!r} is not a name")
    return tok, pos


def _abi_field(s: str, pos: int) -> tuple[str, int]:
    tok, pos = _token(s, pos, "ABI")
    if _abi_full(tok) is None:
        raise _err("syntax", f"ABI {tok[:40]!r} is not a name")
    return tok, pos


def _expect_end(s: str, pos: int) -> None:
    pos = _SPACES.match(s, pos).end()
    if pos != len(s):
        raise _err("syntax", f"unexpected {s[pos:pos + 20]!r} at column {pos + 1}")


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------


def _string(s: str, pos: int, allow_trunc: bool = True) -> tuple[Str, int]:
    """A quoted string at ``s[pos] == '"'``, with its optional ``...TOTAL``."""
    m = _STRING.match(s, pos)
    if m is None:
        raise _err("bad-string", f"unterminated string at column {pos + 1}")
    body = m.group(1)
    if "\\" in body:
        if _GOOD_BODY.fullmatch(body) is None:
            esc = next((e for e in _ESCAPE_PAIR.finditer(body) if len(e.group()) == 1), None)
            where = body[esc.start():esc.start() + 4] if esc is not None else "\\"
            raise _err("bad-string", f"bad escape {where!r} in string at column {pos + 1}")
        data = _escape_decode(body)[0]
    else:
        data = body.encode("ascii")
    end = m.end()
    if s.startswith("...", end):
        t = _TRUNC.match(s, end)
        if t is None:
            raise _err("bad-value", f"'...' without a total at column {end + 1}")
        if not allow_trunc:
            raise _err("bad-value", f"a truncated string is not allowed here (column {end + 1})")
        digits = t.group(1)
        core = digits.lstrip("0") or "0"
        total = int(core) if len(core) <= 20 else -1
        if not len(data) <= total <= _U63:
            raise _err("bad-value", f"string total {digits[:40]} is below its {len(data)}-byte prefix or too large")
        return Str(data, total), t.end()
    return Str(data), end


def _number(s: str, pos: int) -> tuple[Value, int]:
    m = _NUM.match(s, pos)
    if m is None:
        raise _err("bad-value", f"bad number at column {pos + 1}")
    end = m.end()
    if end < len(s) and s[end] == "." and s[pos] != "-":
        a = _ADDR4.match(s, pos)
        if a is not None:
            return _addr(a.group(1), a.group(2), pos), a.end()
        raise _err("bad-value", f"bad address at column {pos + 1}")
    text = m.group()
    if len(text.lstrip("-0x")) > 22:
        raise _err("bad-value", f"{text[:40]} is out of the 64-bit range")
    if text[1:2] == "x":
        n = int(text, 16)
        if n > _U64:
            raise _err("bad-value", f"{text[:40]} is out of the 64-bit range")
        return Ptr(n), end
    if text[0] == "-":
        if len(text) > 2 and text[1] == "0":
            raise _err("bad-value", f"negative number with a leading zero at column {pos + 1}")
        n = int(text)
        if n < _I64_MIN:
            raise _err("bad-value", f"{text[:40]} is out of the 64-bit range")
        return Int(n), end
    if len(text) > 1 and text[0] == "0":
        try:
            n = int(text, 8)
        except ValueError:
            raise _err("bad-value", f"{text[:40]} is not octal (leading zero)") from None
        if n > _U64:
            raise _err("bad-value", f"{text[:40]} is out of the 64-bit range")
        return Oct(n), end
    n = int(text)
    if n > _U64:
        raise _err("bad-value", f"{text[:40]} is out of the 64-bit range")
    return Int(n), end


def _addr(host: str, port: str, pos: int) -> Addr:
    import ipaddress  # here, not at import: few lines carry addresses, every start-up paid it

    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise _err("bad-value", f"bad IP address {host!r} at column {pos + 1}") from None
    p = int(port)
    if p > 65535 or (len(port) > 1 and port[0] == "0"):
        raise _err("bad-value", f"bad port {port} at column {pos + 1}")
    return Addr(host, p)


def _value(s: str, pos: int, depth: int) -> tuple[Value, int]:
    """One value starting exactly at ``pos``; returns it and the end position."""
    c = s[pos] if pos < len(s) else ""
    if c == '"':
        return _string(s, pos)
    if c.isdigit() or c == "-":
        return _number(s, pos)
    if c.isalpha() or c == "_":
        m = _FIELD.match(s, pos)
        if m is not None:
            if depth >= MAX_DEPTH:
                raise _err("too-deep", f"values nested deeper than {MAX_DEPTH} levels")
            v, end = _value(s, m.end(), depth + 1)
            return Field(m.group(1), v), end
        m = _SYM.match(s, pos)
        # _SYM always matches here: c is a name start.
        names = m.group(1)
        rest = m.group(2)
        if rest is None:
            if names == "NULL":
                return Ptr(0), m.end()
            return Sym(tuple(names.split("|"))), m.end()
        if len(rest.lstrip("0")) > 16:
            raise _err("bad-value", f"0x{rest[:40]} is out of the 64-bit range")
        return Sym(tuple(names.split("|")), int(rest, 16)), m.end()
    if c == "{" or c == "[":
        if c == "[":
            a = _ADDR6.match(s, pos)
            if a is not None:
                return _addr(a.group(1), a.group(2), pos), a.end()
        if depth >= MAX_DEPTH:
            raise _err("too-deep", f"values nested deeper than {MAX_DEPTH} levels")
        close = "}" if c == "{" else "]"
        items, end = _list(s, pos + 1, depth + 1, close)
        return (Struct(items) if c == "{" else Array(items)), end
    if not c:
        raise _err("bad-value", f"missing value at end of line (column {pos + 1})")
    raise _err("bad-value", f"unexpected {c!r} at column {pos + 1}")


def _list(s: str, pos: int, depth: int, close: str) -> tuple[tuple[Value, ...], int]:
    """Items of a struct or array after the opening bracket, up to ``close``."""
    pos = _SPACES.match(s, pos).end()
    if s.startswith(close, pos):
        return (), pos + 1
    items: list[Value] = []
    n = len(s)
    while True:
        v, pos = _value(s, pos, depth)
        items.append(v)
        if pos < n and s[pos] == " ":
            pos = _SPACES.match(s, pos).end()
        c = s[pos] if pos < n else ""
        if c == ",":
            pos = _SPACES.match(s, pos + 1).end()
        elif c == close:
            return tuple(items), pos + 1
        elif not c:
            raise _err("bad-value", f"missing {close!r} at end of line")
        else:
            raise _err("bad-value", f"expected ',' or {close!r} at column {pos + 1}")


def _args(s: str, pos: int) -> tuple[tuple[Value, ...], int]:
    """Top-level arguments after a call name; stops before ``;`` or at the end."""
    n = len(s)
    pos = _SPACES.match(s, pos).end()
    if pos == n or s[pos] == ";":
        return (), pos
    items: list[Value] = []
    append = items.append
    while True:
        m = _fast_arg(s, pos)
        if m is not None:
            # A plain string, small decimal or symbol set, then its separator.
            text, num, names, sep = m.groups()
            if text is not None:
                append(_STR_CACHE.get(text) or _plain_str(text))
            elif num is not None:
                append(_NUM_CACHE.get(num) or _small_int(num))
            else:
                append(_SYM_CACHE.get(names) or _sym_set(names))
            pos = m.end()
            if "," in sep:
                continue
            return tuple(items), pos
        v, pos = _value(s, pos, 0)
        items.append(v)
        if pos < n and s[pos] == " ":
            pos = _SPACES.match(s, pos).end()
        if pos == n:
            return tuple(items), pos
        c = s[pos]
        if c == ",":
            pos = _SPACES.match(s, pos + 1).end()
        elif c == ";":
            return tuple(items), pos
        else:
            raise _err("bad-value", f"expected ',' or ';' at column {pos + 1}")


def _notes(s: str, pos: int) -> tuple[tuple[str, Value], ...]:
    """``; KEY=VALUE KEY=VALUE`` to the end of the line (``pos`` at the ``;``)."""
    n = len(s)
    pos = _SPACES.match(s, pos + 1).end()
    if pos == n:
        raise _err("syntax", "';' without notes")
    notes: list[tuple[str, Value]] = []
    while pos < n:
        m = _fast_note(s, pos)
        if m is not None:
            key, text, num, names = m.groups()
            if text is not None:
                v: Value = _STR_CACHE.get(text) or _plain_str(text)
            elif num is not None:
                v = _NUM_CACHE.get(num) or _small_int(num)
            else:
                v = _SYM_CACHE.get(names) or _sym_set(names)
            notes.append((key, v))
            pos = m.end()
            continue
        m = _KEY.match(s, pos)
        if m is None:
            raise _err("syntax", f"expected KEY=VALUE note at column {pos + 1}")
        v, pos = _value(s, m.end(), 0)
        notes.append((m.group(1), v))
        if pos < n:
            if s[pos] != " ":
                raise _err("bad-value", f"expected a space after a note at column {pos + 1}")
            pos = _SPACES.match(s, pos).end()
    return tuple(notes)


def _call_at(s: str, pos: int) -> tuple[Call, int]:
    """``NAME ARGS`` from ``pos``; returns the call and where ``;``/end is."""
    m = _IDENT.match(s, pos)
    end = m.end() if m is not None else pos
    if m is None or (end < len(s) and s[end] not in " ;"):
        tok = _VERB.match(s, pos).group()
        raise _err("syntax", f"system call name {tok[:40]!r} is not a name")
    args, end2 = _args(s, end)
    return Call(m.group(), args), end2


def _result(s: str, pos: int) -> tuple[Ok | Fail, int]:
    word, pos = _token(s, pos, "ok/fail")
    if word == "fail":
        tok, pos = _token(s, pos, "errno")
        return Fail(_errno(tok)), pos
    if word == "ok":
        return _ok_value(s, pos)
    raise _err("syntax", f"expected 'ok VALUE' or 'fail ERRNO', got {word[:40]!r}")


def _ok_value(s: str, pos: int) -> tuple[Ok, int]:
    p = _SPACES.match(s, pos).end()
    if p == pos or p == len(s):
        raise _err("syntax", f"missing value after 'ok' at column {pos + 1}")
    v, pos = _value(s, p, 0)
    if type(v) is not Int and type(v) is not Ptr:
        raise _err("bad-value", "an 'ok' value is a decimal or 0x hex number")
    return Ok(v), pos


# ---------------------------------------------------------------------------
# Events (broker -> authorizer)
# ---------------------------------------------------------------------------


def _after_value(s: str, pos: int) -> int:
    """After a value that must be followed by end-of-line or notes."""
    if pos < len(s) and s[pos] != " " and s[pos] != ";":
        raise _err("bad-value", f"unexpected {s[pos:pos + 20]!r} at column {pos + 1}")
    return _SPACES.match(s, pos).end()


def _ev_syscall(s: str, pos: int) -> SyscallEvent:
    m = _FAST_HEAD.match(s, pos)
    if m is not None:
        eid, pid, tid, abi, name = m.groups()
        args, pos = _args(s, m.end())
        notes = _notes(s, pos) if pos < len(s) else ()
        return SyscallEvent(int(eid), int(pid), int(tid), abi, Call(name, args), notes)
    eid, pos = _num_field(s, pos, 0, _U63, "ID")
    pid, pos = _num_field(s, pos, 0, _PID_MAX, "PID")
    tid, pos = _num_field(s, pos, 0, _PID_MAX, "TID")
    abi, pos = _abi_field(s, pos)
    if not s.startswith(" ", pos):
        raise _err("syntax", "missing system call name")
    call, pos = _call_at(s, _SPACES.match(s, pos).end())
    notes = _notes(s, pos) if pos < len(s) else ()
    return SyscallEvent(eid, pid, tid, abi, call, notes)


def _ev_sysret(s: str, pos: int) -> SysretEvent:
    eid, pos = _num_field(s, pos, 0, _U63, "ID")
    pid, pos = _num_field(s, pos, 0, _PID_MAX, "PID")
    tid, pos = _num_field(s, pos, 0, _PID_MAX, "TID")
    abi, pos = _abi_field(s, pos)
    name, pos = _ident_field(s, pos, "system call name")
    result, pos = _result(s, pos)
    pos = _after_value(s, pos)
    notes: tuple[tuple[str, Value], ...] = ()
    if pos < len(s):
        if s[pos] != ";":
            raise _err("syntax", f"unexpected {s[pos:pos + 20]!r} at column {pos + 1}")
        notes = _notes(s, pos)
    return SysretEvent(eid, pid, tid, abi, name, result, notes)


def _ev_signal(s: str, pos: int) -> SignalEvent:
    eid, pos = _num_field(s, pos, 0, _U63, "ID")
    pid, pos = _num_field(s, pos, 0, _PID_MAX, "PID")
    tid, pos = _num_field(s, pos, 0, _PID_MAX, "TID")
    tok, pos = _token(s, pos, "signal")
    signo = _signal(tok)
    _expect_end(s, pos)
    return SignalEvent(eid, pid, tid, signo)


def _ev_proc(s: str, pos: int) -> ProcEvent:
    pid, pos = _num_field(s, pos, 0, _PID_MAX, "PID")
    tid, pos = _num_field(s, pos, 0, _PID_MAX, "TID")
    kind, pos = _ident_field(s, pos, "process event kind")
    args, pos = _args(s, pos)
    if pos < len(s):
        raise _err("syntax", f"a proc event has no notes (column {pos + 1})")
    return ProcEvent(pid, tid, kind, args)


def _hello(s: str, pos: int) -> Hello:
    m = _VERSIONS.match(s, pos)
    if m is None:
        tok = _SP_TOKEN.match(s, pos)
        if tok is None:
            raise _err("syntax", "hello without a version list")
        raise _err("bad-number", f"bad version list {tok.group(1)[:40]!r}")
    versions = tuple(_dec(v, 1, _VERSION_MAX, "version") for v in m.group(1).split(","))
    pos = m.end()
    n = len(s)
    attrs: list[tuple[str, str]] = []
    while True:
        pos = _SPACES.match(s, pos).end()
        if pos == n:
            return Hello(versions, tuple(attrs))
        k = _HELLO_KEY.match(s, pos)
        if k is None:
            raise _err("syntax", f"expected KEY=VALUE at column {pos + 1}")
        pos = k.end()
        if s.startswith('"', pos):
            v, pos = _string(s, pos, allow_trunc=False)
            try:
                text = v.data.decode("utf-8")
            except UnicodeDecodeError:
                raise _err("bad-string", f"hello value of {k.group(1)} is not UTF-8") from None
        else:
            b = _BARE.match(s, pos)
            text = b.group()
            pos = b.end()
        if pos < n and s[pos] != " ":
            raise _err("syntax", f"unexpected {s[pos:pos + 20]!r} at column {pos + 1}")
        attrs.append((k.group(1), text))


def _error(s: str, pos: int) -> Error:
    tok, pos = _token(s, pos, "error code")
    if _error_code_full(tok) is None:
        raise _err("syntax", f"error code {tok[:40]!r} is not a lowercase token")
    if pos < len(s) and s[pos] == ";":
        raise _err("syntax", f"error code {tok[:40]!r} followed by ';'")
    return Error(tok, s[pos:].strip(" "))


def _ev_data(s: str, pos: int) -> Data:
    eid, pos = _num_field(s, pos, 0, _U63, "ID")
    argn, pos = _num_field(s, pos, 1, MAX_ARGN, "ARGN")
    off, pos = _num_field(s, pos, 0, _U63, "OFFSET")
    p = _SPACES.match(s, pos).end()
    if p == pos or not s.startswith('"', p):
        raise _err("syntax", f"expected a quoted string at column {p + 1}")
    data, pos = _string(s, p)
    if pos < len(s) and s[pos] != " ":
        raise _err("bad-value", f"unexpected {s[pos:pos + 20]!r} at column {pos + 1}")
    _expect_end(s, pos)
    return Data(eid, argn, off, data)


_EVENT_PARSERS: dict[str, Callable[[str, int], Event]] = {
    "syscall": _ev_syscall,
    "sysret": _ev_sysret,
    "signal": _ev_signal,
    "proc": _ev_proc,
    "hello": _hello,
    "error": _error,
    "data": _ev_data,
}


def parse_event(line: bytes | str) -> Event:
    """Parse one broker->authorizer line (``syscall``, ``sysret``, ``signal``,
    ``proc``, ``hello``, ``error``, ``data``), newline optional.

    Raises :class:`ProtocolError` for anything else; never another exception.
    """
    s = _prepare(line).strip(" ")
    verb = _VERB.match(s).group()
    fn = _EVENT_PARSERS.get(verb)
    if fn is None:
        if not s:
            raise _err("syntax", "empty line")
        raise _err("unknown-verb", f"unknown event {verb[:40]!r}")
    return fn(s, len(verb))


# ---------------------------------------------------------------------------
# Replies (authorizer -> broker)
# ---------------------------------------------------------------------------


def _clauses(s: str, pos: int) -> tuple[tuple[SetMem, ...], bool]:
    """`` ; set ARGN[+OFF] "bytes"`` clauses from ``pos`` to the end, then an
    optional final `` ; cache``."""
    n = len(s)
    out: list[SetMem] = []
    while True:
        pos = _SPACES.match(s, pos).end()
        if pos == n:
            return tuple(out), False
        if s[pos] != ";":
            raise _err("syntax", f"unexpected {s[pos:pos + 20]!r} at column {pos + 1}")
        pos = _SPACES.match(s, pos + 1).end()
        if s.startswith("cache", pos) and s[pos + 5:].strip() == "":
            return tuple(out), True
        m = _SET.match(s, pos)
        if m is None:
            word = _VERB.match(s, pos).group()
            if word != "set":
                raise _err("syntax", f"expected 'set' or a final 'cache' after ';' at column {pos + 1}")
            tok = _SP_TOKEN.match(s, pos + 3)
            if tok is None:
                raise _err("syntax", "'set' without ARGN and data")
            t = tok.group(1)
            a, _, o = t.partition("+")
            _dec(a, 1, MAX_ARGN, "ARGN")
            if o or t.endswith("+"):
                _dec(o, 0, _U63, "OFFSET")
            raise _err("syntax", f"expected a quoted string after 'set {t[:40]}'")
        argn = _dec(m.group(1), 1, MAX_ARGN, "ARGN")
        off = _dec(m.group(2), 0, _U63, "OFFSET") if m.group(2) is not None else 0
        pos = m.end()
        if not s.startswith('"', pos):
            raise _err("syntax", f"expected a quoted string at column {pos + 1}")
        v, pos = _string(s, pos, allow_trunc=False)
        out.append(SetMem(argn, v.data, off))
        if pos < n and s[pos] != " " and s[pos] != ";":
            raise _err("bad-value", f"unexpected {s[pos:pos + 20]!r} at column {pos + 1}")


def _int_token(tok: str) -> int:
    m = _INT_TOKEN.fullmatch(tok)
    if m is None:
        raise _err("bad-value", f"{tok[:40]!r} is not a decimal (no leading zero) or 0x hex number")
    if len(tok.lstrip("-0x")) > 22:
        raise _err("bad-value", f"{tok[:40]} is out of the 64-bit range")
    n = int(tok, 16) if tok[1:2] == "x" else int(tok)
    if not _I64_MIN <= n <= _U64:
        raise _err("bad-value", f"{tok[:40]} is out of the 64-bit range")
    return n


def _fetch(s: str, pos: int) -> Fetch:
    fid, pos = _num_field(s, pos, 0, _U63, "ID")
    argn, pos = _num_field(s, pos, 1, MAX_ARGN, "ARGN")
    off, pos = _num_field(s, pos, 0, _U63, "OFFSET")
    length, pos = _num_field(s, pos, 0, _U63, "LENGTH")
    _expect_end(s, pos)
    return Fetch(fid, argn, off, length)


def _verdict(s: str, pos: int, verb: str, rid: int | None) -> Reply:
    """The verdict whose first word ``verb`` starts at ``pos``, plus its sets."""
    end = pos + len(verb)
    if verb == "cont" or verb == "step" or verb == "suppress" or verb == "kill":
        p = _SPACES.match(s, end).end()
        if p == len(s) or s[p] == ";":
            v = _SIMPLE[verb]
            return Reply(v, rid, *_clauses(s, p)) if p < len(s) else Reply(v, rid)
        if verb != "kill":
            raise _err("syntax", f"'{verb}' takes no argument (column {p + 1})")
        call, p = _call_at(s, pos)
        return Reply(Rewrite(call), rid, *_clauses(s, p)) if p < len(s) else Reply(Rewrite(call), rid)
    if verb == "skip-fail" or verb == "fail":
        tok, p = _token(s, end, "errno")
        n = _errno(tok)
        verdict: object = SkipFail(n) if verb == "skip-fail" else Fail(n)
    elif verb == "skip-ok":
        tok, p = _token(s, end, "value")
        verdict = SkipOk(_int_token(tok))
    elif verb == "ok":
        verdict, p = _ok_value(s, end)
        if p < len(s) and s[p] != " " and s[p] != ";":
            raise _err("bad-value", f"unexpected {s[p:p + 20]!r} at column {p + 1}")
    elif verb == "deliver":
        m = _SP_TOKEN.match(s, end)
        if m is None:
            verdict, p = Deliver(), end
        else:
            verdict, p = Deliver(_signal(m.group(1))), m.end()
    elif verb == "set":
        raise _err("syntax", "'set' must follow a verdict: VERDICT ; set ARGN \"bytes\"")
    elif verb in REPLY_VERBS:  # fetch, hello, error after an ID
        raise _err("syntax", f"'{verb}' cannot follow a reply ID")
    elif _ident_full(verb) is not None:
        call, p = _call_at(s, pos)
        verdict = Rewrite(call)
    else:
        raise _err("unknown-verb", f"unknown verdict {verb[:40]!r}")
    if p < len(s):
        return Reply(verdict, rid, *_clauses(s, p))  # type: ignore[arg-type]
    return Reply(verdict, rid)  # type: ignore[arg-type]


_SIMPLE: dict[str, Verdict] = {"cont": Cont(), "step": Step(), "kill": Kill(), "suppress": Suppress()}


def parse_reply(line: bytes | str) -> Reply | Fetch | Hello | Error:
    """Parse one authorizer->broker line: a verdict reply (optionally with an
    ID prefix and ``; set`` clauses), a ``fetch``, a ``hello`` or an ``error``.

    Raises :class:`ProtocolError` for anything else; never another exception.
    """
    if type(line) is bytes or type(line) is str:
        fast = _FAST_REPLIES.get(line)
        if fast is not None:
            return fast
    s = _prepare(line).strip(" ")
    verb = _VERB.match(s).group()
    if not verb:
        if not s:
            raise _err("syntax", "empty line")
        raise _err("unknown-verb", f"unexpected {s[:20]!r}")
    pos = 0
    rid = None
    if verb.isdigit():
        rid = _dec(verb, 0, _U63, "reply ID")
        pos = _SPACES.match(s, len(verb)).end()
        fast = _FAST_REPLIES.get(s[pos:])
        if fast is not None:
            return Reply(fast.verdict, rid)
        verb = _VERB.match(s, pos).group()
        if not verb:
            raise _err("syntax", "reply ID without a verdict")
    elif verb == "fetch":
        return _fetch(s, 5)
    elif verb == "hello":
        return _hello(s, 5)
    elif verb == "error":
        return _error(s, 5)
    return _verdict(s, pos, verb, rid)


def _build_fast_replies() -> dict[bytes | str, Reply]:
    """Exact lines of the commonest replies -> their (immutable, shared) value."""
    table: dict[str, Reply] = {}
    for verb, v in _SIMPLE.items():
        table[verb] = Reply(v)
    table["deliver"] = Reply(Deliver())
    table["skip-ok 0"] = Reply(SkipOk(0))
    for name, n in ERRNO.items():
        if 1 <= n <= MAX_ERRNO:
            table["skip-fail " + name] = Reply(SkipFail(n))
            table["skip-fail " + str(n)] = Reply(SkipFail(n))
    out: dict[bytes | str, Reply] = {}
    for text, r in table.items():
        for end in ("", "\n", "\r\n"):
            out[text + end] = r
            out[(text + end).encode("ascii")] = r
    return out


_FAST_REPLIES = _build_fast_replies()


# ---------------------------------------------------------------------------
# Public parse helpers
# ---------------------------------------------------------------------------


def parse_value(text: bytes | str) -> Value:
    """Parse exactly one argument value (``O_RDONLY|O_CLOEXEC``, ``"a\\n"``...)."""
    s = _prepare(text).strip(" ")
    v, pos = _value(s, 0, 0)
    if pos != len(s):
        raise _err("bad-value", f"unexpected {s[pos:pos + 20]!r} at column {pos + 1}")
    return v


def parse_call(text: bytes | str) -> Call:
    """Parse ``NAME ARG, ARG, ...`` (the seed's ``write 2, "this is data", 12``)."""
    s = _prepare(text).strip(" ")
    if not s:
        raise _err("syntax", "empty line")
    call, pos = _call_at(s, 0)
    if pos != len(s):
        raise _err("syntax", f"a call has no notes (column {pos + 1})")
    return call


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------


def quote(data: bytes) -> str:
    """``b'a"\\n'`` -> ``'"a\\\\"\\\\n"'``: the canonical quoted form of a byte string.

    Bytes 0x20..0x7e stand for themselves except ``"`` and ``\\``; ``\\n \\r
    \\t`` are named; every other byte is ``\\xHH`` with lowercase hex.
    """
    s = data.decode("latin-1")
    if _needs_escape(s) is None:
        return '"' + s + '"'
    return '"' + s.translate(_ESCAPES) + '"'


def _u(n: object, lo: int, hi: int, what: str, code: str = "bad-number") -> int:
    if type(n) is not int or not lo <= n <= hi:  # bool is rejected too
        raise _err(code, f"{what} {n!r} is not an integer in {lo}..{hi}")
    return n


#: names already checked by the formatter (syscall names, note keys / symbol
#: names): the same few recur on every line; bounded like the parse caches
_GOOD_IDENTS: set[str] = set()
_GOOD_SYM_NAMES: set[str] = set()


def _remember(good: set[str], name: str) -> None:
    if len(good) < _CACHE_MAX:
        good.add(name)


def _fmt(v: Any, depth: int) -> str:
    # type(v) is X: one lookup, faster than isinstance chains; Any because
    # mypy narrows only isinstance
    t = type(v)
    if t is Int:
        n = v.value
        if type(n) is not int or not _I64_MIN <= n <= _U64:
            raise _err("bad-value", f"Int {n!r} out of the 64-bit range")
        return str(n)
    if t is Str:
        data = v.data
        total = v.total
        if type(data) is not bytes:
            raise _err("bad-value", f"Str data must be bytes, not {type(data).__name__}")
        q = quote(data)
        if total is None:
            return q
        if type(total) is not int or not len(data) <= total <= _U63:
            raise _err("bad-value", f"Str total {total!r} is below the prefix length or too large")
        return f"{q}...{total}"
    if t is Sym:
        names = v.names
        rest = v.rest
        if type(rest) is not int or not 0 <= rest <= _U64:
            raise _err("bad-value", f"Sym rest {rest!r} out of the 64-bit range")
        if not names:
            return f"0x{rest:x}" if rest else "NULL"
        for name in names:
            if type(name) is not str or name not in _GOOD_SYM_NAMES:
                if type(name) is not str or _sym_name_full(name) is None:
                    raise _err("bad-value", f"bad symbol name {name!r}")
                _remember(_GOOD_SYM_NAMES, name)
        text = "|".join(names)
        return f"{text}|0x{rest:x}" if rest else text
    if t is Ptr:
        n = v.value
        if type(n) is not int or not 0 <= n <= _U64:
            raise _err("bad-value", f"Ptr {n!r} out of the 64-bit range")
        return f"0x{n:x}" if n else "NULL"
    if t is Oct:
        n = v.value
        if type(n) is not int or not 0 <= n <= _U64:
            raise _err("bad-value", f"Oct {n!r} out of the 64-bit range")
        return f"0{n:o}"
    if t is Struct or t is Array:
        if depth >= MAX_DEPTH:
            raise _err("too-deep", f"values nested deeper than {MAX_DEPTH} levels")
        items = v.fields if t is Struct else v.items
        inner = ", ".join([_fmt(x, depth + 1) for x in items])
        return "{" + inner + "}" if t is Struct else "[" + inner + "]"
    if t is Field:
        if depth >= MAX_DEPTH:
            raise _err("too-deep", f"values nested deeper than {MAX_DEPTH} levels")
        name = v.name
        if type(name) is not str or _ident_full(name) is None:
            raise _err("bad-value", f"bad field name {name!r}")
        return name + "=" + _fmt(v.value, depth + 1)
    if t is Addr:
        host = v.host
        port = v.port
        if type(port) is not int or not 0 <= port <= 65535:
            raise _err("bad-value", f"bad port {port!r}")
        if type(host) is not str:
            raise _err("bad-value", f"bad host {host!r}")
        import ipaddress  # here, not at import (see _addr)

        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise _err("bad-value", f"bad IP address {host!r}") from None
        if ip.version == 6:
            if _ADDR6.fullmatch(f"[{host}]:{port}") is None:
                raise _err("bad-value", f"bad IPv6 address {host!r}")
            return f"[{host}]:{port}"
        return f"{host}:{port}"
    raise _err("bad-value", f"not a protocol value: {v!r}")


def format_value(v: Value) -> str:
    """The canonical text of one value (no newline)."""
    return _fmt(v, 0)


def _fmt_name(name: object, what: str = "system call name") -> str:
    if type(name) is not str or name not in _GOOD_IDENTS:
        if type(name) is not str or _ident_full(name) is None:
            raise _err("syntax", f"bad {what} {name!r}")
        _remember(_GOOD_IDENTS, name)
    return name


def _fmt_call(call: Call) -> str:
    if type(call) is not Call:
        raise _err("bad-value", f"not a Call: {call!r}")
    name = _fmt_name(call.name)
    if not call.args:
        return name
    return name + " " + ", ".join([_fmt_arg(a) for a in call.args])


def _fmt_arg(v: Value) -> str:
    """``_fmt(v, 0)``, kept for the very value objects the decoder shares
    (``brokerd.protocol.args``: a flag word, a mode, an fd decode to the
    same object each time): by identity, with the value held, so an id is
    never reused while its entry lives.  Strings (new each call) are not
    kept."""
    hit = _ARG_TEXT.get(id(v))
    if hit is not None and hit[0] is v:
        return hit[1]
    text = _fmt(v, 0)
    t = type(v)
    if t is Sym or t is Oct or t is Int:
        if len(_ARG_TEXT) >= _CACHE_MAX:
            _ARG_TEXT.clear()
        _ARG_TEXT[id(v)] = (v, text)
    return text


_ARG_TEXT: dict[int, tuple[Value, str]] = {}


def format_call(call: Call) -> str:
    """``Call("write", (Int(2), Str(b"hi"), Int(2)))`` -> ``'write 2, "hi", 2'``."""
    return _fmt_call(call)


def _fmt_notes(notes: tuple[tuple[str, Value], ...]) -> str:
    if not notes:
        return ""
    parts = []
    for k, v in notes:
        if type(k) is not str or k not in _GOOD_IDENTS:
            if type(k) is not str or _ident_full(k) is None:
                raise _err("syntax", f"bad note key {k!r}")
            _remember(_GOOD_IDENTS, k)
        parts.append(k + "=" + _fmt(v, 0))
    return " ; " + " ".join(parts)


def _errno_text(n: object) -> str:
    if type(n) is not int or not 1 <= n <= MAX_ERRNO:
        raise _err("bad-errno", f"errno {n!r} out of range 1..{MAX_ERRNO}")
    return ERRNO_NAMES.get(n) or str(n)


def _signal_text(n: object) -> str:
    if type(n) is not int or not 1 <= n <= 64:
        raise _err("bad-signal", f"signal {n!r} out of range 1..64")
    return SIGNAL_NAMES.get(n) or str(n)


def _fmt_result(r: object) -> str:
    if type(r) is Fail:
        return "fail " + _errno_text(r.errno)
    if type(r) is Ok:
        val = r.value
        if type(val) is not Int and type(val) is not Ptr:
            raise _err("bad-value", f"an Ok value is Int or Ptr, not {val!r}")
        return "ok " + _fmt(val, 0)
    raise _err("bad-value", f"not a result: {r!r}")


def _fmt_abi(abi: object) -> str:
    if type(abi) is not str or abi not in _GOOD_IDENTS:  # (an ABI name is an identifier: checked once)
        if type(abi) is not str or _abi_full(abi) is None:
            raise _err("syntax", f"bad ABI {abi!r}")
        _remember(_GOOD_IDENTS, abi)
    return abi


def _fmt_hello(h: Hello) -> str:
    if not h.versions:
        raise _err("bad-number", "hello needs at least one version")
    parts = ["hello", ",".join([str(_u(x, 1, _VERSION_MAX, "version")) for x in h.versions])]
    for k, val in h.attrs:
        if type(k) is not str or _hello_key_full(k) is None:
            raise _err("syntax", f"bad hello key {k!r}")
        if type(val) is not str:
            raise _err("bad-value", f"hello value {val!r} is not a string")
        if _BARE_FULL.fullmatch(val) is not None:
            parts.append(f"{k}={val}")
        else:
            try:
                raw = val.encode("utf-8")
            except UnicodeEncodeError:
                raise _err("bad-string", f"hello value {val!r} cannot be UTF-8 encoded") from None
            parts.append(f"{k}={quote(raw)}")
    return " ".join(parts)


def _fmt_error(e: Error) -> str:
    code = e.code
    if type(code) is not str or _error_code_full(code) is None:
        raise _err("syntax", f"bad error code {code!r}")
    text = e.text
    if type(text) is not str:
        text = str(text)
    if _PLAIN_TEXT.fullmatch(text) is None:
        # Free text may quote hostile input: make it printable, never fail.
        text = quote(text.encode("utf-8", "backslashreplace"))[1:-1]
    text = text.strip(" ")
    return f"error {code} {text}" if text else f"error {code}"


def format_event(ev: Event) -> bytes:
    """The canonical line (with its ``\\n``) of one broker->authorizer event.

    Raises ``ProtocolError("line-too-long")`` if the line would exceed
    :data:`MAX_LINE` (e.g. a string prefix too long for its escapes).
    The last line is kept for its (immutable) event: a stack asks each member
    about the same event object, and the audit log formats it once more.
    """
    global _last_event
    last = _last_event
    if last[0] is ev:
        return last[1]
    line = _fmt_syscall(ev) if type(ev) is SyscallEvent else _format_event(ev)
    if len(line) > MAX_LINE:
        raise _err("line-too-long", f"formatted line of {len(line)} bytes (limit {MAX_LINE})")
    _last_event = (ev, line)  # one assignment: a reader in another thread sees a matching pair
    return line


_last_event: tuple[object, bytes] = (object(), b"")


def _value_texts(values: tuple[Value, ...]) -> list[str]:
    """The texts of a syscall line's arguments: what ``_fmt(v, 0)`` gives
    each, with the commonest kinds written without a call per value (issue
    #13: formatting was a fifth of the shim's side of an external question):
    a short string's text is kept by its bytes (:func:`_quoted`), a
    decoder's shared value (flags, modes, fds) by identity
    (:func:`_fmt_arg`)."""
    out: list[str] = []
    append = out.append
    get_arg = _ARG_TEXT.get
    for v in values:
        if type(v) is Str:
            d = v.data
            if type(d) is bytes and v.total is None:
                append(_QUOTED.get(d) or _quoted(d))
                continue
        else:
            hit = get_arg(id(v))
            if hit is not None and hit[0] is v:
                append(hit[1])
                continue
        append(_fmt_arg(v))
    return out


def _notes_text(notes: tuple[tuple[str, Value], ...]) -> str:
    """:func:`_fmt_notes` with :func:`_value_texts`' shortcuts (notes are
    mostly paths)."""
    parts = []
    for k, v in notes:
        if type(k) is not str or k not in _GOOD_IDENTS:
            return _fmt_notes(notes)  # (checks the key, says what is wrong)
        if type(v) is Str and type(d := v.data) is bytes and v.total is None:
            parts.append(f"{k}={_QUOTED.get(d) or _quoted(d)}")
        else:
            parts.append(f"{k}={_fmt_arg(v)}")
    return " ; " + " ".join(parts)


def _quoted(data: bytes) -> str:
    """:func:`quote`, kept for a short string (bounded like the parse caches)."""
    text = quote(data)
    if len(data) <= 256:
        if len(_QUOTED) >= _CACHE_MAX:
            _QUOTED.clear()
        _QUOTED[data] = text
    return text


#: bytes of a short string -> its quoted text (see :func:`_value_texts`)
_QUOTED: dict[bytes, str] = {}


def _fmt_syscall(ev: Any) -> bytes:
    """The line of a :class:`SyscallEvent` whose header fields are plainly
    valid (the only kind the shim makes); anything else goes the general
    way (:func:`_format_event`), which checks every field and says what is
    wrong."""
    eid, pid, tid, abi, call = ev.id, ev.pid, ev.tid, ev.abi, ev.call
    if not (type(eid) is int and 0 <= eid <= _U63 and type(pid) is int and 0 <= pid <= _PID_MAX
            and type(tid) is int and 0 <= tid <= _PID_MAX and type(abi) is str and abi in _GOOD_IDENTS
            and type(call) is Call and type(name := call.name) is str and name in _GOOD_IDENTS):
        return _format_event(ev)
    args = call.args
    notes = ev.notes
    if args:
        line = f"syscall {eid} {pid} {tid} {abi} {name} {', '.join(_value_texts(args))}"
    else:
        line = f"syscall {eid} {pid} {tid} {abi} {name}"
    if notes:
        return f"{line}{_notes_text(notes)}\n".encode("ascii")
    return f"{line}\n".encode("ascii")


def _format_event(event: Event) -> bytes:
    ev: Any = event  # see _fmt: dispatch on the exact type
    t = type(ev)
    if t is SyscallEvent:
        head = (f"syscall {_u(ev.id, 0, _U63, 'ID')} {_u(ev.pid, 0, _PID_MAX, 'PID')} "
                f"{_u(ev.tid, 0, _PID_MAX, 'TID')} {_fmt_abi(ev.abi)} ")
        return (head + _fmt_call(ev.call) + _fmt_notes(ev.notes) + "\n").encode("ascii")
    if t is SysretEvent:
        line = (f"sysret {_u(ev.id, 0, _U63, 'ID')} {_u(ev.pid, 0, _PID_MAX, 'PID')} "
                f"{_u(ev.tid, 0, _PID_MAX, 'TID')} {_fmt_abi(ev.abi)} {_fmt_name(ev.name)} "
                f"{_fmt_result(ev.result)}{_fmt_notes(ev.notes)}\n")
        return line.encode("ascii")
    if t is SignalEvent:
        line = (f"signal {_u(ev.id, 0, _U63, 'ID')} {_u(ev.pid, 0, _PID_MAX, 'PID')} "
                f"{_u(ev.tid, 0, _PID_MAX, 'TID')} {_signal_text(ev.signo)}\n")
        return line.encode("ascii")
    if t is ProcEvent:
        line = (f"proc {_u(ev.pid, 0, _PID_MAX, 'PID')} {_u(ev.tid, 0, _PID_MAX, 'TID')} "
                f"{_fmt_name(ev.kind, 'process event kind')}")
        if ev.args:
            line += " " + ", ".join([_fmt(a, 0) for a in ev.args])
        return (line + "\n").encode("ascii")
    if t is Hello:
        return (_fmt_hello(ev) + "\n").encode("ascii")
    if t is Error:
        return (_fmt_error(ev) + "\n").encode("ascii")
    if t is Data:
        d = ev.data
        if type(d) is not Str:
            raise _err("bad-value", f"Data.data must be a Str, not {d!r}")
        line = (f"data {_u(ev.id, 0, _U63, 'ID')} {_u(ev.argn, 1, MAX_ARGN, 'ARGN')} "
                f"{_u(ev.offset, 0, _U63, 'OFFSET')} {_fmt(d, 0)}\n")
        return line.encode("ascii")
    raise _err("bad-value", f"not an event: {ev!r}")


_FAST_FORMAT = {Cont: b"cont\n", Step: b"step\n", Kill: b"kill\n", Suppress: b"suppress\n"}


def _fmt_verdict(v: Any) -> str:
    t = type(v)  # see _fmt: dispatch on the exact type
    if t is SkipFail:
        return "skip-fail " + _errno_text(v.errno)
    if t is Cont:
        return "cont"
    if t is Step:
        return "step"
    if t is Kill:
        return "kill"
    if t is Suppress:
        return "suppress"
    if t is SkipOk:
        return "skip-ok " + str(_u(v.value, _I64_MIN, _U64, "skip-ok value", "bad-value"))
    if t is Rewrite:
        call = v.call
        if type(call) is Call and call.name in REPLY_VERBS and not (call.name == "kill" and call.args):
            raise _err("bad-value", f"a rewrite to {call.name!r} would read as a verdict")
        return _fmt_call(call)
    if t is Deliver:
        signo = v.signo
        return "deliver" if signo is None else "deliver " + _signal_text(signo)
    if t is Ok or t is Fail:
        return _fmt_result(v)
    raise _err("bad-value", f"not a verdict: {v!r}")


def format_reply(r: Reply | Fetch | Hello | Error) -> bytes:
    """The canonical line (with its ``\\n``) of one authorizer->broker line.

    Raises ``ProtocolError("line-too-long")`` if the line would exceed :data:`MAX_LINE`.
    """
    line = _format_reply(r)
    if len(line) > MAX_LINE:
        raise _err("line-too-long", f"formatted line of {len(line)} bytes (limit {MAX_LINE})")
    return line


def _format_reply(reply: Reply | Fetch | Hello | Error) -> bytes:
    r: Any = reply  # see _fmt: dispatch on the exact type
    t = type(r)
    if t is Reply:
        if not r.sets and not r.cache:
            fast = _FAST_FORMAT.get(type(r.verdict))
            if r.id is None:
                return fast if fast is not None else (_fmt_verdict(r.verdict) + "\n").encode("ascii")
            if fast is not None:  # ``ID cont``: every answer of a handshake authorizer that lets calls run
                return b"%d %s" % (_u(r.id, 0, _U63, "reply ID"), fast)
        line = _fmt_verdict(r.verdict)
        if r.id is not None:
            line = f"{_u(r.id, 0, _U63, 'reply ID')} {line}"
        for sm in r.sets:
            if type(sm) is not SetMem or type(sm.data) is not bytes:
                raise _err("bad-value", f"not a SetMem: {sm!r}")
            argn = _u(sm.argn, 1, MAX_ARGN, "ARGN")
            off = _u(sm.offset, 0, _U63, "OFFSET")
            where = f"{argn}+{off}" if off else str(argn)
            line += f" ; set {where} {quote(sm.data)}"
        if r.cache:
            line += " ; cache"
        return (line + "\n").encode("ascii")
    if t is Fetch:
        line = (f"fetch {_u(r.id, 0, _U63, 'ID')} {_u(r.argn, 1, MAX_ARGN, 'ARGN')} "
                f"{_u(r.offset, 0, _U63, 'OFFSET')} {_u(r.length, 0, _U63, 'LENGTH')}\n")
        return line.encode("ascii")
    if t is Hello:
        return (_fmt_hello(r) + "\n").encode("ascii")
    if t is Error:
        return (_fmt_error(r) + "\n").encode("ascii")
    raise _err("bad-value", f"not a reply: {r!r}")
