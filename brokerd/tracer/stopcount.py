"""Stops per syscall name: where a traced session's time goes.

A decision the kernel settles (seccomp filter, Landlock layer) costs nothing;
every ptrace stop costs the program a round trip through the broker (tens of
microseconds, more on a loaded machine).  To see which calls still stop
under a policy, set ``BROKERD_STOP_COUNTS=FILE`` (before the session starts): at the end of the session
the shim writes one JSON object to FILE (appending, one line per session)::

    {"stops": {"clone": 14, "chdir": 2, "exit:clone": 14, "event:fork": 14, ...},
     "total": 60, "broker_cpu_s": 0.41, "children_cpu_s": 3.2, "wall_s": 2.1}

Keys: a syscall name is a stop at its entry (seccomp or syscall-entry stop),
``exit:NAME`` its exit stop, ``event:KIND`` a fork/vfork/clone/exec/stop
event, ``signal:NAME`` a signal-delivery stop.  ``broker_cpu_s`` is the
broker process's own CPU time (user + system; in-process policies run in
it), ``children_cpu_s`` that of its reaped children (the program and
authorizer processes).  ``accel`` counts what the compiled stop loop did
(``{"stops": N}``: seccomp stops it fetched), null where it is not in use
(brokerd.tracer.accel).  Counting is a dictionary increment per stop; it is
done only when asked (``on``: the shim's stop path tests it and skips
even the key's formatting otherwise).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections import Counter

from .accel import accel

ENV = "BROKERD_STOP_COUNTS"


class StopCounter:
    """Counts the stops of one session, by what stopped."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.t0 = time.monotonic()
        self.on = bool(os.environ.get(ENV))

    def add(self, key: str) -> None:
        self.counts[key] += 1

    def summary(self) -> dict:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"stops": dict(self.counts.most_common()), "total": sum(self.counts.values()),
                "broker_cpu_s": round(me.ru_utime + me.ru_stime, 3),
                "children_cpu_s": round(kids.ru_utime + kids.ru_stime, 3),
                "wall_s": round(time.monotonic() - self.t0, 3),
                "accel": {**accel.counts(), **accel.ask_counts()} if accel is not None else None}

    def report(self) -> None:
        """Append the summary to ``$BROKERD_STOP_COUNTS`` if it is set (a
        failure to write is said on stderr, never fatal)."""
        path = os.environ.get(ENV)
        if not path:
            return
        try:
            with open(path, "a") as f:
                import json  # here: most runs never write it

                f.write(json.dumps(self.summary()) + "\n")
        except OSError as e:
            print(f"brokerctl: {ENV}={path}: {e.strerror}", file=sys.stderr, flush=True)
