"""brokerctl run shows a trace as strace users expect: -e trace= with no
authorizer (or any display option) prints each call on stderr or -o FILE,
-c/-C a summary, -t/-T times, -y descriptor paths; -p maps to attach; bad
output files are named."""

from __future__ import annotations

import re
import subprocess

from conftest import BROKERCTL, brokerctl
from waiting import read_line

HOSTNAME = open("/etc/hostname").read()


def test_run_with_trace_selection_shows_the_calls():
    r = brokerctl("run", "-e", "trace=openat", "--", "cat", "/etc/hostname")
    assert r.returncode == 0, r.stderr
    assert r.stdout == HOSTNAME  # the program's own output is untouched
    assert re.search(r'^\[pid \d+\] openat\(AT_FDCWD, "/etc/hostname", O_RDONLY, 00\) = 3$', r.stderr, re.M), r.stderr
    assert "read(" not in r.stderr  # only what was selected


def test_run_trace_to_file_with_times_and_fd_paths(tmp_path):
    out = tmp_path / "trace.txt"
    r = brokerctl("run", "-o", str(out), "-tt", "-T", "-y", "-e", "trace=openat,read,close",
                  "--", "cat", "/etc/hostname")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = out.read_text()
    stamp = r"\d\d:\d\d:\d\d\.\d{6}"
    assert re.search(rf'^\[pid \d+\] {stamp} openat\(AT_FDCWD, "/etc/hostname", O_RDONLY, 00\) = 3</etc/hostname> '
                     r"<\d+\.\d{6}>$", text, re.M), text
    assert re.search(rf"^\[pid \d+\] {stamp} read\(3</etc/hostname>, ", text, re.M), text


def test_run_summary_only_and_both(tmp_path):
    r = brokerctl("run", "-c", "-e", "trace=openat", "--", "cat", "/etc/hostname", "/nonexistent")
    assert r.returncode == 1  # cat's own status
    assert "openat(" not in r.stderr
    row = re.search(r"^\s*[\d.]+\s+[\d.]+\s+(\d+)\s+(\d+)\s+openat$", r.stderr, re.M)
    assert row and int(row.group(1)) >= 2 and int(row.group(2)) >= 1, r.stderr
    r = brokerctl("run", "-C", "-e", "trace=openat", "--", "cat", "/etc/hostname")
    assert "openat(AT_FDCWD" in r.stderr and re.search(r"\d+\s+openat$", r.stderr, re.M), r.stderr


def test_run_with_an_authorizer_stays_quiet_unless_asked(rules):
    deny = rules('*openat *"/etc/hostname"* => skip-fail EACCES')
    r = brokerctl("run", "-e", "trace=openat", "-a", deny, "--", "cat", "/etc/hostname")
    assert "openat(" not in r.stderr  # a policy run shows the program's output only
    r = brokerctl("run", "-T", "-e", "trace=openat", "-a", deny, "--", "cat", "/etc/hostname")
    assert re.search(r'openat\(AT_FDCWD, "/etc/hostname", O_RDONLY, 00\) = -1 EACCES \(Permission denied\) \(by ',
                     r.stderr), r.stderr
    assert r.returncode == 1


def test_run_dash_p_attaches_with_a_hint(tmp_path):
    go = tmp_path / "go"
    prog = subprocess.Popen(["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.02; done; exit 5"])
    try:
        att = subprocess.Popen([*BROKERCTL, "run", "-p", str(prog.pid), "-e", "trace=openat"],
                               stderr=subprocess.PIPE, text=True)
        assert "means brokerctl attach" in read_line(att.stderr)
        assert "attached to" in read_line(att.stderr)
        go.touch()
        assert att.wait(timeout=30) == 5
    finally:
        prog.kill()
        prog.wait(timeout=60)


def test_bad_output_file_is_named():
    r = brokerctl("run", "-o", "/nonexistent/dir/trace", "-e", "trace=openat", "--", "true")
    assert r.returncode == 1
    assert r.stderr == "brokerctl: /nonexistent/dir/trace: No such file or directory\n"


def test_run_trace_on_the_notify_backend_shows_calls_without_results():
    r = brokerctl("run", "--backend", "notify", "-e", "trace=openat", "--", "cat", "/etc/hostname")
    assert r.returncode == 0 and r.stdout == HOSTNAME, r.stderr
    assert re.search(r'^\[pid \d+\] openat\(AT_FDCWD, "/etc/hostname", O_RDONLY, 00\) = \?$', r.stderr, re.M), r.stderr
    assert "EPERM" not in r.stderr  # a tracing operator never denies


def test_an_interrupted_call_shows_as_strace_shows_it():
    """A sleep an ignored signal interrupts (under a tracer it does) ends with
    the kernel's restart code, which the program never sees: ``= ?
    ERESTART_RESTARTBLOCK (Interrupted by signal)`` as in strace, then
    restart_syscall (was ``= -1 516 (Unknown error 516)``).  SIGWINCH every
    0.1 s: one lands in the sleep however late it starts on a loaded machine."""
    r = brokerctl("run", "--backend", "ptrace", "-e", "trace=clock_nanosleep,restart_syscall", "--", "sh", "-c",
                  "(for i in 1 2 3 4 5 6 7 8; do sleep 0.1; kill -WINCH $$ 2>/dev/null; done) & exec sleep 1")
    assert r.returncode == 0, r.stderr
    assert "Unknown error" not in r.stderr
    assert re.search(r"clock_nanosleep\(.*tv_sec=1, .* = \? ERESTART_RESTARTBLOCK \(Interrupted by signal\)$",
                     r.stderr, re.M), r.stderr
    assert re.search(r"restart_syscall\(\) = 0$", r.stderr, re.M), r.stderr
