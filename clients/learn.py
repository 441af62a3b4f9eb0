"""Learn a least-privilege policy from audit journals (``brokerctl learn``).

The journal is the audit policy's (clients/policies/audit.py, schema 1): every
call with its result and, for path calls, the paths resolved while the
process lived.  Three steps, each a pure function:

``observe``  journal lines -> :class:`Observed` (what the run did: every
             syscall name, each path by kind read/write with the calls and
             programs that used it, network endpoints);
``plan``     :class:`Observed` -> :class:`Plan` (grants: directories the
             program owns collapsed to ``DIR/**``, the system tree read-only,
             temporaries generalised, other files listed one by one);
``render``   :class:`Plan` -> TOML text for clients/policies/rulefile.py.

``parse`` reads a rendered policy back into :class:`Observed`, so several
runs merge (``--merge``).  The output is deterministic: sorted, no pids,
times or counts.  Until the Landlock layers exist in the TOML format the
grants are per-call rules; :class:`Plan` is what a kernel-layer renderer
would compile (beneath-path rights, ports, the static syscall set).
"""

from __future__ import annotations

import json
import os
import re
import struct
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from brokerd.clients.authorizer import Authorizer, Syscall, opens_for_writing
from brokerd.clients.policies.network import (
    ADDRESSED,
    DESTS_NOTE,
    MSG_SENDS,
    PEER,
    destinations,
    endpoint,
)
from brokerd.clients.policies.readonly import OPEN, PATH_WRITES
from brokerd.clients.replay import Entry, read_journal
from brokerd.protocol import codec
from brokerd.protocol.consts import errno_number
from brokerd.protocol.errors import ProtocolError
from brokerd.protocol.types import Fail, Hello, Kill, ProcEvent, SkipFail, Str

from brokerd.globs import glob_to_regex

K = TypeVar("K")  # a table's key: a glob, a rule text, (call, old, new)

#: judged by address: every address they name is learned ("peer": a send to the connected peer)
NET_CALLS = frozenset(ADDRESSED) | MSG_SENDS
SYSTEM_TREES = ("/usr",)  # read (and run) as a whole when the run read anything there
#: never collapsed to DIR/** however many files were read there (secrets live there)
NEVER_COLLAPSE = ("/", "/etc", "/proc", "/dev", "/sys", "/root", "/home", "/run", "/var", "/tmp", "/var/tmp")
#: allowed whether or not the run made them: returning from a signal handler,
#: restarting an interrupted call and exiting are no privilege (denied, a
#: program that got its first signal would crash).  memfd_create is not needed:
#: the broker's injected one passes static rules with its nonce (docs/shim.md)
ALWAYS = frozenset({"rt_sigreturn", "sigreturn", "restart_syscall", "exit", "exit_group"})
#: what a program may do beneath a directory it owns (its build tree), seen or not
OWNED = frozenset({"unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir",
                   "utimensat", "chmod", "fchmodat"})
COLLAPSE_AT = 8  # files read in one directory before it becomes DIR/**
ANY_DESCRIPTOR = "*:*"  # a path call on a descriptor that is no file: pipe:[N], socket:[N]
_GLOB_CHARS = re.compile(r"([*?\[])")
_NUMERIC = re.compile(r"\d+")


@dataclass
class Use:
    """How the run(s) used one path (a glob, literal where nothing is generalised)."""

    kind: str  # "read" | "write"
    calls: set[str] = field(default_factory=set)
    progs: set[str] = field(default_factory=set)
    ok: bool = False  # some call on it succeeded (else: only probes of missing files)
    created: bool = False
    removed: bool = False
    made_dir: bool = False
    why: str = ""  # from a merged policy: its comment

    def add(self, other: Use) -> None:
        self.kind = "write" if "write" in (self.kind, other.kind) else self.kind
        self.calls |= other.calls
        self.progs |= other.progs
        self.ok |= other.ok
        self.created |= other.created
        self.removed |= other.removed
        self.made_dir |= other.made_dir
        self.why = self.why or other.why


