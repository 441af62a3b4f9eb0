"""What the kernel settles never stops: counted with BROKERD_STOP_COUNTS
(brokerd/tracer/stopcount.py), the shim's per-syscall stop counter."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import brokerctl

from brokerd.tracer import landlock
from brokerd.tracer.layers import bars_procfs_writes
from brokerd.tracer.procfs import WRITE_GUARDED_FS, procfs_mounts

CONT = "while read -r l; do echo cont; done"


def _stops(tmp_path, *args: str) -> tuple[dict, object]:
    out = tmp_path / "stops.jsonl"
    r = brokerctl("run", *args, env={"BROKERD_STOP_COUNTS": str(out)})
    lines = out.read_text().splitlines() if out.exists() else []
    assert len(lines) == 1, (r.stdout, r.stderr)
    return json.loads(lines[0]), r


def test_stop_counts_name_the_calls_that_stopped(tmp_path):
    rep, r = _stops(tmp_path, "-e", "trace=openat", "-a", CONT, "--", "cat", "/dev/null")
    assert r.returncode == 0, r.stderr
    assert rep["stops"]["openat"] >= 1  # cat's own opens stopped: the authorizer subscribed to them
    assert "read" not in rep["stops"]  # nobody asked about read: it never stopped
    assert rep["total"] == sum(rep["stops"].values())
    assert rep["broker_cpu_s"] > 0


def test_scratch_region_calls_do_not_stop(tmp_path, cprog):
    # the region is sealed in the tracee (mseal): munmap, mremap and
    # mmap(MAP_FIXED) run without a stop, and still cannot touch the region
    # (test_toctou.py::test_scratch_region_cannot_be_changed)
    rep, r = _stops(tmp_path, "-e", "trace=openat", "-a", CONT, "--", str(cprog("maploop")), "300")
    assert r.stdout.strip() == "ok 300", r.stderr
    assert rep["stops"].get("openat", 0) >= 1  # the judged open made the region
    for name in ("mmap", "munmap", "mremap"):
        assert name not in rep["stops"], rep


def test_threads_that_exit_before_their_clone_event_do_not_hang_the_session(cprog):
    # a clone that does not stop (no CLONE_UNTRACED: a flag test in the filter)
    # lets a new thread stop, run and exit before the tracer sees its parent's
    # clone event; the event must not bring the dead thread back into the
    # table, or the session waits for it for ever (git hung this way).  Run by
    # a shell, so that the program is the broker's tracee but not its child:
    # then waitpid reports the newest tracee, the thread, before its parent
    r = brokerctl("run", "-e", "trace=openat", "-a", CONT, "--", "sh", "-c", f"{cprog('threadburst')} 3000; :",
                  timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok 3000", r.stderr


def _guarded(tmp_path, cprog, *args: str) -> tuple[dict, dict]:
    prog = cprog("guarded")
    rep, r = _stops(tmp_path, *args, "--", str(prog))
    assert r.returncode == 0, r.stderr
    return dict(line.split(" ", 1) for line in r.stdout.splitlines()), rep


@pytest.mark.parametrize("landlock", [True, False], ids=["landlock", "no-landlock"])
def test_sandbox_judges_tiocsti_and_namespaces_in_the_filter(tmp_path, cprog, landlock):
    # argument rules on registers, compiled into the seccomp filter: no stop,
    # and TIOCSTI with high bits set (the kernel reads an int) is still TIOCSTI
    prog = cprog("guarded")
    got, rep = _guarded(tmp_path, cprog, *(() if landlock else ("--no-landlock",)), "--policy",
                        f"sandbox:{tmp_path},--ro=/usr,--ro=/lib,--ro=/lib64,--ro={prog}")
    assert got == {"tiocsti": "fail EPERM", "tiocsti-high": "fail EPERM", "tcgets": "fail ENOTTY",
                   "clone-newuser": "fail EPERM", "clone-newns-high": "fail EPERM", "clone": "ok"}
    assert "ioctl" not in rep["stops"] and "clone" not in rep["stops"], rep


GUARD = r'''
import sys
sys.stdin.readline()
print('hello 1 role=authorizer name=guard trace=none allow=ioctl rule="ioctl arg2=TIOCSTI => skip-fail EPERM"', flush=True)
for line in sys.stdin:
    pass
'''
ASKED = r'''
import sys
sys.stdin.readline()
print("hello 1 role=authorizer name=asked trace=ioctl", flush=True)
for line in sys.stdin:
    if line.startswith("syscall "):
        print(line.split()[1], "cont", flush=True)
'''


def test_a_rule_guards_a_static_allow_even_when_another_member_stops_the_call(tmp_path, cprog, authz):
    # alone, the rule is all the policy says: the kernel enforces it, with no tracer at all
    r = brokerctl("run", "-a", authz(GUARD), "--", str(cprog("guarded")))
    got = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert got["tiocsti"] == got["tiocsti-high"] == "fail EPERM" and got["tcgets"] == "fail ENOTTY", r.stderr
    assert "enforced by the kernel alone" in r.stderr
    # a second authorizer subscribed to ioctl makes it stop: the first one's
    # rule must still deny (its static allow does not skip its rules)
    got, rep = _guarded(tmp_path, cprog, "-a", authz(GUARD), "-a", authz(ASKED))
    assert got["tiocsti"] == got["tiocsti-high"] == "fail EPERM" and got["tcgets"] == "fail ENOTTY"
    assert rep["stops"]["ioctl"] == 3


PATH_GUARD = r'''
import sys
sys.stdin.readline()
print('hello 1 role=authorizer name=pathguard trace=none allow=openat rule="openat path2=/etc/shadow => skip-fail EACCES"',
      flush=True)
for line in sys.stdin:
    pass
'''


def test_a_rule_the_filter_cannot_test_keeps_the_session_traced(authz):
    # a path is in memory: only the broker can apply the rule, so the policy
    # is not "kernel only" (with no tracer the call would have nowhere to stop)
    r = brokerctl("run", "-a", authz(PATH_GUARD), "--", "sh", "-c", "cat /etc/hostname >/dev/null && echo read; "
                  "cat /etc/shadow >/dev/null 2>&1 || echo denied")
    assert r.stdout.split() == ["read", "denied"], r.stderr
    assert "kernel alone" not in r.stderr


def test_sandbox_limits_of_the_caller_itself_do_not_stop(tmp_path, cprog):
    # glibc's getrlimit/setrlimit are prlimit64(0, ...): every process of a
    # build makes a few (gcc: 4 each; 256 stops in a 20-file make -j2).  Under
    # the layer the sandbox leaves the process-control calls to the broker's
    # guard, whose pid-0 test is in the filter: no stop; another target still
    # stops and is judged (test_policies_sandbox.py, test_wall.py)
    prog = cprog("boxholes")
    rep, r = _stops(tmp_path, "--policy", f"sandbox:{tmp_path},--ro=/usr,--ro=/lib,--ro=/lib64,--ro={prog}",
                    "--", str(prog), "prlimit:0", "nice:0", "prlimit:child")
    assert r.stdout.splitlines() == ["prlimit ok", "nice ok", "prlimit ok"], r.stderr
    assert rep["stops"].get("prlimit64", 0) == 2, rep  # on the child, by pid (get, then set): judged
    assert "setpriority" not in rep["stops"], rep


def test_processes_with_nothing_to_forget_do_not_stop_at_exec(tmp_path):
    # a single-threaded process with no scratch region needs no exec event
    # (ptrace's PTRACE_O_TRACEEXEC): under the sandbox's layer nothing judged
    # gives the shell or its children a region, so none of the five execs stops
    box = f"sandbox:{tmp_path},--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/etc"
    rep, r = _stops(tmp_path, "--policy", box, "--", "sh", "-c", "/bin/true; /bin/true; /bin/true; exec /bin/true")
    assert r.returncode == 0, r.stderr
    assert "event:exec" not in rep["stops"], rep
    assert rep["stops"]["event:vfork"] + rep["stops"].get("event:fork", 0) == 3, rep


def test_a_process_given_a_region_still_forgets_it_at_exec(tmp_path, rules):
    # the exec event is what drops a process's scratch region: a process that
    # starts without it gets it with its region (here the loader's judged
    # opens give sh one), or its exec would leave the broker pointing the next
    # program's judged paths at an address that program maps as it likes
    # (without: cat's loader fails to open libc, EFAULT)
    rep, r = _stops(tmp_path, "-e", "trace=openat", "-a", rules(), "--", "sh", "-c", "exec cat /etc/hostname")
    assert r.returncode == 0, r.stderr
    assert r.stdout == open("/etc/hostname").read()
    assert rep["stops"]["event:exec"] == 1, rep


def test_exec_from_a_second_thread_without_a_region(tmp_path, cprog):
    # a process with a second thread stops at its exec whatever else it has:
    # an exec from a non-leader thread takes the leader's tid, which only the
    # event tells.  Under the sandbox's layer nothing gives it a region
    prog = cprog("calls")
    box = f"sandbox:{tmp_path},--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/etc,--ro={prog}"
    rep, r = _stops(tmp_path, "--policy", box, "--", str(prog), "thread-exec:hi")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hi\n"
    assert rep["stops"]["event:exec"] == 1, rep


WRITES = 'for i in 1 2 3 4 5; do echo x > "$1/f$i"; done; echo 1000 > "/proc/$2/oom_score_adj" 2>/dev/null || echo refused'


@pytest.mark.skipif(landlock.abi_version() < 1, reason="needs Landlock")
@pytest.mark.parametrize("rw", ["tmp", "root"])
def test_write_opens_stop_only_where_no_layer_bars_procfs(tmp_path, rw):
    """Opens for writing stop so that the guard can refuse another process's
    /proc/PID/oom_score_adj (no ptrace-mode check covers it).  Under a sandbox
    layer that allows writing only where no procfs is mounted, the kernel
    refuses those itself: no write open stops (a C build's output files were
    an entry and an exit stop each); a layer allowing writes on / keeps them
    stopping.  Either way the outside process's file is not written."""
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        before = open(f"/proc/{victim.pid}/oom_score_adj").read()
        where = str(tmp_path) if rw == "tmp" else "/"
        rep, r = _stops(tmp_path, "--policy", f"sandbox:{where},--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/bin",
                        "--", "sh", "-c", WRITES, "sh", str(tmp_path), str(victim.pid))
        after = open(f"/proc/{victim.pid}/oom_score_adj").read()
    finally:
        victim.kill()
        victim.wait(timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "refused", (r.stdout, r.stderr)
    assert [(tmp_path / f"f{i}").read_text() for i in range(1, 6)] == ["x\n"] * 5
    assert after == before
    if rw == "tmp":
        assert "openat" not in rep["stops"] and "exit:openat" not in rep["stops"], rep
    else:
        assert rep["stops"].get("openat", 0) >= 6, rep  # five files and the /proc file


def test_procfs_mounts_are_read_from_mountinfo():
    text = ("22 27 0:21 / /proc rw,relatime - proc proc rw\n"
            "30 27 0:5 / /dev rw - devtmpfs udev rw\n"
            "41 30 0:21 /1/oom_score_adj /srv/a\\040b/x rw - proc proc rw\n"
            "42 27 0:40 / /srv/proc\\134 rw - tmpfs proc rw\n"  # a tmpfs *named* proc is not one
            "43 31 0:34 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n"
            "44 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n")
    assert procfs_mounts(text) == ("/proc", "/srv/a b/x")
    # cgroup files act on other processes too: a layer must allow no write near them either
    assert procfs_mounts(text, WRITE_GUARDED_FS) == ("/proc", "/srv/a b/x", "/sys/fs/cgroup/freezer",
                                                     "/sys/fs/cgroup/unified")
    w = landlock.ACCESS_FS["write_file"][0]
    sys_writable = landlock.Layer(w, paths=(landlock.PathRule("/sys/fs", w),))
    assert not bars_procfs_writes([sys_writable], procfs_mounts(text, WRITE_GUARDED_FS))
    assert bars_procfs_writes([sys_writable], procfs_mounts(text))


def test_only_a_layer_allowing_no_write_near_procfs_bars_it():
    w = landlock.ACCESS_FS["write_file"][0]
    r = landlock.ACCESS_FS["read_file"][0]

    def layer(*rules: tuple[str, int], handled: int = w | r) -> landlock.Layer:
        return landlock.Layer(handled, paths=tuple(landlock.PathRule(p, a) for p, a in rules))

    assert bars_procfs_writes([layer(("/tmp", w), ("/", r))], ["/proc"])
    assert not bars_procfs_writes([layer(("/", w))], ["/proc"])  # above it
    assert not bars_procfs_writes([layer(("/proc/self", w))], ["/proc"])  # beneath it
    assert not bars_procfs_writes([layer(("/srv", w))], ["/proc", "/srv/jail/proc"])  # another procfs beneath a rule
    assert not bars_procfs_writes([layer(("/tmp", w), handled=r)], ["/proc"])  # writes not handled at all
    assert bars_procfs_writes([layer(("/", w)), layer(("/tmp", w))], ["/proc"])  # one narrowing layer suffices
    assert not bars_procfs_writes([], ["/proc"])
    assert bars_procfs_writes([layer(("/procfoo", w))], ["/proc"])  # a sibling that only starts alike
