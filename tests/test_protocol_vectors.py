"""Run every conformance vector in protocol/vectors/*.jsonl against the codec.

The vectors are the language-neutral definition of protocol v1; this test is
the Python implementation passing them (see PROTOCOL.md, "Conformance vectors").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from brokerd.protocol import (
    SYNTAX_CODES,
    ProtocolError,
    format_call,
    format_event,
    format_reply,
    format_value,
    parse_call,
    parse_event,
    parse_reply,
    parse_value,
)
from brokerd.protocol.layers import layer_attrs, layer_to_json, parse_layer
from brokerd.protocol.types import Hello
from brokerd.protocol.vectorjson import bytes_from_json, from_json, to_json

VECTOR_DIR = Path(__file__).resolve().parent.parent / "protocol" / "vectors"

PARSE = {"event": parse_event, "reply": parse_reply, "value": parse_value, "call": parse_call}


def _format(direction: str, obj: object) -> bytes:
    if direction == "event":
        return format_event(obj)  # type: ignore[arg-type]
    if direction == "reply":
        return format_reply(obj)  # type: ignore[arg-type]
    if direction == "value":
        return format_value(obj).encode("ascii")  # type: ignore[arg-type]
    return format_call(obj).encode("ascii")  # type: ignore[arg-type]


def _load() -> list[tuple[str, int, dict]]:
    out = []
    for path in sorted(VECTOR_DIR.glob("*.jsonl")):
        with path.open(encoding="ascii") as f:
            for n, text in enumerate(f, 1):
                if text.strip():
                    out.append((path.name, n, json.loads(text)))
    return out


VECTORS = _load()


def _strip_terminator(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


def test_there_are_enough_vectors() -> None:
    assert len(VECTORS) >= 120
    dirs = {v["dir"] for _, _, v in VECTORS}
    assert dirs == {"event", "reply", "value", "call", "layer"}
    kinds = {v["meaning"].get("type") for _, _, v in VECTORS if v["valid"] and v["dir"] != "layer"}
    for k in ("syscall", "sysret", "signal", "proc", "hello", "error", "data", "reply", "fetch", "call"):
        assert k in kinds, k
    verdicts = {v["meaning"]["verdict"]["verdict"] for _, _, v in VECTORS
                if v["valid"] and v["dir"] == "reply" and v["meaning"].get("type") == "reply"}
    assert verdicts == {"cont", "step", "kill", "suppress", "skip-fail", "skip-ok", "rewrite",
                        "deliver", "ok", "fail"}
    codes = {v["error"] for _, _, v in VECTORS if not v["valid"] and v["dir"] != "layer"}
    assert codes == set(SYNTAX_CODES)


def test_every_byte_value_is_covered_by_escape_vectors() -> None:
    seen: set[int] = set()
    for _, _, v in VECTORS:
        if v["valid"] and v["dir"] == "value" and "str" in v["meaning"]:
            seen.update(bytes_from_json(v["meaning"]["str"]))
    assert seen == set(range(256))


@pytest.mark.parametrize(("fname", "lineno", "vec"), VECTORS,
                         ids=[f"{f}:{n}" for f, n, _ in VECTORS])
def test_vector(fname: str, lineno: int, vec: dict) -> None:
    direction = vec["dir"]
    if direction == "layer":
        _layer_vector(vec)
        return
    parse = PARSE[direction]
    raw = bytes_from_json(vec["line"])
    if not vec["valid"]:
        with pytest.raises(ProtocolError) as info:
            parse(raw)
        assert info.value.code == vec["error"], info.value
        assert "meaning" not in vec
        # str input behaves the same as bytes input
        with pytest.raises(ProtocolError) as info2:
            parse(vec["line"])
        assert info2.value.code == vec["error"]
        return

    parsed = parse(raw)
    # the meaning, both ways
    assert parsed == from_json(vec["meaning"])
    assert to_json(parsed) == vec["meaning"]
    # str input, and an added newline, change nothing
    assert parse(vec["line"]) == parsed
    if direction in ("event", "reply") and not raw.endswith(b"\n") and len(raw) + 2 <= 65536:
        assert parse(raw + b"\n") == parsed
        assert parse(raw + b"\r\n") == parsed

    out = _format(direction, parsed)
    if direction in ("event", "reply"):
        assert out.endswith(b"\n")
        out = out[:-1]
        expected = vec.get("canonical", vec["line"])
        if "canonical" not in vec:
            expected = _strip_terminator(raw).decode("ascii")
    else:
        expected = vec.get("canonical", vec["line"])
    assert out.decode("ascii") == expected
    # the canonical line is a fixed point
    assert parse(out) == parsed
    assert _format(direction, parse(out)).rstrip(b"\n") == out


def _layer_vector(vec: dict) -> None:
    """A handshake line declaring a kernel layer (PROTOCOL.md 7.6): its
    meaning, its canonical attributes, or the bad-hello it earns."""
    hello = parse_reply(vec["line"])
    if not vec["valid"]:
        assert vec["error"] == "bad-hello"
        with pytest.raises(ValueError):
            parse_layer(hello.attrs)
        return
    spec = parse_layer(hello.attrs)
    assert layer_to_json(spec) == vec["meaning"]
    attrs = layer_attrs(spec)
    text = format_reply(Hello((1,), attrs)).decode().rstrip("\n").removeprefix("hello 1").strip()
    assert text == vec["canonical"]
    assert parse_layer(attrs) == spec  # the canonical attributes mean the same layer