@dataclass
class Observed:
    runs: set[str] = field(default_factory=set)  # the commands, for the header
    calls: dict[str, set[str]] = field(default_factory=dict)  # syscall -> programs
    paths: dict[str, Use] = field(default_factory=dict)  # glob -> use
    net: dict[str, Use] = field(default_factory=dict)  # network rule text -> use
    trees: set[str] = field(default_factory=set)  # working directories of the runs
    unresolved: set[str] = field(default_factory=set)  # calls with a path nobody could resolve
    on_fds: set[str] = field(default_factory=set)  # fstatat(fd, "", AT_EMPTY_PATH)-like calls
    ioctls: dict[int, str] = field(default_factory=dict)  # ioctl request -> its name, as the run made them
    base: str = ""  # the shipped policy learned on (--base): only what it denied is in here
    #: rename/link: (call, old path glob, new path glob) -> use; a rule allows
    #: such a call only when it covers both paths (docs/policies.md)
    moves: dict[tuple[str, str, str], Use] = field(default_factory=dict)

    @staticmethod
    def use(table: dict[K, Use], key: K, use: Use) -> None:
        if key in table:
            table[key].add(use)
        else:
            table[key] = use

    def merge(self, other: Observed) -> None:
        self.runs |= other.runs
        for name, progs in other.calls.items():
            self.calls.setdefault(name, set()).update(progs)
        for k, u in other.paths.items():
            self.use(self.paths, k, u)
        for k, u in other.net.items():
            self.use(self.net, k, u)
        self.trees |= other.trees
        self.unresolved |= other.unresolved
        self.on_fds |= other.on_fds
        self.ioctls.update(other.ioctls)
        for move, u in other.moves.items():
            self.use(self.moves, move, u)
        if self.base != other.base and self.base and other.base:
            raise NotLearned(f"learned on different bases: {self.base!r} and {other.base!r}")
        self.base = self.base or other.base


# ---------------------------------------------------------------------------
# observe: journal -> Observed
# ---------------------------------------------------------------------------


def as_glob(path: str) -> str:
    """A resolved path as a glob matching exactly it, with what differs from
    run to run generalised: ``/proc/1234/status`` -> ``/proc/[0-9]*/status``,
    ``/dev/pts/3`` -> ``/dev/pts/[0-9]*``; descriptors that are no files
    (``pipe:[12]``) -> ``*:*``."""
    if not path.startswith("/"):
        return ANY_DESCRIPTOR
    parts = [_GLOB_CHARS.sub(r"[\1]", p) for p in path.split("/")]
    if len(parts) > 2 and parts[1] == "proc" or parts[1:3] == ["dev", "pts"]:
        parts = [("[0-9]*" if _NUMERIC.fullmatch(p) else p) for p in parts]
    return "/".join(parts)


def _kind(call: Syscall) -> str:
    if call.name in PATH_WRITES or call.name == "creat":
        return "write"
    if call.name in OPEN:
        fl = call.open_flags()
        return "write" if fl is not None and opens_for_writing(fl) else "read"
    return "read"


def _on_fd(call: Syscall, i: int) -> bool:
    """``fstatat(fd, "", AT_EMPTY_PATH)``: a call on a descriptor already open
    (judged when it was opened), whatever file the user's stdout is today."""
    if call.path(i) != "":
        return False
    spec = call.spec.args if call.spec else ()
    return any(k == "at_flags" and call.has_flag(j, "AT_EMPTY_PATH") for j, k in enumerate(spec))


def _program(ev: ProcEvent) -> str | None:
    if ev.args and isinstance(ev.args[0], Str):
        return os.path.basename(os.fsdecode(ev.args[0].data))
    return None


def _procs(lines: Sequence[str]) -> dict[int, ProcEvent]:
    """``proc`` records by line number (read_journal skips them)."""
    out = {}
    for n, raw in enumerate(lines, 1):
        if '"proc"' not in raw:
            continue
        try:
            rec = json.loads(raw)
            ev = codec.parse_event(rec["event"])
        except (ValueError, KeyError, TypeError, ProtocolError):
            continue
        if isinstance(ev, ProcEvent):
            out[n] = ev
    return out


def endpoints(call: Syscall) -> list[str] | None:
    """The network rule texts of every address the call names (the journal's
    ``dests``, recorded while the process lived); None when one cannot be
    named (then the call is learned by name, as any other)."""
    recorded = call.notes.get(DESTS_NOTE)
    if isinstance(recorded, Str):  # resolved then; the process is gone now
        return os.fsdecode(recorded.data).split("\n")
    try:
        found = destinations(call)
    except (OSError, ValueError, struct.error):
        return None
    texts = [endpoint(call, sa) for sa in found or ()]
    return [t for t in texts if t is not None] if texts and None not in texts else None


