"""brokerctl's daemon commands: ``sessions``, ``authorizers``, ``detach ID``,
``kill ID``, ``stats`` (one control request each) and ``serve`` (run an
ordinary stdin/stdout authorizer as a daemon-registered one).

Human output by default, ``--json`` for machines.  Exit status: 0 done,
1 the daemon is unreachable or failed, 2 bad arguments, 3 no such session
(another user's session is "no such session" too).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shlex
import sys
import time
from typing import TYPE_CHECKING, Any

from brokerd.cli.argtypes import seconds
from brokerd.daemon import client
from brokerd.daemon.wire import printable
from brokerd.protocol.errors import ProtocolError
from brokerd.protocol.selection import TraceError, parse_trace

if TYPE_CHECKING:
    from brokerd.decision.tether import Ward

PROG = "brokerctl"
EXIT_DAEMON = 1
EXIT_USAGE = 2
EXIT_NO_SESSION = 3


def register(sub) -> None:
    """Add the daemon commands to brokerctl's subparsers."""

    def common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
        p.add_argument("--socket", metavar="PATH",
                       help="the daemon's socket (default: $BROKERD_SOCKET, then the user's and the system's)")
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output (JSON)")

    p = sub.add_parser("sessions", help="list the sessions of the brokerd daemon you may see")
    common(p)
    p.set_defaults(handler=cmd_sessions)
    p = sub.add_parser("authorizers", help="list the authorizers registered with the brokerd daemon")
    common(p)
    p.set_defaults(handler=cmd_authorizers)
    for verb, text in (("detach", "stop tracing a session (the program goes on untraced)"),
                       ("kill", "kill a session's programs")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("id", metavar="ID", help="session id (brokerctl sessions)")
        common(p)
        p.set_defaults(handler=cmd_steer, verb=verb)
    p = sub.add_parser("stats", help="counters of the brokerd daemon")
    common(p)
    p.set_defaults(handler=cmd_stats)

    p = sub.add_parser("serve", help="register an authorizer command with the brokerd daemon and run one"
                       " instance per session on the session's socket")
    p.add_argument("--name", help="name shown in logs and listings (default: the command's)")
    p.add_argument("--scope", choices=("user", "system"), default="user",
                   help="user: your sessions only (default); system: every session (root only)")
    p.add_argument("--trace", metavar="LIST",
                   help="calls a plain (no handshake) instance sees, strace's -e trace= syntax, e.g."
                        " openat,connect or %%file (default all)")
    p.add_argument("--default", choices=("deny", "allow", "kill"), default=None,
                   help="verdict when it fails, hangs or answers garbage (default deny)")
    p.add_argument("--deadline", type=seconds, metavar="SECONDS",
                   help="deadline for each answer (default: the daemon's)")
    p.add_argument("--once", action="store_true", help="exit when the daemon goes away (default: reconnect)")
    common(p, json_flag=False)
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD",
                   help="the authorizer (sh -c), spoken to over its stdin/stdout = the session socket")
    p.set_defaults(handler=cmd_serve)


#: longest cell a listing prints (a command line is cut past it)
TABLE_CELL = 400


def _fail(msg: str, code: int) -> int:
    print(f"{PROG}: {msg}", file=sys.stderr)
    return code


def _request(args: argparse.Namespace, request: str) -> tuple[Any, int]:
    try:
        return client.control(request, path=args.socket), 0
    except ProtocolError as e:
        if e.code == "unknown-session":
            return None, _fail(e.message, EXIT_NO_SESSION)
        if e.code == "bad-request":
            return None, _fail(e.message, EXIT_USAGE)
        return None, _fail(f"the brokerd daemon refused: {e.code} {e.message}", EXIT_DAEMON)
    except OSError as e:
        return None, _fail(str(e), EXIT_DAEMON)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _age(t: float) -> str:
    s = max(0, int(time.time() - t))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h"


def _table(rows: list[list[str]]) -> str:
    """Columns padded to width.  Every cell goes through ``printable``: the
    daemon lists other users' argv and names, and their bytes must not reach
    root's terminal as control sequences."""
    rows = [[printable(c, TABLE_CELL) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1]
                     for r in rows)


def _shown(args: argparse.Namespace, request: str) -> tuple[Any, int | None]:
    """``request``'s answer to show as a table, or the exit status when it is
    done here: the daemon's error, or ``--json`` (the answer printed as it came)."""
    data, rc = _request(args, request)
    if rc:
        return None, rc
    if args.json:
        print(json.dumps(data, indent=2))
        return None, 0
    return data, None


