"""A short, bounded busy wait for something due within microseconds, with a
back-off for when it does not come.

Why spin at all: the shim waits for two things per decision that usually
come within tens of microseconds, an external authorizer's reply and the
traced program's next stop after it was resumed.  Going to sleep in
``epoll_wait`` for them idles the shim's CPU, and on a VM an idle vCPU halts:
waking it again costs more wall and system time than the spin (an IPI to a
halted vCPU, 20-40 us and more on this host; docs/performance.md, "External
authorizers").  A spin that sees nothing makes the next 1, 2, 4 ... waits
(doubling per miss in a row, up to ``max_skip``) poll once only, so what
takes longer (an authorizer that thinks, a program computing between calls,
a machine too loaded to run the other side at once) is waited for in
``epoll_wait`` as before, without burning CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic_ns
from typing import TypeVar

T = TypeVar("T")

#: how long one wait spins at most
SPIN_NS = 100_000
#: the most waits that poll once only after spins that saw nothing
MAX_SKIP = 1024


class Spin:
    """One kind of wait's spin budget and back-off state."""

    __slots__ = ("budget_ns", "max_skip", "_skip", "_backoff")

    def __init__(self, budget_ns: int = SPIN_NS, max_skip: int = MAX_SKIP) -> None:
        self.budget_ns = budget_ns
        self.max_skip = max_skip
        self._skip = 0  # waits left that poll once only
        self._backoff = 0  # the skip the next miss sets: doubles per miss in a row, 0 after a hit

    def until(self, poll: Callable[[], T | None]) -> T | None:
        """``poll()`` until it gives something other than None, for up to
        ``budget_ns`` (once only while backing off); None if it never did."""
        got = poll()
        if got is not None:
            self._backoff = 0
            return got
        if self._skip:
            self._skip -= 1
            return None
        end = monotonic_ns() + self.budget_ns
        while monotonic_ns() < end:
            got = poll()
            if got is not None:
                self._backoff = 0
                return got
        self._backoff = min(2 * self._backoff or 1, self.max_skip)
        self._skip = self._backoff
        return None


__all__ = ["MAX_SKIP", "SPIN_NS", "Spin"]
