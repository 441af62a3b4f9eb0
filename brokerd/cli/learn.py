"""``brokerctl learn``: from "I run make" to "make runs confined" (issue #17).

    brokerctl learn -o POLICY.toml [--merge] [--journal FILE] -- PROG ARGS
    brokerctl learn -o POLICY.toml [--merge] --from JOURNAL [--from JOURNAL...]
    brokerctl learn --check POLICY.toml [--journal FILE] -- PROG ARGS

Learning runs the program allowing everything under the audit policy (the
same journal users ship to their logs, docs/policies.md), then turns the
journal into a policy (brokerd.clients.learn).  ``--check`` runs the program
the same way and replays the journal through the policy: the calls it would
deny are listed before anyone enforces it.  Errors are one line, exit 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from brokerd.protocol.types import SyscallEvent

if TYPE_CHECKING:  # subprocess and tempfile are imported when learn runs (brokerctl run's start-up)
    import tempfile

PROG = "brokerctl"


class LearnError(Exception):
    """A usage or input error: one line, exit status 2."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("learn", help="learn a least-privilege policy from a run, or check one against a run")
    p.add_argument("-o", "--output", metavar="POLICY.toml", help="write the learned policy here")
    p.add_argument("--merge", action="store_true",
                   help="merge into the policy already in -o (learned before) instead of replacing it")
    p.add_argument("--from", dest="journals", action="append", default=[], metavar="JOURNAL",
                   help="learn from a recorded audit journal instead of running a program (repeatable)")
    p.add_argument("--journal", metavar="FILE", help="keep the run's audit journal here (JSON lines)")
    p.add_argument("--base", metavar="NAME[:ARGS]",
                   help="learn only what this shipped policy (sandbox, readonly, network...) denies; the policy"
                        " written is the base widened by that (one policy that replaces the base)")
    p.add_argument("--check", metavar="POLICY.toml",
                   help="run the program allowing everything and list what POLICY would deny")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="deadline for the recorder's answers (default 60: a learning run must not be denied"
                        " because the machine is busy)")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- PROG ARGS")
    p.set_defaults(handler=cmd_learn)


def record(argv: Sequence[str], journal: str, timeout: float) -> int:
    """Run ``argv`` under the audit policy (allow everything, record every
    call with resolved paths) into ``journal``; the program's exit status."""
    audit = shlex.join([sys.executable, "-m", "brokerd.clients.policies.audit", journal])
    cmd = [sys.executable, "-m", "brokerd.cli.main", "run", "--timeout", str(timeout), "-a", audit, "--", *argv]
    import subprocess

    try:
        return subprocess.run(cmd, check=False).returncode
    except KeyboardInterrupt:
        return 130


def _argv(args: argparse.Namespace) -> list[str]:
    argv = list(args.argv)
    return argv[1:] if argv and argv[0] == "--" else argv


