"""strace's ``-e trace=`` syntax (brokerd.protocol.selection), resolved from the
syscall tables' classes, and the rule that a selection naming nothing is an
error, never a silent "ask about nothing"."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from brokerd.protocol.abi import all_names, names_in
from brokerd.protocol.selection import TraceError, parse_trace, parse_traces
from conftest import brokerctl

REPO = Path(__file__).resolve().parent.parent
DENY_SHADOW = f"sh {REPO / 'clients' / 'examples' / 'deny-shadow.sh'}"


# -- the parser (pure) ----------------------------------------------------------
def test_names_classes_regex_and_lists() -> None:
    assert parse_trace("openat") == {"openat"}
    assert parse_trace("openat,close") == {"openat", "close"}
    assert parse_trace("%file") == names_in("file")
    assert parse_trace("%file,%network") == names_in("file") | names_in("network")
    assert parse_trace("/^open") == {"open", "openat", "openat2", "open_by_handle_at", "open_tree",
                                     "open_tree_attr"}
    assert parse_trace("/stat$,getpid") >= {"stat", "fstat", "lstat", "getpid"}
    assert parse_trace("?nosuchcall,close") == {"close"}


def test_all_none_and_negation() -> None:
    assert parse_trace("all") is None
    assert parse_trace("none") == frozenset()
    assert parse_trace("!none") == all_names()
    assert parse_trace("!all") == frozenset()
    neg = parse_trace("!%file")
    assert neg is not None and "openat" not in neg and "read" in neg and "close" in neg
    assert parse_trace("!openat,close") == all_names() - {"openat", "close"}
    # the last expression wins, as in strace; none at all is every call
    assert parse_traces(["openat", "close"]) == {"close"}
    assert parse_traces([]) is None


@pytest.mark.parametrize("expr,message", [
    ("opne", "unknown system call 'opne'"),
    ("file", "did you mean %file"),
    ("%fiel", "unknown syscall class '%fiel'"),
    ("/zzzz", "matches no system call"),
    ("/(", "bad regular expression"),
    ("openat,", "empty item"),
    ("", "empty selection"),
    ("!", "empty selection"),
    ("openat,all", "stands alone"),
])
def test_selections_that_name_nothing_are_errors(expr: str, message: str) -> None:
    with pytest.raises(TraceError, match=re.escape(message)):
        parse_trace(expr)


# -- brokerctl run ------------------------------------------------------------------
def _spy(tmp_path: Path) -> tuple[str, Path]:
    """A plain authorizer that allows everything and logs the names it is asked about."""
    log = tmp_path / "asked"
    return (f"sh -c 'read g; echo cont; while read -r k id pid tid abi name rest; do "
            f"echo \"$name\" >> {log}; echo cont; done'", log)


def _asked(log: Path) -> set[str]:
    return set(log.read_text().split()) if log.exists() else set()


@pytest.mark.skipif(not os.access("/etc/shadow", os.R_OK), reason="needs a readable /etc/shadow (root)")
def test_percent_file_reaches_the_policy() -> None:
    """The issue's command: before, %file was an unknown name, only warned
    about, so the policy was asked about nothing and the shadow line printed."""
    r = brokerctl("run", "-e", "trace=%file", "-a", DENY_SHADOW, "--", "head", "-1", "/etc/shadow")
    assert r.returncode != 0
    assert r.stdout == ""
    assert "Permission denied" in r.stderr


@pytest.mark.parametrize("expr", ["trace=opne", "trace=%fiel", "trace=file", "trace=/(", "trace=/zzzz",
                                  "trace=openat,,close", "trace=!"])
def test_bad_expression_one_line_exit_2_program_never_starts(tmp_path: Path, expr: str) -> None:
    marker = tmp_path / "ran"
    r = brokerctl("run", "-e", expr, "-a", DENY_SHADOW, "--", "touch", str(marker))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("brokerctl: -e trace="), r.stderr
    assert "Traceback" not in r.stderr
    assert not marker.exists()


def test_regex_and_negation_select_what_the_authorizer_sees(tmp_path: Path, cprog) -> None:
    opener = str(cprog("opener"))
    spy, log = _spy(tmp_path)
    r = brokerctl("run", "-e", "trace=/^open", "-a", spy, "--", opener, "/etc/hostname")
    assert r.returncode == 0, r.stderr
    assert "openat" in _asked(log) and not _asked(log) - {"open", "openat", "openat2"}
    log.unlink()
    r = brokerctl("run", "-e", "trace=!%file", "-a", spy, "--", opener, "/etc/hostname")
    assert r.returncode == 0, r.stderr
    asked = _asked(log)
    assert "close" in asked and not asked & names_in("file")


def test_none_asks_about_nothing(tmp_path: Path, cprog) -> None:
    spy, log = _spy(tmp_path)
    r = brokerctl("run", "-e", "trace=none", "-a", spy, "--", str(cprog("opener")), "/etc/hostname")
    assert r.returncode == 0, r.stderr
    assert _asked(log) == set()


HANDSHAKE = r'''
import sys
sys.stdin.readline()
print("hello 1 role=authorizer name=hs trace=%s", flush=True)
sys.stdin.readline()
for line in sys.stdin:
    parts = line.split()
    if parts[0] != "syscall":
        continue
    deny = parts[5] in ("openat", "open") and "/etc/hostname" in line
    print(parts[1] + (" skip-fail EACCES" if deny else " cont"), flush=True)
'''


def test_handshake_trace_takes_classes(authz, cprog) -> None:
    r = brokerctl("run", "-a", authz(HANDSHAKE % "%file"), "--", str(cprog("opener")), "/etc/hostname")
    assert r.stdout.strip() == "/etc/hostname EACCES", r.stdout + r.stderr


def test_handshake_with_a_bad_selection_fails_closed(authz, cprog) -> None:
    """An authorizer whose hello names an unknown class is treated as failed:
    the calls -e selected get the default verdict (deny), not a free pass."""
    r = brokerctl("run", "-e", "trace=openat", "-a", authz(HANDSHAKE % "%fiel"), "--",
                  str(cprog("opener")), "/etc/hostname")
    assert open("/etc/hostname").read().strip() not in r.stdout
    assert "%fiel" in r.stderr


def test_replay_rejects_bad_expressions(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    r = brokerctl("replay", str(log), "-e", "trace=%fiel", "-a", "true")
    assert r.returncode == 2, r.stderr
    assert "unknown syscall class" in r.stderr and "Traceback" not in r.stderr
