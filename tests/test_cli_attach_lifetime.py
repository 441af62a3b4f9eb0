"""brokerctl attach never harms what it only watches (like strace -p): when
brokerctl goes away (its output closed by `| head`, SIGHUP, SIGTERM, kill -9)
the program goes on, untraced.  An enforcing attach (-a, --policy, --ask)
fails closed by default (the program is killed) unless --on-exit detach; and
attach exits with the program's status when it ends while attached."""

from __future__ import annotations

import shlex
import signal
import subprocess

import pytest
from conftest import BROKERCTL
from waiting import read_line, read_rest, wait_for

DENY_HOSTNAME = 'while read -r l; do case "$l" in *hostname*) echo "skip-fail EACCES";; *) echo cont;; esac; done'


def _tracer(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("TracerPid:")).split()[1])


def _lines(path) -> list[str]:
    return path.read_text().splitlines()


@pytest.fixture
def service(cprog, tmp_path):
    """A running service (opens /etc/hostname every 20 ms) and its output file."""
    out = tmp_path / "svc.out"
    with open(out, "w") as f:
        svc = subprocess.Popen([str(cprog("service")), "/etc/hostname"], stdout=f)
    wait_for(lambda: _lines(out), 30, "the service to start", until=lambda lines: len(lines) >= 3)
    yield svc, out
    svc.kill()
    svc.wait(timeout=60)


def _attach(pid: int, *extra: str) -> subprocess.Popen:
    att = subprocess.Popen([*BROKERCTL, "attach", str(pid), "-e", "trace=openat", *extra],
                           stderr=subprocess.PIPE, text=True)
    line = read_line(att.stderr)
    assert "attached to" in line, line + read_rest(att.stderr)
    return att


def _goes_on_untraced(svc, out) -> None:
    wait_for(lambda: _tracer(svc.pid), 30, "the program to be released (TracerPid 0)", until=lambda pid: pid == 0)
    n = len(_lines(out))
    wait_for(lambda: _lines(out), 30, "the program to go on", until=lambda lines: len(lines) >= n + 5)
    assert svc.poll() is None
    assert all(line.endswith(" ok") for line in _lines(out)[n + 1:])


def test_watch_only_attach_survives_head(service):
    svc, out = service
    sh = subprocess.run(["sh", "-c", f"{shlex.join(BROKERCTL)} attach {svc.pid} -e trace=openat 2>&1 | head -3"],
                        capture_output=True, text=True, timeout=60)
    assert len(sh.stdout.splitlines()) == 3
    _goes_on_untraced(svc, out)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGKILL])
def test_watch_only_attach_survives_brokerctl_going_away(service, sig):
    svc, out = service
    att = _attach(svc.pid)
    assert "openat(" in read_line(att.stderr)  # tracing for real
    att.send_signal(sig)
    att.wait(timeout=30)
    _goes_on_untraced(svc, out)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_enforcing_attach_kills_by_default_when_brokerctl_dies(service, sig):
    svc, out = service
    att = _attach(svc.pid, "-a", DENY_HOSTNAME)
    assert "EACCES" in read_line(att.stderr)
    att.send_signal(sig)
    att.wait(timeout=30)
    assert svc.wait(timeout=30) == -signal.SIGKILL


def test_enforcing_attach_on_exit_detach_leaves_it_running(service):
    svc, out = service
    att = _attach(svc.pid, "-a", DENY_HOSTNAME, "--on-exit", "detach")
    assert "EACCES" in read_line(att.stderr)
    att.send_signal(signal.SIGKILL)
    att.wait(timeout=30)
    _goes_on_untraced(svc, out)


def test_attach_exits_with_the_program_s_status(tmp_path):
    go = tmp_path / "go"
    prog = subprocess.Popen(["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.02; done; exit 7"])
    try:
        att = _attach(prog.pid)
        go.touch()
        assert att.wait(timeout=30) == 7
        assert "has exited (exit status 7)" in read_rest(att.stderr)
    finally:
        prog.kill()
        prog.wait(timeout=60)
