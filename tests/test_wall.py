"""No way around the broker (issue #16, escapes 1-3): the traced program cannot
reach the broker's processes through /proc, their pipes, or signals by pidfd
and SIGIO.  Each attack runs three ways: with the Landlock wall (the default);
where a seccomp profile refuses Landlock (the guard then keeps the program from
everything outside its session, as the wall would); and with ``--no-landlock``
(the user's choice: the guard keeps it from its own broker only)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

import pytest
from conftest import BROKERCTL
from daemon_fixtures import OTHER_PY, _cmd, as_user, shared_dir
from waiting import read_line, wait_for

from brokerd.tracer import landlock

NOBODY = 65534
LANDLOCK_SYSCALLS = ("-n", "444", "-n", "445", "-n", "446")
MODES = ["landlock", "refused", "opted-out"]
#: a session with no authorizer runs on the notify backend where Landlock is (auto): the guard's
#: entry checks; ptrace adds its exit checks
BACKENDS = ["auto", "ptrace"]

AUTHZ = r'''
import os, signal, sys
pidfile, sigfile = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGIO, lambda *_: open(sigfile, "a").write("SIGIO\n"))
with open(pidfile + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(pidfile + ".tmp", pidfile)
first = True
for line in sys.stdin:
    if first:
        first = False
        print("cont", flush=True)
        continue
    print("skip-fail EACCES" if '"/etc/hostname"' in line else "cont", flush=True)
'''

needs_landlock = pytest.mark.skipif(landlock.abi_version() < 6, reason="needs Landlock ABI 6 (signal scope)")
pytestmark = needs_landlock


@pytest.fixture
def ctl(cprog):
    """ctl(mode, "run", ARGS..., user=None) -> brokerctl's CompletedProcess, in ``mode``."""
    confine = str(cprog("confine"))

    def argv(mode: str, args: tuple[str, ...], user: int | None) -> list[str]:
        opts = ("--no-landlock",) if mode == "opted-out" else ()
        cmd = _cmd("brokerd.cli.main", (args[0], *opts, *args[1:]), user) if user is not None \
            else [*BROKERCTL, args[0], *opts, *args[1:]]
        return [confine, *LANDLOCK_SYSCALLS, "--", *cmd] if mode == "refused" else cmd

    def run(mode: str, *args: str, user: int | None = None, popen: bool = False, **kw):
        env = {k: v for k, v in os.environ.items() if k != "BROKERD_SOCKET"}
        pre = kw.pop("preexec_fn", None) or (as_user(user) if user is not None else None)
        common = dict(text=True, env=env, preexec_fn=pre, **kw)
        if popen:
            return subprocess.Popen(argv(mode, args, user), **common)
        return subprocess.run(argv(mode, args, user), capture_output=True, timeout=60, **common)

    return run


@pytest.fixture
def victim(tmp_path):
    """(authorizer command, its pid file, the file its SIGIO handler writes)."""
    d = shared_dir(tmp_path)
    (d / "authz.py").write_text(AUTHZ)
    pidfile, sigfile = d / "authz.pid", d / "sigio"
    return f"{sys.executable} -u {d / 'authz.py'} {pidfile} {sigfile}", pidfile, sigfile


def _say_missing(mode: str, r: subprocess.CompletedProcess) -> None:
    assert r.stderr.count("no Landlock here") == (mode == "refused"), r.stderr


@pytest.mark.parametrize("mode", MODES)
def test_authorizer_memory_cannot_be_opened(mode, ctl, victim, cprog):
    authz, pidfile, _ = victim
    r = ctl(mode, "run", "-e", "trace=openat", "-a", authz, "--", "sh", "-c",
            f'{cprog("reach")} mem $(cat {pidfile})')
    assert r.stdout == "mem fail EACCES\n", r.stderr
    _say_missing(mode, r)


@pytest.mark.parametrize("mode", MODES)
def test_root_cannot_open_the_shims_memory(mode, ctl, cprog):
    # as root, non-dumpable is no obstacle: only the wall (or the guard) stops it
    r = ctl(mode, "run", "--", "sh", "-c", f"exec {cprog('reach')} mem $PPID")
    assert r.stdout == "mem fail EACCES\n", r.stderr


@pytest.mark.parametrize("mode", MODES)
def test_answer_pipe_cannot_be_injected(mode, ctl, victim, cprog):
    authz, pidfile, _ = victim
    r = ctl(mode, "run", "-e", "trace=openat", "-a", authz, "--", "sh", "-c",
            f'{cprog("reach")} inject $(cat {pidfile}) /etc/hostname')
    assert r.stdout == "inject fail EACCES\nopen fail EACCES\n", r.stderr


