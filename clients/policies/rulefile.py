"""Declarative policy files: TOML rules, compiled once at start.

    brokerctl run --policy file:rules.toml -- PROG      (or --policy rules.toml)
    brokerctl policy check rules.toml                   (errors with line numbers)
    python3 -m brokerd.clients.policies.rulefile [--log] FILE

The format (version 1; docs/policies.md has the full reference)::

    name = "no-secrets"        # optional: shown in the broker's logs
    default = "allow"          # allow | deny | kill | any entry verdict ("skip-fail ENOSYS")
    deny_errno = "EPERM"       # what "deny" means (default EPERM)

    [[rule]]
    syscall = ["openat", "open"]   # names, or "*"
    path = "/etc/shadow*"          # glob(s) on the resolved path arguments
    verdict = "skip-fail EACCES"

Rules are tried in order; the first that matches decides.  A rule matches
when the syscall is listed and *every* matcher it has matches:

``path`` / ``not_path``
    glob or list of globs on the resolved paths (cwd, dirfd, ``..`` and
    symlinks resolved; ``*`` ``?`` ``[..]`` within a component, ``**``
    across ``/``, ``/dir/**`` also matches ``/dir``); in a rule that denies,
    ``path`` matches if any path argument matches a glob, in any other only
    if every one does; ``not_path`` excludes if any matches.  A path that
    cannot be resolved counts as matching rules that deny and not those that
    allow.
``from`` / ``to``
    globs on the first / second looked-up path argument (rename's and
    link's old and new path).
``raw_path``
    glob(s) on the path exactly as the program passed it, shell-style
    (fnmatch: ``*`` also crosses ``/``; ``[*]`` is a literal star).
``flags``
    flag name(s) (``"O_CREAT"``, ``"AT_REMOVEDIR"``): any of them set.
``writes``
    ``true``/``false``: an open-like call opens for writing (or not).
``arg0`` .. ``arg5``
    an integer (the argument's value) or a glob on its wire text
    (``arg2 = "*O_CREAT*"``).
``addr``
    network rules as in the network policy (``"127.0.0.0/8:53"``,
    ``"[::1]:443"``, ``"unix:/run/*.sock"``) on every address the call names
    (connect/bind/sendto's sockaddr, sendmsg/sendmmsg's msghdr names);
    ``"peer"`` matches a send naming none (to the connected peer).

and says what to do: ``verdict`` (``allow``, ``deny``, ``kill``, ``cont``,
``step``, ``skip-fail ERRNO``, ``skip-ok VALUE`` or a rewritten call) and/or
``result`` (``ok VALUE`` / ``fail ERRNO``: the call runs, its result is
replaced), ``log = true`` prints each match on stderr.

With ``default = "allow"`` the broker stops only the syscalls the rules name;
any other default subscribes to every syscall.
"""

from __future__ import annotations

import argparse
import errno as _errno
import fnmatch
import re
import struct
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field

from brokerd.clients.authorizer import (
    Authorizer,
    SockAddr,
    Syscall,
    SysResult,
    cont,
    kernel_layer,
    opens_for_writing,
    to_reply,
)
from brokerd.clients.policies.network import (
    PEER,
    IpRule,
    UnixRule,
    destinations,
    endpoint,
    glob_to_regex,
    parse_rule,
)
from brokerd.protocol import codec
from brokerd.protocol.abi import ABIS
from brokerd.protocol.args import FLAGSETS
from brokerd.protocol.consts import errno_number
from brokerd.protocol.errors import ProtocolError
from brokerd.protocol.layers import FsRule, LayerSpec, NetRule, layer_attrs, parse_layer
from brokerd.protocol.types import Cont, Fail, Kill, Ok, Reply, Rewrite, SkipFail, SkipOk, Step

TOP_KEYS = {"name", "default", "deny_errno", "rule", "trace", "layer", "allow", "unknown", "base"}
LAYER_KEYS = {"fs_handled", "net_handled", "scope", "settle", "unjudged", "fs", "net"}
RULE_KEYS = {"syscall", "path", "not_path", "raw_path", "from", "to", "flags", "writes", "addr", "verdict", "result",
             "log", "comment"} | {f"arg{i}" for i in range(6)}
