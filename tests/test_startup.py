"""What ``brokerctl run`` loads before the program starts (issue 13).

Every short command pays brokerctl's start-up (a sandboxed ``make`` runs
dozens of them), so a plain run must not import what it never uses: the
daemon client when no daemon listens, trio, pyelftools, the daemon commands,
the attach and ELF parts.  Checked with ``python -X importtime`` (its lines
on stderr name every module imported), never with a stopwatch: the list is
what a slow start-up is made of, and it does not depend on the machine's load.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: modules a run needs no part of (prefixes: a package and its submodules)
NEVER_FOR_RUN = (
    "brokerd.daemon.client",  # no daemon listening: embedded session
    "brokerd.daemon.wire",
    "brokerd.cli.control",  # the daemon commands
    "brokerd.tracer.elfinfo",  # --caller only
    "trio",
    "elftools",
    "ptrace",  # python-ptrace: brokerd.tracer.ptrace has its own definitions
    "shutil",  # which() only, imported when PROG has no slash
    "dataclasses",  # brokerd.protocol.record instead (and inspect, ast, dis... with it)
    "inspect",
    "traceback",  # only when a handler failed
    "json",  # --audit and $BROKERD_STOP_COUNTS only
    "ipaddress",  # addresses in events (connect & co.), not a start-up's
)

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$", re.M)


def imported_by(*argv: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``brokerctl ARGV`` under ``-X importtime``: (result, names of the modules it imported)."""
    e = {**os.environ, "BROKERD_SOCKET": "none", **(env or {})}
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "brokerd.cli.main", *argv],
                       capture_output=True, text=True, timeout=60, env=e)
    return r, set(_IMPORTED.findall(r.stderr))


def _unwanted(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    """Those of ``modules`` under ``prefixes`` that brokerd imported (not the
    interpreter's start-up: a checkout's editable install imports pathlib,
    and with it ipaddress, before any brokerd code runs)."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True,
                       timeout=60)
    before = set(_IMPORTED.findall(r.stderr))
    return sorted(m for m in modules - before for p in prefixes if m == p or m.startswith(p + "."))


@pytest.mark.parametrize("policy", [(), ("--policy", "sandbox:{tmp},--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/etc")],
                         ids=["no policy", "sandbox"])
def test_run_imports_only_what_it_uses(policy, tmp_path):
    r, modules = imported_by("run", *(p.format(tmp=tmp_path) for p in policy), "--", "/bin/true")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "brokerd.tracer.shim" in modules  # the check sees the run's imports at all
    allowed = {"shutil"} if policy else set()  # the shipped policies' argparse sizes its help with it
    assert [m for m in _unwanted(modules, NEVER_FOR_RUN) if m not in allowed] == []


def test_no_daemon_socket_means_no_daemon_client(tmp_path):
    """No BROKERD_SOCKET and no socket at the default places: the client is
    never imported (it would only find ENOENT); a socket named explicitly is
    still tried, and its absence reported."""
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    e = {k: v for k, v in os.environ.items() if k != "BROKERD_SOCKET"}
    e.update(env)
    if os.path.exists("/run/brokerd/brokerd.sock"):
        pytest.skip("a system brokerd daemon listens here: a run would use it")
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "brokerd.cli.main", "run", "--", "/bin/true"],
                       capture_output=True, text=True, timeout=60, env=e)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "brokerd.daemon.client" not in set(_IMPORTED.findall(r.stderr))
    missing = tmp_path / "nothing-here.sock"
    r = subprocess.run([sys.executable, "-m", "brokerd.cli.main", "run", "--", "/bin/true"],
                       capture_output=True, text=True, timeout=60, env={**e, "BROKERD_SOCKET": str(missing)})
    assert r.returncode == 1
    assert "cannot reach the brokerd daemon" in r.stderr and str(missing) in r.stderr


def test_launcher_runs_the_checkout_without_site(tmp_path):
    """scripts/write-launcher's brokerctl (what scripts/setup puts in
    .venv/bin): the program runs, ``-a py:MODULE:NAME`` still finds a module
    on PYTHONPATH, ``--version`` still finds the installed metadata, and no
    .pth file is read (the editable install's finder was a tenth of a run)."""
    import sysconfig

    launcher = tmp_path / "brokerctl"
    subprocess.run([str(ROOT / "scripts" / "write-launcher"), str(launcher), sys.executable,
                    sysconfig.get_paths()["purelib"], str(ROOT)], check=True, timeout=120)
    (tmp_path / "mine.py").write_text(
        "from brokerd.clients.authorizer import Authorizer, cont, skip_fail\n"
        "az = Authorizer('mine')\n"
        "@az.on('openat', 'open')\n"
        "def deny(call):\n"
        "    return skip_fail('EACCES') if call.path(call.path_args()[0]) == '/etc/hostname' else cont()\n")
    env = {**os.environ, "BROKERD_SOCKET": "none", "PYTHONPATH": str(tmp_path)}
    r = subprocess.run([str(launcher), "run", "-a", "py:mine:az", "--", "cat", "/etc/hostname"],
                       capture_output=True, text=True, timeout=60, env=env, cwd="/")
    assert r.returncode == 1 and "Permission denied" in r.stderr, r.stderr
    r = subprocess.run([str(launcher), "run", "--", "/bin/true"], capture_output=True, text=True, timeout=60,
                       env={**env, "PYTHONPROFILEIMPORTTIME": "1"})  # -X importtime, its shebang kept
    assert r.returncode == 0, r.stderr[-2000:]
    modules = set(_IMPORTED.findall(r.stderr))
    assert "brokerd.tracer.shim" in modules
    assert not any(m.startswith("__editable__") or m in ("site", "pathlib") for m in modules), modules
    v = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, timeout=60, env=env)
    assert v.returncode == 0 and v.stdout.startswith("brokerctl 0."), v.stdout + v.stderr


def test_a_quick_exit_loses_no_output(tmp_path):
    """``run`` ends with os._exit (no interpreter finalization): everything
    brokerctl wrote must be out by then: the -o trace with its -C table (the
    last thing written, buffered in a file), its own stderr lines."""
    out = tmp_path / "trace.txt"
    r = subprocess.run([sys.executable, "-m", "brokerd.cli.main", "run", "-o", str(out), "-C", "-e", "trace=openat",
                        "--", "cat", "/etc/hostname", "/nonexistent"],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "BROKERD_SOCKET": "none"})
    assert r.returncode == 1 and "No such file" in r.stderr  # cat's status and message
    text = out.read_text()
    assert 'openat(AT_FDCWD, "/etc/hostname"' in text
    assert re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+\d+\s+openat$", text, re.M), text  # the table, at the end
    assert text.rstrip().splitlines()[-1].split()[-1] == "total", text