@contextlib.contextmanager
def other_session(ctl, mode: str, victim):
    """Session A, running until the block ends (its program waits on a pipe
    we hold); yields its authorizer's pid, for session B's program to go for."""
    authz, pidfile, _ = victim
    a = ctl(mode, "run", "-e", "trace=openat", "-a", authz, "--", "sh", "-c", "read x", popen=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def started() -> bool:
            if pidfile.exists():
                return True
            assert a.poll() is None, f"session A did not start: it ended ({a.returncode})"
            return False

        wait_for(started, 20, "session A to start (its authorizer's pid)")
        yield pidfile.read_text()
    finally:
        a.communicate("x\n", timeout=20)


@pytest.mark.parametrize("mode", ["landlock", "refused"])
def test_answer_pipe_of_another_session_cannot_be_injected(mode, ctl, victim, cprog):
    with other_session(ctl, mode, victim) as pid:
        r = ctl(mode, "run", "--", cprog("reach"), "inject", pid, "/nonexistent")
        assert r.stdout.splitlines()[0] == "inject fail EACCES", r.stderr
        r = ctl(mode, "run", "--", cprog("reach"), "pidfd", pid)
        assert r.stdout == "pidfd fail EPERM\n", r.stderr


KERNEL_ONLY = {  # policies the kernel enforces alone: a filter only, and a filter with a file layer
    "filter": 'name = "filter"\ndefault = "allow"\n',
    "layer": 'name = "layer"\ndefault = "allow"\n[layer]\nfs_handled = "all"\n'
             '[[layer.fs]]\nrights = "all"\npath = "/"\n',
}


@pytest.mark.parametrize("policy", sorted(KERNEL_ONLY))
@pytest.mark.parametrize("mode", ["landlock", "refused"])
def test_kernel_only_session_cannot_reach_another_session(mode, policy, ctl, victim, cprog, tmp_path):
    """A kernel-only session (no tracer) had no wall: its program could open
    another session's authorizer's memory and answer pipe read-write (a
    filter-only policy), or signal it (a layer without the signal scope).
    Now it gets the wall; where none can be had (Landlock refused), the
    session is traced and the guard stands in."""
    pol = tmp_path / f"{policy}.toml"
    pol.write_text(KERNEL_ONLY[policy])
    reach = cprog("reach")
    with other_session(ctl, mode, victim) as pid:
        r = ctl(mode, "run", "--policy", str(pol), "--", "sh", "-c",
                f"{reach} mem {pid}; {reach} inject {pid} /nonexistent; {reach} pidfd {pid}")
    lines = r.stdout.splitlines()
    assert [ln for ln in lines if not ln.startswith("open ")] == [
        "mem fail EACCES", "inject fail EACCES", "pidfd fail EPERM"], r.stderr
    if mode == "landlock":
        assert "no tracer" in r.stderr  # still kernel-only: the wall costs it nothing
    if mode == "refused":
        assert "no tracer" not in r.stderr  # traced: the guard stands in for the wall


@pytest.mark.parametrize("mode", MODES)
def test_pidfd_signals_do_not_reach_the_broker(mode, ctl, victim, cprog):
    authz, pidfile, _ = victim
    reach = cprog("reach")
    r = ctl(mode, "run", "-e", "trace=openat", "-a", authz, "--", "sh", "-c",
            f"{reach} pidfd $(cat {pidfile}); exec {reach} pidfd $PPID")
    assert r.stdout == "pidfd fail EPERM\npidfd fail EPERM\n", r.stderr


@pytest.mark.parametrize("mode", MODES)
def test_a_pidfd_re_pointed_after_the_check_never_signals_the_broker(mode, ctl, victim, cprog):
    """Without a kernel wall the guard reads which process a pidfd names
    from /proc before the call runs; a second thread dup2()ed the
    authorizer's /proc/PID directory over that number meanwhile, and SIGIO
    reached the authorizer (its handler wrote the file).  Now a caller whose
    descriptor table another task shares gets EPERM for such calls where
    only the guard stands; with the wall the kernel decides at the call."""
    authz, pidfile, sigfile = victim
    r = ctl(mode, "run", "-e", "trace=openat", "-a", authz, "--", "sh", "-c",
            f'exec {cprog("reach")} pidfdrace $(cat {pidfile})')
    words = r.stdout.split()
    assert words[:1] == ["pidfdrace"] and len(words) == 5, r.stderr
    assert not sigfile.exists(), "the authorizer got SIGIO through a re-pointed pidfd"
    sent, refused = int(words[2]), int(words[4])
    assert sent + refused == 2000
    if mode == "landlock":
        assert sent > 0, "the kernel's scope lets signals to the program's own child through"
    else:
        assert sent == 0, "only the guard stands here: a shared descriptor table gets EPERM"


@pytest.mark.parametrize("mode", MODES)
def test_a_single_threaded_program_signals_its_child_by_pidfd(mode, ctl):
    """Native behaviour stays where no other task can re-point the number:
    one thread, pidfd_send_signal(SIGTERM) to its own child by pidfd.  Under
    a container's profile that refuses kcmp (and Landlock) the broker cannot
    tell whether the child shares the caller's descriptor table: EPERM
    (fail closed), and the program's fallback (kill by pid) works."""
    prog = ("import os, signal, subprocess\n"
            "c = subprocess.Popen(['sleep', '60'])\n"
            "fd = os.pidfd_open(c.pid)\n"
            "try:\n"
            "    signal.pidfd_send_signal(fd, signal.SIGTERM)\n"
            "except PermissionError:\n"
            "    print('EPERM')\n"
            "    c.kill()\n"
            "print(c.wait())\n")
    r = ctl(mode, "run", "--", sys.executable, "-S", "-c", prog)
    expected = f"EPERM\n{-signal.SIGKILL}\n" if mode == "refused" else f"{-signal.SIGTERM}\n"
    assert r.stdout == expected, r.stderr


MADVISE = r"""
import ctypes, errno, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
iov = (ctypes.c_uint64 * 2)(0x10000, 4096)  # a page nobody maps: ENOMEM once the access is granted
def madvise(who, pid):
    try:
        fd = os.pidfd_open(pid)
    except OSError as e:
        print(who, errno.errorcode[e.errno])
        return
    r = libc.syscall(440, fd, iov, 1, 20, 0)  # process_madvise(MADV_COLD)
    print(who, errno.errorcode[ctypes.get_errno()] if r < 0 else "ok")
child = subprocess.Popen(["sleep", "60"])
madvise("outside", int(sys.argv[1]))
madvise("inside", child.pid)
child.kill()
child.wait()
"""


@pytest.mark.parametrize("mode", MODES)
def test_process_madvise_does_not_reach_outside_the_session(mode, ctl):
    """process_madvise needs ptrace-mode access, yet on 6.18 the Landlock
    domain let it page out (MADV_COLD/PAGEOUT) another process's memory:
    outside the session it is refused unless the user opted out of the
    wall; inside it works as natively (ENOMEM here: the range is unmapped).
    Under the container profile of `refused` the profile itself refuses it."""
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        r = ctl(mode, "run", "--", sys.executable, "-S", "-c", MADVISE, str(victim.pid))
    finally:
        victim.kill()
        victim.wait(timeout=60)
    expected = {"landlock": ["outside EPERM", "inside ENOMEM"],
                "refused": ["outside EPERM", "inside EPERM"],  # pidfd_open outside: the guard; madvise: the profile
                "opted-out": ["outside ENOMEM", "inside ENOMEM"]}[mode]
    assert r.stdout.splitlines() == expected, r.stderr


@pytest.mark.parametrize("mode", MODES)
def test_sigio_does_not_reach_an_authorizer(mode, ctl, victim, cprog):
    authz, pidfile, sigfile = victim
    r = ctl(mode, "run", "-e", "trace=openat", "-a", authz, "--", "sh", "-c",
            f'exec {cprog("reach")} setown $(cat {pidfile}) /etc/hostname')
    # with the wall F_SETOWN itself succeeds and the kernel drops the SIGIO; the guard refuses it
    setown = "setown ok" if mode == "landlock" else "setown fail EPERM"
    assert r.stdout == f"{setown}\nopen fail EACCES\n", r.stderr
    assert not sigfile.exists(), "the authorizer got SIGIO from the traced program"


@pytest.mark.parametrize("how", ["setown-ex", "fiosetown", "siocspgrp"])
@pytest.mark.parametrize("mode", MODES)
def test_other_owner_commands_do_not_send_sigio_to_an_authorizer(mode, how, ctl, victim, cprog):
    """F_SETOWN_EX, and a socket's ioctl(FIOSETOWN/SIOCSPGRP), choose who gets
    SIGIO too.  Before, the guard knew only fcntl: without Landlock the ioctls
    made the authorizer the owner and it got SIGIO."""
    authz, pidfile, sigfile = victim
    r = ctl(mode, "run", "-e", "trace=openat", "-a", authz, "--", "sh", "-c",
            f'exec {cprog("reach")} {how} $(cat {pidfile}) /etc/hostname')
    verdict = "ok" if mode == "landlock" else "fail EPERM"  # the wall: set, but the kernel drops the SIGIO
    assert r.stdout == f"{how} {verdict}\nopen fail EACCES\n", r.stderr
    assert not sigfile.exists(), "the authorizer got SIGIO from the traced program"


def _nofile_and_nice(pid: int) -> tuple[str, int]:
    limits = next(ln for ln in open(f"/proc/{pid}/limits") if ln.startswith("Max open files"))
    return limits, os.getpriority(os.PRIO_PROCESS, pid)


@pytest.mark.parametrize("backend", ["auto", "ptrace"])
@pytest.mark.parametrize("mode", MODES)
def test_limits_and_priorities_of_outside_processes_stay_out_of_reach(mode, backend, ctl):
    """prlimit64, setpriority, sched_* and ioprio_set check only uids, and no
    Landlock domain covers them: before, a program under the wall could
    lower any same-uid process's limits, renice it, or kill it outright with
    `prlimit --pid PID --cpu=1:1` (the kernel's SIGKILL at the hard limit).
    Now they are refused outside the session (the broker always), unless the
    user opted out of the wall; inside the session they work."""
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        before = _nofile_and_nice(victim.pid)
        v = victim.pid
        r = ctl(mode, "run", "--backend", backend, "--", "sh", "-c",
                f"prlimit --pid {v} --nofile=77:77; echo prlimit=$?; renice -n 5 -p {v} >/dev/null; "
                "echo renice=$?; prlimit --pid $PPID --nofile=77:77; echo broker=$?; "
                "sleep 30 & c=$!; prlimit --pid $c --nofile=77:77; echo inside=$?; kill $c")
        outside = "0" if mode == "opted-out" else "1"
        assert r.stdout.splitlines() == [f"prlimit={outside}", f"renice={outside}", "broker=1", "inside=0"], r.stderr
        assert (_nofile_and_nice(v) == before) == (mode != "opted-out")
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait(timeout=60)


@pytest.mark.parametrize("stable", ["copy", "no-stable-args"])
def test_owner_flipped_in_memory_after_the_check_never_wins(stable, ctl, victim, cprog):
    """F_SETOWN_EX and FIOSETOWN read the owner from memory: a thread flips
    it between the program itself and the authorizer while the main thread
    sets it 2000 times each way.  The guard judges a read-only copy the call
    then uses: never won.  Without the copy (--no-stable-args, the user's
    unsafe choice) the flip wins, which shows the test can see the race (it
    must win at least once: 20000 tries each way there, as a faster shim
    leaves a narrower window; 2000 once saw no win under load)."""
    authz, pidfile, sigfile = victim
    opts = ("--no-stable-args",) if stable == "no-stable-args" else ()
    rounds = 20000 if opts else 2000
    r = ctl("opted-out", "run", *opts, "-e", "trace=openat", "-a", authz, "--", "sh", "-c",
            f'exec {cprog("reach")} ownrace $(cat {pidfile}) {rounds}')
    lines = r.stdout.splitlines()
    assert [ln.split()[1] for ln in lines] == ["F_SETOWN_EX", "FIOSETOWN"], r.stderr
    if stable == "copy":
        assert lines == ["ownrace F_SETOWN_EX never", "ownrace FIOSETOWN never"], r.stderr
    else:
        assert any("won" in ln for ln in lines), r.stdout


@pytest.mark.parametrize("mode", MODES)
def test_unprivileged_program_cannot_reach_its_authorizer(mode, ctl, victim, cprog):
    if not os.path.exists(OTHER_PY):
        pytest.skip("no system python for another user")
    authz, pidfile, sigfile = victim
    d = pidfile.parent
    d.chmod(0o1777)
    reach = d / "reach"
    reach.write_bytes(cprog("reach").read_bytes())
    reach.chmod(0o755)
    authz = authz.replace(sys.executable, OTHER_PY)
    prog = (f"{reach} mem $(cat {pidfile}); {reach} inject $(cat {pidfile}) /etc/hostname; "
            f"{reach} pidfd $(cat {pidfile}); exec {reach} setown $(cat {pidfile}) /etc/hostname")
    r = ctl(mode, "run", "-e", "trace=openat", "-a", authz, "--", "sh", "-c", prog, user=NOBODY, cwd="/")
    setown = "setown ok" if mode == "landlock" else "setown fail EPERM"
    assert r.stdout.splitlines() == ["mem fail EACCES", "inject fail EACCES", "open fail EACCES",
                                     "pidfd fail EPERM", setown, "open fail EACCES"], r.stderr
    assert not sigfile.exists()


PEEK = ("robust", "move_pages", "migrate_pages", "perf")


@pytest.mark.parametrize("mode", MODES)
def test_ptrace_mode_calls_do_not_reach_outside(mode, ctl, victim, cprog):
    """get_robust_list, move_pages, migrate_pages and perf_event_open need
    ptrace-mode access, which the wall refuses outside the session.  Before,
    the guard did not know them: without Landlock they reached the
    authorizer and any outside process.  As root perf_event_open passes the
    wall (CAP_PERFMON skips the kernel's ptrace check): the guard refuses it
    outside the session too (before, root's perf event on another session's
    process was opened)."""
    authz, pidfile, _ = victim
    reach = cprog("reach")
    outside = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        r = ctl(mode, "run", "-e", "trace=openat", "-a", authz, "--", "sh", "-c",
                f"{reach} peek $(cat {pidfile}); {reach} peek {outside.pid}; exec {reach} peek $$")
    finally:
        outside.kill()
        outside.wait(timeout=60)
    beyond = {c: "ok" if mode == "opted-out" else "fail EPERM" for c in PEEK}  # --no-landlock: the broker only
    want = [f"{c} fail EPERM" for c in PEEK] + [f"{c} {beyond[c]}" for c in PEEK] + [f"{c} ok" for c in PEEK]
    assert r.stdout.splitlines() == want, r.stderr


OTHERPROC = os.path.join(os.path.dirname(__file__), "progs", "otherproc.py")


def _results(out: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in out.splitlines())


@pytest.mark.parametrize("mode", MODES)
def test_no_call_on_another_process_reaches_outside_the_session(mode, ctl):
    """Every call acting on another process by pid or pidfd
    (tests/progs/otherproc.py's table), on a process outside a traced
    session: each that reaches it natively is refused (EPERM), by the wall
    or the guard (or, under `refused`, the container profile), whether
    the wall checks it or not (as root perf_event_open and process_madvise
    pass the wall: before, perf_event_open reached it).  With --no-landlock
    the user let the program reach outside processes: as natively."""
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        native = _results(subprocess.run([sys.executable, "-S", OTHERPROC, str(victim.pid)], capture_output=True,
                                         text=True, timeout=120).stdout)
        r = ctl(mode, "run", "--", sys.executable, "-S", OTHERPROC, str(victim.pid))
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait(timeout=60)
    got = _results(r.stdout)
    reached = {c for c, v in native.items() if v not in ("EPERM", "EACCES")}
    if mode == "opted-out":
        assert got == native, r.stderr
    else:
        assert {c: got.get(c) for c in reached} == {c: "EPERM" for c in reached}, (native, r.stdout, r.stderr)


def _own_cgroup2_dir() -> str | None:
    """This process's cgroup-v2 directory (the broker's and its program's too), or None."""
    mount = next((ln.split(" - ")[0].split()[4] for ln in open("/proc/self/mountinfo") if " - cgroup2 " in ln), None)
    path = next((ln[3:].strip() for ln in open("/proc/self/cgroup") if ln.startswith("0::")), None)
    return mount + path if mount and path else None


@pytest.mark.parametrize("mode", MODES)
def test_cgroup_and_cpu_wide_perf_events_do_not_reach_the_broker(mode, ctl, cprog):
    """perf_event_open with PERF_FLAG_PID_CGROUP takes a cgroup's descriptor
    where the pid goes, and pid -1 means every process on a CPU: both sample
    the broker's processes too (their registers and stacks), and no Landlock
    domain looks at them.  Before, the guard read the descriptor as a pid
    (and -1 as none) and let both through; now they are refused."""
    if os.geteuid() != 0:
        pytest.skip("needs root: without CAP_PERFMON the kernel refuses these events itself")
    cgroup, reach = _own_cgroup2_dir(), cprog("reach")
    native = subprocess.run([reach, "perfcg", str(cgroup)], capture_output=True, text=True, timeout=120).stdout \
        + subprocess.run([reach, "perfall"], capture_output=True, text=True, timeout=120).stdout
    if cgroup is None or native != "perfcg ok\nperfall ok\n":
        pytest.skip(f"no cgroup-v2 perf events here ({native.strip()!r})")
    r = ctl(mode, "run", "--", "sh", "-c", f"{reach} perfcg {cgroup}; {reach} perfall; exec {reach} peek $$")
    want = ["perfcg fail EPERM", "perfall fail EPERM"] + [f"{c} ok" for c in PEEK]  # its own: as natively
    assert r.stdout.splitlines() == want, r.stderr


@pytest.mark.parametrize("mode", ["refused", "opted-out"])
def test_symlink_into_proc_is_caught_by_the_guard(mode, ctl, victim, cprog, tmp_path):
    authz, pidfile, _ = victim
    link = tmp_path / "innocent"
    r = ctl(mode, "run", "-e", "trace=openat", "-a", authz, "--", "sh", "-c",
            f'ln -s /proc/$(cat {pidfile})/mem {link}; exec {cprog("reach")} via {link}')
    assert r.stdout == "via fail EACCES\n", r.stderr


def test_wall_costs_signals_to_outside_processes_only(ctl):
    outside = subprocess.Popen(["sleep", "60"])
    try:
        prog = f"kill -0 {outside.pid} 2>/dev/null && echo outside-ok || echo outside-refused; " \
               "sleep 30 & kill $! && wait $!; echo inside $?"
        for mode, outcome in (("landlock", "refused"), ("refused", "refused"), ("opted-out", "ok")):
            r = ctl(mode, "run", "--", "sh", "-c", prog)
            assert r.stdout == f"outside-{outcome}\ninside 143\n", (mode, r.stderr)
    finally:
        outside.kill()
        outside.wait(timeout=60)


def test_attached_program_cannot_reach_the_attaching_broker(cprog, tmp_path):
    # attach cannot give a running process a Landlock domain: the guard's own checks protect the broker
    reach = cprog("reach")
    pidfile = tmp_path / "broker.pid"
    out = tmp_path / "out"
    prog = (f"while [ ! -s {pidfile} ]; do sleep 0.02; done; "
            f"{reach} mem $(cat {pidfile}); {reach} pidfd $(cat {pidfile}); {reach} via /proc/$(cat {pidfile})/mem")
    with open(out, "w") as f:
        svc = subprocess.Popen(["sh", "-c", prog], stdout=f)
    att = subprocess.Popen([*BROKERCTL, "attach", "-f", str(svc.pid), "-e", "trace=getppid"],
                           stderr=subprocess.PIPE, text=True)
    try:
        assert "attached to" in read_line(att.stderr)
        pidfile.write_text(str(att.pid))
        assert svc.wait(timeout=30) == 0
        assert out.read_text() == "mem fail EACCES\npidfd fail EPERM\nvia fail EACCES\n", att.stderr
    finally:
        att.terminate()
        att.wait(timeout=20)
        if svc.poll() is None:
            svc.kill()


@pytest.mark.parametrize("mode", MODES)
def test_listing_outside_descriptors_stays_allowed(mode, ctl):
    # the wall refuses opening another process's descriptors, not listing them (ls, lsof-like tools)
    r = ctl(mode, "run", "--", "sh", "-c", "ls /proc/1/fd >/dev/null && echo listed")
    assert r.stdout == "listed\n", r.stderr


SETNS = r"""
import ctypes, errno, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
outside, ns, flag = int(sys.argv[1]), sys.argv[2], int(sys.argv[3], 0)
def join(pid, how):
    try:
        fd = os.pidfd_open(pid) if how == "pidfd" else os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY)
    except OSError as e:
        return errno.errorcode[e.errno]
    r = libc.syscall(308, fd, flag)
    return errno.errorcode[ctypes.get_errno()] if r < 0 else "ok"
def setns(who, pid, how):  # in a child of ours: a user namespace joined cannot be left
    r, w = os.pipe()
    p = os.fork()
    if p == 0:
        os.write(w, join(pid, how).encode())
        os._exit(0)
    os.close(w)
    print(who, how, os.read(r, 100).decode())
    os.waitpid(p, 0)
child = subprocess.Popen(["unshare", "-U", "sleep", "60"] if ns == "user" else ["sleep", "60"])
mine = os.readlink("/proc/self/ns/user")
for _ in range(100000):  # until the child is in a user namespace of its own (unshare -U has run)
    if ns != "user" or os.readlink(f"/proc/{child.pid}/ns/user") != mine:
        break
for how in ("pidfd", "nsfd"):
    setns("outside", outside, how)
    setns("broker", os.getppid(), how)
    setns("inside", child.pid, how)
child.kill()
child.wait()
"""


def _setns_expected(mode: str) -> list[str]:
    """What SETNS prints: outside the session refused but with --no-landlock,
    the broker always; inside as natively, but under `refused`, whose profile
    refuses kcmp too: the guard cannot rule out that the caller's child
    shares its descriptor table (a pidfd re-pointed after the check), so
    EPERM (fail closed, as for the other pidfd calls)."""
    beyond = {"pidfd": "ok", "nsfd": "ok"} if mode == "opted-out" else {"pidfd": "EPERM", "nsfd": "EACCES"}
    inside = "EPERM" if mode == "refused" else "ok"
    return [line for how in ("pidfd", "nsfd") for line in (
        f"outside {how} {beyond[how]}", f"broker {how} {'EPERM' if how == 'pidfd' else 'EACCES'}",
        f"inside {how} {inside}")]


@pytest.mark.usefixtures("accel_mode")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_namespaces_of_outside_processes_cannot_be_joined(mode, backend, ctl):
    """setns(pidfd, CLONE_NEW*) joins the namespaces of the process the pidfd
    names; the kernel checks ptrace-mode access, which the wall refuses
    outside the session, but where the guard stands in for the wall it did
    not know setns: a root program joined another session's namespaces
    (here a UTS namespace), by pidfd and by an open /proc/PID/ns/* file.
    Now both are refused outside the session (the broker's own: always);
    inside it setns works as natively."""
    if os.geteuid() != 0:
        pytest.skip("the root case (CAP_SYS_ADMIN); test_unprivileged_program_cannot_join_... is the other")
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        r = ctl(mode, "run", "--backend", backend, "--", sys.executable, "-S", "-c", SETNS, str(victim.pid), "uts", "0x04000000")
    finally:
        victim.kill()
        victim.wait(timeout=60)
    assert r.stdout.splitlines() == _setns_expected(mode), r.stderr


@pytest.mark.usefixtures("accel_mode")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_unprivileged_program_cannot_join_the_user_namespace_of_another(mode, backend, ctl, tmp_path):
    """As an unprivileged user, setns(pidfd, CLONE_NEWUSER) joins the user
    namespace another process of the same uid made (``unshare -U``): the
    caller owns it, so has the capability there.  Refused outside the
    session as for root; the program's own child's namespace can be joined."""
    if not os.path.exists(OTHER_PY):
        pytest.skip("no system python for another user")
    d = shared_dir(tmp_path)
    victim = subprocess.Popen(["unshare", "-U", "sleep", "60"], start_new_session=True, preexec_fn=as_user(NOBODY))
    try:
        wait_for(lambda: os.readlink(f"/proc/{victim.pid}/ns/user") != os.readlink("/proc/self/ns/user"), 20,
                 "the victim's user namespace")
        r = ctl(mode, "run", "--backend", backend, "--", OTHER_PY, "-S", "-c", SETNS, str(victim.pid), "user", "0x10000000",
                user=NOBODY, cwd=str(d))
    finally:
        victim.kill()
        victim.wait(timeout=60)
    assert r.stdout.splitlines() == _setns_expected(mode), r.stderr


NS_THROUGH_FD = r"""
import errno, os, sys
d = os.open(f"/proc/{sys.argv[1]}/ns", os.O_PATH)  # the directory itself: listing stays allowed
try:
    os.close(os.open(f"/proc/self/fd/{d}/uts", os.O_RDONLY))
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])
"""


@pytest.mark.usefixtures("accel_mode")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_namespace_reached_through_a_descriptor_is_checked_at_exit(mode, backend, ctl):
    """/proc/self/fd/N/uts, N an O_PATH descriptor of an outside process's
    /proc/PID/ns: the guard's walk of the path stops at the program's own
    fd/ directory, and the kernel opens the outside process's namespace.
    Without the wall the guard now checks the namespace descriptor at the
    exit stop: one that only processes outside the session are in (here a
    UTS namespace of the victim's own) is closed again, EACCES."""
    if os.geteuid() != 0:
        pytest.skip("needs root (a UTS namespace of the victim's own)")
    victim = subprocess.Popen(["unshare", "-u", "sleep", "60"], start_new_session=True)
    try:
        wait_for(lambda: os.readlink(f"/proc/{victim.pid}/ns/uts") != os.readlink("/proc/self/ns/uts"), 20,
                 "the victim's UTS namespace")
        r = ctl(mode, "run", "--backend", backend, "--", sys.executable, "-S", "-c", NS_THROUGH_FD, str(victim.pid))
    finally:
        victim.kill()
        victim.wait(timeout=60)
    assert r.stdout == ("ok\n" if mode == "opted-out" else "EACCES\n"), r.stderr


#: /proc/PID files of another process a same-uid (or root) program could open for
#: writing under the wall on 6.18: the kernel checks the file's owner, not ptrace access
WRITABLE = ("oom_score_adj", "oom_adj", "clear_refs", "coredump_filter", "timerslack_ns", "autogroup", "sched",
            "uid_map", "gid_map", "projid_map", "setgroups", "timens_offsets")

#: the test programs' one step: open PATH for writing (relative to DIRFD), write VALUE, print the outcome
ATTEMPT = r"""
import errno, os
def attempt(who, path, value=None, dirfd=None):
    try:
        fd = os.open(path, os.O_WRONLY, dir_fd=dirfd)
    except OSError as e:
        print(who, errno.errorcode[e.errno])
        return
    try:
        if value is not None:
            os.write(fd, value)
        print(who, "ok")
    except OSError as e:
        print(who, "write", errno.errorcode[e.errno])
    finally:
        os.close(fd)
"""

PROCWRITE = ATTEMPT + r"""
import subprocess, sys
outside, hijack = int(sys.argv[1]), int(sys.argv[2])
for entry in sys.argv[3:]:  # opened only
    attempt(f"outside {entry}", f"/proc/{outside}/{entry}")
attempt("outside oom_score_adj=1000", f"/proc/{outside}/oom_score_adj", b"1000")
d = os.open(f"/proc/{outside}", os.O_PATH)
attempt("outside by dirfd", "oom_score_adj", b"1000", dirfd=d)
attempt("outside by /proc/self/fd", f"/proc/self/fd/{d}/oom_score_adj", b"1000")  # the walk stops at its own fd/
if hijack:
    attempt("outside uid_map", f"/proc/{hijack}/uid_map", b"0 0 1")  # its user namespace's root: root
attempt("broker", f"/proc/{os.getppid()}/oom_score_adj", b"1000")
attempt("self", "/proc/self/oom_score_adj", b"500")
child = subprocess.Popen(["sleep", "60"])
attempt("inside", f"/proc/{child.pid}/oom_score_adj", b"700")
print("values", open("/proc/self/oom_score_adj").read().strip(), open(f"/proc/{child.pid}/oom_score_adj").read().strip())
child.kill()
child.wait()
"""


def _procwrite_expected(mode: str, entries: Sequence[str], hijack: bool) -> list[str]:
    beyond = "ok" if mode == "opted-out" else "EACCES"  # --no-landlock: the user's choice
    return ([f"outside {e} {beyond}" for e in entries]
            + [f"outside {how} {beyond}" for how in ("oom_score_adj=1000", "by dirfd", "by /proc/self/fd")]
            + ([f"outside uid_map {beyond}"] if hijack else [])
            + ["broker EACCES", "self ok", "inside ok", "values 500 700"])


def _outside_state(pid: int) -> tuple[str, ...]:
    return tuple(open(f"/proc/{pid}/{e}").read() for e in ("oom_score_adj", "coredump_filter", "uid_map"))


@pytest.mark.usefixtures("accel_mode")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_proc_files_of_outside_processes_cannot_be_written(mode, backend, ctl):
    """/proc/PID/oom_score_adj, clear_refs, uid_map... of another process are
    plain files whose open the kernel checks by owner (or root's
    capabilities), not by ptrace-mode access: under the wall a root program
    opened every one of WRITABLE of another session's processes, made them
    the OOM killer's first victim, and wrote the uid_map of a user
    namespace another process had made (mapping its root to the real root).
    Now opens for writing stop and the guard refuses these entries outside
    the session (the broker's always), at entry and, for what the path walk
    cannot see (/proc/self/fd/N of an O_PATH descriptor), at the exit stop.
    The program's own and its children's still work (`echo 500 >
    /proc/self/oom_score_adj`)."""
    if os.geteuid() != 0:
        pytest.skip("the root case; test_unprivileged_program_cannot_raise_... is the other")
    entries = [e for e in WRITABLE if os.path.exists(f"/proc/self/{e}")]
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    userns = subprocess.Popen(["unshare", "-U", "sleep", "60"], start_new_session=True)
    try:
        wait_for(lambda: os.readlink(f"/proc/{userns.pid}/ns/user") != os.readlink("/proc/self/ns/user"), 20,
                 "the user namespace to be made")
        before = _outside_state(victim.pid), _outside_state(userns.pid)
        r = ctl(mode, "run", "--backend", backend, "--", sys.executable, "-S", "-c", PROCWRITE, str(victim.pid), str(userns.pid),
                *entries)
        after = _outside_state(victim.pid), _outside_state(userns.pid)
    finally:
        for p in (victim, userns):
            p.kill()
            p.wait(timeout=60)
    assert r.stdout.splitlines() == _procwrite_expected(mode, entries, True), r.stderr
    assert (after == before) == (mode != "opted-out"), (before, after)


@pytest.mark.usefixtures("accel_mode")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_unprivileged_program_cannot_raise_the_oom_score_of_another(mode, backend, ctl, tmp_path):
    """As an unprivileged user a program may raise the oom_score_adj of any
    dumpable process of its uid (its /proc files are the uid's): another
    session's program or authorizer, the OOM killer's first pick.  Refused
    outside the session, as for root; its own still works."""
    if not os.path.exists(OTHER_PY):
        pytest.skip("no system python for another user")
    d = shared_dir(tmp_path)
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True, preexec_fn=as_user(NOBODY))
    try:
        before = _outside_state(victim.pid)
        r = ctl(mode, "run", "--backend", backend, "--", OTHER_PY, "-S", "-c", PROCWRITE, str(victim.pid), "0", "oom_score_adj",
                user=NOBODY, cwd=str(d))
        after = _outside_state(victim.pid)
    finally:
        victim.kill()
        victim.wait(timeout=60)
    assert r.stdout.splitlines() == _procwrite_expected(mode, ["oom_score_adj"], False), r.stderr
    assert (after == before) == (mode != "opted-out"), (before, after)


