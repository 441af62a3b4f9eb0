"""Rules an authorizer declares in its handshake, which the broker applies
for it without a round trip (sans-IO).

* **Static rules** (``allow=``, ``deny=``, ``kill=``, ``unknown=``) need no
  argument: a launched session compiles them into its seccomp filter, so they
  hold in the kernel whatever happens to the broker.  Stacked they only
  narrow (:func:`combine`).
* **Argument rules** (``rule="openat path2=/usr/lib/** => cont"``) are tried
  before the authorizer is asked; the first that matches is its answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from brokerd.protocol.record import Record, _set
from brokerd.protocol.types import (
    Cont,
    Kill,
    Reply,
    Rewrite,
    SkipFail,
    SkipOk,
    Step,
    Str,
    SyscallEvent,
    Verdict,
)

#: The verdicts that may answer a syscall entry (a rule's verdict must be one).
ENTRY_VERDICTS = (Cont, Step, Kill, SkipFail, SkipOk, Rewrite)

# ---------------------------------------------------------------------------
# Static rules: answers that need no argument, compiled into the kernel filter
# ---------------------------------------------------------------------------

ALLOW = ("allow", 0)
TRACE = ("trace", 0)
KILL = ("kill", 0)


class StaticRules(Record):
    """What one authorizer declared in its handshake (``allow=``, ``deny=``,
    ``kill=``, ``unknown=``): answers for whole syscalls, whatever the
    arguments, that the broker may give without asking it."""

    __slots__ = ("allow", "deny", "kill", "unknown")
    allow: frozenset[str]
    deny: tuple[tuple[str, int], ...]
    kill: frozenset[str]
    unknown: tuple[str, int] | None  # for every syscall it does not name

    def __init__(self, allow: frozenset[str] = frozenset(), deny: tuple[tuple[str, int], ...] = (),
                 kill: frozenset[str] = frozenset(),
                 unknown: tuple[str, int] | None = None) -> None:
        _set(self, "allow", allow)
        _set(self, "deny", deny)
        _set(self, "kill", kill)
        _set(self, "unknown", unknown)

    def action(self, name: str, subscribed: bool) -> tuple[str, int]:
        """This authorizer's answer for ``name``: allow / trace / deny(errno) / kill."""
        if name in self.kill:
            return KILL
        for n, e in self.deny:
            if n == name:
                return ("deny", e)
        if name in self.allow:
            return ALLOW
        if subscribed:
            return TRACE
        return self.unknown or ALLOW

    @property
    def empty(self) -> bool:
        return not (self.allow or self.deny or self.kill or self.unknown)


NO_RULES = StaticRules()


def combine(actions: Sequence[tuple[str, int]]) -> tuple[str, int]:
    """The stack's answer from its members' answers, in stack order: a
    denial or kill anywhere wins (the first one, as the walk would meet it);
    else the call stops if anyone must decide; else it is allowed.  A rule
    lower in the stack can therefore only narrow what the others allow."""
    need_trace = False
    for a in actions:
        if a[0] in ("deny", "kill"):
            return a
        if a[0] == "trace":
            need_trace = True
    return TRACE if need_trace else ALLOW


def parse_static(attrs: dict[str, str]) -> StaticRules:
    """Static rules from handshake attributes; raises ValueError naming the
    bad part (the broker answers ``error bad-hello``)."""
    from brokerd.protocol.consts import errno_number

    def names(key: str) -> list[str]:
        return [n for n in attrs.get(key, "").split(",") if n]

    deny: list[tuple[str, int]] = []
    for item in names("deny"):
        name, _, err = item.partition(":")
        deny.append((name, errno_number(err) if err else 1))
    unknown = None
    if "unknown" in attrs:
        word, _, err = attrs["unknown"].partition(":")
        if word == "deny":
            unknown = ("deny", errno_number(err) if err else 1)
        elif word in ("kill", "allow", "trace"):
            unknown = (word, 0)
        else:
            raise ValueError(f"unknown={attrs['unknown']!r}: expected allow, trace, kill or deny[:ERRNO]")
    return StaticRules(frozenset(names("allow")), tuple(deny), frozenset(names("kill")), unknown)


# ---------------------------------------------------------------------------
# Argument rules: simple checks the broker evaluates for an authorizer
# ---------------------------------------------------------------------------


class ArgRule(Record):
    """``rule="openat path2=/usr/lib/** => cont"`` from a handshake: when the
    call and every matcher match, ``verdict`` is that authorizer's answer,
    given by the broker with no round trip.  Matchers: ``pathN=GLOB`` (the
    resolved path note), ``argN=VALUE`` (equality, symbols allowed),
    ``argN&FLAGS`` / ``argN!&FLAGS`` (any of the flags set / none set)."""

    __slots__ = ("name", "matchers", "verdict", "text")
    name: str
    matchers: tuple[tuple[str, int, Any], ...]  # (op, argn, operand: a compiled glob or a value)
    verdict: Verdict
    text: str

    def __init__(self, name: str, matchers: tuple[tuple[str, int, Any], ...], verdict: Verdict,
                 text: str) -> None:
        _set(self, "name", name)
        _set(self, "matchers", matchers)
        _set(self, "verdict", verdict)
        _set(self, "text", text)

    def matches(self, event: SyscallEvent, kinds: Sequence[str]) -> bool:
        from brokerd.protocol.args import value_to_int

        if event.call.name != self.name:
            return False
        args = event.call.args
        for op, n, operand in self.matchers:
            if op == "path":
                path = next((v for k, v in event.notes if k == f"path{n}"), None)
                if not isinstance(path, Str) or not isinstance(operand, re.Pattern):
                    return False
                if not operand.fullmatch(path.data.decode("utf-8", "surrogateescape")):
                    return False
                continue
            if n > len(args):
                return False
            kind = kinds[n - 1] if n <= len(kinds) else "int"
            try:
                value = value_to_int(args[n - 1], kind)
                want = operand if isinstance(operand, int) else value_to_int(operand, kind)
            except (ValueError, TypeError):
                return False
            if op == "eq" and value != want or op == "any" and not value & want or op == "none" and value & want:
                return False
        return True


