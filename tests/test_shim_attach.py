"""brokerctl attach: seize a live multi-threaded process, steer it, detach cleanly."""

from __future__ import annotations

import os
import signal
import subprocess

from conftest import BROKERCTL, brokerctl
from waiting import read_line, read_rest, wait_for

DENY_HOSTNAME = 'while read -r l; do case "$l" in *hostname*) echo "skip-fail EACCES";; *) echo cont;; esac; done'


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _tracer_of(pid: int) -> str | None:
    """Its TracerPid; None when it is gone (strace forks short-lived probe children)."""
    try:
        return _status(pid)["TracerPid"].strip()
    except FileNotFoundError:
        return None


def _lines(path) -> list[str]:
    return path.read_text().splitlines()


def _wait_lines(path, n: int, timeout: float = 30) -> None:
    wait_for(lambda: _lines(path), timeout, f"the service's line {n}", until=lambda lines: len(lines) >= n)


def test_attach_steer_and_detach(cprog, tmp_path):
    out = tmp_path / "svc.out"
    with open(out, "w") as f:
        svc = subprocess.Popen([str(cprog("service")), "/etc/hostname"], stdout=f)
    try:
        _wait_lines(out, 3)
        att = subprocess.Popen([*BROKERCTL, "attach", str(svc.pid), "-e", "trace=openat", "-a", DENY_HOSTNAME],
                               stderr=subprocess.PIPE, text=True)
        assert "attached to" in read_line(att.stderr)
        n = len(_lines(out))
        _wait_lines(out, n + 10)
        att.send_signal(signal.SIGINT)
        assert att.wait(timeout=10) == 0
        assert "detached" in read_rest(att.stderr)
        during = _lines(out)[n + 1: n + 10]
        assert during and all(line.endswith("EACCES") for line in during), during
        assert _status(svc.pid)["TracerPid"].strip() == "0"
        m = len(_lines(out))
        _wait_lines(out, m + 5)
        after = _lines(out)[m + 1:]
        assert after and all(line.endswith(" ok") for line in after), after
        assert svc.poll() is None, "the service must go on running after detach"
        # the counter never skipped or repeated: no syscall lost or replayed visibly
        nums = [int(line.split()[0]) for line in _lines(out)]
        assert nums == list(range(len(nums)))
    finally:
        svc.kill()
        svc.wait(timeout=60)


def _wait_state(pid: int, states: str, timeout: float = 30) -> None:
    wait_for(lambda: _status(pid)["State"], timeout, f"{pid} to reach state {states}",
             until=lambda state: state[0] in states)


def test_detach_leaves_stopped_process_stopped(cprog, tmp_path):
    out = tmp_path / "svc.out"
    with open(out, "w") as f:
        svc = subprocess.Popen([str(cprog("service")), "/etc/hostname"], stdout=f)
    try:
        _wait_lines(out, 1)
        os.kill(svc.pid, signal.SIGSTOP)
        _wait_state(svc.pid, "T")
        att = subprocess.Popen([*BROKERCTL, "attach", str(svc.pid)], stderr=subprocess.PIPE, text=True)
        assert "attached to" in read_line(att.stderr)
        att.send_signal(signal.SIGINT)
        assert att.wait(timeout=10) == 0
        st = _status(svc.pid)
        assert st["State"].startswith("T"), st["State"]
        assert st["TracerPid"].strip() == "0"
        n = len(_lines(out))
        os.kill(svc.pid, signal.SIGCONT)
        _wait_lines(out, n + 2)  # it runs again
    finally:
        svc.kill()
        svc.wait(timeout=60)


def test_attach_refusals():
    r = brokerctl("attach", "999999999")
    assert r.returncode != 0 and "no such process" in r.stderr
    r = brokerctl("attach", "notapid")
    assert r.returncode == 2 and "PID must be" in r.stderr
    assert "Traceback" not in r.stderr
    sleeper = subprocess.Popen(["strace", "-o", "/dev/null", "sleep", "30"])
    try:
        def traced_child() -> int | None:
            kids = subprocess.run(["pgrep", "-P", str(sleeper.pid)], capture_output=True, text=True, timeout=120).stdout.split()
            return next((int(k) for k in kids if _tracer_of(int(k)) == str(sleeper.pid)), None)

        child = wait_for(traced_child, 20, "strace to trace its child")
        r = brokerctl("attach", str(child))
        assert r.returncode == 1
        assert f"already traced by pid {sleeper.pid}" in r.stderr
    finally:
        sleeper.kill()
        sleeper.wait(timeout=60)