ENTRY_VERDICTS = (Cont, Step, Kill, SkipFail, SkipOk, Rewrite)
KNOWN_SYSCALLS = frozenset(n for abi in ABIS.values() for n in abi.by_name)


class PolicyFileError(Exception):
    """Errors in a policy file: ``errors`` is a list of (line or None, message)."""

    def __init__(self, path: str, errors: list[tuple[int | None, str]]) -> None:
        self.path = path
        self.errors = errors
        super().__init__("; ".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.path}:{line}: {msg}" if line else f"{self.path}: {msg}" for line, msg in self.errors]


@dataclass
class Rule:
    index: int
    line: int | None
    syscalls: frozenset[str] | None  # None: any
    verdict: Reply
    result: Reply | None = None
    path: list[re.Pattern[str]] = field(default_factory=list)
    not_path: list[re.Pattern[str]] = field(default_factory=list)
    #: ``from``/``to``: the first/second looked-up path argument (rename's and link's old and new)
    from_path: list[re.Pattern[str]] = field(default_factory=list)
    to_path: list[re.Pattern[str]] = field(default_factory=list)
    raw_path: list[re.Pattern[str]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    writes: bool | None = None
    args: dict[int, int | re.Pattern[str]] = field(default_factory=dict)
    addr: list[IpRule | UnixRule | str] = field(default_factory=list)
    log: bool = False

    @property
    def denies(self) -> bool:
        return isinstance(self.verdict.verdict, SkipFail | Kill)

    def matches(self, call: Syscall) -> bool:
        if self.syscalls is not None and call.name not in self.syscalls:
            return False
        if self.raw_path:
            raws = [call.path(i) for i in call.path_args()]
            if not any(r is not None and p.fullmatch(r) for r in raws for p in self.raw_path):
                return False
        if self.path or self.not_path or self.from_path or self.to_path:
            resolved = [p for _, p in call.resolved_paths()]
            unknown = any(p is None for p in resolved)
            known = [p for p in resolved if p is not None]
            if self.path and not self._paths_match(known, unknown):
                return False
            for k, globs in ((0, self.from_path), (1, self.to_path)):
                p = resolved[k] if k < len(resolved) else None
                if globs and not (any(g.fullmatch(p) for g in globs) if p is not None else self.denies):
                    return False
            if self.not_path and (any(g.fullmatch(p) for p in known for g in self.not_path)
                                  or (unknown and not self.denies)):
                return False
        if self.flags and not _has_any_flag(call, self.flags):
            return False
        if self.writes is not None:
            fl = call.open_flags()
            if fl is None or opens_for_writing(fl) != self.writes:
                return False
        for i, want in self.args.items():
            v = call.arg(i)
            if v is None:
                return False
            if isinstance(want, int):
                try:
                    if call.num(i) != want:
                        return False
                except ValueError:
                    return False
            elif not want.fullmatch(codec.format_value(v)):
                return False
        if self.addr and not _addr_matches(call, self.addr, self.denies):
            return False
        return True


    def _paths_match(self, known: list[str], unknown: bool) -> bool:
        """A rule that denies matches when ANY path argument does; one that
        allows only when EVERY one does (a rename from a read-only tree into
        a writable one is not allowed by the writable tree's rule)."""
        if self.denies:
            return unknown or any(g.fullmatch(p) for p in known for g in self.path)
        return not unknown and bool(known) and all(any(g.fullmatch(p) for g in self.path) for p in known)


def _has_any_flag(call: Syscall, names: list[str]) -> bool:
    if call.spec is None:
        return False
    for n in names:
        if n.startswith("O_") and call.open_flags() is not None:
            ofs = FLAGSETS["open_flags"]
            bit = ofs.names.get(n)
            if bit is not None and _flag_set(call.open_flags() or 0, ofs, n, bit):
                return True
            continue
        for j, k in enumerate(call.spec.args):
            fs = FLAGSETS.get(k.partition(":")[0])
            if fs is not None and n in fs.names and j < len(call.args):
                try:
                    if _flag_set(call.num(j), fs, n, fs.names[n]):
                        return True
                except ValueError:
                    pass
    return False


def _flag_set(value: int, fs: object, name: str, bit: int) -> bool:
    if getattr(fs, "enum", None) is not None:
        return value == bit
    for mask, m in getattr(fs, "fields", ()):
        if name in m.values():
            return value & mask == bit
    return bit != 0 and value & bit == bit


def _addr_matches(call: Syscall, rules: list[IpRule | UnixRule | str], denies: bool) -> bool:
    """Every address the call names (sendmsg's in its msghdrs, read from
    memory) matches a rule; a send naming none matches ``"peer"``.  An
    address that cannot be read counts as matching rules that deny only."""
    try:
        dests = destinations(call)
    except (OSError, ValueError, struct.error):
        return denies
    if not dests:
        return False
    return all(_dest_matches(call, sa, rules) for sa in dests)


def _dest_matches(call: Syscall, sa: SockAddr | None, rules: list[IpRule | UnixRule | str]) -> bool:
    if sa is None:
        return PEER in rules
    if sa.family in ("AF_INET", "AF_INET6") and sa.host is not None and sa.port is not None:
        return any(isinstance(r, IpRule) and r.matches(sa.host, sa.port) for r in rules)
    if sa.family == "AF_UNIX" and sa.path is not None:
        path = endpoint(call, sa)
        return path is not None and any(isinstance(r, UnixRule) and r.matches(path[5:]) for r in rules)
    return False


@dataclass
class Policy:
    name: str
    default: Reply
    rules: list[Rule]
    trace: str | frozenset[str]
    layer: LayerSpec | None = None
    #: static rules (PROTOCOL.md 7.2), compiled into the seccomp filter: calls
    #: allowed without a stop, and what happens to calls named nowhere
    allow: frozenset[str] = frozenset()
    unknown: str | None = None
    #: ``base = "NAME[:ARGS]"``: the shipped policy this file widens (built
    #: here); what no rule matches is decided by it, not by ``default``
    base: str | None = None
    base_policy: Authorizer | None = None

    def decide(self, call: Syscall) -> tuple[Rule | None, Reply]:
        for r in self.rules:
            if r.matches(call):
                return r, r.verdict
        return None, self.default


# ---------------------------------------------------------------------------
# Loading, with line numbers
# ---------------------------------------------------------------------------

_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)")
_HEADER = re.compile(r"\s*\[")
_RULE_HEADER = re.compile(r"\s*\[\[\s*rule\s*\]\]")


