"""Shared fixtures: C tracee programs built with gcc, and helpers to run
programs under `brokerctl run` with small authorizers written by the tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from waiting import wait_for

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
        subprocess.run([cc, "-O1", "-Wall", "-o", str(out), str(src), "-lpthread", *extra], check=True, timeout=120)
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


@pytest.fixture(params=["default", "python"])
def accel_mode(request, monkeypatch):
    """Parametrizes a test over both stop loops: the default (the compiled
    calls of brokerd.tracer.accel where scripts/setup built them) and the
    pure-Python fallback (BROKERD_ACCEL=0).  Module-wide:
    ``pytestmark = pytest.mark.usefixtures("accel_mode")``."""
    if request.param == "python":
        monkeypatch.setenv("BROKERD_ACCEL", "0")
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
#: resolution (the ``realN`` note) or, with --no-stable-args (where there is
#: none), the path resolved now; refuses the file named by its first argument.
#: Arguments: BAD [CALLS [NOTE]], by default the opens and ``real2``
#: (``BAD execve real1`` judges execs)
RESOLVING = r'''
import os, sys
bad = os.path.realpath(sys.argv[1])
calls = sys.argv[2] if len(sys.argv) > 2 else "openat,open"
note = (sys.argv[3] if len(sys.argv) > 3 else "real2") + '="'
sys.stdin.readline()
print(f"hello 1 role=authorizer name=resolver trace={calls}", flush=True)
for line in sys.stdin:
    if not line.startswith("syscall"):
        continue
    f = line.split()
    if " " + note in line:
        real = line.split(" " + note)[1].split('"')[0]
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


class Tmux:
    """A real terminal for a test: a tmux server of its own (``-L``: its own
    socket; no config file), running one bash.  The shared default server
    would be a race between test runs: it exits with its last session, and a
    command another run sends it meanwhile fails ("server exited"); its
    sessions would also start with the environment of whoever started it."""

    def __init__(self) -> None:
        self.server = f"brokerd-{uuid.uuid4().hex[:12]}"
        self._env = {k: v for k, v in os.environ.items() if k != "TMUX"}
        self._tmux("new-session", "-d", "-s", "t", "-x", "200", "-y", "50", "bash --norc --noprofile")
        self._socket = self._tmux("display-message", "-p", "#{socket_path}").strip()
        self.send("PS1='$ '", "Enter")

    def _tmux(self, *args: str) -> str:
        r = subprocess.run(["tmux", "-L", self.server, "-f", "/dev/null", *args], capture_output=True, text=True,
                           env=self._env, timeout=60)
        assert r.returncode == 0, f"tmux {args[0]} failed: {r.stderr.strip()}"
        return r.stdout

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        """The screen and what scrolled off it, wrapped lines joined."""
        return self._tmux("capture-pane", "-p", "-J", "-t", "t", "-S", "-200")

    def wait_for(self, text: str | re.Pattern, timeout: float = 60) -> str:
        """The screen, once ``text`` (or a match of the pattern) is on it."""
        found = text.search if isinstance(text, re.Pattern) else (lambda screen: text in screen)
        return wait_for(self.screen, timeout, f"{text!r} on the screen", until=found, interval=0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True, env=self._env, timeout=120)
        if self._socket:  # tmux leaves it behind
            Path(self._socket).unlink(missing_ok=True)


@pytest.fixture
def tmux():
    """A Tmux terminal, its server killed after the test."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/setup installs it)")
    t = Tmux()
    yield t
    t.close()
