"""The broker's Python from a decoded call to its Decision, in a loop (issue #13, `lean2` round).

    .venv/bin/python -m bench.policy_path                  # 1 and 4 in-process members
    .venv/bin/python -m bench.policy_path --members 4 --calls 50000
    .venv/bin/python -m bench.policy_path --profile        # cProfile of one run, by own time

A real :class:`brokerd.tracer.shim.Shim` (nothing launched, nothing traced)
judges an openat "made" by this very process: the compiled stop loop's
entry, ``Stops._on_seccomp_stop``, with the registers of
``openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC)`` and the path as the
compiled stop reads it with the stop (``--general``, or without the
compiled calls: ``Entry._on_entry``, the pure-Python loop's road, the path
read back from this process's memory with one ``process_vm_readv``, as from
a tracee), through the entry plan, the decoder, the event, the walk, the
in-process members (bench/authz/inproc_cont.py: ``cont``) and the
Decision; ``_apply_entry`` (the ptrace requests) only keeps the last one.  Stable arguments are off (their ``openat2`` check is the stop's
work, not the policy path's).  Prints CPU microseconds per decision
(``time.process_time``), the median and the minimum of 5 runs: a figure
for one machine at one moment, to compare two checkouts in alternation.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

AUTHZ = Path(__file__).resolve().parent / "authz"
AUDIT_ARCH_X86_64 = 0xC000003E


def prepared(members: int, general: bool = False):
    """A shim with ``members`` in-process members, and one decision as a
    function of no arguments (through the compiled stop's entry unless
    ``general`` or the compiled calls are missing)."""
    from brokerd.protocol.abi import ABIS

    from brokerd.decision.inproc import InProcess
    from brokerd.tracer.accel import accel
    from brokerd.tracer.shim import Shim, _Thread
    from brokerd.tracer.shim.consts import TRACE_MARK
    from brokerd.tracer.states import State

    sys.path.insert(0, str(AUTHZ))
    inproc_cont = __import__("inproc_cont")  # bench/authz/inproc_cont.py: answers cont

    stack = [InProcess(inproc_cont.az, timeout=5.0, trace=frozenset({"openat"})) for _ in range(members)]
    shim = Shim(stack, stable_args=False, log=lambda m: None)
    for m in stack:
        m.greet("1", 0.0)
    shim.stack.forget()
    decided: list = []
    # (the last one only: a growing list would make the collector's work part of the figure)
    shim._apply_entry = lambda t, d: decided.__setitem__(slice(None), [d])  # type: ignore[method-assign]
    pid = os.getpid()
    t = shim.threads[pid] = _Thread(pid, pid)
    path = ctypes.create_string_buffer(b"/etc/passwd\0")
    raw = (0xFFFFFF9C, ctypes.addressof(path), os.O_RDONLY | os.O_CLOEXEC, 0, 0, 0)
    nr = ABIS["x86_64"].by_name["openat"].nr

    def one() -> None:
        t._state = State.RUN  # (the stop's own move, skipped here)
        shim._on_entry(t, AUDIT_ARCH_X86_64, nr, raw, 0)

    if accel is not None and not general:
        stop, read = shim._on_seccomp_stop, (b"/etc/passwd", True)  # (what the compiled stop reads)

        def one() -> None:
            t._state = State.RUN
            stop(pid, AUDIT_ARCH_X86_64, nr, raw, 0, TRACE_MARK, read)

    one()
    if len(decided) != 1 or decided[0].action != "cont":
        raise SystemExit(f"bench.policy_path: expected one cont decision, got {decided!r}")
    one._keep = (path, decided)  # type: ignore[attr-defined]  # (the buffer must outlive the loop)
    return one, decided


def cpu_per_call(one: Callable[[], None], calls: int, runs: int = 5,
                 before_run: Callable[[], None] | None = None) -> tuple[float, float]:
    """(median, min) CPU us per ``one()`` over ``runs`` runs of ``calls``
    calls, after a warm-up (plans, decoder plans, caches); ``before_run``
    outside the timed part of each run.  (bench.pin_path uses it too.)"""
    for _ in range(min(calls, 2000)):
        one()
    per = []
    for _ in range(runs):
        if before_run is not None:
            before_run()
        c0 = time.process_time()
        for _ in range(calls):
            one()
        per.append((time.process_time() - c0) / calls * 1e6)
    return statistics.median(per), min(per)


def measure(members: int, calls: int, runs: int = 5, general: bool = False) -> tuple[float, float]:
    """(median, min) CPU us per decision over ``runs`` runs of ``calls`` decisions."""
    one, decided = prepared(members, general)
    return cpu_per_call(one, calls, runs, decided.clear)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.policy_path", description=__doc__.split("\n")[0])
    p.add_argument("--members", type=int, action="append", help="in-process members (repeatable; default 1 and 4)")
    p.add_argument("--calls", type=int, default=30000, help="decisions per run (5 runs)")
    p.add_argument("--profile", action="store_true", help="cProfile one run instead (by own time)")
    p.add_argument("--general", action="store_true",
                   help="the general entry (Entry._on_entry), not the compiled stop's (Stops._on_seccomp_stop)")
    a = p.parse_args(argv)
    members = a.members or [1, 4]
    if a.profile:
        import cProfile
        import pstats

        one, _ = prepared(members[0], a.general)
        prof = cProfile.Profile()
        prof.runcall(lambda: [one() for _ in range(a.calls)])
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return 0
    for m in members:
        med, low = measure(m, a.calls, general=a.general)
        print(f"policy path, {m} in-process member{'s' if m > 1 else ''}: "
              f"{med:.2f} us CPU per decision (min {low:.2f}; {a.calls} calls x 5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