class _Lines:
    """Where things are in the raw text (tomllib keeps no positions)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.rule_starts = [i + 1 for i, ln in enumerate(self.lines) if _RULE_HEADER.match(ln)]
        self.headers = [i + 1 for i, ln in enumerate(self.lines) if _HEADER.match(ln) and "=" not in ln.split("]")[0]]

    def _span(self, start: int) -> range:
        end = next((h for h in self.headers if h > start), len(self.lines) + 1)
        return range(start, end)

    def key(self, key: str, rule: int | None = None) -> int | None:
        if rule is None:
            span = range(1, (self.headers[0] if self.headers else len(self.lines) + 1))
        elif rule < len(self.rule_starts):
            span = self._span(self.rule_starts[rule])
        else:
            return None
        pat = re.compile(rf"\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=")
        for n in span:
            if 1 <= n <= len(self.lines) and pat.match(self.lines[n - 1]):
                return n
        return self.rule(rule) if rule is not None else None

    def rule(self, rule: int) -> int | None:
        return self.rule_starts[rule] if rule < len(self.rule_starts) else None


def _verdict(text: object, deny_errno: int, what: str) -> Reply:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string")
    t = text.strip()
    alias = {"allow": "cont", "deny": f"skip-fail {deny_errno}", "kill": "kill"}.get(t, t)
    try:
        r = to_reply(alias)
    except (ValueError, TypeError, ProtocolError) as e:
        msg = e.message if isinstance(e, ProtocolError) else str(e)
        raise ValueError(f"{what} {text!r} is not a verdict: {msg}") from None
    if isinstance(r.verdict, Rewrite) and r.verdict.call.name not in KNOWN_SYSCALLS:
        raise ValueError(f"{what} {text!r} is neither a verdict nor a call to rewrite to "
                         "(allow, deny, kill, skip-fail ERRNO, skip-ok N, step, or NAME ARGS)")
    return r


def _globs(v: object, key: str, path: bool = True) -> list[re.Pattern[str]]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
        raise ValueError(f"{key} must be a glob string or a non-empty list of them")
    out = []
    for g in items:
        if path and not g.startswith(("/", "*")):
            raise ValueError(f"{key} glob {g!r} must be absolute (resolved paths start with '/')")
        out.append(re.compile(glob_to_regex(g) if path else fnmatch.translate(g), re.S))
    return out


def _text_glob(g: str) -> str:
    """A glob on wire text: ``*`` matches anything (it has no components)."""
    return ".*".join(re.escape(part).replace(r"\?", ".") for part in g.split("*"))


def _compile_rule(k: int, raw: dict, deny_errno: int, lines: _Lines, errors: list[tuple[int | None, str]]) -> Rule | None:
    def err(key: str | None, msg: str) -> None:
        errors.append((lines.key(key, k) if key else lines.rule(k), f"rule {k + 1}: {msg}"))

    for key in raw:
        if key not in RULE_KEYS:
            err(key, f"unknown key {key!r} (one of {', '.join(sorted(RULE_KEYS))})")
    if "syscall" not in raw:
        err(None, "no 'syscall' (a name, a list of names or \"*\")")
        return None
    names = raw["syscall"]
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        err("syscall", "'syscall' must be a name or a non-empty list of names")
        return None
    for n in names:
        if n != "*" and n not in KNOWN_SYSCALLS:
            err("syscall", f"unknown syscall {n!r}")
    syscalls = None if "*" in names else frozenset(names)
    specs = [s for abi in ABIS.values() for n in (syscalls or ()) if (s := abi.by_name.get(n))]
    try:
        verdict = _verdict(raw["verdict"], deny_errno, "verdict") if "verdict" in raw else None
        if verdict is not None and not isinstance(verdict.verdict, ENTRY_VERDICTS):
            err("verdict", f"verdict {raw['verdict']!r} is a reply to a result; use 'result ='")
            return None
    except ValueError as e:
        err("verdict", str(e))
        return None
    result = None
    if "result" in raw:
        try:
            result = _verdict(raw["result"], deny_errno, "result")
        except ValueError as e:
            err("result", str(e))
            return None
        if not isinstance(result.verdict, Ok | Fail):
            err("result", f"result {raw['result']!r} must be 'ok VALUE' or 'fail ERRNO'")
            return None
        if verdict is not None and not isinstance(verdict.verdict, Cont | Step):
            err("result", "a rule with a 'result' lets the call run: its verdict must be allow/cont/step")
            return None
        verdict = Reply(Step())
    if verdict is None:
        err(None, "no 'verdict' (or 'result')")
        return None
    rule = Rule(k, lines.rule(k), syscalls, verdict, result)
    try:
        for key, attr in (("path", "path"), ("not_path", "not_path"), ("raw_path", "raw_path"),
                          ("from", "from_path"), ("to", "to_path")):
            if key in raw:
                setattr(rule, attr, _globs(raw[key], key, path=key != "raw_path"))
    except (ValueError, re.error) as e:
        err(key, str(e))
    if "flags" in raw:
        fl = raw["flags"]
        fl = [fl] if isinstance(fl, str) else fl
        if not isinstance(fl, list) or not fl or not all(isinstance(x, str) for x in fl):
            err("flags", "'flags' must be a flag name or a list of them")
        else:
            kinds = {k2.partition(":")[0] for s in specs for k2 in s.args} | ({"open_flags"} if {"openat2", "creat"} & set(names) else set())
            pool = [FLAGSETS[x] for x in kinds if x in FLAGSETS] if syscalls is not None else list(FLAGSETS.values())
            for f in fl:
                if not any(f in fs.names for fs in pool):
                    err("flags", f"{f!r} is not a flag of {'/'.join(names)}")
            rule.flags = fl
    if "writes" in raw:
        if not isinstance(raw["writes"], bool):
            err("writes", "'writes' must be true or false")
        else:
            rule.writes = raw["writes"]
    for i in range(6):
        key = f"arg{i}"
        if key not in raw:
            continue
        v = raw[key]
        if specs and all(i >= len(s.args) for s in specs):
            err(key, f"{'/'.join(names)} has no argument {i} (arguments are numbered from 0)")
        if isinstance(v, bool) or not isinstance(v, int | str):
            err(key, f"{key} must be an integer or a glob string")
            continue
        rule.args[i] = v if isinstance(v, int) else re.compile(_text_glob(v), re.S)
    if "addr" in raw:
        items = [raw["addr"]] if isinstance(raw["addr"], str) else raw["addr"]
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            err("addr", "'addr' must be a string or a list of strings")
        else:
            for a in items:
                try:
                    rule.addr.append(PEER if a == PEER else parse_rule(a))
                except (ValueError, re.error) as e:
                    err("addr", str(e))
    if "log" in raw:
        if not isinstance(raw["log"], bool):
            err("log", "'log' must be true or false")
        rule.log = bool(raw["log"])
    return rule


def loads(text: str, path: str = "<policy>") -> Policy:
    """Compile a policy file's text; raises :class:`PolicyFileError` listing every error."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_POS.search(msg)
        line = int(m.group(1)) if m else (len(text.splitlines()) or None)
        if m:
            msg = msg[:m.start()] + f" (column {m.group(2)})"
        raise PolicyFileError(path, [(line, f"TOML syntax: {msg}")]) from None
    lines = _Lines(text)
    errors: list[tuple[int | None, str]] = []
    for key in data:
        if key not in TOP_KEYS:
            errors.append((lines.key(key), f"unknown key {key!r} (one of {', '.join(sorted(TOP_KEYS))})"))
    deny_errno = _errno.EPERM
    if "deny_errno" in data:
        try:
            v = data["deny_errno"]
            deny_errno = v if isinstance(v, int) and not isinstance(v, bool) else errno_number(str(v))
        except (ValueError, ProtocolError):
            errors.append((lines.key("deny_errno"), f"deny_errno {data['deny_errno']!r} is not an errno"))
    default_text = data.get("default", "allow")
    try:
        default = _verdict(default_text, deny_errno, "default")
        if not isinstance(default.verdict, ENTRY_VERDICTS):
            raise ValueError(f"default {default_text!r} is not a verdict for a syscall")
    except ValueError as e:
        errors.append((lines.key("default"), str(e)))
        default = cont()
    name = data.get("name", "policy-file")
    if not isinstance(name, str) or not re.fullmatch(r"[\x21\x23-\x7e]+", name):
        errors.append((lines.key("name"), "name must be one printable word"))
        name = "policy-file"
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        errors.append((lines.key("rule"), "'rule' must be an array of tables ([[rule]])"))
        raw_rules = []
    rules = [r for k, raw in enumerate(raw_rules) if (r := _compile_rule(k, raw, deny_errno, lines, errors))]
    layer = _compile_layer(data.get("layer"), lines, errors)
    allow, unknown = _static(data, lines, errors)
    base, base_policy = _base(data, lines, errors)
    if errors:
        raise PolicyFileError(path, sorted(errors, key=lambda e: e[0] or 0))
    trace: str | frozenset[str]
    if "trace" in data:
        t = data["trace"]
        trace = "all" if t == "all" else frozenset(t) if isinstance(t, list) else "all"
    elif (isinstance(default.verdict, Cont) or unknown) and all(r.syscalls is not None for r in rules):
        trace = frozenset(n for r in rules for n in r.syscalls or ()) - allow
    else:
        trace = "all"
    return Policy(name, default, rules, trace, layer, allow, unknown, base, base_policy)


