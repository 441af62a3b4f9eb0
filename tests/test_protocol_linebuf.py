"""LineBuffer: framing that survives any chunking, over-long lines and EOF."""

from __future__ import annotations

import pytest
from brokerd.protocol import LineBuffer, PartialLine, ProtocolError, TooLong
from hypothesis import given, settings
from hypothesis import strategies as st

STREAM = b'cont\nsyscall 1 2 3 x86_64 write 2, "a\\nb", 3\r\n\n7 skip-fail EIO\nlast\n'
LINES = [b"cont", b'syscall 1 2 3 x86_64 write 2, "a\\nb", 3', b"", b"7 skip-fail EIO", b"last"]


def run(chunks: list[bytes], max_line: int = 65536, eof: bool = False) -> list[object]:
    lb = LineBuffer(max_line)
    out: list[object] = []
    for c in chunks:
        lb.feed(c)
        out.extend(lb)
    if eof:
        lb.eof()
        out.extend(lb)
    return out


def test_split_at_every_position() -> None:
    for i in range(len(STREAM) + 1):
        assert run([STREAM[:i], STREAM[i:]]) == LINES, i


def test_split_at_every_pair_of_positions() -> None:
    for i in range(len(STREAM) + 1):
        for j in range(i, len(STREAM) + 1):
            assert run([STREAM[:i], STREAM[i:j], STREAM[j:]]) == LINES, (i, j)


def test_byte_by_byte() -> None:
    assert run([bytes([b]) for b in STREAM]) == LINES


def test_crlf_and_lone_cr() -> None:
    assert run([b"a\r\nb\rc\n\r\n"]) == [b"a", b"b\rc", b""]


def test_overlong_line_reported_once_then_recovers() -> None:
    data = b"ok1\n" + b"x" * 100 + b"\nok2\n"
    for i in range(len(data) + 1):
        out = run([data[:i], data[i:]], max_line=16)
        assert out[0] == b"ok1" and out[-1] == b"ok2", (i, out)
        marks = [o for o in out if isinstance(o, TooLong)]
        assert len(marks) == 1 and marks[0].length >= 16, (i, out)
        assert len(out) == 3


def test_overlong_byte_by_byte_reports_at_the_limit() -> None:
    lb = LineBuffer(8)
    seen: list[object] = []
    for k, b in enumerate(b"0123456789abcdef\nz\n"):
        lb.feed(bytes([b]))
        got = list(lb)
        if got and isinstance(got[0], TooLong):
            assert k == 7  # the 8th byte without a newline cannot fit any more
        seen.extend(got)
    assert seen == [TooLong(8), b"z"]


def test_limit_counts_the_newline_and_cr() -> None:
    assert run([b"a" * 15 + b"\n"], max_line=16) == [b"a" * 15]
    assert run([b"a" * 16 + b"\n"], max_line=16) == [TooLong(16)]
    assert run([b"a" * 14 + b"\r\n"], max_line=16) == [b"a" * 14]
    assert run([b"a" * 15 + b"\r\n"], max_line=16) == [TooLong(16)]
    # default limit: 65535 bytes + newline fit
    assert run([b"a" * 65535 + b"\n"]) == [b"a" * 65535]
    assert run([b"a" * 65536 + b"\nb\n"]) == [TooLong(65536), b"b"]


def test_many_overlong_lines_in_a_row() -> None:
    data = (b"y" * 50 + b"\n") * 3 + b"end\n"
    assert run([data], max_line=10) == [TooLong(50)] * 3 + [b"end"]
    assert run([bytes([b]) for b in data], max_line=10) == [TooLong(10)] * 3 + [b"end"]


def test_eof_reports_partial_line() -> None:
    assert run([b"cont\nste"], eof=True) == [b"cont", PartialLine(b"ste")]
    assert run([b"cont\n"], eof=True) == [b"cont"]
    assert run([], eof=True) == []
    # an unterminated over-long line was already reported; eof adds nothing
    assert run([b"z" * 40], max_line=10, eof=True) == [TooLong(40)]


def test_feed_after_eof_is_an_error() -> None:
    lb = LineBuffer()
    lb.eof()
    lb.eof()  # idempotent
    with pytest.raises(RuntimeError):
        lb.feed(b"x\n")


def test_markers_become_protocol_errors() -> None:
    e = TooLong(70000).to_error()
    assert isinstance(e, ProtocolError) and e.code == "line-too-long"
    assert e.to_line().startswith(b"error line-too-long ")
    assert PartialLine(b"abc").to_error().code == "partial-line"


def test_accepts_bytearray_and_memoryview_and_reports_pending() -> None:
    lb = LineBuffer()
    lb.feed(bytearray(b"ab"))
    assert lb.pending == 2 and len(lb) == 0
    lb.feed(memoryview(b"c\nd"))
    assert len(lb) == 1 and list(lb) == [b"abc"] and lb.pending == 1


def test_bad_max_line() -> None:
    with pytest.raises(ValueError):
        LineBuffer(1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=10),
       st.lists(st.integers(0, 400), max_size=12), st.integers(2, 24))
def test_any_chunking_matches_a_simple_reference(lines: list[bytes], cuts: list[int],
                                                 max_line: int) -> None:
    data = b"".join(x + b"\n" for x in lines)
    expected: list[object] = []
    for x in lines:
        if len(x) + 1 > max_line:
            expected.append(TooLong)
        else:
            expected.append(x[:-1] if x.endswith(b"\r") else x)
    pts = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *pts], [*pts, len(data)], strict=True)]
    got = run(chunks, max_line=max_line, eof=True)
    assert [TooLong if isinstance(g, TooLong) else g for g in got] == expected
