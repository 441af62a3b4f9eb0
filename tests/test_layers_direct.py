"""A policy the kernel can enforce alone runs with no tracer (issue #12):
brokerctl applies the layers and the filter to itself and execs the program,
so nothing is left to kill, strace attaches, and a nested brokerctl run
narrows further but never widens."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BROKERCTL, brokerctl
from waiting import text_of, wait_for

from brokerd.tracer import landlock

pytestmark = pytest.mark.skipif(landlock.abi_version() < 3, reason="needs Landlock ABI 3 (opens settle)")

POLICY = '''name = "{name}"
default = "allow"
[layer]
fs_handled = "all"
[[layer.fs]]
rights = ["read", "execute"]
path = "/"
[[layer.fs]]
rights = "all"
paths = [{rw}]
'''


def policy(tmp_path, name: str, *rw) -> str:
    f = tmp_path / f"{name}.toml"
    f.write_text(POLICY.format(name=name, rw=", ".join(f'"{d}"' for d in rw)))
    return str(f)


@pytest.fixture
def tree(tmp_path):
    for d in ("box", "box/sub", "out", "tmp"):
        (tmp_path / d).mkdir()
    return tmp_path


def test_kernel_only_policy_runs_without_a_tracer(tree):
    box, out = tree / "box", tree / "out"
    pol = policy(tree, "kernel", box, "/dev/null")
    r = brokerctl("run", "--policy", pol, "--", "sh", "-c",
                  f"grep TracerPid /proc/self/status; echo x > {box}/f && echo box-ok; echo y > {out}/f || echo out-denied")
    assert r.stdout.splitlines() == ["TracerPid:\t0", "box-ok", "out-denied"], r.stderr
    assert "no tracer" in r.stderr
    assert not (out / "f").exists()


def test_the_program_is_brokerctl_itself_and_strace_attaches(tree):
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    pol = policy(tree, "kernel", tree / "box")
    # the program runs until the test ends it: a fixed run time would be a
    # race with strace's attach on a loaded machine
    p = subprocess.Popen([*BROKERCTL, "run", "--policy", pol, "--", "sleep", "600"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the same pid becomes sleep: no broker process is left
        wait_for(lambda: text_of(f"/proc/{p.pid}/comm").strip(), 30, "the program to start (comm sleep)",
                 until=lambda comm: comm == "sleep")
        s = subprocess.Popen(["strace", "-p", str(p.pid), "-e", "trace=none", "-o", os.devnull],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            # attached (a traced session would refuse: one tracer only), or strace gave up
            wait_for(lambda: s.poll() is not None or f"TracerPid:\t{s.pid}\n" in text_of(f"/proc/{p.pid}/status"),
                     30, "strace to attach or give up")
            p.kill()
            _, err = s.communicate(timeout=30)
        finally:
            s.kill()
            s.wait(timeout=60)
        assert s.returncode == 0, err
    finally:
        p.kill()
        p.wait(timeout=60)


def test_nested_run_narrows_and_never_widens(tree):
    box, sub, out = tree / "box", tree / "box" / "sub", tree / "out"
    outer = policy(tree, "outer", box, tree / "tmp")  # brokerctl itself needs a temporary directory
    narrower = policy(tree, "narrower", sub)
    wider = policy(tree, "wider", box, out)
    inner = " ".join(BROKERCTL)
    script = (f"{inner} run --policy {narrower} -- sh -c 'echo a > {box}/a || echo a-denied; "
              f"echo b > {sub}/b && echo b-ok'; "
              f"{inner} run --policy {wider} -- sh -c 'echo c > {out}/c || echo c-denied; "
              f"echo d > {box}/d && echo d-ok'")
    r = brokerctl("run", "--policy", outer, "--", "sh", "-c", script, env={"TMPDIR": str(tree / "tmp")})
    assert r.stdout.splitlines() == ["a-denied", "b-ok", "c-denied", "d-ok"], r.stderr
    assert not (box / "a").exists() and not (out / "c").exists()


def test_a_per_call_policy_still_gets_a_tracer(tree):
    pol = tree / "percall.toml"
    pol.write_text(POLICY.format(name="percall", rw=f'"{tree / "box"}"')
                   + '[[rule]]\nsyscall = "getppid"\nverdict = "skip-ok 4242"\n')
    r = brokerctl("run", "--policy", str(pol), "--", "sh", "-c", "grep TracerPid /proc/self/status")
    assert r.stdout.strip() != "TracerPid:\t0", r.stderr
    assert "no tracer" not in r.stderr


def test_kernel_only_session_cannot_change_processes_outside(tree):
    """prlimit64, setpriority, sched_* and ioprio_set check only uids and no
    Landlock domain covers them; a traced session's guard refuses them
    outside the session, but a kernel-only session has no guard.  Before,
    its program could lower any same-uid process's limits (or kill it with
    `prlimit --cpu=1:1`); now the filter lets them name only the caller."""
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        v = victim.pid
        before = (open(f"/proc/{v}/limits").read(), os.getpriority(os.PRIO_PROCESS, v))
        pol = policy(tree, "kernel", tree / "box", "/dev/null")
        r = brokerctl("run", "--policy", pol, "--", "sh", "-c",
                      f"grep TracerPid /proc/self/status; prlimit --pid {v} --nofile=77:77; echo prlimit=$?; "
                      f"renice -n 5 -p {v} >/dev/null 2>&1; echo renice=$?; "
                      "prlimit --nofile=70:70 sh -c 'ulimit -n'; nice -n 3 nice")
        assert r.stdout.splitlines() == ["TracerPid:\t0", "prlimit=1", "renice=1", "70", "3"], r.stderr
        assert (open(f"/proc/{v}/limits").read(), os.getpriority(os.PRIO_PROCESS, v)) == before
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait(timeout=60)


def test_kernel_only_session_refuses_cgroup_and_cpu_wide_perf_events(tree, cprog):
    """perf_event_open of a cgroup (PERF_FLAG_PID_CGROUP) or of every process
    on a CPU (pid -1) samples other sessions' brokers too, and no Landlock
    domain looks at it; a kernel-only session has no guard to refuse it, so
    the filter does.  Before, the program opened both; one on itself still works."""
    if os.geteuid() != 0:
        pytest.skip("needs root: without CAP_PERFMON the kernel refuses these events itself")
    mount = next((ln.split(" - ")[0].split()[4] for ln in open("/proc/self/mountinfo") if " - cgroup2 " in ln), None)
    path = next((ln[3:].strip() for ln in open("/proc/self/cgroup") if ln.startswith("0::")), None)
    reach = cprog("reach")
    cgroup = f"{mount}{path}"
    native = subprocess.run(["sh", "-c", f"{reach} perfcg {cgroup}; {reach} perfall"],
                            capture_output=True, text=True, timeout=120).stdout
    if mount is None or path is None or native != "perfcg ok\nperfall ok\n":
        pytest.skip(f"no cgroup-v2 perf events here ({native.strip()!r})")
    pol = policy(tree, "kernel", tree / "box")
    r = brokerctl("run", "--policy", pol, "--", "sh", "-c",
                  f"{reach} perfcg {cgroup}; {reach} perfall; exec {reach} peek 0")
    assert "no tracer" in r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["perfcg fail EPERM", "perfall fail EPERM"], r.stderr
    assert "perf ok" in lines, r.stdout


OTHERPROC = str(Path(__file__).parent / "progs" / "otherproc.py")
REFUSED = ("EPERM", "EACCES")


def _otherproc(*argv: str) -> dict[str, str]:
    """tests/progs/otherproc.py's results: call -> ok or the errno's name."""
    out = subprocess.run([*argv], capture_output=True, text=True, timeout=120).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


@pytest.mark.parametrize("wall", ["wall", "no-landlock"])
def test_kernel_only_session_reaches_no_process_outside(tree, wall):
    """Every call that acts on another process by pid or pidfd
    (tests/progs/otherproc.py's table), on a process outside a kernel-only
    session: the wall refuses those that check ptrace-mode access, but as
    root process_madvise (MADV_COLD/PAGEOUT of another session's memory)
    and perf_event_open (CAP_PERFMON skips the check: samples of another
    session's shim) passed it, and there is no guard.  Now the filter lets
    perf_event_open name only the caller (pid 0) and refuses process_madvise
    (a pidfd's process cannot be known in the filter); every call that
    reaches the process natively is refused.  With --no-landlock the user
    chose to let the program reach outside processes: all reach, as natively."""
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        native = _otherproc(sys.executable, "-S", OTHERPROC, str(victim.pid))
        reached = {c for c, r in native.items() if r not in REFUSED}
        pol = policy(tree, "kernel", tree / "box")
        opts = ("--no-landlock",) if wall == "no-landlock" else ()
        r = brokerctl("run", *opts, "--policy", pol, "--", sys.executable, "-S", OTHERPROC, str(victim.pid))
        assert "no tracer" in r.stderr, r.stderr
        got = dict(line.split(" ", 1) for line in r.stdout.splitlines())
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait(timeout=60)
    if wall == "no-landlock":
        assert got == native, r.stderr
        return
    if not {"process_madvise", "perf_event_open"} <= reached:
        pytest.skip(f"process_madvise/perf_event_open do not reach another process here (not root?): {native}")
    assert {c: got[c] for c in reached} == {c: "EPERM" for c in reached}, (native, got)


def test_kernel_only_session_keeps_the_calls_on_the_caller(tree):
    """What stays of them in a kernel-only session: those the wall judges
    work on a process of the session as natively; perf_event_open on the
    caller itself (pid 0) works; process_madvise and perf_event_open of another pid, the session's own
    children included, fail with EPERM (the fidelity cost of no broker:
    the filter cannot tell the session's processes from others)."""
    pol = policy(tree, "kernel", tree / "box")
    script = f"{sys.executable} -S {OTHERPROC} $$; {sys.executable} -S {OTHERPROC} 0 | grep perf_event_open"
    r = brokerctl("run", "--policy", pol, "--", "sh", "-c", script)
    lines = r.stdout.splitlines()
    got = dict(line.split(" ", 1) for line in lines[:-1])
    assert got.pop("process_madvise") == "EPERM" and got.pop("perf_event_open") == "EPERM", r.stdout + r.stderr
    assert not [c for c, v in got.items() if v in REFUSED], r.stdout
    assert lines[-1] == "perf_event_open ok", r.stdout + r.stderr


def test_a_kernel_only_program_outlives_the_policy_deadline(tree):
    # the in-process policy answered its handshake under a deadline timer
    # (ITIMER_REAL), which survives exec: before, every kernel-only session's
    # program died of SIGALRM at --timeout (5 s by default) after the start
    pol = policy(tree, "kernel", tree / "box")
    r = brokerctl("run", "--timeout", "0.5", "--policy", pol, "--", "sh", "-c", "sleep 1.5; echo survived")
    assert (r.returncode, r.stdout) == (0, "survived\n"), r.stderr
