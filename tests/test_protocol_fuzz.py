"""Fuzzing: whatever bytes arrive, the codec returns a value or raises ProtocolError.

A broker that crashes on a malformed line is a broker any authorizer (or
tracee, through the strings it makes us print) can take down.  These tests
throw random bytes, and random mutations of every valid vector line, at every
parser, and also check that whatever *does* parse formats back to a line that
parses to the same value.
"""

from __future__ import annotations

import json
import random
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
from brokerd.protocol.vectorjson import bytes_from_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

VECTOR_DIR = Path(__file__).resolve().parent.parent / "protocol" / "vectors"
FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PARSERS = [
    (parse_event, lambda x: format_event(x)),
    (parse_reply, lambda x: format_reply(x)),
    (parse_value, lambda x: format_value(x).encode("ascii")),
    (parse_call, lambda x: format_call(x).encode("ascii")),
]


def _corpus() -> list[bytes]:
    lines = []
    for path in sorted(VECTOR_DIR.glob("*.jsonl")):
        for text in path.read_text(encoding="ascii").splitlines():
            v = json.loads(text)
            raw = bytes_from_json(v["line"])
            if len(raw) < 2000:
                lines.append(raw)
    return lines


CORPUS = _corpus()
# Bytes that matter to the grammar, plus a few that must always be rejected.
ALPHABET = b' ,;{}[]"\\x0123456789abcdefABCDEFnrt=|.:-+_NULL\n\r\t\x00\x7f\x80\xff'


def check(line: bytes | str) -> None:
    """The contract: value or ProtocolError; a value survives format+parse."""
    for parse, fmt in PARSERS:
        try:
            v = parse(line)
        except ProtocolError as e:
            assert e.code in SYNTAX_CODES, e
            continue
        try:
            out = fmt(v)
        except ProtocolError as e:
            # A value can be parseable yet too long once canonically escaped
            # (e.g. lowercase \\x.. escapes are never longer, so this is only
            # possible via the line limit).
            assert e.code == "line-too-long", (line, v, e)
            continue
        assert parse(out) == v, (line, out, v)
        assert fmt(parse(out)) == out


def mutate(rng: random.Random, line: bytes, n: int) -> bytes:
    b = bytearray(line)
    for _ in range(n):
        op = rng.randrange(5)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            del b[min(pos, len(b) - 1)]
        elif op == 1:
            b.insert(pos, rng.choice(ALPHABET))
        elif op == 2 and b:
            b[min(pos, len(b) - 1)] = rng.choice(ALPHABET)
        elif op == 3 and b:
            j = rng.randrange(len(b))
            k = rng.randrange(len(b))
            b[pos:pos] = b[min(j, k):max(j, k)]  # duplicate a slice
        else:
            b.insert(pos, rng.randrange(256))
    return bytes(b)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.lists(st.sampled_from(list(ALPHABET)), max_size=120).map(bytes))
def test_random_grammar_bytes(data: bytes) -> None:
    check(data)
    check(b"syscall 1 1 1 x86_64 f " + data)
    check(b"cont ; set 1 " + data)


@FUZZ
@given(st.text(max_size=100))
def test_random_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.sampled_from(CORPUS), st.randoms(use_true_random=False), st.integers(1, 6))
def test_mutated_vector_lines(line: bytes, rng: random.Random, n: int) -> None:
    check(mutate(rng, line, n))


def test_many_seeded_mutations() -> None:
    """A cheap, broad, deterministic sweep: every corpus line, 25 mutants each."""
    rng = random.Random(20240601)
    for line in CORPUS:
        for _ in range(25):
            check(mutate(rng, line, rng.randint(1, 4)))


@pytest.mark.parametrize("line", [
    b"[" * 65000, b"{" * 65000, b"a=" * 32000, b"syscall 1 1 1 x86_64 f " + b"[" * 60000,
    b'"' + b"\\" * 65000, b"9" * 65000, b"0x" + b"f" * 65000, b"0" * 65000, b"1" * 5000 + b"|",
    b'"abc"...' + b"9" * 60000, b"skip-fail " + b"9" * 60000, b"deliver " + b"0" * 60000 + b"9",
    b"cont ; set " + b"1" * 60000 + b' "x"', b"hello " + b"1," * 30000, b"a|" * 30000 + b"0x1",
    b"x" * 70000, b"\xff" * 10, b"",
])
def test_hostile_lines(line: bytes) -> None:
    check(line)
    check(line + b"\n")


def test_non_line_types_are_type_errors() -> None:
    with pytest.raises(TypeError):
        parse_event(None)  # type: ignore[arg-type]
    assert parse_reply(bytearray(b"cont\n")) == parse_reply(b"cont")
    assert parse_reply(memoryview(b"7 cont")) == parse_reply("7 cont")
