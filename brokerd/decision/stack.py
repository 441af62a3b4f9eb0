"""The walk of one event through a session's stack of authorizers (sans-IO).

The tracer's shim drives these classes (the daemon never sits on the decision
path); they hold no sockets, only the rules of stacking:

* an event goes through the stack in order, skipping authorizers that did not
  subscribe to it; each sees the call as the ones before it left it, so
  rewrites accumulate;
* ``skip-fail``, ``skip-ok`` and ``kill`` end the walk (a denial anywhere wins);
* ``step`` from any of them brings the result back through those that asked,
  in reverse order, each able to replace it.

A walk asks for one reply at a time (:meth:`EntryWalk.next`), is fed it
(:meth:`EntryWalk.feed`), and ends with a :class:`Decision`.  A
:class:`Stack` holds the members in order and knows, per call, who must be
asked, what the stack answers before any argument is seen, and which answers
the broker may give for a member without asking it (its argument rules, its
cached verdicts).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, overload

from brokerd.decision.cache import VerdictCache
from brokerd.decision.member import Member
from brokerd.decision.rules import ALLOW, ENTRY_VERDICTS, TRACE, ArgRule, combine
from brokerd.protocol.record import replace
from brokerd.protocol.types import (
    Call,
    Cont,
    Fail,
    Kill,
    Ok,
    Reply,
    Result,
    Rewrite,
    SetMem,
    SkipFail,
    SkipOk,
    Step,
    SyscallEvent,
    SysretEvent,
)

if TYPE_CHECKING:
    from brokerd.protocol.abi import Abi


class VerdictError(ValueError):
    """A reply that is well-formed but not allowed where it came (e.g. ``ok 1``
    answering a syscall entry).  ``code`` is the protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code



class Decision:
    """Where an entry walk ended.

    ``action`` is ``cont`` (run ``call``, maybe rewritten), ``skip-fail`` /
    ``skip-ok`` (``value`` is the errno / return value), or ``kill``.
    ``steppers`` are the stack positions that asked for the result, in stack
    order; ``sets`` the memory edits to apply before the call, in order;
    ``decided_by`` the stack position whose verdict ended the walk (None when
    everyone said cont).  The shim shares one plain ``cont`` per call whose
    strings it does not copy (``Entry._ask_entry``, its ``call`` the name
    only): only a walk's own Decision may be changed.
    """

    __slots__ = (
        "action", "call", "value", "steppers", "sets", "decided_by", "rewritten", "stabilize",
    )
    action: str
    call: Call
    value: int
    steppers: Sequence[int]
    sets: Sequence[SetMem]
    decided_by: int | None
    rewritten: bool
    stabilize: bool  # copy the judged strings/paths into read-only scratch first

    def __init__(self, action: str, call: Call, value: int = 0, steppers: Sequence[int] = (),
                 sets: Sequence[SetMem] = (), decided_by: int | None = None,
                 rewritten: bool = False, stabilize: bool = False) -> None:
        self.action = action
        self.call = call
        self.value = value
        self.steppers = steppers  # (read only: an empty tuple is shared)
        self.sets = sets
        self.decided_by = decided_by
        self.rewritten = rewritten
        self.stabilize = stabilize


class EntryWalk:
    """One syscall-entry event on its way through the stack."""

    __slots__ = ("event", "_order", "_pos", "decision", "_call", "_steppers", "_sets", "_rewritten")

    def __init__(self, event: SyscallEvent, order: Sequence[int], start: int = 0) -> None:
        """``order`` lists the stack positions subscribed to this call, in
        stack order; ``start`` of them answered a plain ``cont`` already (the
        shim's walk of synchronous members, which needs no walk object until
        an answer is not that)."""
        self.event = event
        self._order = order
        self._pos = start
        self._call = event.call
        self._steppers: list[int] = []
        self._sets: list[SetMem] = []
        self._rewritten = False
        self.decision: Decision | None = None
        if not order:
            self.decision = Decision("cont", self._call)

    def next(self) -> tuple[int, SyscallEvent] | None:
        """The stack position to ask next and the event as it should see it."""
        if self.decision is not None:
            return None
        ev = self.event if not self._rewritten else replace(self.event, call=self._call)
        return self._order[self._pos], ev

    def feed(self, verdict: object, sets: Sequence[SetMem] = ()) -> None:
        """Take the current authorizer's verdict; raises VerdictError for one not
        valid at syscall entry (the caller then feeds that authorizer's default)."""
        if self.decision is not None:
            raise RuntimeError("walk already decided")
        if type(verdict) is Cont and not sets:  # the common answer: none of the tests below
            self._pos += 1
            if self._pos == len(self._order):
                self._end("cont")
            return
        if not isinstance(verdict, ENTRY_VERDICTS):
            raise VerdictError("bad-verdict", f"{type(verdict).__name__.lower()} is not a verdict for a syscall entry")
        who = self._order[self._pos]
        self._sets.extend(sets)
        if isinstance(verdict, SkipFail):
            self._end("skip-fail", verdict.errno, who)
        elif isinstance(verdict, SkipOk):
            self._end("skip-ok", verdict.value, who)
        elif isinstance(verdict, Kill):
            self._end("kill", 0, who)
        else:
            if isinstance(verdict, Step):
                self._steppers.append(who)
            elif isinstance(verdict, Rewrite):
                self._call = verdict.call
                self._rewritten = True
            self._pos += 1
            if self._pos == len(self._order):
                self._end("cont")

    def _end(self, action: str, value: int = 0, who: int | None = None) -> None:
        self.decision = Decision(action, self._call, value, self._steppers if action == "cont" else [],
                                 self._sets, who, self._rewritten)


