"""brokerctl run when an authorizer cannot start or never greets, and the
forked program's child that must never run brokerctl's own code."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import BROKERCTL, brokerctl

# denies everything but the program's own exit: even the child's error message
DENY_ALL = 'while read -r l; do case "$l" in *exit_group*) echo cont;; *) echo "skip-fail EPERM";; esac; done'


def test_forked_child_never_returns_into_brokerctl():
    """The exec fails and writing its error is denied too: the child must still
    exit like a shell would (126/127), not run on in brokerctl's code."""
    r = brokerctl("run", "-a", DENY_ALL, "--", "/etc/hostname")
    assert r.returncode in (126, 127), (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr


def _run_in(cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BROKERCTL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize("command, says", [
    ("/nonexistent", "/nonexistent: not found"),
    ("exit 3", "exited with status 3"),
    ("sh clients/examples/deny-shadow.sh", "relative to the current directory"),  # run from elsewhere
    ("kill -9 $$", "killed by SIGKILL"),
])
def test_an_authorizer_that_cannot_start_is_one_line_and_the_program_never_runs(tmp_path, command, says):
    marker = tmp_path / "program-ran"
    r = _run_in(tmp_path, "run", "-a", command, "--", "touch", str(marker))
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert says in r.stderr and "the program was not started" in r.stderr, r.stderr
    assert not marker.exists()


@pytest.mark.skipif(shutil.which("mawk") is None, reason="mawk is not installed (Debian's default awk)")
def test_a_buffering_authorizer_that_never_greets_is_named(tmp_path):
    marker = tmp_path / "program-ran"
    r = _run_in(tmp_path, "run", "--timeout", "1", "-a", "mawk '{ print \"cont\" }'", "--", "touch", str(marker))
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert "did not answer the greeting" in r.stderr and "-W interactive" in r.stderr, r.stderr
    assert not marker.exists()


def test_an_authorizer_s_own_stderr_still_reaches_the_user(tmp_path):
    talk = (f"{sys.executable} -uc 'import sys; sys.stderr.write(\"policy loaded\\n\"); "
            "[print(\"cont\", flush=True) for _ in sys.stdin]'")
    r = _run_in(tmp_path, "run", "-a", talk, "--", "true")
    assert r.returncode == 0, r.stderr
    assert "policy loaded" in r.stderr