def _read(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except OSError as e:
        raise LearnError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise LearnError(f"{path}: not UTF-8 text") from None


def cmd_learn(args: argparse.Namespace) -> int:
    argv = _argv(args)
    if args.timeout <= 0:
        raise LearnError("--timeout must be positive")
    if args.check:
        if args.output or args.journals or args.merge or args.base:
            raise LearnError("learn --check POLICY.toml -- PROG: -o, --merge, --from and --base do not apply")
        if not argv:
            raise LearnError("learn --check: no program given (brokerctl learn --check POLICY.toml -- PROG ARGS)")
        return _check(args.check, argv, args.journal, args.timeout)
    if not args.output:
        raise LearnError("learn: say where to write the policy (-o POLICY.toml)")
    if bool(argv) == bool(args.journals):
        raise LearnError("learn: give either a program (-- PROG ARGS) or recorded journals (--from JOURNAL)")
    return _learn(args, argv)


def _learn(args: argparse.Namespace, argv: list[str]) -> int:
    from brokerd.clients import learn
    from brokerd.clients.replay import JournalError

    status = 0
    obs = learn.Observed(base=args.base or "")
    keep = _denied_by(args.base) if args.base else None
    cwd = os.path.realpath(os.getcwd())
    try:
        if argv:
            with _journal(args.journal) as journal:
                status = record(argv, journal, args.timeout)
                obs.merge(learn.observe(_read(journal), command=shlex.join(argv), cwd=cwd, keep=keep))
        for j in args.journals:
            obs.merge(learn.observe(_read(j), cwd=cwd, keep=keep))
    except JournalError as e:
        raise LearnError(f"journal: {e}") from None
    if args.merge and os.path.exists(args.output):
        try:
            obs.merge(learn.parse("\n".join(_read(args.output)) + "\n"))
        except learn.NotLearned as e:
            raise LearnError(f"--merge {args.output}: {e}") from None
    text = learn.render(learn.plan(obs))
    _check_text(text)
    _write(args.output, text)
    n = text.count("[[rule]]")
    print(f"{PROG}: {n} rules written to {args.output}" + (f" (the program exited {status})" if status else ""),
          file=sys.stderr)
    return status


def _denied_by(spec: str):
    """--base SPEC: the predicate saying which recorded calls it denies."""
    from brokerd.clients import learn
    from brokerd.clients.policies import build_shipped

    try:
        return learn.denied_by(build_shipped(spec))
    except ValueError as e:
        raise LearnError(f"--base {e}") from None


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _check_text(text: str) -> None:
    """What learn writes must load: a bug here is an error, never a bad file."""
    from brokerd.clients.policies.rulefile import PolicyFileError, loads

    try:
        loads(text, "<learned>")
    except PolicyFileError as e:
        raise LearnError(f"internal error, the learned policy does not load: {e}") from None


class _journal:
    """The journal file: the user's (kept) or a private temporary one."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.dir: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> str:
        if self.path:
            open(self.path, "w").close()  # a fresh journal: the audit policy appends
            return self.path
        import tempfile

        self.dir = tempfile.TemporaryDirectory(prefix="brokerctl-learn-")
        return os.path.join(self.dir.name, "journal.jsonl")

    def __exit__(self, *exc: object) -> None:
        if self.dir is not None:
            self.dir.cleanup()


def _check(policy: str, argv: list[str], journal_path: str | None, timeout: float) -> int:
    from brokerd.cli.policy import policy_command
    from brokerd.clients.replay import JournalError, PeerError, read_journal, replay

    command = policy_command(policy if policy.endswith(".toml") else f"file:{policy}")
    with _journal(journal_path) as journal:
        status = record(argv, journal, timeout)
        try:
            entries = read_journal(_read(journal))
        except JournalError as e:
            raise LearnError(f"journal: {e}") from None
    try:
        changes = replay(entries, [command], timeout=timeout)
    except PeerError as e:
        raise LearnError(f"learn --check: {e}") from None
    for c in changes:
        print(f"{PROG}: would deny: {c.describe()}", file=sys.stderr)
    print(f"{PROG}: {len(entries)} calls checked against {policy}, {len(changes)} would be denied"
          + (f" (the program exited {status})" if status else ""), file=sys.stderr)
    return 1 if changes else status


class AskSession:
    """``attach --ask --learned POLICY.toml``: the learned policy answers what
    it allows, the operator is asked only about what it would deny, and the
    operator's "always allow" answers are learned into the file on exit."""

    def __init__(self, path: str) -> None:
        from brokerd.clients import learn
        from brokerd.clients.policies.rulefile import PolicyFileError, load

        self.path = path
        try:
            learn.parse("\n".join(_read(path)) + "\n")
            self.policy = load(path)
        except (learn.NotLearned, PolicyFileError) as e:
            raise LearnError(f"--learned {path}: {e}") from None
        self.added = learn.Observed()
        self.count = 0
        #: a learned file with a base: what no rule matches, the base decides
        self.base = learn.denied_by(self.policy.base_policy) if self.policy.base_policy is not None else None

    def allows(self, event: SyscallEvent) -> bool:
        """Would the learned policy let this call run?"""
        from brokerd.clients.authorizer import Syscall
        from brokerd.clients.replay import Entry
        from brokerd.protocol.types import Kill, SkipFail

        p, name = self.policy, event.call.name
        if name in p.allow:
            return True  # its static rules: allowed in the kernel filter
        rule, reply = p.decide(Syscall(event))
        if rule is None and self.base is not None:
            return not self.base(Entry(0, event, "cont", None))
        if rule is None and p.unknown is not None and p.trace != "all" and name not in p.trace:
            return not p.unknown.startswith(("deny", "kill"))  # a call no run made
        return not isinstance(reply.verdict, SkipFail | Kill)

    def add(self, event: SyscallEvent) -> None:
        """An "always allow" answer: learn the call as the run would have."""
        from brokerd.clients import learn
        from brokerd.clients.authorizer import Syscall

        call = Syscall(event)
        learn.note(self.added, call, dict(call.resolved_paths()), ok=True, who="operator")
        self.count += 1

    def save(self) -> int:
        """Merge the answers into the file (re-read: it may have been merged
        meanwhile); how many answers were added."""
        from brokerd.clients import learn

        if not self.count:
            return 0
        obs = learn.parse("\n".join(_read(self.path)) + "\n")
        obs.merge(self.added)
        obs.runs.add("brokerctl attach --ask (operator answers)")
        text = learn.render(learn.plan(obs))
        _check_text(text)
        _write(self.path, text)
        return self.count
