"""Newline framing for protocol streams, with a hard line-length limit.

Sans-IO like the codec: the caller reads bytes from wherever (pipe, socket,
trio stream) and :meth:`LineBuffer.feed` s them; complete lines come out of
iteration.  The limit is what keeps one misbehaving peer from making the broker
buffer gigabytes: an over-long line is reported once (:class:`TooLong`) and the
rest of it is skipped up to its newline, so the stream stays usable.  A stream
that ends mid-line is reported too (:class:`PartialLine`), never silently lost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from .errors import ProtocolError
from .record import Record, _set

__all__ = ["LineBuffer", "TooLong", "PartialLine"]


class TooLong(Record):
    """An over-long line was seen and is being discarded.

    ``length`` is how many bytes of it (newline excluded) had been seen when it
    was reported: at least ``max_line``.  It is reported as soon as the limit is
    crossed, before its end arrives, so the true length may be larger.
    """

    __slots__ = ("length",)
    length: int

    def __init__(self, length: int) -> None:
        _set(self, "length", length)

    def to_error(self) -> ProtocolError:
        return ProtocolError("line-too-long", f"line of at least {self.length + 1} bytes discarded")


class PartialLine(Record):
    """The stream ended (``eof()``) after these bytes, with no final newline."""

    __slots__ = ("data",)
    data: bytes

    def __init__(self, data: bytes) -> None:
        _set(self, "data", data)

    def to_error(self) -> ProtocolError:
        return ProtocolError("partial-line", f"stream ended inside a line of {len(self.data)} bytes")


Item = bytes | TooLong | PartialLine


class LineBuffer:
    """Split a byte stream into lines of at most ``max_line`` bytes (newline included).

    >>> lb = LineBuffer()
    >>> lb.feed(b"cont\\r\\nste")
    >>> list(lb)
    [b'cont']
    >>> lb.feed(b"p\\n"); list(lb)
    [b'step']

    Lines come out without their ``\\n`` (and without a ``\\r`` just before it).
    The length limit counts every byte of the line including ``\\r`` and ``\\n``.
    """

    __slots__ = ("max_line", "_buf", "_out", "_discarding", "_eof")

    def __init__(self, max_line: int = 65536) -> None:
        if max_line < 2:
            raise ValueError("max_line must be at least 2 (one byte and the newline)")
        self.max_line = max_line
        self._buf = bytearray()
        self._out: deque[Item] = deque()
        self._discarding = False
        self._eof = False

    @property
    def pending(self) -> int:
        """Bytes held of the current incomplete line."""
        return len(self._buf)

    @property
    def idle(self) -> bool:
        """Nothing held: no part of a line, no line to iterate, not skipping
        one.  The next bytes fed start a line (a reader may then take a read
        of one whole line as that line without feeding it)."""
        return not self._buf and not self._out and not self._discarding

    @property
    def discarding(self) -> bool:
        """True while skipping the tail of an over-long line."""
        return self._discarding

    def _emit(self, line: bytes) -> None:
        if len(line) >= self.max_line:
            self._out.append(TooLong(len(line)))
        elif line.endswith(b"\r"):
            self._out.append(line[:-1])
        else:
            self._out.append(line)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes read from the stream; complete lines become available to iterate."""
        if self._eof:
            raise RuntimeError("LineBuffer.feed() after eof()")
        data = bytes(data)
        if not data:
            return
        pos = 0
        find = data.find
        if self._discarding:
            i = find(b"\n")
            if i < 0:
                return
            self._discarding = False
            pos = i + 1
        buf = self._buf
        if buf:
            i = find(b"\n", pos)
            if i < 0:
                buf += data[pos:]
                self._check_partial()
                return
            buf += data[pos:i]
            line = bytes(buf)
            buf.clear()
            self._emit(line)
            pos = i + 1
        i = find(b"\n", pos)
        while i >= 0:
            self._emit(data[pos:i])
            pos = i + 1
            i = find(b"\n", pos)
        if pos < len(data):
            buf += data[pos:]
            self._check_partial()

    def _check_partial(self) -> None:
        buf = self._buf
        if len(buf) >= self.max_line:  # even a newline now would exceed the limit
            self._out.append(TooLong(len(buf)))
            buf.clear()
            self._discarding = True

    def eof(self) -> None:
        """The stream ended: a held partial line becomes a :class:`PartialLine` item."""
        if self._eof:
            return
        self._eof = True
        if self._buf:
            self._out.append(PartialLine(bytes(self._buf)))
            self._buf.clear()
        self._discarding = False

    def __iter__(self) -> Iterator[Item]:
        return self

    def __next__(self) -> Item:
        try:
            return self._out.popleft()
        except IndexError:
            raise StopIteration from None

    def __len__(self) -> int:
        """Number of items ready to be iterated."""
        return len(self._out)