def observe(lines: Sequence[str], *, command: str = "", cwd: str | None = None,
            keep: Callable[[Entry], bool] | None = None) -> Observed:
    """What one recorded run did.  ``cwd``: where it ran (its tree);
    ``keep``: only these calls (learning on a base: what it denied)."""
    obs = Observed()
    if command:
        obs.runs.add(_one_line(command))  # as the header shows it, so merging finds it again
    if cwd:
        obs.trees.add(as_glob(cwd))
    procs = _procs(lines)
    prog: dict[int, str] = {}
    pending = sorted(procs)
    for entry in read_journal(lines):
        while pending and pending[0] < entry.line:
            ev = procs[pending.pop(0)]
            if ev.kind == "exec" and (p := _program(ev)):
                prog[ev.pid] = p
            elif ev.kind in ("fork", "vfork", "clone") and ev.args:
                try:
                    prog[int(codec.format_value(ev.args[0]))] = prog.get(ev.pid, "")
                except ValueError:
                    pass
        if keep is not None and not keep(entry):
            continue
        call = Syscall(entry.event)
        resolved = {}
        for i in call.path_args():
            real = next((v for k, v in entry.event.notes if k == f"real{i + 1}"), None)
            resolved[i] = os.fsdecode(real.data) if isinstance(real, Str) else None
        note(obs, call, resolved, ok=not isinstance(entry.result, Fail), who=prog.get(call.pid, ""))
    return obs


def _request(call: Syscall) -> int | None:
    try:
        return call.num(1)
    except (ValueError, IndexError, TypeError):
        return None


def note(obs: Observed, call: Syscall, resolved: dict[int, str | None], *, ok: bool, who: str) -> None:
    """Add one call to ``obs``: its name, or its paths (``resolved``: by
    argument index, None when unknown) by kind, or its address."""
    progs = {who} - {""}
    if call.name in NET_CALLS and (eps := endpoints(call)):
        for ep in eps:
            obs.use(obs.net, ep, Use("read", {call.name}, progs, ok))
        return
    if call.name == "ioctl" and (req := _request(call)) is not None:
        obs.ioctls[req] = codec.format_value(call.args[1])
    if not call.path_args():
        obs.calls.setdefault(call.name, set()).update(progs)
        return
    kind = _kind(call)
    idx = call.path_args()
    if len(idx) == 2 and all(resolved.get(i) for i in idx) and not any(_on_fd(call, i) for i in idx):
        old, new = (as_glob(resolved[i] or "") for i in idx)
        obs.use(obs.moves, (call.name, old, new), Use(kind, {call.name}, progs, ok))
    for i in idx:
        if _on_fd(call, i) and len(idx) == 1:
            obs.on_fds.add(call.name)  # a descriptor opened before: judged when it was opened
            continue
        path = resolved.get(i)
        if path is None:
            obs.unresolved.add(call.name)
            continue
        use = Use(kind, {call.name}, progs, ok)
        if ok and call.name in ("mkdir", "mkdirat"):
            use.made_dir = True
        elif ok and (call.name in OPEN or call.name == "creat") and kind == "write":
            use.created = True
        elif ok and call.name in ("unlink", "unlinkat", "rmdir"):
            use.removed = True
        obs.use(obs.paths, as_glob(path), use)


def denied_by(base: Authorizer) -> Callable[[Entry], bool]:
    """Would ``base`` deny this recorded call?  Its static rules first (a call
    it neither allows nor subscribes to gets ``unknown``), then its handlers,
    replayed in this process (the paths the journal recorded).  A denial with
    the error the call got anyway (a missing file's ENOENT) changes nothing
    the program sees: not counted."""
    session = base.session()
    session.start_event(Hello((codec.VERSION,), (("role", "broker"), ("session", "learn"), ("replay", "yes"))))
    sub = base.subscription()
    asked = None if sub == "all" else frozenset(sub.split(","))
    static = _static_denial(base.unknown)

    def same_error(entry: Entry, err: int | None) -> bool:
        return isinstance(entry.result, Fail) and entry.result.errno == err

    def denies(entry: Entry) -> bool:
        name = entry.event.call.name
        if name in base.allow:
            return False
        if asked is not None and name not in asked:
            return static is not False and not same_error(entry, static)
        reply = session.decide(entry.event)
        v = reply.verdict if reply is not None else None
        if isinstance(v, SkipFail):
            return not same_error(entry, v.errno)
        return isinstance(v, Kill)

    return denies


def _static_denial(unknown: str | None) -> int | None | bool:
    """What a base's ``unknown`` does to a call it names nowhere: False (it
    runs), the errno it fails with, or None (killed)."""
    if not unknown or not unknown.startswith(("deny", "kill")):
        return False
    if unknown == "kill":
        return None
    return errno_number(unknown.partition(":")[2] or "EPERM")


# ---------------------------------------------------------------------------
# plan: Observed -> grants
# ---------------------------------------------------------------------------


@dataclass
class Grant:
    kind: str  # read | write | net | calls
    pattern: str  # glob(s, NUL-separated), network rule, or "" for calls
    use: Use
    what: str  # why this shape: "the run's working tree", "temporary files"...

    @property
    def patterns(self) -> list[str]:
        return self.pattern.split("\0")


