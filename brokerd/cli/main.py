"""brokerctl: run a program under the broker (and, later, steer sessions).

Errors in arguments or in starting the program are one line on stderr and a
non-zero exit, never a traceback.  ``brokerctl run`` exits with the traced
program's status; when a signal N killed it, brokerctl dies of N too (a shell shows 128+N).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from brokerd.cli.argtypes import seconds
from brokerd.cli.authorizers import Starter, StartError
from brokerd.cli.learn import LearnError
from brokerd.cli.learn import register as add_learn_command
from brokerd.cli.output import say, silence
from brokerd.cli.policy import (
    PolicyError,
    add_subcommands,
    policy_command,
    policy_object,
    python_object,
)
from brokerd.decision.defaults import default_verdict
from brokerd.protocol.selection import TraceError, parse_traces

PROG = "brokerctl"


class UsageError(Exception):
    pass


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, sized as argparse does (``COLUMNS``, else the
    terminal, else 80) without its ``import shutil``: argparse makes one
    formatter per option it is given, help or not."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)


def _columns() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kw) -> None:
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kw)

    def error(self, message: str) -> NoReturn:  # one line, exit 2, no usage dump
        raise UsageError(f"{message} (see {self.prog} --help)")


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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """brokerctl's parser; ``only="run"``: just that command (what main
    builds for ``brokerctl run``: the other commands' parsers were a tenth
    of its start-up)."""
    p = _Parser(prog=PROG, description="Run and steer programs under the brokerd syscall broker.")
    p.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    run = sub.add_parser("run", help="run a program under a stack of authorizers (and show a trace, like strace)",
                         description="Run PROG under a stack of authorizers. With -e trace= and no authorizer, or"
                                     " with any of -o -c -C -t -T -y, show the calls like strace (on stderr).")
    _add_stack_options(run, launch=True)
    _add_display_options(run)
    run.add_argument("-c", dest="summary", action="store_const", const="only",
                     help="count time, calls and errors per syscall and show the table at the end, not each call")
    run.add_argument("-C", dest="summary", action="store_const", const="both",
                     help="show each call and the table at the end")
    run.add_argument("-T", dest="times", action="store_true", help="show the time spent in each call: <0.000012>")
    run.add_argument("-f", dest="follow", action="count", default=0,
                     help="accepted for strace users: run always follows every child")
    run.add_argument("-p", dest="attach_pid", metavar="PID",
                     help="attach to a running process instead: the same as brokerctl attach PID")
    _add_ask_options(run)
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- PROG ARGS")
    if only == "run":
        return p

    att = sub.add_parser("attach", help="attach to a running process and steer it")
    att.add_argument("pid", metavar="PID", help="process to attach to (all its threads)")
    att.add_argument("-f", "--follow", action="store_true", help="also follow children it creates from now on")
    _add_ask_options(att)
    att.add_argument("--caller", action="store_true", help="show the calling library:symbol+offset of each call")
    att.add_argument("-q", "--quiet", action="store_true", help="do not show each call (still steer and summarise)")
    att.add_argument("--on-exit", choices=("kill", "detach"), default=None,
                     help="what happens to PID if brokerctl dies or is told to stop (SIGTERM, SIGHUP, its output"
                          " closed, kill -9): kill it (default with -a/--policy/--ask: fail closed) or detach and"
                          " leave it running untraced (default when only watching). Ctrl-C always detaches")
    _add_stack_options(att, launch=False)
    _add_display_options(att)
    att.set_defaults(summary="both", times=True)
    # the daemon client comes with the daemon commands: never for run
    from brokerd.cli.control import register as add_daemon_commands

    add_subcommands(sub)
    add_learn_command(sub)
    add_daemon_commands(sub)
    return p


def _add_ask_options(p: argparse.ArgumentParser) -> None:
    """Ask mode, shared by run and attach."""
    p.add_argument("--ask", action="store_true",
                   help="pause the calls -e trace= selects and ask at the terminal what to do")
    p.add_argument("--save-policy", metavar="FILE",
                   help="on exit, save the 'always' answers as a policy file (brokerctl run --policy FILE)")
    p.add_argument("--learned", metavar="POLICY.toml",
                   help="with --ask: start from a policy brokerctl learn wrote: ask only about what it would deny,"
                        " and add the 'always allow' answers to it on exit")


def _add_display_options(p: argparse.ArgumentParser) -> None:
    """strace's display options shared by run and attach."""
    p.add_argument("-o", dest="output", metavar="FILE", help="write the calls (and -c table) to FILE, not stderr")
    p.add_argument("-t", dest="stamps", action="count", default=0,
                   help="prefix each call with the time of day (-tt: with microseconds)")
    p.add_argument("-y", dest="fd_paths", action="store_true",
                   help="show the paths of descriptor arguments and results: 3</etc/hostname>")