def _base(data: dict, lines: _Lines, errors: list[tuple[int | None, str]]) -> tuple[str | None, Authorizer | None]:
    """``base = "sandbox:/w,--ro=/usr"``: built now, so a bad one is a load error."""
    from brokerd.clients.policies import build_shipped

    spec = data.get("base")
    if spec is None:
        return None, None
    if not isinstance(spec, str):
        errors.append((lines.key("base"), "base must be a string (NAME[:ARG,ARG...])"))
        return None, None
    for key in ("default", "unknown", "trace"):
        if key in data:
            errors.append((lines.key(key), f"{key!r} does not apply with a base: the base decides what no rule matches"))
    try:
        return spec, build_shipped(spec)
    except ValueError as e:
        errors.append((lines.key("base"), f"base {e}"))
        return None, None


_UNKNOWN = re.compile(r"allow|trace|kill|deny(?::[A-Z0-9]+)?")


def _static(data: dict, lines: _Lines, errors: list[tuple[int | None, str]]) -> tuple[frozenset[str], str | None]:
    """``allow = [names]`` and ``unknown = "deny:ENOSYS"``: the handshake's
    static rules.  With ``unknown``, only the calls the rules name stop; the
    rest is settled in the kernel filter (``allow``) or by ``unknown``."""
    allow = data.get("allow", [])
    if not isinstance(allow, list) or not all(isinstance(n, str) for n in allow):
        errors.append((lines.key("allow"), "'allow' must be a list of syscall names"))
        allow = []
    for n in allow:
        if n not in KNOWN_SYSCALLS:
            errors.append((lines.key("allow"), f"allow: unknown syscall {n!r}"))
    unknown = data.get("unknown")
    if unknown is not None:
        if not isinstance(unknown, str) or not _UNKNOWN.fullmatch(unknown):
            errors.append((lines.key("unknown"), f"unknown {unknown!r} must be allow, trace, kill or deny[:ERRNO]"))
            unknown = None
        elif ":" in unknown:
            try:
                errno_number(unknown.partition(":")[2])
            except (ValueError, ProtocolError):
                errors.append((lines.key("unknown"), f"unknown {unknown!r}: not an errno"))
    return frozenset(n for n in allow if n in KNOWN_SYSCALLS), unknown


