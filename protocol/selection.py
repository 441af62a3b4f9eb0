"""strace's ``-e trace=EXPR`` syntax, resolved against the syscall tables.

Who sees which calls is a security decision: a plain authorizer is asked only
about the calls its selection names, every other call runs.  So a selection
must mean exactly what the user wrote, and anything that names nothing
(a typo, ``%fiel``, a regex that matches no call) is an error, never a
warning: ``-e trace=%file -a deny-shadow`` must not silently become "ask
about nothing".

Grammar (strace(1), "Filtering")::

    EXPR  := ["!"] ("all" | "none" | ITEM ("," ITEM)*)
    ITEM  := ["?"] (NAME | "%" CLASS | "/" REGEX)

* ``NAME``: a syscall of any ABI (``openat``, ``socketcall``, ``mmap2``).
* ``%CLASS``: a class of the tables (:data:`brokerd.protocol.abi.CLASSES`):
  strace's ``%file %desc %network %process %signal %ipc %memory %creds
  %clock %stat %lstat %fstat %statfs %fstatfs %pure`` and brokerd's own
  (``%fs-write``, ``%open``...).
* ``/REGEX``: every name the (Python) regular expression matches anywhere.
* ``!`` negates the whole expression; ``all`` is every call, ``none`` none.
* ``?`` before an item: no error if it names nothing (as in strace).

:func:`parse_trace` gives a frozenset of names, or None for "every call"
(``all``: calls the tables do not know are included too).  A negated set is
the tables' names minus the set: calls unknown to the tables are then *not*
selected.  Several expressions: the last one wins (as in strace).
"""

from __future__ import annotations

import re

from .abi import CLASSES, all_names, names_in

__all__ = ["TraceError", "parse_trace", "parse_traces", "unknown_names"]


class TraceError(ValueError):
    """A selection that names nothing it could mean; its text says what."""


def parse_trace(expr: str) -> frozenset[str] | None:
    """The calls ``expr`` selects: a set of names, or None for all."""
    text = expr.strip()
    negate = text.startswith("!")
    if negate:
        text = text[1:].strip()
    if text == "all":
        return frozenset() if negate else None
    if text == "none":
        return all_names() if negate else frozenset()
    if not text:
        raise TraceError(f"empty selection {expr!r}")
    names: set[str] = set()
    for item in text.split(","):
        names |= _item(item.strip(), expr)
    return all_names() - names if negate else frozenset(names)


def parse_traces(exprs: list[str] | tuple[str, ...]) -> frozenset[str] | None:
    """Several ``trace=`` expressions: each is checked, the last one wins
    (strace's rule); no expression at all is every call."""
    result: frozenset[str] | None = None
    for e in exprs:
        result = parse_trace(e)
    return result


def unknown_names(names: frozenset[str] | set[str]) -> None:
    """TraceError naming the first of ``names`` no ABI has (a handshake's
    ``allow=``/``deny=`` lists: a typo there must not pass silently either)."""
    bad = sorted(set(names) - all_names())
    if bad:
        raise TraceError(f"unknown system call{'s' if len(bad) > 1 else ''} {', '.join(bad)}")


def _item(item: str, expr: str) -> frozenset[str]:
    quiet = item.startswith("?")
    if quiet:
        item = item[1:]
    try:
        found = _resolve(item)
    except TraceError:
        if quiet:
            return frozenset()
        raise
    if not found and not quiet:
        raise TraceError(f"{item!r} in {expr!r} matches no system call")
    return found


def _resolve(item: str) -> frozenset[str]:
    if not item:
        raise TraceError("empty item in a selection (two commas, or a trailing one?)")
    if item in ("all", "none"):
        raise TraceError(f"{item!r} stands alone (trace={item}), it cannot be part of a list")
    if item.startswith("%"):
        cls = item[1:]
        if cls not in CLASSES:
            raise TraceError(f"unknown syscall class {item!r} (known: %{', %'.join(CLASSES)})")
        return names_in(cls)
    if item.startswith("/"):
        try:
            rx = re.compile(item[1:])
        except re.error as e:
            raise TraceError(f"bad regular expression {item!r}: {e}") from None
        return frozenset(n for n in all_names() if rx.search(n))
    if item in all_names():
        return frozenset((item,))
    hint = f" (did you mean %{item}?)" if item in CLASSES else ""
    raise TraceError(f"unknown system call {item!r}{hint}")