def cmd_sessions(args: argparse.Namespace) -> int:
    data, rc = _shown(args, "sessions")
    if rc is not None:
        return rc
    if not data:
        print("no sessions")
        return 0
    rows = [["ID", "USER", "BROKER", "PROGRAM", "MODE", "ON-FAILURE", "STATE", "AGE", "AUTHORIZERS", "COMMAND"]]
    for s in data:
        names = ",".join(a["name"] + ("" if a["alive"] else "(gone)") for a in s["authorizers"]) or "-"
        rows.append([str(s["id"]), _user(s["uid"]), str(s["pid"]), str(s["target"] or "-"), s["mode"],
                     s["failure"], s["state"], _age(s["started"]), names, shlex.join(s["argv"])])
    print(_table(rows))
    return 0


def cmd_authorizers(args: argparse.Namespace) -> int:
    data, rc = _shown(args, "authorizers")
    if rc is not None:
        return rc
    if not data:
        print("no authorizers registered")
        return 0
    rows = [["ID", "NAME", "SCOPE", "USER", "PID", "DEFAULT", "DEADLINE", "SESSIONS", "AGE", "TRACE"]]
    for a in data:
        rows.append([str(a["id"]), a["name"], a["scope"], _user(a["uid"]), str(a["pid"]), a["default"],
                     f"{a['deadline']:g}s" if a["deadline"] else "-", str(a["sessions"]), _age(a["registered"]),
                     a["trace"]])
    print(_table(rows))
    return 0


def cmd_steer(args: argparse.Namespace) -> int:
    if not args.id.isdigit():
        return _fail(f"{args.verb}: session id must be a number, not {args.id!r}", EXIT_USAGE)
    data, rc = _request(args, f"{args.verb} {int(args.id)}")
    if rc:
        return rc
    if args.json:
        print(json.dumps(data))
    else:
        print(f"session {data['id']}: {'detach' if args.verb == 'detach' else 'kill'} sent")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    data, rc = _shown(args, "stats")
    if rc is not None:
        return rc
    for k, v in data.items():
        print(f"{k}: {v}")
    return 0


# ----------------------------------------------------------------------
# serve
# ----------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from brokerd.decision.tether import PYTHON_IGNORED, sh_argv, spawn_warded

    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        return _fail("serve: no authorizer command given (brokerctl serve [OPTIONS] -- CMD)", EXIT_USAGE)
    command = argv[0] if len(argv) == 1 else shlex.join(argv)
    name = args.name or (shlex.split(command)[0].rsplit("/", 1)[-1] if command.strip() else "authorizer")
    if args.deadline is not None and not args.deadline > 0:
        return _fail("serve: --deadline must be positive", EXIT_USAGE)
    if args.trace is not None:
        try:
            parse_trace(args.trace)
        except TraceError as e:
            return _fail(f"serve: --trace: {e}", EXIT_USAGE)
    children: dict[int, Ward] = {}  # each instance, and the warden of its process group
    backoff = 0.2
    first = True
    while True:
        try:
            reg = client.Registration(name, path=args.socket, scope=args.scope, trace=args.trace,
                                      default=args.default, deadline=args.deadline)
        except OSError as e:
            if first or args.once:
                return _fail(f"serve: {e}", EXIT_DAEMON)
            _reap(children)
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        first = False
        backoff = 0.2
        print(f"{PROG}: serving {name!r} ({args.scope}) through the brokerd daemon at {reg.path}",
              file=sys.stderr, flush=True)
        while True:
            try:
                offer = reg.next_offer(timeout=1.0)
            except TimeoutError:
                _reap(children)
                continue
            if offer is None:
                break
            env = dict(os.environ, BROKERD_SESSION=str(offer.id), BROKERD_SESSION_UID=str(offer.uid),
                       BROKERD_SESSION_PID=str(offer.pid))
            try:
                # tied to this process (its main thread): a SIGKILLed serve takes them along,
                # and their wardens what they forked
                sock = offer.sock.fileno()
                pid, warden = spawn_warded("/bin/sh", sh_argv(command), env, fds=[(sock, 0), (sock, 1)],
                                           sigdef=PYTHON_IGNORED)
                children[pid] = warden
            except OSError as e:
                print(f"{PROG}: serve: cannot start {command!r}: {e.strerror}", file=sys.stderr, flush=True)
            finally:
                offer.sock.close()
            _reap(children)
        reg.close()
        if args.once:
            print(f"{PROG}: serve: the brokerd daemon went away", file=sys.stderr, flush=True)
            _outlive(children)
            return EXIT_DAEMON
        print(f"{PROG}: serve: the brokerd daemon went away; reconnecting", file=sys.stderr, flush=True)


def _outlive(children: dict[int, Ward]) -> None:
    """Wait for the instances still serving their sessions: they die with us
    (tether), and a session whose failure mode is ``allow`` goes on with them
    after the daemon is gone."""
    _reap(children)
    if children:
        print(f"{PROG}: serve: waiting for {len(children)} instance(s) still serving their sessions",
              file=sys.stderr, flush=True)
    for pid in list(children):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        children.pop(pid).release()


def _reap(children: dict[int, Ward]) -> None:
    """Forget the instances that ended; their wardens kill what they left in their groups."""
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            children.pop(pid).release()

