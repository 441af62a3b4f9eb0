"""Each verdict, applied for real by the tracer shim to real programs."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess

import pytest
from conftest import BROKERCTL, brokerctl


def test_allow_all_is_native(cprog, rules):
    prog = str(cprog("opener"))
    native = __import__("subprocess").run([prog, "/etc/hostname", "/nonexistent"], capture_output=True, text=True)
    r = brokerctl("run", "-a", rules(), "--", prog, "/etc/hostname", "/nonexistent")
    assert r.returncode == 0, r.stderr
    assert r.stdout == native.stdout
    assert "/nonexistent ENOENT" in r.stdout


def test_no_authorizer_runs_program(cprog):
    r = brokerctl("run", "--", str(cprog("calls")), "write:hello\n", "exit:3")
    assert r.stdout.startswith("hello\n")
    assert r.returncode == 3


def test_skip_fail_by_name_and_number(cprog, rules):
    prog = str(cprog("opener"))
    r = brokerctl("run", "-e", "trace=openat", "-a", rules('*openat *"/etc/hostname"* => skip-fail EACCES',
                                                          '*openat *"/etc/passwd"* => skip-fail 2'),
                  "--", prog, "/etc/hostname", "/etc/passwd", "/etc/os-release")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "/etc/hostname EACCES"
    assert lines[1] == "/etc/passwd ENOENT"
    assert lines[2].startswith("/etc/os-release ok")


def test_skip_ok_write_does_not_happen(cprog, rules):
    r = brokerctl("run", "-e", "trace=write", "-a", rules('*write 1, "secret"* => skip-ok 99'),
                  "--", str(cprog("calls")), "write:secret", "write:public\n")
    assert "secret" not in r.stdout
    assert "write ok 99" in r.stdout
    assert "public\n" in r.stdout


def test_rewrite_path_uses_scratch_memory(cprog, rules, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("rewritten\n")
    prog = str(cprog("opener"))
    r = brokerctl("run", "-e", "trace=openat",
                  "-a", rules(f'*openat AT_FDCWD, "/etc/hostname"* => openat AT_FDCWD, "{target}", O_RDONLY'),
                  "--", prog, "/etc/hostname", "/etc/hostname")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["/etc/hostname ok rewritten"] * 2


def test_step_replaces_result(cprog, rules):
    r = brokerctl("run", "-e", "trace=getppid",
                  "-a", rules("syscall * getppid* => step", "sysret * getppid ok * => ok 4242"),
                  "--", str(cprog("calls")), "getppid", "getpid")
    assert r.returncode == 0, r.stderr
    assert "getppid ok 4242" in r.stdout.splitlines()


def test_step_sees_real_result_and_can_fail_it(cprog, rules):
    r = brokerctl("run", "-e", "trace=openat",
                  "-a", rules('*openat *"/etc/hostname"* => step', 'sysret * openat ok * => fail EROFS'),
                  "--", str(cprog("opener")), "/etc/hostname")
    assert r.stdout.strip() == "/etc/hostname EROFS"


def test_set_memory_after_step(cprog, rules):
    # The seed's gettimeofday example: alter the result in tracee memory.
    tv = (1234567890).to_bytes(8, "little") + bytes(8)
    esc = "".join(f"\\x{b:02x}" for b in tv)
    r = brokerctl("run", "-e", "trace=gettimeofday",
                  "-a", rules("syscall * gettimeofday* => step", f'sysret * gettimeofday ok* => cont ; set 1 "{esc}"'),
                  "--", str(cprog("calls")), "gettimeofday")
    assert r.stdout.strip() == "gettimeofday 0 1234567890", r.stderr


def test_kill_verdict_kills_program(cprog, rules):
    r = brokerctl("run", "-e", "trace=getppid", "-a", rules("*getppid* => kill"),
                  "--", str(cprog("calls")), "write:before\n", "getppid", "write:after\n")
    assert r.returncode == -9
    assert "before" in r.stdout and "after" not in r.stdout


def test_exit_status_and_signal_death(cprog, rules):
    prog = str(cprog("calls"))
    assert brokerctl("run", "-a", rules(), "--", prog, "exit:7").returncode == 7
    # killed by signal N: brokerctl dies of N too (as strace does): its parent sees the signal
    assert brokerctl("run", "-a", rules(), "--", prog, "kill:15").returncode == -15


def test_a_shell_loop_stops_when_the_program_dies_of_sigint():
    """Ctrl-C reaches the shell and the program.  A bash waiting for its
    child ends its loop only if the child died of SIGINT; brokerctl exited
    130 instead, so ``for f in ...; do brokerctl run -- ...; done`` went on.
    The program sends what Ctrl-C would (SIGINT to bash and to itself;
    --no-landlock: the wall keeps signals inside the session)."""
    ctl = " ".join(shlex.quote(a) for a in BROKERCTL)
    script = (f'for i in 1 2 3; do {ctl} run --no-landlock -- sh -c "kill -INT $$; kill -INT \\$\\$"; '
              'echo next; done; echo end')
    # (SIGINT at its default in the shell: a runner started in the background, as `cmd &` in a
    # script, hands everything SIGINT ignored, and then neither bash nor the program dies of it)
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert (r.returncode, r.stdout) == (-signal.SIGINT, ""), r.stderr


def test_command_not_found():
    r = brokerctl("run", "--", "/no/such/program")
    assert r.returncode == 127
    assert r.stderr.strip().startswith("brokerctl:")
    assert "Traceback" not in r.stderr


def test_rewrite_execve_argv(rules):
    # A rewritten argv array lands in scratch memory with its pointers relocated.
    r = brokerctl("run", "-e", "trace=execve",
                  "-a", rules('*execve "/bin/echo", ["/bin/echo", "one"]* => execve "/bin/echo", ["echo", "two", "three"], NULL'),
                  "--", "/bin/echo", "one")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "two three\n"


def test_rewrite_unknown_syscall_gets_default(cprog, rules):
    r = brokerctl("run", "-e", "trace=openat",
                  "-a", rules('*openat *"/etc/hostname"* => frobnicate 1, 2'),
                  "--", str(cprog("opener")), "/etc/hostname")
    assert r.stdout.strip() == "/etc/hostname EPERM"
    assert "unknown-syscall" in r.stderr


def test_cpu_pinning_reaches_the_program(rules):
    r = brokerctl("run", "--cpu", "0", "-a", rules(), "--", "grep", "Cpus_allowed_list", "/proc/self/status")
    assert r.stdout.split() == ["Cpus_allowed_list:", "0"], r.stderr
    bad = brokerctl("run", "--cpu", "zero", "--", "true")
    assert bad.returncode == 2 and "--cpu zero" in bad.stderr and "Traceback" not in bad.stderr


STEP_FORKS = r'''
import sys
log = open(sys.argv[1], "a")
sys.stdin.readline()
print("hello 1 role=authorizer name=stepfork trace=clone,fork,vfork", flush=True)
for line in sys.stdin:
    if line.startswith("syscall"):
        print(line.split()[1], "step", flush=True)
    elif line.startswith("sysret"):
        log.write(line); log.flush()
        print(line.split()[1], "cont", flush=True)
'''


@pytest.mark.parametrize("how", ["fork:1", "vfork"])
def test_stepped_fork_reports_the_child_pid(authz, cprog, tmp_path, how):
    log = tmp_path / "sysret"
    log.touch()
    r = brokerctl("run", "-a", f"{authz(STEP_FORKS)} {log}", "--", str(cprog("calls")), how)
    assert r.returncode == 0, r.stdout + r.stderr
    rets = [ln for ln in log.read_text().splitlines() if re.search(r"\b(clone|fork|vfork)\b", ln)]
    assert rets, r.stdout + r.stderr  # the step's sysret came
    assert all(re.search(r" ok [1-9]\d*", ln) for ln in rets), rets  # with the child's pid
