"""Audit: allow everything, step every call, log call + result as JSON lines.

    brokerctl run --policy audit:/tmp/audit.jsonl -- PROG
    python3 -m brokerd.clients.policies.audit [--trace NAME,NAME] [FILE]
    brokerctl run --policy audit:/tmp/audit.jsonl,--trace=openat+execve -- PROG   ('+' inside --policy)    (FILE '-' = stderr, the default)

One line per call, written when its result is known (calls that never
return - ``exit``, ``exit_group``, ``rt_sigreturn`` - and those that create
processes - ``clone``, ``fork``... - when they start, ``"result": null``)::

    {"time": 1718000000.1, "id": 7, "pid": 42, "tid": 42, "abi": "x86_64", "name": "openat",
     "call": "openat AT_FDCWD, \\"/etc/hostname\\", O_RDONLY, 00",
     "event": "syscall 7 42 42 x86_64 openat AT_FDCWD, ...", "verdict": "cont", "result": "ok 3"}

plus ``{"proc": "fork|exec|exit|killed", ...}`` lines for process events.
Records of calls with path arguments carry ``"paths"``: each looked-up path
argument (1-based, as in the wire's ``pathN`` notes) resolved at entry, as
policies resolve it (cwd, dirfd, ``..``, symlinks as the call follows them),
``null`` when it cannot be known; ``brokerctl replay`` and ``brokerctl
learn`` judge these, not the long-gone process.  Records of ``connect``,
``bind``, ``sendto``, ``sendmsg`` and ``sendmmsg`` carry ``"dests"``: each
address as network rule text (``127.0.0.1:53``, ``unix:/run/x.sock``
resolved, ``peer`` for a send to the connected peer, ``null`` unknown),
read at entry (sendmsg's are in the program's memory).  Every record has ``"v": 1``,
the journal schema version (docs/policies.md, "The audit journal").
``event`` and ``verdict`` are the fields ``brokerctl run --audit`` writes,
so ``brokerctl replay`` reads this journal too.  Stacked below other
authorizers, it sees only what they let through (and logs the results they
replaced).  Every call costs two round trips: use ``--trace`` to narrow.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
import time
from collections.abc import Sequence

from brokerd.clients.authorizer import Authorizer, Syscall, SysResult, cont, step
from brokerd.clients.policies.network import ADDRESSED, MSG_SENDS, destinations, endpoint
from brokerd.protocol import codec
from brokerd.protocol.types import ProcEvent

SCHEMA = 1  # the journal's schema version, "v" in every record (docs/policies.md)
NO_RETURN = frozenset({"exit", "exit_group", "rt_sigreturn", "sigreturn"})
#: logged when they start too: a stepped clone's result never reaches authorizers
#: (the broker resumes the parent past its exit stop at the fork event); the
#: ``proc fork|vfork|clone`` line that follows says which child it made
AT_ENTRY = NO_RETURN | {"clone", "clone3", "fork", "vfork"}


def build(argv: Sequence[str]) -> Authorizer:
    p = argparse.ArgumentParser(prog="audit", description=__doc__.split("\n\n")[0])
    p.add_argument("file", nargs="?", default="-", help="JSON lines file, appended to ('-' = stderr)")
    p.add_argument("--trace", metavar="NAME,NAME", help="only these syscalls, ',' or '+' separated (default: all)")
    a = p.parse_args(argv)
    out = sys.stderr if a.file == "-" else open(a.file, "a", buffering=1)  # noqa: SIM115
    trace = "all" if not a.trace else [n for n in re.split(r"[,+]", a.trace) if n]
    az = Authorizer("audit", trace=trace, events=("fork", "vfork", "clone", "exec", "exit"))

    def write(rec: dict) -> None:
        out.write(json.dumps(rec) + "\n")
        out.flush()

    paths: dict[int, dict[str, str | None]] = {}  # call id -> resolved at entry
    dests: dict[int, list[str | None]] = {}  # call id -> its destinations, read at entry

    def record(call: Syscall, result: str | None, resolved: dict[str, str | None] | None) -> dict:
        rec = {
            "v": SCHEMA, "time": time.time(), "id": call.id, "pid": call.pid, "tid": call.tid,
            "abi": call.abi, "name": call.name, "call": call.text(),
            "event": codec.format_event(call.event).decode().rstrip("\n"),
            "verdict": "cont", "result": result,
        }
        if resolved:
            rec["paths"] = resolved
        if call.id in dests:
            rec["dests"] = dests.pop(call.id)
        return rec

    @az.on("*")
    def entry(call: Syscall) -> object:
        resolved = {str(i + 1): p for i, p in call.resolved_paths()}
        if call.name in ADDRESSED or call.name in MSG_SENDS:
            dests[call.id] = _dests(call)
        if call.name in AT_ENTRY:
            write(record(call, None, resolved))
            return cont()
        if resolved:  # before the call runs: an unlink's file is gone after it
            paths[call.id] = resolved
        return step()

    @az.on_result("*")
    def result(ret: SysResult) -> object:
        resolved = paths.pop(ret.id, None)
        if ret.call is not None:
            write(record(ret.call, ret.text(), resolved))
        return cont()

    @az.on_proc("fork", "vfork", "clone", "exec", "exit", "killed")
    def proc(ev: ProcEvent) -> None:
        write({"v": SCHEMA, "time": time.time(), "proc": ev.kind, "pid": ev.pid, "tid": ev.tid,
               "event": codec.format_event(ev).decode().rstrip("\n")})

    if trace != "all":
        for n in trace:
            az.on(n)(entry)
            az.on_result(n)(result)
    return az


def _dests(call: Syscall) -> list[str | None]:
    """Where the call sends, connects or binds (network.endpoint's text,
    ``peer`` for the connected peer, null for what the rules cannot name or
    memory that cannot be read): sendmsg's addresses are in tracee memory,
    gone after the run."""
    try:
        found = destinations(call) or []
    except (OSError, ValueError, struct.error):
        return [None]
    return [endpoint(call, sa) for sa in found]


def main(argv: Sequence[str] | None = None) -> None:
    build(sys.argv[1:] if argv is None else argv).main()


if __name__ == "__main__":
    main()
