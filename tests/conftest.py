"""Shared fixtures: C tracee programs built with gcc, and helpers to run
programs under `brokerctl run` with small authorizers written by the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PROGS = HERE / "progs"
BUILD = HERE / "_build"
BROKERCTL = [sys.executable, "-m", "brokerd.cli.main"]


def _build(name: str, extra: tuple[str, ...] = ()) -> Path:
    src = PROGS / f"{name}.c"
    out = BUILD / (name + ("-" + "-".join(a.strip("-") for a in extra) if extra else ""))
    newest = max(p.stat().st_mtime for p in (src, *PROGS.glob("*.h")))  # report.h is shared
    if not out.exists() or out.stat().st_mtime < newest:
        BUILD.mkdir(exist_ok=True)
        cc = shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            pytest.fail("gcc is required to build the tracee programs (scripts/setup installs it)")
        subprocess.run([cc, "-O1", "-Wall", "-o", str(out), str(src), "-lpthread", *extra], check=True)
    return out


@pytest.fixture(scope="session")
def cprog():
    """cprog("calls") -> path of tests/progs/calls.c built with gcc."""
    return _build


@pytest.fixture
def authz(tmp_path):
    """authz(python_source) -> a command running that Python authorizer script."""
    counter = iter(range(1000))

    def make(source: str) -> str:
        path = tmp_path / f"authz{next(counter)}.py"
        path.write_text(textwrap.dedent(source))
        return f"{sys.executable} -u {path}"

    return make


#: how `brokerctl run/attach --policy` runs its policies in this test (the policy_mode fixture)
_POLICY_MODE = {"process": False}


@pytest.fixture(params=["inproc", "process"])
def policy_mode(request, monkeypatch):
    """Parametrizes a test over both ways a --policy runs: inside the broker
    (the default) and, with --policy-process, as a process of its own.  Use it
    module-wide with ``pytestmark = pytest.mark.usefixtures("policy_mode")``."""
    monkeypatch.setitem(_POLICY_MODE, "process", request.param == "process")
    return request.param


def brokerctl(*args: str, input: str | None = None, timeout: float = 60, env=None) -> subprocess.CompletedProcess:
    """Run `brokerctl ARGS`, capturing output (text); under policy_mode "process",
    `run` and `attach` get --policy-process."""
    if _POLICY_MODE["process"] and args and args[0] in ("run", "attach"):
        args = (args[0], "--policy-process", *args[1:])
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([*BROKERCTL, *args], capture_output=True, text=True, input=input, timeout=timeout, env=e)


RULES_AUTHZ = r'''
import re, sys
# Only "*" is a wildcard (event lines are full of [ ] and ?).
rules = [(re.compile(".*".join(map(re.escape, p.split("*"))) + r"\Z", re.S), v)
         for p, v in (r.split(" => ", 1) for r in sys.argv[1:])]
first = True
for line in sys.stdin:
    line = line.rstrip("\n")
    if first:
        first = False
        print("cont", flush=True)  # plain mode: any non-hello answer to the greeting
        continue
    verdict = "cont"
    for pattern, v in rules:
        if pattern.match(line):
            verdict = v
            break
    print(verdict, flush=True)
'''


#: an authorizer that judges the object, not the spelling: the broker's
#: resolution (``real2``) or, with --no-stable-args (where there is none),
#: the path resolved now; refuses the file named by its argument
RESOLVING = r'''
import os, sys
bad = sys.argv[1]
sys.stdin.readline()
print("hello 1 role=authorizer name=resolver trace=openat,open", flush=True)
for line in sys.stdin:
    if not line.startswith("syscall"):
        continue
    f = line.split()
    if ' real2="' in line:
        real = line.split(' real2="')[1].split('"')[0]
    else:
        try:
            real = os.path.realpath(line.split('"')[1])
        except OSError:  # a loop or a vanishing link mid-swap: refuse
            real = bad
    print(f[1], "skip-fail EACCES" if real == bad else "cont", flush=True)
'''


@pytest.fixture
def rules(tmp_path):
    """rules("PATTERN => VERDICT", ...) -> a plain authorizer command: the first
    pattern ("*" matches anything) matching the whole event line gives the
    verdict; otherwise cont."""
    script = tmp_path / "rules_authz.py"
    script.write_text(RULES_AUTHZ)

    def make(*rs: str) -> str:
        import shlex

        return " ".join([shlex.quote(sys.executable), "-u", shlex.quote(str(script)), *map(shlex.quote, rs)])

    return make


def landlock_brokerctl(mode: str):
    """brokerctl() that adds ``--no-landlock`` to ``run`` when ``mode`` is
    "no-landlock": a shipped policy's tests run both with its kernel layer and
    on the per-call path alone (issue #12)."""

    def run(*args: str, **kw) -> subprocess.CompletedProcess:
        if mode == "no-landlock" and args and args[0] == "run":
            args = ("run", "--no-landlock", *args[1:])
        return brokerctl(*args, **kw)

    return run
