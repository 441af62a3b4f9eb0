"""JSON rendering of protocol values, for the language-neutral conformance vectors.

The vectors in ``protocol/vectors/*.jsonl`` say what each line *means* in
plain JSON, so an implementation in any language can check its parser against
them without sharing code with us.  This module is the Python side of that
mapping (documented in PROTOCOL.md, "Conformance vectors"); the tests use it to
turn a vector's ``meaning`` into protocol types and back.

Byte strings (string values, ``set`` data, and the vector ``line`` itself) are
JSON strings whose characters are all U+0000..U+00FF, one character per byte
(ISO-8859-1), so every byte value has exactly one JSON spelling.
"""

from __future__ import annotations

from typing import Any

from .types import (
    Addr,
    Array,
    Call,
    Cont,
    Data,
    Deliver,
    Error,
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
)

__all__ = [
    "bytes_to_json",
    "bytes_from_json",
    "value_to_json",
    "value_from_json",
    "call_to_json",
    "call_from_json",
    "to_json",
    "from_json",
]

JSON = dict[str, Any]


def bytes_to_json(data: bytes) -> str:
    """Bytes -> JSON string, one U+00XX character per byte."""
    return data.decode("latin-1")


def bytes_from_json(text: str) -> bytes:
    """The inverse of :func:`bytes_to_json`; a character above U+00FF is an error."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"byte string {text!r} has a character above U+00FF") from None


def value_to_json(v: Value) -> JSON:
    """``Int(2)`` -> ``{"int": 2}``, ``Str(b"a", 9)`` -> ``{"str": "a", "total": 9}``..."""
    x: Any = v  # dispatch on the exact type (mypy narrows only isinstance)
    t = type(x)
    if t is Int:
        return {"int": x.value}
    if t is Ptr:
        return {"ptr": x.value}
    if t is Oct:
        return {"oct": x.value}
    if t is Sym:
        out: JSON = {"sym": list(x.names)}
        if x.rest:
            out["rest"] = x.rest
        return out
    if t is Str:
        out = {"str": bytes_to_json(x.data)}
        if x.total is not None:
            out["total"] = x.total
        return out
    if t is Addr:
        return {"addr": x.host, "port": x.port}
    if t is Field:
        return {"field": x.name, "value": value_to_json(x.value)}
    if t is Struct:
        return {"struct": [value_to_json(f) for f in x.fields]}
    if t is Array:
        return {"array": [value_to_json(i) for i in x.items]}
    raise TypeError(f"not a value: {x!r}")


def value_from_json(d: JSON) -> Value:
    """The inverse of :func:`value_to_json`."""
    if not isinstance(d, dict):
        raise ValueError(f"a value is a JSON object, not {d!r}")
    if "int" in d:
        return Int(_int(d["int"]))
    if "ptr" in d:
        return Ptr(_int(d["ptr"]))
    if "oct" in d:
        return Oct(_int(d["oct"]))
    if "sym" in d:
        return Sym(tuple(_strs(d["sym"])), _int(d.get("rest", 0)))
    if "str" in d:
        total = d.get("total")
        return Str(bytes_from_json(d["str"]), None if total is None else _int(total))
    if "addr" in d:
        return Addr(str(d["addr"]), _int(d["port"]))
    if "field" in d:
        return Field(str(d["field"]), value_from_json(d["value"]))
    if "struct" in d:
        return Struct(tuple(value_from_json(x) for x in d["struct"]))
    if "array" in d:
        return Array(tuple(value_from_json(x) for x in d["array"]))
    raise ValueError(f"unknown value {d!r}")


def _int(x: object) -> int:
    if type(x) is not int:
        raise ValueError(f"expected an integer, got {x!r}")
    return x


def _strs(x: object) -> list[str]:
    if not isinstance(x, list) or not all(isinstance(i, str) for i in x):
        raise ValueError(f"expected a list of strings, got {x!r}")
    return x


def call_to_json(c: Call) -> JSON:
    return {"name": c.name, "args": [value_to_json(a) for a in c.args]}


def call_from_json(d: JSON) -> Call:
    return Call(str(d["name"]), tuple(value_from_json(a) for a in d.get("args", [])))


def _notes_to_json(notes: tuple[tuple[str, Value], ...]) -> list[list[Any]]:
    return [[k, value_to_json(v)] for k, v in notes]


def _notes_from_json(notes: list[list[Any]]) -> tuple[tuple[str, Value], ...]:
    return tuple((str(k), value_from_json(v)) for k, v in notes)


def _result_to_json(r: Ok | Fail) -> JSON:
    if isinstance(r, Ok):
        return {"ok": value_to_json(r.value)}
    return {"fail": r.errno}


def _result_from_json(d: JSON) -> Ok | Fail:
    if "ok" in d:
        v = value_from_json(d["ok"])
        if type(v) is not Int and type(v) is not Ptr:
            raise ValueError(f"an ok value is int or ptr, not {d!r}")
        return Ok(v)
    return Fail(_int(d["fail"]))


_SIMPLE_VERDICTS: dict[str, object] = {
    "cont": Cont(), "step": Step(), "kill": Kill(), "suppress": Suppress(),
}


def _verdict_to_json(verdict: object) -> JSON:
    v: Any = verdict  # dispatch on the exact type (mypy narrows only isinstance)
    t = type(v)
    if t is Cont:
        return {"verdict": "cont"}
    if t is Step:
        return {"verdict": "step"}
    if t is Kill:
        return {"verdict": "kill"}
    if t is Suppress:
        return {"verdict": "suppress"}
    if t is SkipFail:
        return {"verdict": "skip-fail", "errno": v.errno}
    if t is SkipOk:
        return {"verdict": "skip-ok", "value": v.value}
    if t is Rewrite:
        return {"verdict": "rewrite", "call": call_to_json(v.call)}
    if t is Deliver:
        return {"verdict": "deliver", "signo": v.signo}
    if t is Ok:
        return {"verdict": "ok", "value": value_to_json(v.value)}
    if t is Fail:
        return {"verdict": "fail", "errno": v.errno}
    raise TypeError(f"not a verdict: {v!r}")


def _verdict_from_json(d: JSON) -> object:
    kind = d["verdict"]
    if kind in _SIMPLE_VERDICTS:
        return _SIMPLE_VERDICTS[kind]
    if kind == "skip-fail":
        return SkipFail(_int(d["errno"]))
    if kind == "skip-ok":
        return SkipOk(_int(d["value"]))
    if kind == "rewrite":
        return Rewrite(call_from_json(d["call"]))
    if kind == "deliver":
        signo = d.get("signo")
        return Deliver(None if signo is None else _int(signo))
    if kind == "ok":
        return _result_from_json({"ok": d["value"]})
    if kind == "fail":
        return Fail(_int(d["errno"]))
    raise ValueError(f"unknown verdict {d!r}")


def to_json(obj: object) -> JSON:
    """Any event, reply line, call or value -> its JSON meaning (see PROTOCOL.md)."""
    o: Any = obj  # dispatch on the exact type (mypy narrows only isinstance)
    t = type(o)
    if t is SyscallEvent:
        return {"type": "syscall", "id": o.id, "pid": o.pid, "tid": o.tid, "abi": o.abi,
                "call": call_to_json(o.call), "notes": _notes_to_json(o.notes)}
    if t is SysretEvent:
        return {"type": "sysret", "id": o.id, "pid": o.pid, "tid": o.tid, "abi": o.abi,
                "name": o.name, "result": _result_to_json(o.result),
                "notes": _notes_to_json(o.notes)}
    if t is SignalEvent:
        return {"type": "signal", "id": o.id, "pid": o.pid, "tid": o.tid, "signo": o.signo}
    if t is ProcEvent:
        return {"type": "proc", "pid": o.pid, "tid": o.tid, "kind": o.kind,
                "args": [value_to_json(a) for a in o.args]}
    if t is Hello:
        return {"type": "hello", "versions": list(o.versions), "attrs": [list(a) for a in o.attrs]}
    if t is Error:
        return {"type": "error", "code": o.code, "text": o.text}
    if t is Data:
        return {"type": "data", "id": o.id, "argn": o.argn, "offset": o.offset,
                "data": value_to_json(o.data)}
    if t is Reply:
        out = {"type": "reply", "id": o.id, "verdict": _verdict_to_json(o.verdict),
               "sets": [{"argn": s.argn, "offset": s.offset, "data": bytes_to_json(s.data)}
                        for s in o.sets]}
        if o.cache:
            out["cache"] = True
        return out
    if t is Fetch:
        return {"type": "fetch", "id": o.id, "argn": o.argn, "offset": o.offset,
                "length": o.length}
    if t is Call:
        return {"type": "call", **call_to_json(o)}
    return value_to_json(o)


def from_json(d: JSON) -> object:
    """The inverse of :func:`to_json`.  Raises ValueError/KeyError on a bad shape."""
    if not isinstance(d, dict):
        raise ValueError(f"a meaning is a JSON object, not {d!r}")
    kind = d.get("type")
    if kind is None:
        return value_from_json(d)
    if kind == "syscall":
        return SyscallEvent(_int(d["id"]), _int(d["pid"]), _int(d["tid"]), str(d["abi"]),
                            call_from_json(d["call"]), _notes_from_json(d.get("notes", [])))
    if kind == "sysret":
        return SysretEvent(_int(d["id"]), _int(d["pid"]), _int(d["tid"]), str(d["abi"]),
                           str(d["name"]), _result_from_json(d["result"]),
                           _notes_from_json(d.get("notes", [])))
    if kind == "signal":
        return SignalEvent(_int(d["id"]), _int(d["pid"]), _int(d["tid"]), _int(d["signo"]))
    if kind == "proc":
        return ProcEvent(_int(d["pid"]), _int(d["tid"]), str(d["kind"]),
                         tuple(value_from_json(a) for a in d.get("args", [])))
    if kind == "hello":
        return Hello(tuple(_int(v) for v in d["versions"]),
                     tuple((str(k), str(v)) for k, v in d.get("attrs", [])))
    if kind == "error":
        return Error(str(d["code"]), str(d.get("text", "")))
    if kind == "data":
        data = value_from_json(d["data"])
        if type(data) is not Str:
            raise ValueError(f"data is a str value, not {d['data']!r}")
        return Data(_int(d["id"]), _int(d["argn"]), _int(d["offset"]), data)
    if kind == "reply":
        rid = d.get("id")
        sets = tuple(SetMem(_int(s["argn"]), bytes_from_json(s["data"]), _int(s.get("offset", 0)))
                     for s in d.get("sets", []))
        return Reply(_verdict_from_json(d["verdict"]), None if rid is None else _int(rid), sets,  # type: ignore[arg-type]
                     bool(d.get("cache", False)))
    if kind == "fetch":
        return Fetch(_int(d["id"]), _int(d["argn"]), _int(d["offset"]), _int(d["length"]))
    if kind == "call":
        return call_from_json(d)
    raise ValueError(f"unknown meaning type {kind!r}")