def _compile_layer(raw: object, lines: _Lines, errors: list[tuple[int | None, str]]) -> LayerSpec | None:
    """The ``[layer]`` table: the kernel layer (PROTOCOL.md 7.6) in TOML::

        [layer]
        fs_handled = "all"            # default: the rights the [[layer.fs]] entries name
        scope = ["signal"]
        [[layer.fs]]
        rights = ["read", "execute"]  # or "all"
        paths = ["/usr", "/etc"]      # or path = "/usr"
        [[layer.net]]
        rights = "connect"
        ports = [443]
    """
    if raw is None:
        return None
    where = next((n + 1 for n, ln in enumerate(lines.lines) if re.match(r"\s*\[+\s*layer\b", ln)), None)
    if not isinstance(raw, dict):
        errors.append((where, "'layer' must be a table ([layer])"))
        return None
    bad = sorted(set(raw) - LAYER_KEYS)
    if bad:
        errors.append((where, f"unknown key(s) {', '.join(bad)} in [layer] (one of {', '.join(sorted(LAYER_KEYS))})"))
        return None
    try:
        fs = [(e["rights"], p) for e in _entries(raw, "fs") for p in _paths(e)]
        net = [(e["rights"], e["ports"]) for e in _entries(raw, "net")]
        return kernel_layer(fs, fs_handled=raw.get("fs_handled"), net=net, net_handled=raw.get("net_handled"),
                            scope=raw.get("scope", ()), settle=str(raw.get("settle", "all")),
                            unjudged=raw.get("unjudged", ()))
    except (KeyError, TypeError) as e:
        errors.append((where, f"[layer]: missing or mistyped {e}"))
    except ValueError as e:
        errors.append((where, f"[layer]: {e}"))
    return None


