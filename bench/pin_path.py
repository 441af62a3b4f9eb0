"""A pinned open's Python in a loop, with and without stable arguments (issue #13, session 8 `pinc`).

    .venv/bin/python -m bench.pin_path                 # pinned against --no-stable-args
    .venv/bin/python -m bench.pin_path --profile       # cProfile of the pinned run, by own time

As ``bench.policy_path``: a real :class:`brokerd.tracer.shim.Shim` judges an
``openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC)`` "made" by this very
process, with one in-process member answering ``cont``; here with stable
arguments on, so the open is pinned: the plain-path check (its ``openat2``,
``fstat``, ``close`` are real), the notes, the decision and ``_pin_open``
with a scratch region that is an anonymous mapping of this process.  Only
the three ptrace requests are left out (this process traces nobody): the
compiled ``pin_open`` is replaced by a stub that copies the bytes into the
mapping, and the resume of the unpinned run by ``_mark_run``.  The
difference between the two runs is the pin's CPU in the shim, less its
SET_SYSCALL_INFO.  Prints CPU microseconds per decision
(``time.process_time``), median and minimum of 5 runs.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import sys
from pathlib import Path

from bench.policy_path import cpu_per_call

AUTHZ = Path(__file__).resolve().parent / "authz"
AUDIT_ARCH_X86_64 = 0xC000003E
AT_FDCWD = 2**64 - 100


class _Stub:
    """The compiled calls with their ptrace requests left out (this process traces nobody)."""

    def __init__(self, real: object) -> None:
        self._real = real

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    @staticmethod
    def pin_open(tid: int, view: mmap.mmap, off: int, addr: int, data: bytes, own: tuple) -> tuple:
        view[off:off + len(data)] = data
        return (AT_FDCWD, addr + 32, addr, 24)


def prepared(stable: bool):
    """A shim (stable arguments on or off) with one in-process member, and one decision as a function."""
    from brokerd.protocol.abi import ABIS

    from brokerd.decision.inproc import InProcess
    from brokerd.tracer import ptrace as pt
    from brokerd.tracer.scratch import REGION_SIZE, Region
    from brokerd.tracer.shim import Shim, _Thread, pin
    from brokerd.tracer.states import State

    sys.path.insert(0, str(AUTHZ))
    inproc_cont = __import__("inproc_cont")  # bench/authz/inproc_cont.py: answers cont

    stack = [InProcess(inproc_cont.az, timeout=5.0, trace=frozenset({"openat"}))]
    shim = Shim(stack, stable_args=stable, log=lambda m: None)
    for m in stack:
        m.greet("1", 0.0)
    shim.stack.forget()
    pid = os.getpid()
    shim.main_pid = pid
    t = shim.threads[pid] = _Thread(pid, pid)
    resumed: list = []
    shim._resume = lambda tid, sig=0: (shim._mark_run(t), resumed.append(tid))  # type: ignore[method-assign]
    if stable:
        view = mmap.mmap(-1, REGION_SIZE)
        shim._regions[pid] = Region(0x7F0000000000, view)
        if pin.accel is not None:
            pin.accel = _Stub(pin.accel)  # type: ignore[assignment]
            pt.SET_INFO_WORKS = True
        else:
            pin._set_info = lambda tid, op, nr, args: True  # type: ignore[assignment]
            shim._resume = lambda tid, sig=0: (shim._mark_run(t), resumed.append(tid))  # type: ignore[method-assign]
    path = ctypes.create_string_buffer(b"/etc/passwd\0")
    raw = (0xFFFFFF9C, ctypes.addressof(path), os.O_RDONLY | os.O_CLOEXEC, 0, 0, 0)
    nr = ABIS["x86_64"].by_name["openat"].nr

    def one() -> None:
        t._state = State.RUN  # (the stop's own move, skipped here)
        shim._on_entry(t, AUDIT_ARCH_X86_64, nr, raw, 0)

    one()
    if stable and t.pin is None:
        raise SystemExit("bench.pin_path: the open was not pinned")
    one._keep = (path, resumed)  # type: ignore[attr-defined]  # (the buffer must outlive the loop)
    return one


def measure(stable: bool, calls: int, runs: int = 5) -> tuple[float, float]:
    """(median, min) CPU us per decision over ``runs`` runs of ``calls`` decisions."""
    return cpu_per_call(prepared(stable), calls, runs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pin_path", description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=30000, help="decisions per run (5 runs)")
    p.add_argument("--profile", action="store_true", help="cProfile the pinned run instead (by own time)")
    p.add_argument("--unpinned", action="store_true", help="only the run without stable arguments")
    p.add_argument("--pinned", action="store_true", help="only the pinned run")
    p.add_argument("--just", type=int, metavar="N", help="make N decisions, print nothing (to count instructions: "
                   "valgrind --tool=callgrind, N against 2N)")
    a = p.parse_args(argv)
    if a.just is not None:
        one = prepared(not a.unpinned)
        for _ in range(a.just):
            one()
        return 0
    if a.profile:
        import cProfile
        import pstats

        one = prepared(True)
        prof = cProfile.Profile()
        prof.runcall(lambda: [one() for _ in range(a.calls)])
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return 0
    got = {}
    for stable in ([True] if a.pinned else [False] if a.unpinned else [False, True]):
        got[stable] = med, low = measure(stable, a.calls)
        print(f"{'pinned' if stable else '--no-stable-args'}: {med:.2f} us CPU per decision (min {low:.2f}; "
              f"{a.calls} calls x 5)")
    if len(got) == 2:
        print(f"the pin: {got[True][0] - got[False][0]:.2f} us (medians), {got[True][1] - got[False][1]:.2f} (mins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
