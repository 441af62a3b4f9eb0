"""The one exception of the protocol layer, and the fixed list of error codes.

Every malformed line, whatever its bytes, ends up as a :class:`ProtocolError`
with a code from :data:`ERROR_CODES`; that code is what goes on the wire in an
``error CODE text`` line, so a peer written in any language can react to the
code without parsing English.  Keeping the codes in one table here is what lets
the spec (``PROTOCOL.md``), the conformance vectors and the codec agree.
"""

from __future__ import annotations

from .types import Error

#: Every error code of protocol v1 -> what it means.  The first group is raised
#: by the codec for a line it cannot parse; the second group is only ever sent
#: by the broker (or a peer) about a line that parsed but cannot be honoured.
ERROR_CODES: dict[str, str] = {
    # --- syntax errors (raised by the codec) ---
    "line-too-long": "the line is longer than 65536 bytes including its newline",
    "not-ascii": "a byte outside printable ASCII 0x20..0x7e (other than the final newline)",
    "syntax": "the line's structure is wrong: empty line, missing or extra fields, bad separator",
    "unknown-verb": "the first word of the line is not a verb of this direction",
    "bad-number": "an ID, PID, TID, ARGN, OFFSET, LENGTH or version is not a decimal in range",
    "bad-value": "an argument, note or result value is malformed or out of range",
    "bad-string": "a quoted string is unterminated or has an escape other than \\\\ \\\" \\n \\r \\t \\xHH",
    "too-deep": "structs, arrays and fields nested deeper than 32 levels",
    "bad-errno": "an errno that is neither a known name nor a number 1..4095",
    "bad-signal": "a signal that is neither a known name nor a number 1..64",
    "partial-line": "the stream ended in the middle of a line (no final newline)",
    # --- semantic errors (sent by the broker about a well-formed line) ---
    "unknown-syscall": "a rewrite names a system call the broker does not know for this ABI",
    "unknown-id": "a reply or fetch names an ID that is not waiting for this authorizer",
    "missing-id": "a reply in handshake mode has no ID prefix (it answers nothing)",
    "bad-verdict": "a verdict that does not fit the event (e.g. deliver for a syscall, ok before step)",
    "bad-fetch": "a fetch for an argument that is not a buffer, or a range the broker cannot read",
    "bad-hello": "a hello that is malformed or has an unacceptable attribute",
    "version": "no protocol version in common",
    "not-allowed": "the request is refused by the broker's configuration",
    "unexpected": "a well-formed line that is not expected now (a reply with no question waiting, a second hello)",
    "unsupported": "a well-formed request this broker does not implement (e.g. fetch in an early broker)",
    "internal": "the broker failed; the text says how",
}

#: The codes the codec itself can raise (a parser in any language must map
#: each malformed vector line to one of these).
SYNTAX_CODES: frozenset[str] = frozenset(
    ("line-too-long", "not-ascii", "syntax", "unknown-verb", "bad-number", "bad-value",
     "bad-string", "too-deep", "bad-errno", "bad-signal")
)


class ProtocolError(Exception):
    """A line that is not valid protocol v1 (or a request the peer refuses).

    ``code`` is a fixed token from :data:`ERROR_CODES` (stable across
    versions, machine-readable); ``message`` is free English for humans and
    logs.  :meth:`to_line` turns it into the ``error CODE text`` line to send
    back, which is how a broker reports the problem without closing the pipe.
    """

    __slots__ = ("code", "message")

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code

    def __repr__(self) -> str:
        return f"ProtocolError({self.code!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProtocolError):
            return NotImplemented
        return (self.code, self.message) == (other.code, other.message)

    def __hash__(self) -> int:
        return hash((self.code, self.message))

    def to_event(self) -> Error:
        """The :class:`~brokerd.protocol.types.Error` event reporting this error."""
        return Error(self.code, self.message)

    def to_line(self) -> bytes:
        """The wire line ``error CODE text\\n`` (text sanitized to printable ASCII)."""
        from .codec import format_event  # late import: codec imports this module

        return format_event(self.to_event())
