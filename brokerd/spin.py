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

On one CPU (the process's affinity, e.g. ``brokerctl --cpu N``: the other
side shares it) a spin cannot see the other side progress, since that needs
this very CPU: a wait first gives it up once (``sched_yield``) and polls
again, which takes the stop or reply without the loop's ``epoll_wait`` and
the wake-up after it (docs/performance.md, the "accel2" figures).

Nothing spins while the machine is busy: when tasks wait for a CPU (the
kernel's CPU pressure, ``/proc/pressure/cpu`` "some avg10", at or above
:data:`BUSY_PRESSURE` percent), a spin would take a CPU from them, or from
the very process it waits for, and no CPU is idle to halt anyway.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from time import monotonic_ns
from typing import TypeVar

T = TypeVar("T")

#: how long one wait spins at most (``BROKERD_SPIN_US`` in the environment
#: sets it in microseconds; 0 turns spinning off, e.g. where every CPU
#: cycle counts more than a decision's latency)
SPIN_NS = 100_000
#: the most waits that poll once only after spins that saw nothing
MAX_SKIP = 1024
#: CPU pressure (percent of the last 10 s some task waited for a CPU) from
#: which nothing spins.  A session makes some itself: its tracee, shim and
#: authorizer wake each other, and a woken one often waits a little for the
#: CPU the waker still holds (22-28% of a 40,000-decision run with one
#: ``cont.py`` on an otherwise idle 2-vCPU machine, spin or not); other
#: people's work on top of that is what the spin must give way to.
BUSY_PRESSURE = 40.0
#: where the kernel says it (absent without CONFIG_PSI: then only the back-off limits spinning)
PRESSURE_FILE = "/proc/pressure/cpu"
#: how often the pressure is read again
PRESSURE_EVERY_NS = 100_000_000


class _Load:
    """The last reading of the CPU pressure (one per process, shared by every wait)."""

    busy = False
    next_read = 0


def machine_busy(now_ns: int) -> bool:
    """Do tasks wait for a CPU?  Read at most every :data:`PRESSURE_EVERY_NS`."""
    if now_ns < _Load.next_read:
        return _Load.busy
    _Load.next_read = now_ns + PRESSURE_EVERY_NS
    try:
        with open(PRESSURE_FILE, "rb") as f:
            head = f.readline()  # b"some avg10=1.23 avg60=... total=..."
        _Load.busy = float(head.split(b"avg10=", 1)[1].split(None, 1)[0]) >= BUSY_PRESSURE
    except (OSError, IndexError, ValueError):
        _Load.busy = False
    return _Load.busy


def one_cpu() -> bool:
    """May this process run on one CPU only (its affinity, or the machine)?"""
    try:
        return len(os.sched_getaffinity(0)) == 1
    except OSError:
        return os.cpu_count() == 1


def configured_budget() -> int:
    """The spin budget in ns: ``BROKERD_SPIN_US`` if it is a whole number
    of microseconds (0: no spinning), else :data:`SPIN_NS`."""
    text = os.environ.get("BROKERD_SPIN_US", "")
    return int(text) * 1000 if text.isdigit() else SPIN_NS


class Spin:
    """One kind of wait's spin budget and back-off state."""

    __slots__ = ("budget_ns", "max_skip", "yields", "_skip", "_backoff")

    def __init__(self, budget_ns: int | None = None, max_skip: int = MAX_SKIP, yields: bool | None = None) -> None:
        self.budget_ns = configured_budget() if budget_ns is None else budget_ns
        self.max_skip = max_skip
        #: give the CPU up once before spinning (:func:`one_cpu` when made; never with no budget)
        self.yields = (one_cpu() if yields is None else yields) and self.budget_ns > 0
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
        if self.yields:  # one CPU: the other side runs only if this process lets it
            os.sched_yield()
            got = poll()
            if got is not None:
                self._backoff = 0
                return got
        now = monotonic_ns()
        if machine_busy(now):
            return None
        end = now + self.budget_ns
        while monotonic_ns() < end:
            got = poll()
            if got is not None:
                self._backoff = 0
                return got
        self._backoff = min(2 * self._backoff or 1, self.max_skip)
        self._skip = self._backoff
        return None


__all__ = ["BUSY_PRESSURE", "MAX_SKIP", "SPIN_NS", "Spin", "configured_budget", "machine_busy", "one_cpu"]
