"""brokerd line protocol v1: types, sans-IO codec, line framing and errors.

Import from here (``from brokerd.protocol import parse_event, Reply, Cont``);
the submodules are an implementation detail.  The wire format is specified in
``protocol/PROTOCOL.md``, with conformance vectors in ``protocol/vectors/``.
Import it as ``brokerd.protocol``, never as ``protocol`` (see ``_namecheck``).
"""

from . import _namecheck  # noqa: F401  (first: refuses the folder name)
from .codec import (
    MAX_ARGN,
    MAX_DEPTH,
    MAX_LINE,
    REPLY_VERBS,
    VERSION,
    format_call,
    format_event,
    format_reply,
    format_value,
    parse_call,
    parse_event,
    parse_reply,
    parse_value,
    quote,
)
from .errors import ERROR_CODES, SYNTAX_CODES, ProtocolError
from .linebuf import LineBuffer, PartialLine, TooLong
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
    Result,
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
    # codec
    "VERSION", "MAX_LINE", "MAX_DEPTH", "MAX_ARGN", "REPLY_VERBS",
    "parse_event", "parse_reply", "parse_value", "parse_call",
    "format_event", "format_reply", "format_value", "format_call", "quote",
    # framing and errors
    "LineBuffer", "TooLong", "PartialLine", "ProtocolError", "ERROR_CODES", "SYNTAX_CODES",
    # values
    "Int", "Ptr", "Oct", "Sym", "Str", "Addr", "Field", "Struct", "Array", "Value", "Call",
    # results
    "Ok", "Fail", "Result",
    # events
    "SyscallEvent", "SysretEvent", "SignalEvent", "ProcEvent", "Hello", "Error", "Data", "Event",
    # verdicts and replies
    "Cont", "Step", "Kill", "SkipFail", "SkipOk", "Rewrite", "Deliver", "Suppress",
    "SetMem", "Fetch", "Reply", "Verdict",
]