@dataclass
class Plan:
    runs: list[str]
    calls: Grant
    paths: list[Grant]
    net: list[Grant]
    unresolved: list[str]
    on_fds: list[str]
    ioctls: dict[int, str]
    base: str = ""
    #: rename/link between two grants: (from grant, to grant, calls and programs)
    moves: list[tuple[Grant, Grant, Use]] = field(default_factory=list)

    @property
    def write_patterns(self) -> list[str]:
        return [p for g in self.paths if g.kind == "write" for p in g.patterns]


def _generalise(name: str) -> str:
    """A temporary's name with its random parts as ``*``: every token (between
    ``.``, ``_``, ``-``) of 6 or more characters, as mkstemp's ``XXXXXX`` makes:
    ``ccAb12Cd.s`` -> ``*.s``, ``ccGFTGJS.cdtor.c`` -> ``*.cdtor.c``."""
    return "".join("*" if len(t) >= 6 and t.isalnum() else t for t in re.split(r"([._-])", name))


def _parent(glob: str) -> str:
    return glob.rsplit("/", 1)[0] or "/"


def _under(glob: str, root: str) -> bool:
    return root == "/" or glob == root or glob.startswith(root + "/")


def _tree_ok(tree: str) -> bool:
    home = os.environ.get("HOME", "/root")
    return tree not in NEVER_COLLAPSE and tree != home and not any(tree == s or tree.startswith(s + "/") for s in SYSTEM_TREES)


def _collapses(obs: Observed) -> list[tuple[str, str, str]]:
    """(kind, DIR/** or generalised glob, why) decided from the whole run."""
    out: list[tuple[str, str, str]] = []
    for tree in sorted(obs.trees):
        if _tree_ok(tree) and any(_under(p, tree) for p in obs.paths):
            kind = "write" if any(u.kind == "write" and _under(p, tree) for p, u in obs.paths.items()) else "read"
            out.append((kind, tree + "/**", "the directory the program ran in"))
    for p, u in obs.paths.items():
        if p.endswith("/**"):  # from a merged policy: stays as it was
            out.append((u.kind, p, u.why or "learned before"))
    made = sorted(p for p, u in obs.paths.items() if u.made_dir)
    for p in made:
        if not any(_under(p, root[:-3]) for _, root, _ in out if root.endswith("/**")):
            name = _generalise(p.rsplit("/", 1)[1]) if obs.paths[p].removed else p.rsplit("/", 1)[1]
            out.append(("write", f"{_parent(p).rstrip('/')}/{name}/**", "a directory the program created"))
    temps = sorted({f"{_parent(p).rstrip('/')}/{_generalise(p.rsplit('/', 1)[1])}"
                    for p, u in obs.paths.items()
                    if u.created and u.removed and not p.endswith("/**") and not _covered(p, out, "write")})
    for g in temps:  # the widest patterns only, whatever order the random names came in
        if not any(o != g and re.fullmatch(glob_to_regex(o), g, re.S) for o in temps):
            out.append(("write", g, "temporary files the program created and removed"))
    for root in SYSTEM_TREES:
        if any(_under(p, root) and u.kind == "read" for p, u in obs.paths.items()):
            out.append(("read", root + "/**", "the system's programs and libraries, read-only"))
    reads: dict[str, int] = {}
    for p, u in obs.paths.items():
        if u.kind == "read" and p.startswith("/") and not _covered(p, out, "read"):
            reads[_parent(p)] = reads.get(_parent(p), 0) + 1
    for d, n in sorted(reads.items()):
        if n >= COLLAPSE_AT and d not in NEVER_COLLAPSE and not d.startswith(("/proc/", "/dev/", "/sys/")):
            out.append(("read", d + "/**", "a directory the program read many files in"))
    return out


def _covered(path: str, grants: Iterable[tuple[str, str, str]], kind: str) -> tuple[str, str, str] | None:
    for g in grants:
        if (g[0] == "write" or kind == "read") and re.fullmatch(glob_to_regex(g[1]), path, re.S):
            return g
    return None


def _net_what(ep: str, u: Use) -> str:
    if ep == PEER:
        return "sends naming no address (to the connected peer, judged at connect)"
    return ", ".join(w for c, w in (("connect", "connected to"), ("bind", "bound"), ("send", "sent to"))
                     if any(n.startswith(c) for n in u.calls))


