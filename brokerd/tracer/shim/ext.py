"""The compiled external question: one process member asked about a pinned open in one C call.

The common external decision (issue #13): a judged open of a plain absolute
path (the pin's kind, pin.py), one authorizer process subscribed, nothing
outstanding with it.  The quick walk (``plan.quick``, Entry._ask_entry)
spent about two dozen Python frames on it: the decode, the notes, the event
and its line, the write, the spin's polls, the compare, the pin.  Here the
shim checks in Python only what it alone knows (the thread may be pinned,
its scratch slot and kept root exist, nobody needs the event object: no
audit, no caller note, no cached verdicts) and hands the rest to
``accel.ask_open`` through :meth:`Authorizer.ask_open`: the plain-path
check, the line (made of the constant parts below around the quoted path),
the write, the wait, the read and the compare, the pin.  A plain ``cont``
read with the question: the thread is left as the quick walk leaves it.
Anything else goes the Python road from the call's start (Entry._ask_entry),
whose ``ask_cont`` for this event goes on from what happened to the question
asked here (a reply that is not a plain ``cont``, none yet, a failed write
or read): so denials, late replies, dead members and deadlines are the
general code's, as before.

The line's constant parts are made by the Python formatter itself, once per
plan and argument registers: the event with a stand-in path formatted by
``codec.format_event`` and cut where the stand-in's quoted text is
(tests/test_ext_open.py holds the C line to ``format_event``'s for many paths).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

from brokerd.decision.authorizer import Authorizer
from brokerd.decision.stack import Decision
from brokerd.protocol import codec
from brokerd.protocol.errors import ProtocolError
from brokerd.protocol.types import Call, Str, SyscallEvent

from .. import ptrace as pt
from ..accel import accel
from .base import ShimBase
from .pin import CREAT_FLAGS, PIN_ARGS, SYS_OPENAT2
from .thread import PATH_READ, _Thread

#: the stand-in path the line's constant parts are cut around (no byte of it is escaped)
STAND_IN = b"/brokerd-ext-stand-in"
#: the stand-in's text in a line
_STAND_IN_TEXT = codec.quote(STAND_IN).encode("ascii")
#: a line's start before its abi, for IDs 0
_HEAD = b"syscall 0 0 0"
#: the most argument-register combinations kept per plan (a program uses a few flags and modes)
LINES_KEPT = 256
#: the longest path decoded (entry.PATHSIZE: the compiled stop's read less its NUL)
PATHSIZE = PATH_READ - 1


class ExtPlan:
    """What a plan's calls need for the compiled question: its one member,
    the registers that make its line's constant parts, and those parts by
    the values of those registers."""

    __slots__ = ("member", "key", "flags", "mode", "lines", "cont")

    def __init__(self, member: Authorizer, key: Callable[[tuple[int, ...]], object], flags: int, mode: int,
                 cont: Decision) -> None:
        self.member = member
        self.key = key  # the argument registers the line depends on (all but the path's)
        self.flags = flags  # the flags register (-1: creat's implied flags)
        self.mode = mode
        #: key -> the line's constant parts (() where the line is not made this way)
        self.lines: dict[object, tuple[bytes, ...]] = {}
        #: the Decision a thread keeps (``t.decision``) after a plain cont: a pinned open's
        self.cont = cont


class _NoMemory:
    """The decoder's memory for the stand-in line: an argument that reads
    memory (none of an open's but its path, which is given) makes no line."""

    pid = 0

    def __getattr__(self, name: str) -> Any:
        raise ValueError("no memory here")


class Ext(ShimBase):
    """The compiled external question: one process member asked about a pinned open in one C call."""

    def _ext_plan(self, plan: Any) -> ExtPlan | None:
        """Plan ``plan``'s :class:`ExtPlan`, at its first judged call
        (Entry._ask_plan): where its one member is a process asked the
        quick way (``plan.quick``), the call is an x86_64 open that may be
        pinned, with its strings copied (``plan.stabilize``) and the path the
        compiled stop reads; else None."""
        if (accel is None or len(plan.quick) != 1 or not plan.pin_form or not plan.stabilize or not plan.fused
                or plan.decode_given is None or plan.real is None or not plan.paths or plan.abi.name != "x86_64"):
            return None
        member = self.stack.members[plan.quick[0][0]]
        pidx, fidx, midx = PIN_ARGS[plan.spec.name]
        if not isinstance(member, Authorizer) or plan.given != pidx:
            return None
        regs = [i for i in range(plan.nargs) if i != pidx]
        key: Callable[[tuple[int, ...]], object] = itemgetter(*regs) if regs else (lambda args: ())
        return ExtPlan(member, key, -1 if fidx is None else fidx, midx,
                       Decision("cont", Call(plan.spec.name), stabilize=True))

    def _ext_parts(self, plan: Any, args: tuple[int, ...]) -> tuple[bytes, ...]:
        """The constant parts of the line of plan ``plan``'s event for
        argument registers ``args``: what ``codec.format_event`` writes for
        the event the quick walk makes (its notes the path's pathN and realN,
        the path itself), cut around the path's three places, IDs left out;
        () where the line cannot be made so."""
        v = Str(STAND_IN)
        try:
            values = plan.decode_given(args, _NoMemory(), self.strsize, PATHSIZE, v)
            notes = ((plan.paths[0][1], v), (plan.real, v))
            line = codec.format_event(SyscallEvent(0, 0, 0, plan.abi.name, Call(plan.spec.name, values), notes))
        except (ProtocolError, ValueError, OSError):
            return ()
        parts = line[len(_HEAD):].split(_STAND_IN_TEXT)
        if not line.startswith(_HEAD + b" ") or len(parts) != 4:
            return ()
        return tuple(parts)

    def _ask_ext(self, t: _Thread, plan: Any, args: tuple[int, ...], path: tuple[bytes, bool]) -> bool:
        """The fused entry's compiled question (see the module): True when
        the call was answered a plain ``cont`` and runs pinned; False when
        the quick walk (Entry._ask_entry) must take it, from the question on
        if it was asked."""
        ext = plan.ext
        data = path[0]
        if (not path[1] or len(data) > PATHSIZE or self.stack.cache.replies or self.audit is not None
                or self._audit_tee is not None or self._symbolizer is not None or self._detaching
                or not pt.SET_INFO_WORKS or not (t.tgid == self.main_pid and self._pin_ok and t.tgid not in self._own_filters
                                                  or self._may_pin(t, plan.abi))):
            return False
        region = self._regions.get(t.tgid)
        if region is None:
            return False
        off = region.slots.get(t.tid)
        rootfd = self._roots.get(t.tid, t)
        if off is None or rootfd is None:
            return False
        lines = ext.lines
        key = ext.key(args)
        parts = lines.get(key)
        if parts is None:
            if len(lines) >= LINES_KEPT:
                lines.clear()
            parts = lines[key] = self._ext_parts(plan, args)
        if not parts:
            return False
        ev_id = self._next_id
        got = ext.member.ask_open(ev_id, t.tgid, t.tid, parts, data, rootfd,
                                  CREAT_FLAGS if ext.flags < 0 else args[ext.flags], args[ext.mode],
                                  region.view, off, region.addr + off, args)
        if got is None:
            return False
        # what the quick walk leaves: the event's ID taken, the call's facts, the pinned open's
        # registers (for a signal's restart), resumed (_pin_open's compiled branch)
        self._next_id = ev_id + 1
        abi = plan.abi
        t.abi = abi
        t.spec = spec = plan.spec
        t.raw = args
        t.event_id = ev_id
        t.verify = t.pin = None
        t.repointed = (abi.arg_regs, got, args, SYS_OPENAT2, spec.nr | abi.nr_bit)
        t.decision = ext.cont
        self.stats["decisions"] += 1
        self._resume_count = n = self._resume_count + 1
        t.resumed = n
        t.running = True
        return True
