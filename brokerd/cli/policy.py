"""brokerctl's policy parts: ``--policy NAME[:ARGS]``, ``policy check|list``, ``replay``.

``--policy`` turns a shipped policy's name into the authorizer command that
runs it (``python -m brokerd.clients.policies.NAME ARGS``); ARGS are split on
commas, each becoming one argument (``sandbox:/home/sandbox,--ro=/usr``).
A spec ending in ``.toml`` (or ``file:PATH``) runs a declarative policy file,
checked first so that its errors stop brokerctl before the program starts.

Errors are raised as :class:`PolicyError` (one line; main prints it).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from brokerd.cli.argtypes import seconds
from brokerd.protocol.selection import TraceError, parse_traces

PROG = "brokerctl"


class PolicyError(Exception):
    """A usage error: one line, exit status 2."""


def _policies() -> dict[str, tuple[str, str]]:
    from brokerd.clients.policies import POLICIES

    return POLICIES


def policy_command(spec: str) -> str:
    """``NAME[:ARG,ARG...]`` (or ``FILE.toml``) -> the authorizer command (for ``sh -c``)."""
    module, args = _resolve(spec)
    return shlex.join([sys.executable, "-m", module, *args])


def policy_object(spec: str):
    """``NAME[:ARGS]`` -> the policy built in this process (its module's ``build(ARGS)``),
    for :class:`brokerd.decision.inproc.InProcess`."""
    import importlib

    module, args = _resolve(spec)
    try:
        return importlib.import_module(module).build(args)
    except SystemExit:  # its argument parser said why on stderr
        raise PolicyError(f"--policy {spec!r}: bad arguments for {module.rsplit('.', 1)[-1]}") from None


def python_object(ref: str):
    """``py:MODULE:NAME`` -> the clients.authorizer.Authorizer it names (an
    instance, or a function taking no argument that returns one)."""
    import importlib

    from brokerd.clients.authorizer import Authorizer

    _, module, name = (ref.split(":", 2) + ["", ""])[:3]
    if not module or not name:
        raise PolicyError(f"-a {ref!r}: expected py:MODULE:NAME (an Authorizer in an importable module)")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: modules next to the user
    try:
        obj = getattr(importlib.import_module(module), name)
        if not isinstance(obj, Authorizer) and callable(obj):
            obj = obj()
    except (ImportError, AttributeError, SystemExit) as e:
        raise PolicyError(f"-a {ref!r}: {type(e).__name__}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the user's module: one line, never a traceback
        raise PolicyError(f"-a {ref!r}: building it raised {type(e).__name__}: {e}") from None
    if not isinstance(obj, Authorizer):
        raise PolicyError(f"-a {ref!r}: {name} is a {type(obj).__name__}, not a brokerd.clients.authorizer.Authorizer")
    return obj


def _resolve(spec: str) -> tuple[str, list[str]]:
    """``NAME[:ARG,ARG...]`` (or ``FILE.toml``) -> (module, its arguments)."""
    name, _, rest = spec.partition(":")
    if not name:
        raise PolicyError(f"--policy {spec!r}: no policy name")
    args = [a for a in rest.split(",") if a] if rest else []
    if name.endswith(".toml") and not rest:
        name, args = "file", [spec]
    policies = _policies()
    if name not in policies:
        raise PolicyError(f"--policy {spec!r}: no policy {name!r} (one of {', '.join(sorted(policies))},"
                          " or a .toml file)")
    if name == "file":
        if len(args) != 1:
            raise PolicyError(f"--policy {spec!r}: give one policy file (file:PATH)")
        _check_file(args[0])
        args = [os.path.abspath(args[0])]
    return policies[name][0], args


def _check_file(path: str) -> None:
    from brokerd.clients.policies.rulefile import PolicyFileError, load

    try:
        load(path)
    except PolicyFileError as e:
        raise PolicyError(e.lines()[0] + (f" (and {len(e.errors) - 1} more: brokerctl policy check {path})"
                                          if len(e.errors) > 1 else "")) from None


# ---------------------------------------------------------------------------
# subcommands
# ---------------------------------------------------------------------------


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``policy`` and ``replay`` (each sets ``handler`` in the namespace)."""
    pol = subparsers.add_parser("policy", help="check policy files, list shipped policies")
    psub = pol.add_subparsers(dest="policy_command", metavar="ACTION", parser_class=type(pol))
    psub.required = True
    check = psub.add_parser("check", help="compile a TOML policy file and report errors with line numbers")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(handler=cmd_check)
    lst = psub.add_parser("list", help="the policies --policy NAME can run")
    lst.set_defaults(handler=cmd_list)
    cmd = psub.add_parser("command", help="print the authorizer command a --policy spec runs")
    cmd.add_argument("spec", metavar="NAME[:ARGS]")
    cmd.set_defaults(handler=cmd_command)
    exp = psub.add_parser("explain", help="where each syscall of a policy is decided: seccomp filter, Landlock "
                                          "layer, a rule in the broker, or the authorizer; what this kernel lacks")
    exp.add_argument("spec", metavar="NAME[:ARGS]")
    exp.add_argument("syscalls", nargs="*", metavar="SYSCALL", help="only these (default: every x86_64 syscall)")
    exp.add_argument("--no-landlock", dest="landlock", action="store_false",
                     help="as brokerctl run --no-landlock would decide them")
    exp.set_defaults(handler=cmd_explain)

    rp = subparsers.add_parser("replay", help="run a recorded audit journal through a policy; list changed decisions")
    rp.add_argument("journal", metavar="JOURNAL", help="JSON lines from `brokerctl run --audit` or the audit policy ('-' = stdin)")
    rp.add_argument("-a", "--authorizer", action="append", default=[], metavar="CMD",
                    help="an authorizer command (sh -c); repeat to stack")
    rp.add_argument("--policy", action="append", default=[], metavar="NAME[:ARGS]",
                    help="a shipped policy or a .toml file; placed before the -a ones")
    rp.add_argument("-e", dest="exprs", action="append", default=[], metavar="trace=EXPR",
                    help="what plain (no handshake) authorizers see, strace's syntax (default: every call)")
    rp.add_argument("--timeout", type=seconds, default=5.0, metavar="SECONDS", help="deadline for each answer")
    rp.add_argument("-q", "--quiet", action="store_true", help="no listing, only the exit status")
    rp.set_defaults(handler=cmd_replay)


def cmd_check(args: argparse.Namespace) -> int:
    from brokerd.clients.policies.rulefile import PolicyFileError, load

    status = 0
    for path in args.files:
        try:
            pol = load(path)
        except PolicyFileError as e:
            for line in e.lines():
                print(line, file=sys.stderr)
            status = 1
            continue
        trace = "every syscall" if pol.trace == "all" else ", ".join(sorted(pol.trace)) or "no syscall"
        what = f"widens {pol.base} (its rules first)" if pol.base else f"traces {trace}"
        print(f"{path}: ok: {len(pol.rules)} rule{'s' if len(pol.rules) != 1 else ''}, {what}")
    return status


def cmd_list(args: argparse.Namespace) -> int:
    for name, (_module, doc) in sorted(_policies().items()):
        print(f"{name:10} {doc}")
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    print(policy_command(args.spec))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from brokerd.cli.explain import run
    from brokerd.protocol.abi import ABIS

    unknown = [n for n in args.syscalls if n not in ABIS["x86_64"].by_name]
    if unknown:
        raise PolicyError(f"no such x86_64 syscall: {', '.join(unknown)}")
    return run(policy_command(args.spec), args.syscalls, landlock_on=args.landlock)


def _trace(exprs: list[str]) -> frozenset[str] | None:
    """replay's ``-e trace=EXPR`` (strace's syntax, the last one wins)."""
    traces = []
    for expr in exprs:
        key, sep, value = expr.partition("=")
        if not sep:
            key, value = "trace", expr
        if key != "trace":
            raise PolicyError(f"-e {expr}: replay knows only trace=EXPR")
        traces.append(value)
    try:
        return parse_traces(traces)
    except TraceError as e:
        raise PolicyError(f"-e trace=: {e}") from None


def cmd_replay(args: argparse.Namespace) -> int:
    from brokerd.clients.replay import JournalError, PeerError, read_journal, replay

    commands = [policy_command(p) for p in args.policy] + list(args.authorizer)
    if not commands:
        raise PolicyError("replay: give the policy to try (--authorizer CMD or --policy NAME)")
    if args.timeout <= 0:
        raise PolicyError("--timeout must be positive")
    trace = _trace(args.exprs)
    try:
        if args.journal == "-":
            entries = read_journal(sys.stdin)
        else:
            with open(args.journal, encoding="utf-8") as f:
                entries = read_journal(f)
    except JournalError as e:
        print(f"{PROG}: {args.journal}: {e}", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print(f"{PROG}: {args.journal}: not UTF-8 text", file=sys.stderr)
        return 2
    try:
        changes = replay(entries, commands, timeout=args.timeout, trace=trace)
    except PeerError as e:
        print(f"{PROG}: replay: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        for c in changes:
            print(c.describe())
        print(f"{len(entries)} calls replayed, {len(changes)} decision{'s' if len(changes) != 1 else ''} changed",
              file=sys.stderr)
    return 1 if changes else 0