def plan(obs: Observed) -> Plan:
    shapes = _collapses(obs)
    grants: dict[str, Grant] = {}
    for kind, pattern, what in shapes:
        if pattern not in grants:
            grants[pattern] = Grant(kind, pattern, Use(kind), what)
    files: dict[tuple[str, str, bool], list[tuple[str, Use]]] = {}
    for p, u in sorted(obs.paths.items()):
        shape = None if p in grants else _covered(p, shapes, u.kind)
        if shape is None and p not in grants:  # listed, grouped by directory
            files.setdefault((u.kind, _parent(p), u.ok), []).append((p, u))
            continue
        g = grants[shape[1] if shape else p]
        g.use.add(Use(g.kind, u.calls, u.progs, u.ok))
    paths = [g for g in grants.values() if g.use.calls]
    for g in paths:
        if g.kind == "write" and g.pattern.endswith("/**"):
            g.use.calls |= OWNED
    for (kind, parent, ok), items in files.items():
        use = Use(kind, ok=ok)
        for _, u in items:
            use.add(Use(kind, u.calls, u.progs, u.ok))
        names = [p for p, _ in items]
        what = ("descriptors that are no files (pipes, sockets)" if names == [ANY_DESCRIPTOR]
                else (f"{'failed during the run (probes)' if not ok else 'used'}: "
                    f"{len(names)} file{'s' if len(names) != 1 else ''} in {parent}"))
        paths.append(Grant(kind, "\0".join(names), use, what))
    paths.sort(key=lambda g: (g.kind != "write", "/**" not in g.pattern, g.pattern))
    net = [Grant("net", ep, u, u.why or _net_what(ep, u)) for ep, u in sorted(obs.net.items())]
    progs = {p for ps in obs.calls.values() for p in ps}
    calls = Grant("calls", "", Use("calls", set(obs.calls) | (set() if obs.base else ALWAYS), progs, True), "")
    return Plan(sorted(obs.runs), calls, paths, net, sorted(obs.unresolved), sorted(obs.on_fds),
                dict(sorted(obs.ioctls.items())), obs.base, _moves(obs, paths))


def _grant_of(glob: str, grants: list[Grant]) -> Grant | None:
    for g in grants:
        if glob in g.patterns or any(re.fullmatch(glob_to_regex(p), glob, re.S) for p in g.patterns):
            return g
    return None


def _moves(obs: Observed, grants: list[Grant]) -> list[tuple[Grant, Grant, Use]]:
    """The renames and links from one grant into another: each needs a rule
    of its own naming both (a grant's rule allows one only within it)."""
    writes = [g for g in grants if g.kind == "write"]
    out: dict[tuple[str, str], tuple[Grant, Grant, Use]] = {}
    for (name, old, new), u in sorted(obs.moves.items()):
        a, b = _grant_of(old, writes) or _grant_of(old, grants), _grant_of(new, writes)
        if a is None or b is None or a is b:
            continue
        _, _, use = out.setdefault((a.pattern, b.pattern), (a, b, Use("move")))
        use.add(Use("move", {name}, u.progs, u.ok))
    return [out[k] for k in sorted(out)]


# ---------------------------------------------------------------------------
# render: Plan -> TOML (per-call rules; clients/policies/rulefile.py)
# ---------------------------------------------------------------------------

CALLS = ("calls: the system calls the run made that take no path or address, and exit/exit_group/restart_syscall/"
         "rt_sigreturn/sigreturn; allowed in the kernel filter, never asked about")
_CALLS_BY = re.compile(r"^# calls: .*?(?: \(by (.*)\))?$", re.M)
HEADER = "# Learned by `brokerctl learn` (docs/learn.md). Runs it was learned from:\n"


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML refuses a raw DEL


def _list(items: Iterable[str]) -> str:
    return "[" + ", ".join(_q(x) for x in sorted(items)) + "]"


def _by(progs: set[str]) -> str:
    names = sorted(progs)
    if not names:
        return ""
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return f" (by {shown})"


def _rule(comment: str, syscalls: Iterable[str], verdict: str, **match: str) -> str:
    lines = ["[[rule]]", f"comment = {_q(comment)}", f"syscall = {_list(syscalls)}"]
    lines += [f"{k} = {v}" for k, v in match.items()]
    lines.append(f"verdict = {_q(verdict)}")
    return "\n".join(lines) + "\n"


_GLOB = re.compile(r"[*?\[]")
EXECS = frozenset({"execve", "execveat"})
#: calls that make or remove names in a directory: a file listed by name
#: cannot be granted them in Landlock without its whole directory
NAMING = frozenset({"mkdir", "mkdirat", "mknod", "mknodat", "rmdir", "unlink", "unlinkat", "rename", "renameat",
                    "renameat2", "link", "linkat", "symlink", "symlinkat"})


