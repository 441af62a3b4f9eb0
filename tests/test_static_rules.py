"""Static rules declared in the handshake: compiled into the kernel filter,
settled with no stop and no round trip, and stacked so that they only narrow."""

from __future__ import annotations

from conftest import brokerctl

STATIC = r'''
import sys
attrs, log = sys.argv[1], open(sys.argv[2], "a")
sys.stdin.readline()
print("hello 1 role=authorizer name=static " + attrs, flush=True)
for line in sys.stdin:
    log.write(line); log.flush()
    if line.startswith(("syscall", "sysret")):
        print(line.split()[1], "cont", flush=True)
'''


def _static(authz, tmp_path, attrs: str, name: str) -> tuple[str, object]:
    log = tmp_path / name
    log.touch()
    return f"{authz(STATIC)} '{attrs}' {log}", log


def test_static_deny_never_stops(authz, cprog, tmp_path):
    cmd, log = _static(authz, tmp_path, "trace=getppid deny=openat:EACCES", "a")
    r = brokerctl("run", "--audit", "-", "-a", cmd, "--", str(cprog("opener")), "/etc/hostname")
    # the loader's own openat calls are denied too; the program still reports
    assert "/etc/hostname EACCES" in r.stdout or r.returncode != 0
    assert "openat" not in log.read_text()
    assert "openat" not in r.stderr  # no decision was made in user space: no audit line


def test_static_deny_of_one_path_syscall_program_sees_errno(authz, cprog, tmp_path):
    cmd, log = _static(authz, tmp_path, "trace=openat deny=getppid:EACCES", "a")
    r = brokerctl("run", "-a", cmd, "--", str(cprog("calls")), "getppid")
    assert r.stdout.startswith("getppid fail"), r.stdout  # glibc's getppid returns the raw -EACCES
    assert "getppid" not in log.read_text()
    assert "openat" in log.read_text()  # still asked about what it subscribed to


def test_static_allow_skips_the_round_trip(authz, cprog, tmp_path):
    cmd, log = _static(authz, tmp_path, "trace=all allow=openat,close,read", "a")
    r = brokerctl("run", "-a", cmd, "--", str(cprog("opener")), "/etc/hostname")
    assert r.stdout.startswith("/etc/hostname ok")
    text = log.read_text()
    assert "openat" not in text and " read " not in text
    assert "syscall" in text  # other calls were still sent


def test_stacked_static_rules_only_narrow(authz, cprog, tmp_path):
    allow_cmd, _ = _static(authz, tmp_path, "trace=getppid allow=openat", "a")
    deny_cmd, _ = _static(authz, tmp_path, "trace=getppid deny=openat:EACCES", "b")
    prog = str(cprog("opener"))
    for stack in ((allow_cmd, deny_cmd), (deny_cmd, allow_cmd)):
        r = brokerctl("run", "-a", stack[0], "-a", stack[1], "--", "/bin/sh", "-c", f"exec {prog} /etc/hostname")
        assert "ok" not in r.stdout, (stack, r.stdout)


def test_unknown_deny_is_default_deny(authz, cprog, tmp_path):
    # opt-in: only what it names runs; everything else fails with ENOSYS, in the kernel
    names = ("execve,brk,arch_prctl,set_tid_address,set_robust_list,rseq,prlimit64,mmap,mprotect,munmap,"
             "openat,newfstatat,fstat,read,pread64,close,write,exit_group,getrandom,access")
    cmd, log = _static(authz, tmp_path, f"trace=getppid allow={names} unknown=deny:ENOSYS", "a")
    r = brokerctl("run", "-a", cmd, "--", str(cprog("calls")), "getpid", "getppid", "write:done\n")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("getpid fail"), r.stdout + r.stderr  # not named: ENOSYS from the kernel
    assert lines[1].startswith("getppid ok")  # named by trace=: asked, allowed
    assert "done" in r.stdout
    assert "getppid" in log.read_text() and "getpid" not in log.read_text().replace("getppid", "")


def test_bad_static_rule_is_reported(authz, cprog, tmp_path):
    cmd, _ = _static(authz, tmp_path, "trace=openat unknown=maybe", "a")
    r = brokerctl("run", "-a", cmd, "--", str(cprog("opener")), "/etc/hostname")
    assert "bad handshake" in r.stderr and "unknown=" in r.stderr


def test_injected_memfd_passes_a_static_deny(authz, cprog, tmp_path):
    # the broker builds the program's stable-argument region with an injected
    # memfd_create; the program's own memfd_create stays denied
    cmd, log = _static(authz, tmp_path, "trace=openat deny=memfd_create:EPERM", "a")
    r = brokerctl("run", "-a", cmd, "--", str(cprog("calls")), "memfd", "threads:1")
    assert "memfd fail EPERM" in r.stdout, r.stdout + r.stderr
    assert "thread-open ok" in r.stdout, r.stdout + r.stderr  # a judged path call with stable arguments
    assert "memfd_create" not in r.stderr, r.stderr  # no "cannot build the region" note
    assert "openat" in log.read_text()



def test_the_injected_calls_nonce_is_useless_to_the_program(authz, cprog, tmp_path):
    """The nonce that lets the injected memfd_create/close through a static
    deny is visible to the program (/proc/self/task/TID/syscall of the
    injecting thread, from another thread).  A memfd_create made with it used
    to pass the deny; now the nonce only makes the call stop, and a thread
    that is not running an injection gets the static answer (EPERM)."""
    box = tmp_path / "box"
    box.mkdir()
    cmd, _ = _static(authz, tmp_path, "trace=mkdir deny=memfd_create:EPERM", "a")
    prog = str(cprog("injectsig", ("-static", "-mno-red-zone")))
    r = brokerctl("run", "-a", cmd, "--", prog, str(box), "30", "nonce", timeout=300)
    assert r.stdout == "held\n", r.stdout + r.stderr[-2000:]
