"""Time shift: the wall clock the program reads through syscalls is moved by an offset.

    brokerctl run --policy timeshift:-86400 -- PROG      # one day ago
    brokerctl run --policy timeshift:@946684800 -- PROG  # as if started at 2000-01-01 00:00 UTC
    python3 -m brokerd.clients.policies.timeshift OFFSET  (seconds, may be fractional/negative,
                                                          suffix s/m/h/d; or @EPOCH)

``clock_gettime`` (``CLOCK_REALTIME``, ``_COARSE``, ``_ALARM``, ``CLOCK_TAI``;
monotonic and CPU clocks are left alone), ``gettimeofday`` and ``time`` are
stepped; the value the kernel wrote is read from tracee memory
(``/proc/PID/mem``; if that is not allowed, this process's own clock is used)
and the shifted one written back with ``set``; ``time`` also gets its return
value replaced.

**The vDSO limit**: glibc (and Go, musl, Rust's std...) read the clock
through the vDSO, in user space, without any syscall, so ``date`` or
``python -c 'import time; print(time.time())'`` are *not* shifted.  Only
programs that make the real syscall (``syscall(SYS_clock_gettime, ...)``,
statically linked programs without vDSO support, or a process whose vDSO is
disabled, e.g. booted with ``vdso=0``) see the shift.  There is no portable
per-process switch to turn the vDSO off; a ptrace broker cannot see calls
that never enter the kernel.
"""

from __future__ import annotations

import math
import re
import struct
import sys
import time
from collections.abc import Sequence

from brokerd.clients.authorizer import Authorizer, SysResult, cont, ok

REALTIME_CLOCKS = {0: time.CLOCK_REALTIME, 5: 5, 8: time.CLOCK_REALTIME, 11: 11}  # clockid -> clock to read
_OFFSET = re.compile(r"([+-]?\d+(?:\.\d*)?)([smhd]?)\Z")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_offset(text: str, now: float | None = None) -> float:
    """``-86400``, ``+1.5``, ``2d``, ``-3h``, ``@946684800`` (absolute start) -> seconds."""
    if text.startswith("@"):
        return float(text[1:]) - (time.time() if now is None else now)
    m = _OFFSET.match(text)
    if m is None:
        raise ValueError(f"bad offset {text!r} (seconds with optional s/m/h/d suffix, or @EPOCH)")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _shift(sec: int, sub: int, unit: int, offset: float) -> tuple[int, int]:
    """(seconds, sub-second in 1/unit) + offset, normalised."""
    total = sec * unit + sub + round(offset * unit)
    return divmod(total, unit)


def build(argv: Sequence[str]) -> Authorizer:
    if len(argv) != 1:
        sys.exit("usage: timeshift OFFSET   (e.g. -86400, 2d, @946684800)")
    try:
        offset = parse_offset(argv[0])
    except ValueError as e:
        sys.exit(f"timeshift: {e}")
    az = Authorizer("timeshift")

    def read(ret: SysResult, addr: int, fmt: str, unit: int, clock: int) -> tuple[int, int]:
        """What the kernel wrote at ``addr``; our own clock if the memory is out of reach."""
        try:
            assert ret.call is not None
            sec, sub = struct.unpack(fmt, ret.call.read_memory(addr, struct.calcsize(fmt)))
            return sec, sub
        except (OSError, struct.error, AssertionError):
            return divmod(time.clock_gettime_ns(clock) // (10**9 // unit), unit)

    @az.on_result("clock_gettime", "clock_gettime64")
    def clock_gettime(ret: SysResult) -> object:
        call = ret.call
        if not ret.ok or call is None:
            return cont()
        clock = REALTIME_CLOCKS.get(call.num(0))
        addr = call.num(1)
        if clock is None or addr == 0:
            return cont()
        fmt = "<qq" if call.abi != "i386" or ret.name == "clock_gettime64" else "<ii"
        sec, nsec = read(ret, addr, fmt, 10**9, clock)
        sec, nsec = _shift(sec, nsec, 10**9, offset)
        return ok(0, sets=[(2, struct.pack(fmt, sec, nsec))])

    @az.on_result("gettimeofday")
    def gettimeofday(ret: SysResult) -> object:
        call = ret.call
        if not ret.ok or call is None or call.num(0) == 0:
            return cont()
        fmt = "<qq" if call.abi != "i386" else "<ii"
        sec, usec = read(ret, call.num(0), fmt, 10**6, time.CLOCK_REALTIME)
        sec, usec = _shift(sec, usec, 10**6, offset)
        return ok(0, sets=[(1, struct.pack(fmt, sec, usec))])

    @az.on_result("time")
    def time_(ret: SysResult) -> object:
        call = ret.call
        if not ret.ok or call is None or ret.value is None:
            return cont()
        now = math.floor(time.time() + offset)  # the kernel's value has no fraction to shift
        fmt = "<q" if call.abi != "i386" else "<i"
        sets = [(1, struct.pack(fmt, now))] if call.num(0) else []
        return ok(now, sets=sets)

    return az


def main(argv: Sequence[str] | None = None) -> None:
    build(sys.argv[1:] if argv is None else argv).main()


if __name__ == "__main__":
    main()
