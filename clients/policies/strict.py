"""Strict: seccomp strict mode (2004) as a policy, for pure compute jails.

    brokerctl run --policy strict -- PROG          # armed when PROG asks for strict mode
    brokerctl run --policy strict:--now -- PROG    # armed from the first call after exec
    python3 -m brokerd.clients.policies.strict [--now] [--log]

Once armed for a thread, only ``read``, ``write``, ``exit``, ``exit_group``,
``rt_sigreturn`` (and i386 ``sigreturn``) run, on whatever descriptors are
already open; **any other call kills the process (SIGKILL, exit status
137)**, as the kernel's strict mode does - a jail, not a filter that answers
errors.

Arming.  The default waits for the program to ask for strict mode itself,
as such programs do after their set-up: ``prctl(PR_SET_SECCOMP,
SECCOMP_MODE_STRICT)`` or ``seccomp(SECCOMP_SET_MODE_STRICT, 0, NULL)``.  The
request is answered ``skip-ok 0`` and the policy enforces the mode for that
thread from then on (the real strict mode could not be entered anyway: the
broker's seccomp filter is already installed, and the kernel refuses strict
mode on top of a filter).  Before arming, everything runs.  ``--now`` arms
every thread from the first call after the launch ``execve``: only a
program that makes no other call at all can run (a static, ``-nostdlib``
one - a dynamically linked program dies in its loader).

Notes: C stdio's first ``printf`` calls ``fstat`` - flush or set up stdout
before arming; like the kernel's mode, arming is per thread.  The jail lasts
as long as the broker: the traced program dies with it (PTRACE_O_EXITKILL),
it never runs unjailed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from brokerd.clients.authorizer import Authorizer, Syscall, cont, kill, skip_ok

ALLOWED = frozenset({"read", "write", "exit", "exit_group", "rt_sigreturn", "sigreturn"})
PR_SET_SECCOMP = 22
SECCOMP_MODE_STRICT = 1
SECCOMP_SET_MODE_STRICT = 0


def asks_for_strict(call: Syscall) -> bool:
    if call.name == "prctl":
        return call.num(0) == PR_SET_SECCOMP and call.num(1) == SECCOMP_MODE_STRICT
    if call.name == "seccomp":
        return call.num(0) == SECCOMP_SET_MODE_STRICT
    return False


def build(argv: Sequence[str]) -> Authorizer:
    p = argparse.ArgumentParser(prog="strict", description=__doc__.split("\n\n")[0])
    p.add_argument("--now", action="store_true", help="armed from the first call after the launch execve")
    p.add_argument("--log", action="store_true", help="print each kill on stderr")
    a = p.parse_args(argv)
    az = Authorizer("strict", trace="all")
    armed: set[int] = set()
    launch = {"pending": a.now}

    @az.on("*")
    def judge(call: Syscall) -> object:
        if launch["pending"]:
            if call.name in ("execve", "execveat"):
                launch["pending"] = False  # the launch itself; from its result on, everyone is armed
                launch["all"] = True
            return cont()
        if call.tid in armed or launch.get("all"):
            if call.name in ALLOWED:
                return cont()
            if a.log:
                print(f"strict: pid {call.pid}: {call.text()} -> kill", file=sys.stderr, flush=True)
            return kill()
        if asks_for_strict(call):
            armed.add(call.tid)
            return skip_ok(0)
        return cont()

    return az


def main(argv: Sequence[str] | None = None) -> None:
    build(sys.argv[1:] if argv is None else argv).main()


if __name__ == "__main__":
    main()