class _Version(argparse.Action):
    """--version, looked up only when asked: importlib.metadata costs more
    than a tenth of brokerctl's start-up."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: object, values: object,
                 option_string: str | None = None) -> NoReturn:
        from brokerd.tracer.accel import describe

        print(f"{PROG} {_version()}\n{describe()}")
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("brokerd")
    except PackageNotFoundError:
        return "(not installed)"


def _add_stack_options(p: argparse.ArgumentParser, launch: bool) -> None:
    """The options run and attach share; ``launch``: also those only a
    launched program has (backend, CPU pinning, Landlock)."""
    p.add_argument("-a", "--authorizer", action="append", default=[], metavar="CMD",
                   help="an authorizer command (sh -c), spoken to over its stdin/stdout, or py:MODULE:NAME, a"
                        " brokerd.clients.authorizer.Authorizer run inside the broker; repeat to stack")
    p.add_argument("--policy", action="append", default=[], metavar="NAME[:ARGS]",
                   help="a shipped policy (brokerctl policy list) or a .toml file, run inside the broker's"
                        " process; stacked before the -a ones")
    p.add_argument("--policy-process", action="store_true",
                   help="run each --policy in a process of its own (isolated from the broker; slower)")
    p.add_argument("-e", dest="exprs", action="append", default=[], metavar="trace=EXPR",
                   help="what plain (no handshake) authorizers see, strace's syntax: trace=openat,connect |"
                        " trace=%%file,%%network | trace=!/^get | trace=none | signal=all (unknown names are"
                        " an error)")
    p.add_argument("--timeout", type=seconds, default=5.0, metavar="SECONDS",
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
    p.add_argument("--no-stable-args", dest="stable_args", action="store_false",
                   help="UNSAFE: let the kernel read judged paths from the program's own memory, where another "
                        "thread may change them after the check (saves a copy per call; docs/security.md)")
    p.add_argument("--allow-io-uring", action="store_true",
                   help="let the program use io_uring (denied by default: its I/O bypasses the broker)")
    if not launch:
        p.set_defaults(cpu=None, backend="ptrace", landlock=True)
        return
    p.add_argument("--cpu", metavar="LIST",
                   help="pin the broker, its authorizers and the program to these CPUs (e.g. 0 or 0-1): "
                        "a decision then needs no cross-CPU wake-up (docs/performance.md)")
    p.add_argument("--backend", choices=("auto", "ptrace", "notify"), default="auto",
                   help="ptrace, or seccomp user notification (no ptrace: cheaper, debuggable; only for stacks"
                        " that declare verdicts=cont,skip-fail,skip-ok and judge no memory arguments); auto picks")
    p.add_argument("--no-landlock", dest="landlock", action="store_false",
                   help="no Landlock domain around the program: it may then signal, ptrace and open /proc"
                        " of processes outside its session, except its own broker, which slower per-call checks"
                        " guard instead (docs/security.md)")


class _Session:
    """A session's greeted authorizer stack, before its shim exists: the
    backend is chosen from what the authorizers said (brokerd.tracer.notify),
    then :meth:`shim` makes the shim of that backend."""

    def __init__(self, args: argparse.Namespace, stack, loop, starter, daemon, audit) -> None:
        self.args, self.stack, self.loop, self.starter, self.daemon, self.audit = (
            args, stack, loop, starter, daemon, audit)

    def shim(self, backend: str = "ptrace"):
        """The shim of ``backend`` on the greeted stack; the daemon session
        steers it through its control interface (shim/control.py)."""
        from brokerd.tracer.shim import Shim

        shim_class: type[Shim] = Shim
        if backend != "ptrace":  # its module (socket, threading) only when chosen
            from brokerd.tracer.notify import BACKENDS

            shim_class = BACKENDS[backend]
        args = self.args
        shim = shim_class(self.stack, loop=self.loop, strsize=args.strsize, audit=self.audit,
                         caller=getattr(args, "caller", False), allow_io_uring=args.allow_io_uring,
                         stable_args=args.stable_args, use_landlock=args.landlock,
                         session=str(self.daemon.id) if self.daemon is not None else "1")
        shim.greeted()
        if self.daemon is not None:
            self.daemon.bind(shim)
        return shim


def _make_session(args: argparse.Namespace, operator=None) -> _Session:
    """The authorizer stack from the options run and attach share, greeted
    (the handshake needs only the event loop, not the shim); ``operator``
    (attach's terminal) goes first in the stack, farthest from the kernel,
    so every other policy still applies to what it allows."""
    from brokerd.decision.stack import Stack
    from brokerd.tracer.shim.launch import end_authorizers, greet
    from brokerd.tracer.shim.loop import EventLoop

    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.strsize < 0:
        raise UsageError("--strsize must not be negative")
    trace, signals = _parse_trace(args.exprs)
    default = default_verdict(args.default)
    if args.cpu:
        _pin(args.cpu)  # before anything is spawned: children inherit it
    audit = _audit_writer(args.audit) if args.audit else None
    daemon = _daemon_session(args)  # None: no daemon, embedded
    starter = Starter()
    members = _members(args, trace, signals, default, starter.spawn)
    if operator is not None:
        members.insert(0, operator)
        writer = audit

        def audit(rec) -> None:
            operator.on_decision(rec)
            if writer is not None:
                writer(rec)

    if daemon is not None:
        members += daemon.authorizers  # after the -a ones: the owner's registered ones, then root's system ones
    stack = Stack(members)
    loop = EventLoop(stack)
    starter.watch(loop.add_reader, loop.remove_reader)
    greet(stack, loop, str(daemon.id) if daemon is not None else "1", None)
    if loop.stop_signal:  # SIGTERM & co. while greeting: the program never starts (docs/shim.md)
        end_authorizers(stack, "brokerctl was told to stop")
        status = _finish(daemon, 128 + loop.stop_signal)
        raise StartError(f"{signal.Signals(loop.stop_signal).name} before the program started: "
                         "it was not started", status)
    try:
        starter.check(args.timeout)
    except StartError:
        _finish(daemon, 1)
        raise
    return _Session(args, stack, loop, starter, daemon, audit)


def _daemon_session(args: argparse.Namespace):
    """The daemon's session for this run or attach, or None (embedded).  The
    daemon client (socket, the codec's parser...) is imported only when a
    daemon may be listening: a plain run with none pays nothing for it."""
    from brokerd.daemon.sockets import maybe_listening

    if not maybe_listening():
        return None
    from brokerd.daemon import client as daemon_client

    return daemon_client.from_args(args)


def _finish(daemon, status: int) -> int:
    """The session is over: tell its daemon, if it has one; returns ``status``."""
    if daemon is None:
        return status
    from brokerd.daemon import client as daemon_client

    return daemon_client.finish(daemon, status)


def _make_shim(args: argparse.Namespace, operator=None):
    """A ptrace shim on the greeted stack (attach), its starter and its daemon session."""
    session = _make_session(args, operator)
    return session.shim("ptrace"), session.starter, session.daemon


def _members(args: argparse.Namespace, trace, signals: bool, default: object, spawn) -> list:
    """The --policy ones (in the broker's process unless --policy-process), then the -a ones
    (``py:MODULE:NAME`` in-process, anything else a command ``spawn`` starts)."""
    kw = {"timeout": args.timeout, "default": default, "trace": trace, "signals": signals}

    def inproc(policy):  # imported only when used: the authorizer library costs start-up time
        from brokerd.decision.inproc import InProcess

        return InProcess(policy, **kw)

    out = []
    for spec in args.policy:
        out.append(spawn(policy_command(spec), **kw) if args.policy_process else inproc(policy_object(spec)))
    for cmd in args.authorizer:
        out.append(inproc(python_object(cmd)) if cmd.startswith("py:") else spawn(cmd, **kw))
    return out


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
        if e.errno == errno.EINVAL:  # none of them is a CPU this process may run on
            raise UsageError(f"--cpu {spec}: no such CPU here (this process may use CPUs "
                             f"{_cpu_list(os.sched_getaffinity(0))})") from None
        raise UsageError(f"--cpu {spec}: {e.strerror}") from None


def _cpu_list(cpus: set[int]) -> str:
    """``{0, 1, 2, 5}`` as ``0-2,5`` (the form ``--cpu`` takes)."""
    runs: list[list[int]] = []
    for c in sorted(cpus):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def cmd_run(args: argparse.Namespace) -> int:

    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if args.attach_pid is not None:
        if argv:
            raise UsageError("run -p PID attaches to a running process: give no program (brokerctl attach PID)")
        _say(f"{PROG}: run -p {args.attach_pid} means brokerctl attach {args.attach_pid}; attaching")
        return cmd_attach(_as_attach(args))
    if not argv:
        raise UsageError("run: no program given (brokerctl run [OPTIONS] -- PROG ARGS)")
    operator = out = start = None
    display = _run_display(args)
    if args.ask or args.learned or args.save_policy:
        operator, start = _run_asker(args, display)
        out = operator.out
    elif display is not None:
        from brokerd.cli.operator import Operator

        out = _output(args.output)
        operator = Operator(_parse_trace(args.exprs)[0], out=out, display=display)
    # console() may end the process without the interpreter's finalization
    # unless code of the user's runs in it (a py: authorizer's files)
    _ending.quick = not any(a.startswith("py:") for a in args.authorizer)
    try:
        return _run(args, argv, operator, out)
    finally:
        if args.save_policy and operator is not None:
            with open(args.save_policy, "w") as f:
                f.write(operator.policy_toml(0))
            _say(f"{PROG}: {len(operator.always)} rule(s) saved to {args.save_policy}")
        if start is not None:
            _say(f"{PROG}: {start.save()} answer(s) added to {args.learned}")
        if out is not None and out is not sys.stderr:
            out.close()  # -o FILE


def _run_asker(args: argparse.Namespace, display):
    """run --ask: the operator asks at the controlling terminal (opened on its
    own, so the program's stdin keeps its flags) about the -e trace= calls,
    or with --learned and no -e, about any call the learned policy would deny."""
    from brokerd.cli.learn import AskSession
    from brokerd.cli.operator import Display, Operator

    if not args.ask:
        raise UsageError("run --learned/--save-policy need --ask")
    trace, _signals = _parse_trace(args.exprs)
    if trace is None and not args.learned:
        raise UsageError("run --ask: say which calls to ask about with -e trace=LIST (e.g. -e trace=openat),"
                         " or start from a learned policy (--learned POLICY.toml)")
    try:
        tty = os.open("/dev/tty", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise UsageError("run --ask: no terminal to answer on (/dev/tty)") from None
    start = AskSession(args.learned) if args.learned else None
    return Operator(trace, out=_output(args.output), ask=True, tty=tty,
                    display=display or Display(calls=False, times=False), start=start), start


def _run(args: argparse.Namespace, argv: list[str], operator, out) -> int:
    """Launch ``argv`` under the stack (and ``operator``, when there is one):
    greet the authorizers, choose the backend, then make the shim of it."""
    from brokerd.tracer.shim import LaunchError

    session = _make_session(args, operator)
    starter, daemon = session.starter, session.daemon
    if args.backend == "auto" and daemon is None:
        from brokerd.tracer import direct

        if not direct.why_traced(session.stack, args.landlock):  # the kernel enforces all of it: no tracer, no broker left
            try:
                return direct.exec_direct(session.shim("ptrace"), argv)
            except LaunchError as e:
                print(f"{PROG}: {e}", file=sys.stderr)
                return e.status
    from brokerd.tracer.notify import choose_backend

    if operator is not None and args.backend == "notify":
        operator.without_results()

    backend = choose_backend(session.stack, args.backend, lambda m: print(f"{PROG}: {m}", file=sys.stderr),
                             allow_io_uring=args.allow_io_uring, stable_args=args.stable_args,
                             use_landlock=args.landlock)
    shim = session.shim(backend)  # made once its backend is known
    try:
        pid = shim.launch(argv)
    except LaunchError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.status
    if daemon is not None:
        daemon.started(pid)
    status = shim.run()
    starter.close()
    if operator is not None and args.summary:
        say(operator.out, operator.summary())
    status = _finish(daemon, status)
    st = shim.main_status
    if st is not None and os.WIFSIGNALED(st) and status == 128 + os.WTERMSIG(st):
        _ending.signal = os.WTERMSIG(st)  # console() ends brokerctl the same way
    return status


def _run_display(args: argparse.Namespace):
    """strace's behaviour for run: a trace when calls are selected with no
    authorizer to decide them, or when a display option asks for one."""
    asked = args.output or args.summary or args.stamps or args.times or args.fd_paths
    selected = any(e.partition("=")[0] in ("trace", "t") or "=" not in e for e in args.exprs)
    if not asked and (args.authorizer or args.policy or not selected):
        return None
    from brokerd.cli.operator import Display

    return Display(calls=args.summary != "only", times=args.times, stamps=args.stamps, fd_paths=args.fd_paths)


def _output(path: str | None):
    """Where the trace goes: stderr, or -o FILE (created or truncated, as strace does)."""
    return sys.stderr if path is None else open(path, "w")  # noqa: SIM115


def _as_attach(args: argparse.Namespace) -> argparse.Namespace:
    """run -p PID's options as attach's: attach's defaults, then every
    option the two share as given to run."""
    attach = build_parser().parse_args(["attach", "--", args.attach_pid])
    shared = {k: v for k, v in vars(args).items() if k in vars(attach) and k not in ("command", "follow")}
    return argparse.Namespace(**{**vars(attach), **shared, "follow": bool(args.follow),
                                 "quiet": args.summary == "only"})


def cmd_attach(args: argparse.Namespace) -> int:
    from brokerd.cli.operator import Display, Operator
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
    out = _output(args.output)
    display = Display(calls=not args.quiet, times=True, stamps=args.stamps, fd_paths=args.fd_paths)
    operator = Operator(trace, out=out, ask=args.ask, tty=0, display=display, start=start)
    shim, starter, daemon = _make_shim(args, operator)
    enforcing = args.ask or len(shim.stack) > 1  # anyone but the watching operator decides
    on_exit = args.on_exit or ("kill" if enforcing else "detach")
    if not enforcing:
        _watch_only(shim)
    shim.on_leave = on_exit
    operator.on_output_lost = lambda: signal.raise_signal(signal.SIGHUP)  # handled by the loop: leave
    try:
        tids = shim.attach(pid, follow=args.follow, exit_kill=on_exit == "kill")
    except LaunchError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    fate = "killed" if on_exit == "kill" else "left running, untraced"
    _say(f"{PROG}: attached to {pid} ({len(tids)} thread{'s' if len(tids) != 1 else ''}); "
         f"Ctrl-C detaches; if brokerctl dies, {pid} is {fate} (--on-exit)")
    status = _finish(daemon, shim.run())
    starter.close()
    if shim.detached_cleanly:
        _say(f"{PROG}: detached from {pid}")
    else:
        _say(f"{PROG}: {pid} has exited ({_status_text(shim.main_status or 0)})")
    say(out, operator.summary())
    if args.save_policy:
        with open(args.save_policy, "w") as f:
            f.write(operator.policy_toml(pid))
        _say(f"{PROG}: {len(operator.always)} rule(s) saved to {args.save_policy}")
    if start is not None:
        _say(f"{PROG}: {start.save()} answer(s) added to {args.learned}")
    return 0 if shim.detached_cleanly else status


def _watch_only(shim) -> None:
    """Nothing to enforce: change nothing in the watched program (no scratch
    memory injected, io_uring not denied), as strace -p would."""
    from brokerd.tracer.shim import BROKER_RULES_IO_URING

    shim.stable_args = False
    shim.internal = BROKER_RULES_IO_URING
    shim._action_cache.clear()


def _status_text(status: int) -> str:
    """A wait status as a person reads it."""
    if os.WIFSIGNALED(status):
        return f"killed by {signal.strsignal(os.WTERMSIG(status)) or os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _say(text: str) -> None:
    say(sys.stderr, text)


def _audit_writer(path: str):
    import json  # only with --audit

    f = sys.stderr if path == "-" else open(path, "a", buffering=1)  # noqa: SIM115

    def write(rec) -> None:
        f.write(json.dumps(rec.to_json()) + "\n")

    return write


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only="run" if argv[:1] == ["run"] else None)
    if not argv:
        print(f"{PROG}: no command given; {PROG} --help lists them (e.g. {PROG} run -- PROG)", file=sys.stderr)
        return 2
    try:
        if argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
            # (argparse would only say COMMAND is missing: name the word it did not know)
            raise UsageError(f"unknown option {argv[0]!r}: options go after the command "
                             f"(see {PROG} --help, {PROG} COMMAND --help)")
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
    except StartError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `brokerctl ... | head`: the reader has all it wanted
        silence(sys.stdout)
        return 141
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"{PROG}: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line (BROKERD_DEBUG=1 shows the traceback)
        if os.environ.get("BROKERD_DEBUG"):
            raise
        print(f"{PROG}: internal error: {type(e).__name__}: {e} (BROKERD_DEBUG=1 shows where)", file=sys.stderr)
        return 1


class _ending:
    """How console() ends brokerctl (set by the command that ran)."""

    quick = False
    signal = 0  #: the signal that killed the program run: brokerctl dies of it too


def _die_of(sig: int, finalize: bool) -> None:
    """End killed by ``sig``, as the program was (strace does the same): a
    shell tells a death by a signal from an exit status, so Ctrl-C ends a
    shell loop of brokerctl runs (an exit 130 let the loop go on), xargs
    stops, make says "Interrupt".  No core file of brokerctl's own
    (RLIMIT_CORE 0).  ``finalize``: the user's code ran in this process (a
    ``py:`` authorizer): its atexit functions run and its open files are
    flushed first, as an exit would.  Returns only if ``sig`` did not kill."""
    if finalize:
        import atexit
        import gc
        import io

        atexit._run_exitfuncs()
        for obj in gc.get_objects():
            if isinstance(obj, io.IOBase):
                try:
                    obj.flush()
                except (OSError, ValueError):  # closed, or a pipe nobody reads
                    pass
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError):
        pass
    try:
        signal.signal(sig, signal.SIG_DFL)
    except OSError:  # SIGKILL: no disposition to set
        pass
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)


def console(argv: Sequence[str] | None = None) -> NoReturn:
    """brokerctl's entry point: :func:`main`, then exit with its status.

    After ``run`` (with no ``py:`` authorizer, the one way the user's code runs
    in this process) the process ends with ``os._exit`` once its standard
    streams are flushed: the interpreter's finalization (tearing down some
    140 modules and their objects) was a sixth of a plain run's CPU time.
    Every file a run writes is closed or line-buffered by then (``-o``,
    ``--audit``, ``--save-policy``, the shipped policies' own)."""
    status = main(argv)
    if not _ending.quick:
        if _ending.signal:
            _die_of(_ending.signal, finalize=True)
        sys.exit(status)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what the normal exit would have said nothing about
            pass
    if _ending.signal:
        _die_of(_ending.signal, finalize=False)
    os._exit(status)


if __name__ == "__main__":
    console()
