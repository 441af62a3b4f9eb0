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

import pytest

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
)

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$", re.M)


def imported_by(*argv: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``brokerctl ARGV`` under ``-X importtime``: (result, names of the modules it imported)."""
    e = {**os.environ, "BROKERD_SOCKET": "none", **(env or {})}
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "brokerd.cli.main", *argv],
                       capture_output=True, text=True, timeout=60, env=e)
    return r, set(_IMPORTED.findall(r.stderr))


def _unwanted(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules for p in prefixes if m == p or m.startswith(p + "."))


def test_plain_run_imports_only_what_it_uses():
    r, modules = imported_by("run", "--", "/bin/true")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "brokerd.tracer.shim" in modules  # the check sees the run's imports at all
    assert _unwanted(modules, NEVER_FOR_RUN) == []


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