class ExitWalk:
    """The result of a stepped call going back through those that asked, in reverse."""

    __slots__ = ("event", "_order", "_pos", "result", "sets", "done")

    def __init__(self, event: SysretEvent, steppers: Sequence[int]) -> None:
        self.event = event
        self._order = list(reversed(steppers))
        self._pos = 0
        self.result: Result | Kill = event.result  # Kill: end the process instead
        self.sets: list[SetMem] = []
        self.done = not self._order

    def next(self) -> tuple[int, SysretEvent] | None:
        result = self.result
        if self.done or isinstance(result, Kill):
            return None
        ev = self.event if result == self.event.result else replace(self.event, result=result)
        return self._order[self._pos], ev

    def feed(self, verdict: object, sets: Sequence[SetMem] = ()) -> None:
        if isinstance(verdict, Ok | Fail):
            self.result = verdict
        elif isinstance(verdict, Kill):
            self.result = verdict
            self.done = True
            return
        elif not isinstance(verdict, Cont):
            raise VerdictError("bad-verdict", f"{type(verdict).__name__.lower()} is not a reply to a sysret")
        self.sets.extend(sets)
        self._pos += 1
        self.done = self._pos == len(self._order)


class Stack(Sequence[Member]):
    """A session's authorizers in stack order: the first is farthest from the
    kernel, the last nearest (the broker's own rules come after it).

    Per-call facts are cached by syscall name; they depend only on what the
    members declared, so :meth:`forget` is called once their handshakes are
    settled.  A dead member keeps its place and its subscriptions: its calls
    keep getting its default verdict (fail closed).
    """

    __slots__ = ("_guards", "_members", "_orders", "cache", "members")

    def __init__(self, members: Iterable[Member] = ()) -> None:
        self._members: tuple[Member, ...] = tuple(members)
        #: the members as a tuple (``stack[pos]`` is a Python call: the shim indexes this per question)
        self.members = self._members
        self._orders: dict[str, tuple[int, ...]] = {}
        self._guards: dict[str, tuple[tuple[int, tuple[ArgRule, ...]], ...]] = {}
        self.cache = VerdictCache()

    @overload
    def __getitem__(self, pos: int) -> Member: ...

    @overload
    def __getitem__(self, pos: slice) -> Sequence[Member]: ...

    def __getitem__(self, pos: int | slice) -> Member | Sequence[Member]:
        return self._members[pos]

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Member]:
        return iter(self._members)

    def forget(self) -> None:
        """Drop the per-call facts (after the members' handshakes)."""
        self._orders.clear()
        self._guards.clear()

    # -- who is asked, and what the stack answers before any argument ---------
    def order(self, name: str) -> tuple[int, ...]:
        """The positions that must be asked about syscall ``name``, in order."""
        order = self._orders.get(name)
        if order is None:
            guarded = {pos for pos, _ in self.guards(name)}
            order = self._orders[name] = tuple(i for i, m in enumerate(self._members)
                                               if m.wants(name) or i in guarded)
        return order

    def guards(self, name: str) -> tuple[tuple[int, tuple[ArgRule, ...]], ...]:
        """``(position, its rules for name)`` of the members that would let
        syscall ``name`` run unasked (a static allow, a call their kernel
        layer settles) but declared argument rules for it: the rules still
        apply (first match; no match: allowed).  The launched session's
        filter tests them where it can (PROTOCOL.md 7.2)."""
        g = self._guards.get(name)
        if g is None:
            g = self._guards[name] = tuple(
                (i, rules) for i, m in enumerate(self._members)
                if m.rules and m.action(name) == ALLOW and (rules := tuple(r for r in m.rules if r.name == name)))
        return g

    def action(self, name: str, *below: tuple[str, int]) -> tuple[str, int]:
        """The stack's answer for syscall ``name`` whatever its arguments
        (allow, trace, deny(errno) or kill), with ``below`` (the broker's own
        rules) after the last member: see :func:`~.rules.combine`."""
        return combine([*(m.action(name) for m in self._members), *below])

    def unknown(self) -> tuple[str, int]:
        """The stack's answer for a call no table names (a newer kernel's)."""
        return combine([m.static.unknown or (TRACE if m.trace is None else ALLOW) for m in self._members])

    def subscriptions(self) -> set[str] | None:
        """The union of the members' subscriptions (None: every syscall)."""
        names: set[str] = set()
        for m in self._members:
            if m.trace is None:
                return None
            names |= m.trace
        return names

    def signal_order(self) -> tuple[int, ...]:
        """The positions asked about signals, in order."""
        return tuple(i for i, m in enumerate(self._members) if m.signals)

    # -- answers given for a member without asking it ------------------------
    def known_answer(self, pos: int, event: SyscallEvent, abi: Abi | None) -> Reply | None:
        """The answer of member ``pos`` to ``event`` (as it would see it) that
        the broker already knows: its first matching argument rule, else a
        verdict it marked ``; cache`` for this very call.  None: ask it."""
        rules = self._members[pos].rules
        if rules:
            spec = abi.by_name.get(event.call.name) if abi is not None else None
            kinds = spec.args if spec is not None else ()
            for rule in rules:
                if rule.matches(event, kinds):
                    return Reply(rule.verdict)
            if self._members[pos].action(event.call.name) == ALLOW:
                return Reply(Cont())  # asked only for its rules (guards): none matched
        return self.cache.get(pos, event)

    def remember(self, pos: int, event: SyscallEvent, reply: Reply) -> None:
        """Member ``pos`` answered ``event``: keep the answer if it said ``; cache``."""
        if reply.cache:
            self.cache.put(pos, event, reply)
