"""Run a program under *part* of what ``brokerctl run`` would set up, to
measure what each part costs (bench/runner.py's "sandbox parts" rows).

    python -m bench.parts MODE [brokerctl run options] -- PROG ARGS

MODE is one of:

* ``filter``: only the session's seccomp filter, with every call it would
  stop for allowed instead (no tracer): the cost of running the BPF program
  on each system call;
* ``landlock``: only the Landlock domains (the wall and the policies'
  layers), no filter, no tracer;
* ``kernel``: both of the above, no tracer.

The options are ``brokerctl run``'s (e.g. ``--policy sandbox:...``): the
stack is greeted exactly as brokerctl does, then this process applies the
chosen parts to itself and execs the program.  A measuring tool, not a
sandbox: what the filter would have stopped runs unjudged.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys

from brokerd.cli import main as cli
from brokerd.tracer import landlock, seccomp

MODES = ("filter", "landlock", "kernel")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in MODES:
        print(f"usage: python -m bench.parts {{{','.join(MODES)}}} [run options] -- PROG ARGS", file=sys.stderr)
        return 2
    mode, rest = argv[0], argv[1:]
    args = cli.build_parser(only="run").parse_args(["run", *rest])
    prog = [a for a in args.argv if a != "--"] if args.argv[:1] == ["--"] else list(args.argv)
    session = cli._make_session(args)
    shim = session.shim("ptrace")
    insns = shim.build_filter(stop=seccomp.RET_ALLOW, guard_region=False)
    wall, layers = shim.wall, list(shim.layer_plan.layers)
    for a in shim.stack:
        a.kill("bench.parts: measuring")
    path = prog[0] if "/" in prog[0] else shutil.which(prog[0])
    assert path is not None, prog[0]
    signal.setitimer(signal.ITIMER_REAL, 0)  # an in-process policy's deadline timer survives exec
    signal.pthread_sigmask(signal.SIG_SETMASK, shim.loop.old_mask)
    if mode in ("landlock", "kernel"):
        if wall is not None:
            landlock.restrict(wall)
        for layer in layers:
            landlock.restrict(layer)
    if mode in ("filter", "kernel"):
        seccomp.install(insns)
    os.execv(path, prog)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
