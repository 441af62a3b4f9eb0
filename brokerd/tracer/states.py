"""A traced thread's states, and the one table of the moves between them.

The shim keeps one record per tracee thread (``shim._Thread``); its
``state`` says what the shim waits for on that thread.  :data:`MOVES` lists
every move the shim makes (docs/shim.md quotes it).  A move outside it is a
bug in the shim: it is counted in :data:`STRAYS` and reported at the end of
the session, never raised, since the loop must not die with tracees under it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from enum import StrEnum


class State(StrEnum):
    """A thread's state; equal to its string value (``t.state == "run"``)."""

    RUN = "run"  # running, or stopped only for an instant
    ASK = "ask"  # at an entry or signal-delivery stop: a walk waits for authorizers
    STEP = "step"  # resumed to the exit stop of a call someone stepped
    RET = "ret"  # at that exit stop: the exit walk waits for authorizers
    SKIP = "skip"  # (attach) a skipped call on its way to its exit stop, where its value is set again
    VERIFY = "verify"  # resumed to the exit stop of a call whose outcome the broker checks
    INJECT = "inject"  # running calls the shim injected (scratch region set-up)
    SLOTWAIT = "slotwait"  # decided; waits for a free scratch slot for its stable arguments
    STOPPED = "stopped"  # in a group-stop, PTRACE_LISTENed


RUN, ASK, STEP, RET, SKIP, VERIFY, INJECT, SLOTWAIT, STOPPED = State

#: From each state, where the shim may move a thread.  Any state may also go
#: back to RUN: a tracee that vanished mid-decision (``Shim._gone``).
MOVES: Mapping[State, frozenset[State]] = {
    # a new stop; or, after an injection, the interrupted call back again with
    # the decision it already had (STEP...SLOTWAIT); or an undone open's sysret (RET)
    RUN: frozenset({ASK, STEP, RET, SKIP, VERIFY, INJECT, SLOTWAIT, STOPPED}),
    ASK: frozenset({ASK, STEP, SKIP, VERIFY, INJECT, SLOTWAIT}),  # the decision applied
    STEP: frozenset({RET, INJECT}),  # its result to the steppers; or the open undone first
    RET: frozenset(),
    SKIP: frozenset(),
    VERIFY: frozenset({INJECT}),  # another object opened than judged: closed in the tracee
    INJECT: frozenset({INJECT}),
    SLOTWAIT: frozenset({STEP, SKIP, VERIFY, INJECT, SLOTWAIT}),  # a slot came free
    STOPPED: frozenset({ASK, VERIFY, STOPPED}),
}

_BY_VALUE: dict[str, State] = {s.value: s for s in State}

#: Moves the shim made that :data:`MOVES` lacks: (from, to) -> how often.
STRAYS: Counter[tuple[str, str]] = Counter()


def move(old: State, new: str) -> State:
    """``new`` as a State (KeyError for no state at all: a typo in the shim),
    the move from ``old`` checked against the table."""
    to = _BY_VALUE[new]
    if to is not RUN and to not in MOVES[old]:
        STRAYS[(old.value, to.value)] += 1
    return to


def strays_text() -> str:
    """One line naming the moves outside the table ("" when there were none)."""
    return ", ".join(f"{a} -> {b} ({n}x)" for (a, b), n in sorted(STRAYS.items()))