_M32 = (1 << 32) - 1


class RegisterTest(Record):
    """An argument-rule matcher as the seccomp filter can test it, on
    argument register ``index`` (0-based): ``eq`` compares ``value`` with the
    register's low 32 bits (the whole register when ``wide``), ``any`` /
    ``none``: some / none of the bits of ``value`` (all in the low word) set."""

    __slots__ = ("op", "index", "value", "wide")
    op: str
    index: int
    value: int
    wide: bool

    def __init__(self, op: str, index: int, value: int, wide: bool = False) -> None:
        _set(self, "op", op)
        _set(self, "index", index)
        _set(self, "value", value)
        _set(self, "wide", wide)


def register_tests(rule: ArgRule, kinds: Sequence[str], reg_mask: int) -> tuple[RegisterTest, ...] | None:
    """``rule``'s matchers as filter tests for a call with argument ``kinds``
    on an ABI whose registers hold ``reg_mask``, testing exactly what
    :meth:`ArgRule.matches` tests (an ``int`` argument is the register's low
    word, as the kernel reads it); None when the filter cannot (a path, an
    argument in memory, a value or flag beyond what it can compare)."""
    from brokerd.protocol.args import register_bits, value_to_int

    tests = []
    for op, n, operand in rule.matchers:
        if op == "path" or n > len(kinds):
            return None
        bits = register_bits(kinds[n - 1], reg_mask)
        if bits is None:
            return None
        try:
            want = operand if isinstance(operand, int) else value_to_int(operand, kinds[n - 1])
        except (ValueError, TypeError):
            return None
        if op == "eq" and bits == _M32 and -(1 << 31) <= want <= _M32:
            tests.append(RegisterTest("eq", n - 1, want & _M32))
        elif op == "eq" and bits != _M32 and -(1 << 63) <= want <= bits:
            tests.append(RegisterTest("eq", n - 1, want & bits, wide=True))
        elif op in ("any", "none") and 0 < want <= _M32:
            tests.append(RegisterTest(op, n - 1, want))
        else:
            return None
    return tuple(tests)


def static_verdict(rule: ArgRule) -> tuple[str, int] | None:
    """The rule's verdict as a filter answer (allow, deny(errno), kill), or
    None when only the broker can carry it out (step, skip-ok, a rewrite)."""
    v = rule.verdict
    if isinstance(v, Cont):
        return ALLOW
    if isinstance(v, SkipFail):
        return ("deny", v.errno)
    if isinstance(v, Kill):
        return KILL
    return None


def parse_arg_rule(text: str) -> ArgRule:
    """Parse one ``rule=`` handshake value; raises ValueError naming the problem."""
    from brokerd.globs import glob_to_regex
    from brokerd.protocol import codec
    from brokerd.protocol.errors import ProtocolError

    head, sep, verdict_text = text.partition("=>")
    words = head.split()
    if not sep or not words:
        raise ValueError(f"rule {text!r}: expected 'NAME [MATCHER...] => VERDICT'")
    try:
        reply = codec.parse_reply(verdict_text.strip())
    except ProtocolError as e:
        raise ValueError(f"rule {text!r}: bad verdict: {e.message}") from None
    if not isinstance(reply, Reply) or not isinstance(reply.verdict, ENTRY_VERDICTS):
        raise ValueError(f"rule {text!r}: {verdict_text.strip()!r} is not a verdict for a syscall")
    matchers: list[tuple[str, int, object]] = []
    for m in words[1:]:
        g = re.fullmatch(r"path([1-6])=(.+)", m)
        if g:
            matchers.append(("path", int(g[1]), re.compile(glob_to_regex(g[2]))))
            continue
        g = re.fullmatch(r"arg([1-6])(=|&|!&)(.+)", m)
        if not g:
            raise ValueError(f"rule {text!r}: bad matcher {m!r} (pathN=GLOB, argN=V, argN&FLAGS, argN!&FLAGS)")
        try:
            operand: object = codec.parse_value(g[3])
        except ProtocolError as e:
            raise ValueError(f"rule {text!r}: bad value in {m!r}: {e.message}") from None
        matchers.append(({"=": "eq", "&": "any", "!&": "none"}[g[2]], int(g[1]), _operand(operand)))
    return ArgRule(words[0], tuple(matchers), reply.verdict, text)


def _operand(v: object) -> object:
    """Plain numbers are compared as they are; symbols resolve per argument kind."""
    from brokerd.protocol.types import Int, Oct, Ptr

    return v.value if isinstance(v, Int | Ptr | Oct) else v