def _entries(raw: dict, key: str) -> list[dict]:
    v = raw.get(key, [])
    if not isinstance(v, list) or not all(isinstance(e, dict) for e in v):
        raise ValueError(f"'{key}' must be an array of tables ([[layer.{key}]])")
    return v


def _paths(e: dict) -> list[str]:
    paths = e.get("paths", [e["path"]] if "path" in e else [])
    if isinstance(paths, str):
        paths = [paths]
    if not paths or not all(isinstance(p, str) for p in paths):
        raise ValueError("a [[layer.fs]] entry needs path = \"/dir\" or paths = [...]")
    return paths


def load(path: str) -> Policy:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise PolicyFileError(path, [(None, e.strerror or str(e))]) from None
    except UnicodeDecodeError:
        raise PolicyFileError(path, [(None, "not UTF-8 text")]) from None
    return loads(text, path)


def build_from(policy: Policy, *, log: bool = False) -> Authorizer:
    if policy.base_policy is not None:
        return _widened(policy, policy.base_policy, log)
    az = Authorizer(policy.name, trace=policy.trace, layer=policy.layer, allow=policy.allow, unknown=policy.unknown)
    stepped: dict[int, Rule] = {}

    @az.on("*")
    def judge(call: Syscall) -> object:
        rule, verdict = policy.decide(call)
        if rule is not None and (rule.log or log):
            where = f"rule {rule.index + 1}" + (f" (line {rule.line})" if rule.line else "")
            print(f"{policy.name}: {where}: pid {call.pid}: {call.text()} -> "
                  f"{codec.format_reply(verdict).decode().strip()}", file=sys.stderr, flush=True)
        if rule is not None and rule.result is not None:
            stepped[call.id] = rule
        return verdict

    @az.on_result("*")
    def result(ret: SysResult) -> object:
        rule = stepped.pop(ret.id, None)
        return rule.result if rule is not None and rule.result is not None else cont()

    return az