def layer_rules(p: Plan) -> tuple[list[tuple[tuple[str, ...], str]], list[str]]:
    """The grants as Landlock rules (rights, path), and why they are wider
    than the per-call rules where they are (a name pattern, a directory
    listed by a file rule): then the per-call rules must still decide."""
    rules: dict[str, set[str]] = {}
    wider: list[str] = []
    for g in p.paths:
        run = {"execute"} if g.use.calls & EXECS else set()
        for pat in g.patterns:
            if pat == ANY_DESCRIPTOR:
                continue
            if pat.endswith("/**") and not _GLOB.search(pat[:-3]):
                path, rights = pat[:-3] or "/", ({"all"} if g.kind == "write" else {"read"} | run)
                if path in SYSTEM_TREES:
                    rights.add("execute")  # the kernel opens a program's ELF interpreter (ld.so) to execute it
                if g.kind == "write" and not os.path.isdir(path):  # made (and removed) by the program:
                    path = _parent(path)  # a Landlock rule needs an existing directory
                    wider.append(f"{pat} does not exist before the run (the layer allows writing in {path})")
            elif _GLOB.search(pat):
                path = "/".join(pat.split("/")[:next(i for i, c in enumerate(pat.split("/")) if _GLOB.search(c))])
                rights = {"read", "write", "create", "remove", "truncate"} if g.kind == "write" else {"read"} | run
                wider.append(f"{pat} is a name pattern (the layer allows {path or '/'})")
            elif os.path.isdir(pat):
                if not g.use.calls & OPEN:
                    continue  # only looked at (stat, access, chdir): Landlock does not mediate that
                # opened: listed (a directory has no content but its names).  The layer's "list"
                # right lets the names beneath it be listed, no file be read: counted as exact
                # (an interpreter lists its whole search path: /opt/brokerd/python from a .pth)
                path, rights = pat, {"list"}
            elif not os.path.exists(pat) or not g.use.calls & (OPEN | EXECS | NAMING):
                continue  # missing (the kernel says ENOENT), or only looked at: nothing Landlock mediates
            else:
                path = pat
                rights = ({"read", "write", "truncate"} if g.kind == "write" else {"read"}) | run
                if pat.startswith("/dev/"):
                    rights.add("ioctl-dev")
                if g.use.calls & NAMING:
                    parent = _parent(pat)
                    rules.setdefault(parent, set()).update({"create", "remove"})
                    wider.append(f"{pat} is made or removed (the layer allows that in {parent})")
            rules.setdefault(path or "/", set()).update(rights)
    out = [(("all",) if "all" in r else tuple(sorted(r)), path) for path, r in sorted(rules.items())]
    return out, sorted(set(wider))


def net_layer_rules(p: Plan) -> list[tuple[str, list[int]]]:
    """The TCP ports the run connected and bound to, for the layer's
    ``[[layer.net]]`` (Landlock knows ports, not addresses, and only TCP: the
    per-call rules still judge the address; a UDP connect's port is allowed
    for TCP too, a floor under the rules)."""
    ports: dict[str, set[int]] = {}
    for g in p.net:
        if g.pattern == PEER or g.pattern.startswith("unix:"):
            continue
        port = g.pattern.rpartition(":")[2]
        for right in ("connect", "bind"):
            if right in g.use.calls and port.isdigit():
                ports.setdefault(right, set()).add(int(port))
    return [(r, sorted(ports[r])) for r in ("bind", "connect") if r in ports]


def _net_lines(p: Plan) -> list[str]:
    out: list[str] = []
    for right, ports in net_layer_rules(p):
        out += ["[[layer.net]]", f"rights = {_list([right])}", f"ports = [{', '.join(map(str, ports))}]", ""]
    return out