@pytest.mark.parametrize("mode", ["refused", "opted-out"])
def test_proc_files_through_another_procfs_mount_cannot_be_written(mode, ctl, tmp_path):
    """Where no domain stands (a domain refuses mount), a root program can
    mount a procfs of its own anywhere: /MNT/PID/oom_score_adj is no path
    under /proc, so the walk at entry sees nothing.  The exit check knows
    the file by its file system (procfs) and the end of its path."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mount)")
    mnt = tmp_path / "proc"
    mnt.mkdir()
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        v = victim.pid
        r = ctl(mode, "run", "--", "unshare", "-m", "sh", "-c",
                f"mount -t proc proc {mnt} || exit; for p in {v} $PPID; do "
                f"echo 1000 2>/dev/null > {mnt}/$p/oom_score_adj && echo ok || echo refused; done")
        changed = open(f"/proc/{v}/oom_score_adj").read().strip() == "1000"
    finally:
        victim.kill()
        victim.wait(timeout=60)
    assert r.stdout.splitlines() == ["ok" if mode == "opted-out" else "refused", "refused"], r.stderr
    assert changed == (mode == "opted-out")


EVERY_WRITABLE = r"""
import errno, os, stat, sys
base = f"/proc/{sys.argv[1]}"
SKIP = {"fd", "fdinfo", "map_files", "ns", "net", "task", "cwd", "root", "exe", "mem"}  # mem: test_root_cannot_...
for root in (base, f"{base}/task/{sys.argv[1]}"):
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP]
        for f in files:
            path = f"{dirpath}/{f}"
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if f in SKIP or not mode & 0o222 or stat.S_ISLNK(mode):
                continue
            try:
                value = open(path, "rb").read()[:64].split(b"\n")[0] or b"0"
            except OSError:
                value = b"0"
            try:
                fd = os.open(path, os.O_WRONLY)
            except OSError as e:
                print(path[len(base):], "open", errno.errorcode[e.errno])
                continue
            try:
                os.write(fd, value)  # what it holds: no change where it is let through
                print(path[len(base):], "written")
            except OSError as e:
                print(path[len(base):], "write", errno.errorcode[e.errno])
            finally:
                os.close(fd)