def _log_match(policy: Policy, rule: Rule, call: Syscall, verdict: Reply) -> None:
    where = f"rule {rule.index + 1}" + (f" (line {rule.line})" if rule.line else "")
    print(f"{policy.name}: {where}: pid {call.pid}: {call.text()} -> "
          f"{codec.format_reply(verdict).decode().strip()}", file=sys.stderr, flush=True)


def widened_layer(base: LayerSpec | None, extra: LayerSpec | None) -> LayerSpec | None:
    """The base's kernel layer with the file's ``[[layer.fs]]``/``[[layer.net]]``
    rules added (only the rights the base handles: the others it never
    denies).  The base's ``settle`` holds unless the file says ``settle =
    "none"`` (its additions are wider than its rules)."""
    if base is None or extra is None:
        return base
    fs = [r for r in (FsRule(r.rights & base.fs_handled, r.path) for r in extra.fs) if r.rights]
    net = [r for r in (NetRule(r.rights & base.net_handled, r.ports) for r in extra.net) if r.rights]
    attrs = [(k, v) for k, v in layer_attrs(base) if k != "settle"]
    attrs += layer_attrs(LayerSpec(fs=tuple(fs), net=tuple(net)))
    attrs.append(("settle", base.settle if extra.settle == "all" else extra.settle))
    return parse_layer(attrs)


def _widened(policy: Policy, base: Authorizer, log: bool) -> Authorizer:
    """A file with a ``base``: ONE policy, the base with the file's rules
    tried first (a stack could only narrow the base, never widen it).  The
    base's static rules and layer, widened by the file's ``allow`` and
    ``[layer]``; calls no rule matches go to the base, in this process."""
    sub = base.subscription()
    named = frozenset(n for r in policy.rules for n in r.syscalls or ())
    whole = sub == "all" or any(r.syscalls is None for r in policy.rules)
    trace: str | frozenset[str] = "all" if whole else (frozenset(sub.split(",")) - {"none"}) | named
    az = Authorizer(policy.name, trace=trace, layer=widened_layer(base.layer, policy.layer),
                    allow=base.allow | policy.allow, unknown=base.unknown, events=base.events,
                    default=base.default, failsafe=base.failsafe, strsize=base.strsize)
    inner = base.session()
    stepped: dict[int, Rule] = {}

    @az.on_hello
    def hello(session: object) -> None:
        broker = getattr(session, "broker", None)
        if broker is not None:
            inner.start_event(broker)  # the same session id and replay flag

    @az.on("*")
    def judge(call: Syscall) -> object:
        for rule in policy.rules:
            if rule.matches(call):
                if rule.log or log:
                    _log_match(policy, rule, call, rule.verdict)
                if rule.result is not None:
                    stepped[call.id] = rule
                return rule.verdict
        return inner.decide(call.event) or cont()

    @az.on_result("*")
    def result(ret: SysResult) -> object:
        rule = stepped.pop(ret.id, None)
        if rule is not None:
            return rule.result or cont()
        return inner.decide(ret.event) or cont()

    for kind in base.handlers.proc:
        az.on_proc(kind)(inner.start_event)
    if base.handlers.signal is not None:
        az.on_signal(lambda sig: inner.decide(sig.event))
    return az


def build(argv: Sequence[str]) -> Authorizer:
    p = argparse.ArgumentParser(prog="rulefile", description="a declarative TOML policy")
    p.add_argument("file")
    p.add_argument("--log", action="store_true", help="print every rule match on stderr")
    a = p.parse_args(argv)
    try:
        policy = load(a.file)
    except PolicyFileError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        sys.exit(2)
    return build_from(policy, log=a.log)


def main(argv: Sequence[str] | None = None) -> None:
    build(sys.argv[1:] if argv is None else argv).main()


if __name__ == "__main__":
    main()
