"""brokerd inside a container (issue #15): under a seccomp filter that answers
pidfd_getfd, kcmp and process_madvise with EPERM, as systemd-nspawn's and
Docker's default profiles do, the README's command, a traced run, the notify
backend and a watch-only attach work as they do outside."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from conftest import BROKERCTL
from waiting import read_line, read_rest, wait_for

from brokerd.tracer import seccomp

ROOT = Path(__file__).resolve().parent.parent
DENY_SHADOW = f"sh {ROOT / 'clients/examples/deny-shadow.sh'}"


@pytest.fixture
def confined(cprog):
    """confined(*brokerctl_args, ...) -> CompletedProcess of brokerctl run under the container-like filter."""
    confine = str(cprog("confine"))

    def run(*args: str, extra: tuple[str, ...] = (), timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([confine, *extra, "--", *BROKERCTL, *args], capture_output=True, text=True,
                              timeout=timeout)

    return run


def test_readme_command_works_in_a_container(confined):
    outside = subprocess.run([*BROKERCTL, "run", "-a", DENY_SHADOW, "--", "cat", "/etc/hostname", "/etc/shadow"],
                             capture_output=True, text=True, timeout=60)
    r = confined("run", "-a", DENY_SHADOW, "--", "cat", "/etc/hostname", "/etc/shadow")
    assert (r.returncode, r.stdout) == (outside.returncode, outside.stdout) == (1, Path("/etc/hostname").read_text())
    assert "cat: /etc/shadow: Permission denied" in r.stderr, r.stderr
    assert "brokerd:" not in r.stderr, r.stderr


@pytest.mark.parametrize("backend", ["auto", "ptrace", "notify"])
def test_traced_run_works_in_a_container(confined, backend):
    r = confined("run", "--backend", backend, "-e", "trace=openat", "--", "cat", "/etc/hostname")
    assert (r.returncode, r.stdout) == (0, Path("/etc/hostname").read_text()), r.stderr
    r = confined("run", "--backend", backend, "--", "cat", "/etc/hostname")
    assert (r.returncode, r.stdout) == (0, Path("/etc/hostname").read_text()), r.stderr
    r = confined("run", "--backend", backend, "-e", "trace=%file", "--", "cat", "/etc/hostname")
    assert (r.returncode, r.stdout) == (0, Path("/etc/hostname").read_text()), r.stderr


def test_notify_backend_decides_in_a_container(confined, authz):
    deny = authz('''
        import sys
        for line in sys.stdin:
            if line.startswith("hello"):
                print("hello 1 role=authorizer trace=openat verdicts=cont,skip-fail,skip-ok", flush=True)
            elif line.startswith("syscall"):
                verdict = "skip-fail EACCES" if '"/etc/hostname"' in line else "cont"
                print(line.split()[1], verdict, flush=True)
    ''')
    r = confined("run", "--backend", "notify", "-a", deny, "--", "cat", "/etc/hostname", "/etc/os-release")
    assert r.returncode == 1 and "cat: /etc/hostname: Permission denied" in r.stderr, r.stderr
    assert "PRETTY_NAME" in r.stdout


def test_watch_only_attach_works_in_a_container(cprog, tmp_path):
    out = tmp_path / "svc.out"
    with open(out, "w") as f:
        svc = subprocess.Popen([str(cprog("service")), "/etc/hostname"], stdout=f)

    def lines() -> list[str]:
        return out.read_text().splitlines()

    def alive_lines() -> list[str]:
        assert svc.poll() is None, f"the service ended ({svc.returncode})"
        return lines()

    def wait_lines(n: int) -> None:
        wait_for(alive_lines, 20, f"the service's line {n}", until=lambda ls: len(ls) >= n)

    try:
        wait_lines(3)
        att = subprocess.Popen([str(cprog("confine")), "--", *BROKERCTL, "attach", str(svc.pid), "-e", "trace=openat"],
                               stderr=subprocess.PIPE, text=True)
        assert "attached to" in read_line(att.stderr)
        n = len(lines())
        wait_lines(n + 10)
        att.send_signal(signal.SIGINT)
        assert att.wait(timeout=20) == 0
        shown = read_rest(att.stderr)
        assert 'openat(AT_FDCWD, "/etc/hostname"' in shown, shown
        assert "brokerd:" not in shown, shown
        during = lines()[n + 1: n + 10]
        assert during and all(line.endswith(" ok") for line in during), during
        assert svc.poll() is None
    finally:
        svc.kill()
        svc.wait(timeout=60)





def test_without_landlock_the_guard_stands_in(confined, cprog, rules, tmp_path):
    # a profile that also refuses landlock_create_ruleset (444): one line says so, the guard protects
    pidfile = tmp_path / "authz.pid"
    authz = f"sh -c 'echo $$ > {pidfile}; exec {rules()}'"
    reach = cprog("reach")
    r = confined("run", "-e", "trace=getppid", "-a", authz, "--", "sh", "-c",
                 f"{reach} mem $(cat {pidfile}); exec {reach} inject $(cat {pidfile}) /dev/null",
                 extra=("-n", "444"))
    assert r.stdout == "mem fail EACCES\ninject fail EACCES\nopen ok\n", r.stderr
    assert r.stderr.count("no Landlock here") == 1, r.stderr


def test_listener_handoff_needs_the_nonce():
    nonce = 0x1234_5678_9ABC_DEF1
    rules = seccomp.AbiRules({46: seccomp.ArgEquals(3, nonce, seccomp.RET_ALLOW, seccomp.RET_USER_NOTIF)},
                             seccomp.RET_USER_NOTIF)
    insns = seccomp.compile_filter(rules)

    def sendmsg(r10: int) -> int:
        return seccomp.run(insns, 46, seccomp.AUDIT_ARCH_X86_64, (3, 0, 0, r10))

    assert sendmsg(nonce) == seccomp.RET_ALLOW
    assert sendmsg(nonce & 0xFFFFFFFF) == seccomp.RET_USER_NOTIF
    assert sendmsg(nonce ^ (1 << 63)) == seccomp.RET_USER_NOTIF
    assert sendmsg(0) == seccomp.RET_USER_NOTIF


def test_handoff_passes_a_filter_that_notifies_everything(confined, authz):
    every = authz('''
        import sys
        for line in sys.stdin:
            if line.startswith("hello"):
                print("hello 1 role=authorizer verdicts=cont,skip-fail,skip-ok", flush=True)
            elif line.startswith("syscall"):
                print(line.split()[1], "cont", flush=True)
    ''')
    r = confined("run", "--backend", "notify", "-a", every, "--", "cat", "/etc/hostname")
    assert (r.returncode, r.stdout) == (0, Path("/etc/hostname").read_text()), r.stderr


@pytest.mark.parametrize("backend", ["auto", "notify"])
def test_a_listener_above_brokerctl_means_ptrace(confined, backend):
    # a runtime supervising getcpu through its own listener: no second listener can be made (EBUSY)
    r = confined("run", "--backend", backend, "--", "cat", "/etc/hostname", extra=("-l",))
    assert (r.returncode, r.stdout) == (0, Path("/etc/hostname").read_text()), r.stderr
    assert ("using the ptrace backend" in r.stderr) == (backend == "notify"), r.stderr
