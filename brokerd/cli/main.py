"""brokerctl: run a program under the broker (and, later, steer sessions).

Errors in arguments or in starting the program are one line on stderr and a
non-zero exit, never a traceback.  ``brokerctl run`` exits with the traced
program's status (128+N when a signal N killed it), as a shell would.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from brokerd.cli.control import register as add_daemon_commands
from brokerd.cli.learn import LearnError
from brokerd.cli.learn import register as add_learn_command
from brokerd.cli.policy import PolicyError, add_subcommands, policy_command
from brokerd.decision.defaults import default_verdict
from brokerd.protocol.selection import TraceError, parse_traces

PROG = "brokerctl"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(message)


def _parse_trace(exprs: Sequence[str]) -> tuple[frozenset[str] | None, bool]:
    """strace's ``-e trace=EXPR`` (brokerd.protocol.selection: names, %classes,
    /regex, !, all, none; the last one wins) and ``-e signal=all``:
    (syscalls or None for all, signals?).  A selection naming nothing is a
    usage error: a typo must never leave a policy unasked."""
    traces: list[str] = []
    signals = False
    for expr in exprs:
        key, sep, value = expr.partition("=")
        if not sep:
            key, value = "trace", expr
        if key in ("trace", "t"):
            traces.append(value)
        elif key in ("signal", "signals"):
            signals = value not in ("none", "!all", "")
        else:
            raise UsageError(f"-e {expr}: unknown qualifier {key!r} (use trace= or signal=)")
    try:
        return parse_traces(traces), signals
    except TraceError as e:
        raise UsageError(f"-e trace=: {e}") from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Run and steer programs under the brokerd syscall broker.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    run = sub.add_parser("run", help="run a program under a stack of authorizers")
    _add_stack_options(run)
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- PROG ARGS")

    att = sub.add_parser("attach", help="attach to a running process and steer it")
    att.add_argument("pid", metavar="PID", help="process to attach to (all its threads)")
    att.add_argument("-f", "--follow", action="store_true", help="also follow children it creates from now on")
    att.add_argument("--ask", action="store_true",
                     help="pause the calls -e trace= selects and ask at the terminal what to do")
    att.add_argument("--caller", action="store_true", help="show the calling library:symbol+offset of each call")
    att.add_argument("--save-policy", metavar="FILE",
                     help="on exit, save the 'always' answers as a policy file (brokerctl run --policy FILE)")
    att.add_argument("--learned", metavar="POLICY.toml",
                     help="with --ask: start from a policy brokerctl learn wrote: ask only about what it would deny,"
                          " and add the 'always allow' answers to it on exit")
    att.add_argument("-q", "--quiet", action="store_true", help="do not show each call (still steer and summarise)")
    _add_stack_options(att)
    add_subcommands(sub)
    add_learn_command(sub)
    add_daemon_commands(sub)
    return p


def _add_stack_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--authorizer", action="append", default=[], metavar="CMD",
                   help="an authorizer command (sh -c), spoken to over its stdin/stdout; repeat to stack")
    p.add_argument("--policy", action="append", default=[], metavar="NAME[:ARGS]",
                   help="a shipped policy (brokerctl policy list) or a .toml file; stacked before the -a ones")
    p.add_argument("-e", dest="exprs", action="append", default=[], metavar="trace=EXPR",
                   help="what plain (no handshake) authorizers see, strace's syntax: trace=openat,connect |"
                        " trace=%%file,%%network | trace=!/^get | trace=none | signal=all (unknown names are"
                        " an error)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="deadline for each answer; a late one gets the default verdict (default 5)")
    p.add_argument("--default", choices=("deny", "kill", "allow"), default="deny",
                   help="verdict when an authorizer fails, hangs or answers garbage (default deny = EPERM;"
                        " allow is unsafe)")
    p.add_argument("--strsize", type=int, default=64, metavar="N",
                   help="bytes of each data buffer shown in events (default 64)")
    p.add_argument("--audit", metavar="FILE", help="append one JSON line per decision to FILE ('-' = stderr)")
    p.add_argument("--on-failure", choices=("kill", "deny", "allow"), default=None,
                   help="if the brokerd daemon is lost: kill the program (default), deny every traced call,"
                        " or allow (go on with the authorizers left)")
    p.add_argument("--cpu", metavar="LIST",
                   help="pin the broker, its authorizers and the program to these CPUs (e.g. 0 or 0-1): "
                        "a decision then needs no cross-CPU wake-up (docs/performance.md)")
    p.add_argument("--no-stable-args", dest="stable_args", action="store_false",
                   help="UNSAFE: let the kernel read judged paths from the program's own memory, where another "
                        "thread may change them after the check (saves a copy per call; docs/security.md)")
    p.add_argument("--backend", choices=("auto", "ptrace", "notify"), default="auto",
                   help="run: ptrace, or seccomp user notification (no ptrace: cheaper, debuggable; only for stacks"
                        " that declare verdicts=cont,skip-fail,skip-ok and judge no memory arguments); auto picks")
    p.add_argument("--no-landlock", dest="landlock", action="store_false",
                   help="run: no Landlock domain around the program: it may then signal, ptrace and open /proc"
                        " of processes outside its session, except its own broker, which slower per-call checks"
                        " guard instead (docs/security.md)")
    p.add_argument("--allow-io-uring", action="store_true",
                   help="let the program use io_uring (denied by default: its I/O bypasses the broker)")


def _make_shim(args: argparse.Namespace, operator=None):
    """The shim and its authorizer stack, from the options run and attach share;
    ``operator`` (attach's terminal) goes first in the stack, farthest from the
    kernel, so every other policy still applies to what it allows."""
    from brokerd.decision.authorizer import spawn
    from brokerd.tracer.shim import Shim

    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.strsize < 0:
        raise UsageError("--strsize must not be negative")
    trace, signals = _parse_trace(args.exprs)
    default = default_verdict(args.default)
    if args.cpu:
        _pin(args.cpu)  # before anything is spawned: children inherit it
    audit = _audit_writer(args.audit) if args.audit else None
    from brokerd.daemon import client as daemon_client

    daemon = daemon_client.from_args(args)  # None: no daemon, embedded
    stack = [
        spawn(cmd, timeout=args.timeout, default=default, trace=trace, signals=signals)
        for cmd in [*map(policy_command, args.policy), *args.authorizer]
    ]
    if operator is not None:
        stack.insert(0, operator)
        writer = audit

        def audit(rec) -> None:
            operator.on_decision(rec)
            if writer is not None:
                writer(rec)

    if daemon is not None:
        stack += daemon.authorizers  # after the -a ones: the owner's registered ones, then root's system ones
    shim = Shim(stack, strsize=args.strsize, audit=audit, caller=getattr(args, "caller", False),
                allow_io_uring=args.allow_io_uring, stable_args=args.stable_args,
                use_landlock=args.landlock)
    if daemon is not None:
        shim.session = str(daemon.id)
        daemon.bind(shim)
    shim.handshake()
    return shim


def _pin(spec: str) -> None:
    cpus: set[int] = set()
    try:
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
        os.sched_setaffinity(0, cpus)
    except ValueError:
        raise UsageError(f"--cpu {spec}: expected CPU numbers like 0 or 0-1,3") from None
    except OSError as e:
        raise UsageError(f"--cpu {spec}: {e.strerror}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from brokerd.tracer.shim import LaunchError

    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("run: no program given (brokerctl run [OPTIONS] -- PROG ARGS)")
    shim = _make_shim(args)
    if args.backend == "auto" and not _has_daemon(shim):
        from brokerd.tracer import direct

        if not direct.why_traced(shim):  # the kernel enforces all of it: no tracer, no broker left
            try:
                return direct.exec_direct(shim, argv)
            except LaunchError as e:
                print(f"{PROG}: {e}", file=sys.stderr)
                return e.status
    from brokerd.tracer.notify import choose_backend

    shim = choose_backend(shim, args.backend, lambda m: print(f"{PROG}: {m}", file=sys.stderr))
    try:
        pid = shim.launch(argv)
    except LaunchError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.status
    from brokerd.daemon import client as daemon_client

    daemon_client.started(shim, pid)
    return daemon_client.finish(shim, shim.run())


def _has_daemon(shim) -> bool:
    """Is the session registered with a daemon (it expects the session's end)?"""
    return getattr(shim, "daemon_session", None) is not None


def cmd_attach(args: argparse.Namespace) -> int:
    from brokerd.cli.operator import Operator
    from brokerd.tracer.shim import LaunchError

    if not args.pid.isdigit() or int(args.pid) <= 0:
        raise UsageError(f"attach: PID must be a positive number, not {args.pid!r}")
    pid = int(args.pid)
    if pid == os.getpid():
        raise UsageError("attach: cannot attach to brokerctl itself")
    trace, _signals = _parse_trace(args.exprs)
    if args.ask and trace is None:
        raise UsageError("attach --ask: say which calls to ask about with -e trace=LIST (e.g. -e trace=openat)")
    if args.ask and not os.isatty(0):
        raise UsageError("attach --ask: standard input must be a terminal to answer on")
    if args.learned and not args.ask:
        raise UsageError("attach --learned POLICY.toml needs --ask")
    from brokerd.cli.learn import AskSession

    start = AskSession(args.learned) if args.learned else None
    out = open(os.devnull, "w") if args.quiet else sys.stderr  # noqa: SIM115
    operator = Operator(trace, out=out, ask=args.ask, tty=0, start=start)
    shim = _make_shim(args, operator)
    try:
        tids = shim.attach(pid, follow=args.follow)
    except LaunchError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    print(f"{PROG}: attached to {pid} ({len(tids)} thread{'s' if len(tids) != 1 else ''}); "
          "Ctrl-C detaches", file=sys.stderr, flush=True)
    from brokerd.daemon import client as daemon_client

    daemon_client.finish(shim, shim.run())
    print(f"{PROG}: detached from {pid}" if shim.detached_cleanly else f"{PROG}: {pid} has exited",
          file=sys.stderr)
    print(operator.summary(), file=sys.stderr)
    if args.save_policy:
        with open(args.save_policy, "w") as f:
            f.write(operator.policy_toml(pid))
        print(f"{PROG}: {len(operator.always)} rule(s) saved to {args.save_policy}", file=sys.stderr)
    if start is not None:
        print(f"{PROG}: {start.save()} answer(s) added to {args.learned}", file=sys.stderr)
    return 0


def _audit_writer(path: str):
    f = sys.stderr if path == "-" else open(path, "a", buffering=1)  # noqa: SIM115

    def write(rec) -> None:
        f.write(json.dumps(rec.to_json()) + "\n")

    return write


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "attach":
            return cmd_attach(args)
        if hasattr(args, "handler"):
            return args.handler(args)
        raise UsageError(f"unknown command {args.command}")
    except (UsageError, PolicyError, LearnError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        print(f"{PROG}: {e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