def _render_layer(p: Plan) -> str:
    rules, wider = layer_rules(p)
    net = _net_lines(p)
    if not rules and not net:
        return ""
    out = ["# The kernel layer (Landlock; docs/policies.md): the same grants, enforced by the kernel, holding even",
           "# if the broker dies."]
    if wider:
        out.append("# Wider than the rules below, so they still decide every call (settle = \"none\"):")
        out += [f"#   {_one_line(w)}" for w in wider]
    else:
        out.append("# Exactly the rules' grants: the calls it decides are not asked about (settle = \"all\").")
    if net:
        out.append("# TCP: connect and bind only to the ports the run used (the rules below judge the addresses).")
    out += ["[layer]", 'fs_handled = "all"']
    if net:
        out.append('net_handled = ["bind", "connect"]')
    out += [f'settle = {_q("none" if wider else "all")}', ""]
    for rights, path in rules:
        out += ["[[layer.fs]]", f"rights = {_list(rights)}", f"path = {_q(path)}", ""]
    return "\n".join(out + net) + "\n"


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _one_line(text: str) -> str:
    """``text`` fit for a TOML comment: a control character (a newline of a
    ``sh -c`` script, a path's) would end the comment or is not allowed in
    one, so it is shown escaped (``\\n``) and the comment stays one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _head(p: Plan) -> list[str]:
    out = [HEADER]
    out += [f"# run: {_one_line(r)}\n" for r in p.runs]
    out.append("# Enforce: brokerctl run --policy THIS.toml -- PROG ARGS\n")
    out.append("# Check first (lists what it would deny): brokerctl learn --check THIS.toml -- PROG ARGS\n")
    if p.unresolved:
        out.append(f"# Not learned (a path nobody could resolve; denied): {_one_line(', '.join(p.unresolved))}\n")
    return out


def _ioctl_rules(p: Plan) -> list[str]:
    return [_rule(f"ioctl: {name}, as the run made it", ["ioctl"], "allow", arg1=str(req)) + "\n"
            for req, name in p.ioctls.items()]


def render(p: Plan) -> str:
    if p.base:
        return _render_on_base(p)
    out = _head(p)
    out.append('\nname = "learned"\n'
               'unknown = "deny:ENOSYS"  # calls no run made fail in the kernel filter, as on a kernel without them\n'
               'default = "deny"  # the calls the rules name are asked about; what no rule allows is denied\n'
               'deny_errno = "EACCES"  # paths and addresses no run used\n')
    out.append(f"# {CALLS}{_one_line(_by(p.calls.use.progs))}\n")
    out.append(f"allow = {_list(p.calls.use.calls - {'ioctl'})}\n\n")
    out.append(_render_layer(p))
    if "ioctl" in p.calls.use.calls:  # judged per request: TIOCSTI would type into the user's terminal
        out += _ioctl_rules(p)
        out.append(_rule("deny: any other ioctl (TIOCSTI would type into the user's terminal)", ["ioctl"],
                         "skip-fail ENOTTY") + "\n")
    if p.on_fds:
        out.append(_rule("fds: calls on descriptors already open (judged when they were opened)", p.on_fds,
                         "allow", raw_path='""', flags='["AT_EMPTY_PATH"]') + "\n")
    opens = {c for g in p.paths for c in g.use.calls if c in OPEN}
    if opens:
        extra = {"writes": "true"}
        if p.write_patterns:
            extra["not_path"] = _list(p.write_patterns)
        out.append(_rule("guard: opening for writing only where the run wrote", opens, "deny", **extra) + "\n")
    for g in p.paths:
        out.append(_rule(f"{g.kind}: {g.what}{_by(g.use.progs)}", g.use.calls, "allow",
                         path=_list(g.patterns)) + "\n")
    out += _move_rules(p)
    for g in p.net:
        out.append(_rule(f"net: {g.what}{_by(g.use.progs)}", g.use.calls, "allow", addr=_list([g.pattern])) + "\n")
    path_calls = sorted({c for g in p.paths for c in g.use.calls})
    if path_calls:
        out.append(_rule("deny: any other path", path_calls, "deny") + "\n")
    net_calls = sorted({c for g in p.net for c in g.use.calls})
    if net_calls:
        out.append(_rule("deny: any other address", net_calls, "deny") + "\n")
    return "".join(out).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------
# parse: a learned policy -> Observed (to merge runs)
# ---------------------------------------------------------------------------

_RUN = re.compile(r"^# run: (.*)$", re.M)
_BY = re.compile(r" \(by (.*)\)$")


class NotLearned(ValueError):
    """The file is not a policy ``brokerctl learn`` wrote."""


def parse(text: str) -> Observed:
    if not text.startswith(HEADER):
        raise NotLearned("not written by brokerctl learn (its first line is missing)")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise NotLearned(f"TOML syntax: {e}") from None
    obs = Observed(runs=set(_RUN.findall(text)), base=str(data.get("base", "")))
    m = _CALLS_BY.search(text)
    by = {x for x in re.split(r", | and \d+ more", m.group(1) or "") if x} if m else set()
    for c in data.get("allow", []):
        obs.calls.setdefault(c, set()).update(by)
    for rule in data.get("rule", []):
        comment = str(rule.get("comment", ""))
        kind, _, rest = comment.partition(": ")
        m = _BY.search(rest)
        progs = {s for s in re.split(r", | and \d+ more", m.group(1)) if s} if m else set()
        why = rest[:m.start()] if m else rest
        calls = set(rule.get("syscall", []))
        if kind == "fds":
            obs.on_fds |= calls
        elif kind == "ioctl" and isinstance(rule.get("arg1"), int):
            obs.ioctls[rule["arg1"]] = why.split(", as the run")[0]
            obs.calls.setdefault("ioctl", set())
        elif kind == "calls":
            for c in calls:
                obs.calls.setdefault(c, set()).update(progs)
        elif kind in ("read", "write"):
            ok = not why.startswith("failed")  # probes stay probes
            for p in rule.get("path", []):
                obs.use(obs.paths, p, Use(kind, calls, progs, ok, why=why))
        elif kind == "move":
            for c in calls:
                for a in rule.get("from", []):
                    for b in rule.get("to", []):
                        obs.use(obs.moves, (c, a, b), Use("write", {c}, progs, True))
        elif kind == "net":
            for a in rule.get("addr", []):
                obs.use(obs.net, a, Use("read", calls, progs, True, why=why))
    return obs


# ---------------------------------------------------------------------------
# render on a base (--base): the base, widened by what the run needed of it
# ---------------------------------------------------------------------------

BASE_NOTE = ("# base: the shipped policy this one widens. One policy, not a stack (a policy stacked on another can\n"
             "# only narrow it): the rules below are tried first, and every call none matches is decided by the base,\n"
             "# with its static rules and kernel layer widened by `allow` and [layer] here.\n")


def _render_on_base(p: Plan) -> str:
    from brokerd.clients.policies import build_shipped

    base = build_shipped(p.base)
    sub = base.subscription()
    asked = None if sub == "all" else set(sub.split(","))
    calls = p.calls.use.calls - {"ioctl"}
    static = sorted(c for c in calls if asked is not None and c not in asked)
    out = _head(p) + ["\n", BASE_NOTE, f"base = {_q(p.base)}\n", 'name = "learned"\n']
    if static:
        out.append("# calls: the system calls the run made that the base denies in its kernel filter"
                   f"{_one_line(_by(p.calls.use.progs))}\n")
        out.append(f"allow = {_list(static)}\n")
    out.append("\n" + _render_layer_additions(p))
    out += _ioctl_rules(p) if "ioctl" in p.calls.use.calls else []
    traced = sorted(calls - set(static))
    if traced:
        out.append(_rule(f"calls: the base denied these{_by(p.calls.use.progs)}", traced, "allow") + "\n")
    if p.on_fds:
        out.append(_rule("fds: calls on descriptors already open (judged when they were opened)", p.on_fds,
                         "allow", raw_path='""', flags='["AT_EMPTY_PATH"]') + "\n")
    for g in p.paths:
        comment = f"{g.kind}: {g.what}{_by(g.use.progs)}"
        opens = g.use.calls & OPEN if g.kind == "read" else set()
        if opens:  # a read grant opens for reading only; opening for writing goes on to the base
            out.append(_rule(comment, opens, "allow", path=_list(g.patterns), writes="false") + "\n")
        if g.use.calls - opens:
            out.append(_rule(comment, g.use.calls - opens, "allow", path=_list(g.patterns)) + "\n")
    out += _move_rules(p)
    for g in p.net:
        out.append(_rule(f"net: {g.what}{_by(g.use.progs)}", g.use.calls, "allow", addr=_list([g.pattern])) + "\n")
    return "".join(out).rstrip("\n") + "\n"


MOVE_WHAT = "from {a} into {b}"


def _move_rules(p: Plan) -> list[str]:
    """rename/link from one grant into another, by position: the old path
    in the first grant, the new one in the second (never the other way)."""
    return [_rule(f"move: {MOVE_WHAT.format(a=_short(a), b=_short(b))}{_by(u.progs)}", u.calls, "allow",
                  **{"from": _list(a.patterns), "to": _list(b.patterns)}) + "\n" for a, b, u in p.moves]


def _short(g: Grant) -> str:
    return ", ".join(g.patterns[:2]) + (f" and {len(g.patterns) - 2} more" if len(g.patterns) > 2 else "")


def _render_layer_additions(p: Plan) -> str:
    rules, wider = layer_rules(p)
    net = _net_lines(p)
    if not rules and not net:
        return ""
    out = ["# Added to the base's kernel layer (only the rights it handles count)."]
    if wider:
        out.append("# Wider than the rules below, so the broker still judges every call the layer would settle:")
        out += [f"#   {_one_line(w)}" for w in wider]
    out.append("[layer]")
    if wider:
        out.append('settle = "none"')
    out.append("")
    for rights, path in rules:
        out += ["[[layer.fs]]", f"rights = {_list(rights)}", f"path = {_q(path)}", ""]
    return "\n".join(out + net) + "\n"