"""


@pytest.mark.parametrize("mode", ["landlock", "refused"])
def test_no_proc_file_of_an_outside_process_is_written(mode, ctl):
    """Every /proc/PID (and task/TID) file with a write bit, of a process
    outside the session: opened for writing and given back what it holds.
    None is written: the wall or the guard refuses the open (ptrace-mode
    files; procfs.PROC_WRITABLE), or the kernel the write (the files a
    process may write only for itself: comm, loginuid, attr/*).  A kernel
    that adds a writable entry the guard does not know fails here."""
    if os.geteuid() != 0:
        pytest.skip("as root every file the kernel lets through is open: the widest case")
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        r = ctl(mode, "run", "--backend", "ptrace", "--", sys.executable, "-S", "-c", EVERY_WRITABLE, str(victim.pid))
        native = subprocess.run([sys.executable, "-S", "-c", EVERY_WRITABLE, str(victim.pid)], capture_output=True,
                                text=True, timeout=120).stdout
    finally:
        victim.kill()
        victim.wait(timeout=60)
    assert "oom_score_adj written" in native, native  # natively they are (the test sees them)
    lines = r.stdout.splitlines()
    assert len(lines) >= 20 and not [ln for ln in lines if ln.endswith(" written")], r.stdout + r.stderr


CGROUPWRITE = ATTEMPT + r"""
import sys
outside_cg, broker_cg, outside_pid, v1_cg = sys.argv[1:5]
own = f"{broker_cg}/own"  # made beneath its own cgroup (mkdir: no open for writing)
os.mkdir(own)
attempt("own freeze", f"{own}/cgroup.freeze", b"1")
attempt("own thaw", f"{own}/cgroup.freeze", b"0")
attempt("own kill", f"{own}/cgroup.kill", b"1")
attempt("own limit", f"{own}/cgroup.max.descendants", b"5")
os.mkdir(f"{own}/sub")
os.rmdir(f"{own}/sub")
attempt("own move self", f"{own}/cgroup.procs", str(os.getpid()).encode())
attempt("broker freeze", f"{broker_cg}/cgroup.freeze", b"1")
attempt("broker kill", f"{broker_cg}/cgroup.kill", b"1")
attempt("broker limit", f"{broker_cg}/cgroup.max.descendants", b"0")  # any file of a cgroup holding it
os.chdir(broker_cg)
attempt("broker kill by cwd", "cgroup.kill", b"1")
attempt("broker kill by /proc/self/cwd", "/proc/self/cwd/cgroup.kill", b"1")  # the broker's own cwd, to the broker
link = f"/tmp/bk-cgroup-{os.getpid()}"
os.symlink("/proc/self/cwd", link)
attempt("broker kill by a symlink", f"{link}/cgroup.kill", b"1")
os.unlink(link)
attempt("outside move", f"{own}/cgroup.procs", outside_pid.encode())
attempt("outside freeze", f"{outside_cg}/cgroup.freeze", b"1")
attempt("outside kill", f"{outside_cg}/cgroup.kill", b"1")
if v1_cg:
    attempt("outside v1 freeze", f"{v1_cg}/freezer.state", b"FROZEN")
    attempt("outside v1 move", f"{v1_cg}/tasks", outside_pid.encode())  # already there: no change
"""


def _v2_base() -> str | None:
    """A cgroup-v2 directory this process may make cgroups in (its own), or None."""
    base = _own_cgroup2_dir()
    if base is None or not os.path.exists(os.path.join(base, "cgroup.procs")):
        return None
    probe = os.path.join(base, f"bk-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except OSError:
        return None
    ok = os.path.exists(os.path.join(probe, "cgroup.kill")) and os.path.exists(os.path.join(probe, "cgroup.freeze"))
    os.rmdir(probe)
    return base if ok else None


def _v1_freezer() -> str | None:
    """The v1 freezer hierarchy's mount point, if one is mounted (and writable)."""
    for ln in open("/proc/self/mountinfo"):
        head, _, tail = ln.partition(" - ")
        if tail.startswith("cgroup ") and "freezer" in tail.split()[-1].split(","):
            return head.split()[4]
    return None


def _remove_cgroups(*tops: str) -> None:
    """Thaw and kill whatever the cgroups ``tops`` and those beneath them
    hold (a v1-frozen process dies only once thawed), and remove them, bottom up."""
    dirs = sorted((w[0] for t in tops if t and os.path.isdir(t) for w in os.walk(t)), key=lambda d: -d.count("/"))
    for d, (name, value) in ((d, nv) for d in dirs for nv in (("freezer.state", "THAWED"), ("cgroup.freeze", "0"))):
        with contextlib.suppress(OSError), open(os.path.join(d, name), "w") as f:
            f.write(value)
    for d, name in ((d, n) for d in dirs for n in ("cgroup.procs", "tasks")):
        with contextlib.suppress(OSError), open(os.path.join(d, name)) as f:
            for pid in f.read().split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
    for d in dirs:
        wait_for(lambda d=d: _rmdir(d), 20, f"{d} to be removed")


def _rmdir(d: str) -> bool:
    try:
        os.rmdir(d)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _into(cgroup: str):
    """A preexec_fn that moves the child into ``cgroup``."""
    def move() -> None:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    return move


def _cgroupwrite_expected(mode: str, v1: bool) -> list[str]:
    beyond = "ok" if mode == "opted-out" else "EACCES"  # --no-landlock: the broker's own only
    return (["own freeze ok", "own thaw ok", "own kill ok", "own limit ok", f"own move self {beyond}",
             "broker freeze EACCES", "broker kill EACCES", "broker limit EACCES", "broker kill by cwd EACCES",
             "broker kill by /proc/self/cwd EACCES", "broker kill by a symlink EACCES"]
            + [f"outside {what} {beyond}" for what in ("move", "freeze", "kill")]
            + ([f"outside v1 {what} {beyond}" for what in ("freeze", "move")] if v1 else []))


@pytest.mark.usefixtures("accel_mode")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_cgroups_holding_outside_processes_cannot_be_frozen_killed_or_joined(mode, backend, ctl):
    """Writing ``cgroup.kill`` (SIGKILL to every process of a cgroup),
    ``cgroup.freeze``, v1 ``freezer.state``, and ``cgroup.procs``/``tasks``
    (move a process into a cgroup) is checked by the file's permissions
    only, never by ptrace-mode access: under the wall a root program froze
    a cgroup holding an outside process, and could kill one holding its
    broker.  Now an open for writing of a cgroup file whose cgroup (or one
    beneath) holds a process outside the session is refused (the broker's
    in every mode), and ``cgroup.procs``/``tasks`` unless ``--no-landlock``
    (the pid comes later, by write(2)).  The program's own cgroup work
    (make one, freeze, thaw and kill it, remove one) still works."""
    if os.geteuid() != 0:
        pytest.skip("needs root: cgroup files are root's here")
    base = _v2_base()
    if base is None:
        pytest.skip("no writable cgroup v2 with cgroup.kill and cgroup.freeze (Linux 5.14+) here")
    top = os.path.join(base, f"bk-wall-{os.getpid()}-{mode}-{backend}")
    v1_mount = _v1_freezer()
    v1 = os.path.join(v1_mount, f"bk-wall-{os.getpid()}-{mode}-{backend}") if v1_mount else ""
    outside_cg, broker_cg = os.path.join(top, "outside"), os.path.join(top, "broker")
    victim = None
    try:
        for d in (top, outside_cg, broker_cg, *([v1] if v1 else [])):
            os.mkdir(d)
        victim = subprocess.Popen(["sleep", "60"], start_new_session=True, preexec_fn=_into(outside_cg))
        if v1:
            with open(os.path.join(v1, "tasks"), "w") as f:
                f.write(str(victim.pid))
        # a broker frozen by a regression would hang the run (its program, frozen too, holds the pipes): thawed
        watchdog = threading.Timer(20, _remove_cgroups, (broker_cg,))
        watchdog.start()
        try:
            r = ctl(mode, "run", "--backend", backend, "--", sys.executable, "-S", "-c", CGROUPWRITE, outside_cg,
                    broker_cg, str(victim.pid), v1, preexec_fn=_into(broker_cg))
        finally:
            watchdog.cancel()
        alive = victim.poll() is None
        where = open(f"/proc/{victim.pid}/cgroup").read() if alive else ""
        frozen = open(os.path.join(outside_cg, "cgroup.freeze")).read().strip()
        v1_state = open(os.path.join(v1, "freezer.state")).read().strip() if v1 else "THAWED"
    finally:
        _remove_cgroups(top, v1)  # thaws and kills what they hold, the victim included
        if victim is not None:
            victim.kill()
            victim.wait(timeout=60)
    assert r.stdout.splitlines() == _cgroupwrite_expected(mode, bool(v1)), r.stderr
    assert r.returncode == 0, r.stderr
    if mode != "opted-out":
        assert alive and f"/{os.path.basename(top)}/outside\n" in where and frozen == "0", (alive, where, frozen)
        assert v1_state == "THAWED"


@pytest.mark.parametrize("mode", ["refused", "opted-out"])
def test_a_cgroup_file_bound_elsewhere_is_judged_as_itself(mode, ctl, tmp_path):
    """Where no domain refuses mount, a root program can bind its broker's
    ``cgroup.kill`` onto a file elsewhere: the kernel then names it by that
    path, in no cgroup directory.  The guard finds the file's cgroup only
    where the directory the kernel names holds that very file on that very
    mount, and refuses it otherwise (before the check it would have walked
    the wrong directory)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mount, cgroup files)")
    base = _v2_base()
    if base is None:
        pytest.skip("no writable cgroup v2 with cgroup.kill and cgroup.freeze (Linux 5.14+) here")
    top = os.path.join(base, f"bk-bind-{os.getpid()}-{mode}")
    spot = tmp_path / "spot"
    spot.write_text("")
    try:
        os.mkdir(top)
        r = ctl(mode, "run", "--", "unshare", "-m", "sh", "-c",
                f"mount --bind {top}/cgroup.kill {spot} || exit; echo 1 2>/dev/null > {spot} && echo ok || echo refused",
                preexec_fn=_into(top))
    finally:
        _remove_cgroups(top)
    assert (r.stdout, r.returncode) == ("refused\n", 0), r.stderr
