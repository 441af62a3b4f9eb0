"""The benchmark runner: builds the C workloads, runs every compared command
in alternating rounds and prints tables of medians and ratios.

Rules every figure follows:

* it is a ratio (or a difference) between commands measured in this run;
* the compared commands run in alternating rounds (the order rotates each
  round), so a machine that slows down for a while slows them all;
* a figure is the median over rounds of the per-round value.

Micro figures use the time the workload measures itself around its loop
(clock_gettime through the vDSO, never traced), so the broker's start-up and
the program's exec are not spread over the calls; real workloads use the
whole command's wall time, start-up included.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CSRC = HERE / "c"
AUTHZ = HERE / "authz"
SECTIONS = ("micro", "latency", "placement", "real", "scale", "memory")
#: the parts of the sandbox measured alone (bench/parts.py)
PARTS = ("filter", "landlock", "kernel")

# 60 common system calls, getppid not among them (configuration b).
COMMON60 = (
    "read write openat close fstat newfstatat lseek mmap mprotect munmap brk rt_sigaction "
    "rt_sigprocmask rt_sigreturn ioctl pread64 pwrite64 readv writev access pipe2 poll "
    "sched_yield madvise dup dup2 dup3 nanosleep clock_nanosleep getpid socket connect accept4 "
    "sendto recvfrom sendmsg recvmsg bind clone clone3 execve exit exit_group wait4 kill uname "
    "fcntl fsync getcwd chdir rename mkdir unlink unlinkat readlink getuid getdents64 futex "
    "statx prlimit64"
).split()
assert len(COMMON60) == 60 and "getppid" not in COMMON60, len(COMMON60)



def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# building and running
# ---------------------------------------------------------------------------
def build_dir() -> Path:
    d = Path(os.environ.get("BROKERD_BENCH_BUILD") or Path(tempfile.gettempdir()) / f"brokerd-bench-{os.getuid()}")
    d.mkdir(parents=True, exist_ok=True)
    return d


def build(name: str) -> Path:
    """bench/c/NAME.c -> BUILD/NAME-HASH, HASH of the sources: checkouts of
    other versions sharing the build directory (worktrees, an older clone)
    never run each other's builds, whatever the files' times."""
    src = CSRC / f"{name}.c"
    digest = hashlib.sha256(src.read_bytes() + (CSRC / "common.h").read_bytes()).hexdigest()[:12]
    out = build_dir() / f"{name}-{digest}"
    if not out.exists():
        cc = shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            raise SystemExit("bench: gcc is required (scripts/setup installs it)")
        part = out.with_name(f"{out.name}.{os.getpid()}")  # (a build running beside never sees half a file)
        subprocess.run([cc, "-O2", "-Wall", "-o", str(part), str(src), "-lpthread"], check=True, timeout=120)
        os.replace(part, out)
    return out


def brokerctl(*args: str) -> list[str]:
    """``brokerctl run ARGS`` as a user runs it: the launcher scripts/setup
    writes beside the interpreter (python -S, only what it needs on sys.path),
    else ``python -m`` (about 30 ms more start-up per command)."""
    launcher = Path(sys.executable).parent / "brokerctl"
    if launcher.is_file() and b"write-launcher" in launcher.read_bytes()[:200]:
        return [str(launcher), "run", *args]
    return [sys.executable, "-m", "brokerd.cli.main", "run", *args]


def py_authz(script: str = "cont.py") -> str:
    return f"{sys.executable} {AUTHZ / script}"


def awk_authz() -> str:
    awk = shutil.which("awk") or "awk"
    ver = subprocess.run([awk, "-W", "version"], capture_output=True, text=True).stdout
    # mawk (Debian's default awk) reads its input in blocks unless told otherwise
    interactive = " -W interactive" if "mawk" in ver.lower() else ""
    return f"{awk}{interactive} -f {AUTHZ / 'cont.awk'}"


@dataclass
class Result:
    wall: float
    stdout: str
    loop_ns: int | None = None
    calls: int | None = None
    #: user+sys CPU of the command and every descendant it waited for
    cpu: float = 0.0


class BenchError(RuntimeError):
    pass


def run(cmd: Sequence[str], *, cwd: str | None = None, timeout: float = 3600,
        before: Callable[[], None] | None = None, env: dict[str, str] | None = None) -> Result:
    if before is not None:
        before()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(list(cmd), capture_output=True, text=True, cwd=cwd, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise BenchError(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    r = Result(wall, p.stdout, cpu=ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime)
    m = re.search(r"^loop_ns (\d+) (\d+)$", p.stdout, re.M)
    if m:
        r.calls, r.loop_ns = int(m.group(1)), int(m.group(2))
    return r


@dataclass
class Cmd:
    label: str
    argv: list[str]
    cwd: str | None = None
    before: Callable[[], None] | None = None


def alternate(cmds: Sequence[Cmd], rounds: int, what: str) -> dict[str, list[Result]]:
    """Run every command once per round, rotating the order each round."""
    out: dict[str, list[Result]] = {c.label: [] for c in cmds}
    for r in range(rounds):
        order = list(cmds[r % len(cmds):]) + list(cmds[: r % len(cmds)])
        if r % 2:
            order.reverse()
        for c in order:
            out[c.label].append(run(c.argv, cwd=c.cwd, before=c.before))
        log(f"{what}: round {r + 1}/{rounds} done")
    return out


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def per_round(res: dict[str, list[Result]], f: Callable[[int], float]) -> float:
    n = min(len(v) for v in res.values())
    return med([f(i) for i in range(n)])


# ---------------------------------------------------------------------------
# table output
# ---------------------------------------------------------------------------
@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def render(self) -> str:
        widths = [max(len(r[i]) if i < len(r) else 0 for r in [self.header, *self.rows]) for i in range(len(self.header))]
        lines = [f"### {self.title}", ""]
        for j, r in enumerate([self.header, *self.rows]):
            cells = [(r[i] if i < len(r) else "").ljust(widths[i]) for i in range(len(widths))]
            lines.append("| " + " | ".join(cells) + " |")
            if j == 0:
                lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        lines += [""] + [f"{n}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def fx(x: float | None, unit: str = "x", nd: int = 2) -> str:
    if x is None:
        return "—"
    return f"{x:.{nd}f}{unit}" if unit != "x" else f"{x:.{nd}f}x"


def ratio(a: float, b: float, floor: float = 0.05) -> float | None:
    """a / b, or None when b is too close to zero for a ratio to mean anything."""
    return None if b < floor else a / b


# ---------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------
@dataclass
class Opts:
    rounds: int
    getppid_calls: int
    openat_calls: int
    latency_calls: int
    decisions: int
    scale_seconds: float
    threads: int
    procs: int
    build_files: int
    tar_files: int
    quick: bool
    #: programs of the bigger C build (each linked statically), and modules per program
    static_progs: int = 14
    static_modules: int = 6


class Bench:
    def __init__(self, o: Opts) -> None:
        self.o = o
        self.tables: list[Table] = []
        self.data: dict[str, object] = {}
        self.targets: list[tuple[str, str, str, str]] = []  # (target, figure, goal, PASS/MISS)
        self.strace = shutil.which("strace")

    def target(self, what: str, figure: str, goal: str, ok: bool | None) -> None:
        self.targets.append((what, figure, goal, "n/a" if ok is None else ("PASS" if ok else "MISS")))

    # -- micro -------------------------------------------------------------
    def micro(self) -> None:
        o = self.o
        pa = py_authz()
        for prog, calls, unit in (("getppid", o.getppid_calls, "getppid"), ("openat", o.openat_calls, "openat+close")):
            exe = str(build(prog))
            argv = [exe, str(calls)]
            cmds = [
                Cmd("native", argv),
                Cmd("brokerd (a) openat only", brokerctl("-e", "trace=openat", "-a", pa, "--", *argv)),
                Cmd("brokerd (b) 60 common", brokerctl("-e", "trace=" + ",".join(COMMON60), "-a", pa, "--", *argv)),
                Cmd("brokerd (c) everything", brokerctl("-a", pa, "--", *argv)),
            ]
            if prog == "getppid":
                # one decision per getppid, by the same kind of authorizer, on each backend
                fast = py_authz("fast.py") + " notify"
                cmds += [
                    Cmd("brokerd getppid decided, ptrace", brokerctl("--backend", "ptrace", "-a", fast, "--", *argv)),
                    Cmd("brokerd getppid decided, notify", brokerctl("--backend", "notify", "-a", fast, "--", *argv)),
                ]
            if prog == "openat":
                cmds += [
                    Cmd("brokerd 4 stacked, openat", brokerctl("-e", "trace=openat", *["-a", pa] * 4, "--", *argv)),
                    # the same decision by a clients.authorizer policy inside the broker (no process hop)
                    Cmd("brokerd in-process py, openat", brokerctl("-a", "py:inproc_cont:az", "--", *argv),
                        cwd=str(AUTHZ)),
                    Cmd("brokerd in-process py, openat, BROKERD_ACCEL=0",
                        ["env", "BROKERD_ACCEL=0", *brokerctl("-a", "py:inproc_cont:az", "--", *argv)], cwd=str(AUTHZ)),
                    Cmd("brokerd 4 in-process py, openat",
                        brokerctl(*["-a", "py:inproc_cont:az"] * 4, "--", *argv), cwd=str(AUTHZ)),
                    # the same without the stable copy and the check at exit (its second stop)
                    Cmd("brokerd in-process py, no stable args",
                        brokerctl("--no-stable-args", "-a", "py:inproc_cont:az", "--", *argv), cwd=str(AUTHZ)),
                    Cmd("brokerd awk, openat", brokerctl("-e", "trace=openat", "-a", awk_authz(), "--", *argv)),
                    Cmd("brokerd static rule, openat", brokerctl("-a", py_authz("static.py"), "--", *argv)),
                    Cmd("brokerd argument rule, openat", brokerctl("-a", py_authz("fast.py") + " rule", "--", *argv)),
                    Cmd("brokerd cached verdict, openat", brokerctl("-a", py_authz("fast.py") + " cache", "--", *argv)),
                ]
            if self.strace:
                cmds += [
                    Cmd("strace -f", [self.strace, "-f", "-o", "/dev/null", *argv]),
                    Cmd("strace --seccomp-bpf openat", [self.strace, "-f", "-o", "/dev/null", "--seccomp-bpf",
                                                        "-e", "trace=openat", *argv]),
                ]
            if prog == "openat":
                # the floor: a C tracer doing nothing but resume each openat's seccomp stop
                # (bench/c/floor.c), then the same also reading the call and its path
                floor = str(build("floor"))
                cmds += [
                    Cmd("C tracer floor: stop, CONT", [floor, "cont", *argv]),
                    Cmd("C tracer floor: + args, path", [floor, "read", *argv]),
                ]
            res = alternate(cmds, o.rounds, f"micro {prog}")
            self.data[f"micro_{prog}"] = {k: [r.loop_ns for r in v] for k, v in res.items()}
            nat = res["native"]

            def ovh(label: str, i: int, res=res, nat=nat, calls=calls) -> float:
                return (res[label][i].loop_ns - nat[i].loop_ns) / calls / 1000.0  # us per call

            t = Table(f"Syscall-heavy micro: {calls} x {unit} (median of {o.rounds} alternating rounds)",
                      ["configuration", "loop time", "x native", f"overhead us/{unit}", "vs strace -f",
                       "vs strace --seccomp-bpf"])
            st = {}
            for lab in ("strace -f", "strace --seccomp-bpf openat"):
                if lab in res:
                    st[lab] = per_round(res, lambda i, lab=lab: ovh(lab, i))
            summary = {}
            for c in cmds:
                lab = c.label
                loop = med([r.loop_ns for r in res[lab]]) / 1e6
                xn = per_round(res, lambda i, lab=lab, res=res, nat=nat: res[lab][i].loop_ns / nat[i].loop_ns)
                ov = per_round(res, lambda i, lab=lab: ovh(lab, i)) if lab != "native" else 0.0
                vs = []
                for s in ("strace -f", "strace --seccomp-bpf openat"):
                    if lab == "native" or s not in st:
                        vs.append("—")
                    else:
                        # a per-round ratio of overheads, when the strace overhead is measurable
                        r = ratio(ov, st[s])
                        vs.append(fx(per_round(res, lambda i, lab=lab, s=s: ovh(lab, i) / max(ovh(s, i), 1e-9)))
                                  if r is not None else f"({st[s]:+.2f} us)")
                summary[lab] = ov
                t.add(lab, f"{loop:.1f} ms", fx(xn), f"{ov:+.2f}" if lab != "native" else "0", *vs)
            t.notes.append(f"native: {med([r.loop_ns for r in nat]) / calls:.0f} ns per {unit}. "
                           "Plain Python authorizer answering `cont` (bench/authz/cont.py); (b) = "
                           "60 common syscalls without getppid; ratios vs strace are ratios of per-call "
                           "overheads, shown as the strace overhead itself when that is ~0.")
            if prog == "openat":
                t.notes.append("C tracer floor (bench/c/floor.c): one seccomp stop per openat resumed by a tracer "
                               "written in C that does nothing else (\"stop, CONT\"), or that also fetches the call "
                               "(PTRACE_GET_SYSCALL_INFO) and reads its path (process_vm_readv): what the kernel "
                               "and the machine charge for one stop, before any decision.")
            if not self.strace:
                t.notes.append("strace not found: strace columns skipped (scripts/setup installs it).")
            self.tables.append(t)
            self.data[f"micro_{prog}_overhead_us"] = summary | st

            if prog == "getppid" and "strace --seccomp-bpf openat" in st:
                s = st["strace --seccomp-bpf openat"]
                b = summary["brokerd (b) 60 common"]
                a = summary["brokerd (a) openat only"]
                self.target("unsubscribed calls (getppid) vs strace --seccomp-bpf filter",
                            f"(a) {a:+.3f} / (b) {b:+.3f} vs strace {s:+.3f} us/call",
                            "<= strace + 0.05 us", max(a, b) <= s + 0.05)
            if prog == "openat" and "strace --seccomp-bpf openat" in st:
                s = st["strace --seccomp-bpf openat"]
                one = summary["brokerd (a) openat only"]
                four = summary["brokerd 4 stacked, openat"]
                self.data["strace_bpf_openat_us"] = s

                def rr(lab: str, res=res, ovh=ovh) -> float:  # the median of the per-round ratios
                    return per_round(res, lambda i: ovh(lab, i) / max(ovh("strace --seccomp-bpf openat", i), 1e-9))

                r1, r4 = rr("brokerd (a) openat only"), rr("brokerd 4 stacked, openat")
                self.target("one decision vs strace per-call overhead (openat)",
                            f"{one:.1f} vs {s:.1f} us: {r1:.2f}x", "<= 1.0x", r1 <= 1.0)
                self.target("4 stacked authorizers vs strace (openat)",
                            f"{four:.1f} vs {s:.1f} us: {r4:.2f}x", "<= 2.5x", r4 <= 2.5)
                # issue #13's targets: in-process policies and one external plain authorizer
                ri, ri4 = rr("brokerd in-process py, openat"), rr("brokerd 4 in-process py, openat")
                self.target("one in-process decision vs strace (openat)",
                            f"{summary['brokerd in-process py, openat']:.1f} vs {s:.1f} us: {ri:.2f}x", "<= 1.0x",
                            ri <= 1.0)
                self.target("one external plain Python authorizer vs strace (openat)", f"{r1:.2f}x", "<= 1.5x",
                            r1 <= 1.5)
                self.target("4 stacked in-process policies vs strace (openat)",
                            f"{summary['brokerd 4 in-process py, openat']:.1f} vs {s:.1f} us: {ri4:.2f}x", "<= 1.5x",
                            ri4 <= 1.5)
                st_ = summary["brokerd static rule, openat"]
                rs = rr("brokerd static rule, openat")
                self.target("call settled by a static rule vs strace", f"{st_:.1f} vs {s:.1f} us: {rs:.2f}x",
                            "<= 0.25x", rs <= 0.25)

    # -- latency -------------------------------------------------------------
    def latency(self) -> None:
        o = self.o
        pa = py_authz()
        exe = str(build("openat"))
        argv = [exe, str(o.latency_calls)]
        tmp = Path(tempfile.mkdtemp(prefix="brokerd-bench-audit-"))
        configs = {
            "1 Python authorizer": ["-a", pa],
            "4 stacked Python authorizers": ["-a", pa] * 4,
            "1 awk authorizer": ["-a", awk_authz()],
        }
        cmds = [Cmd("native", argv)]
        if self.strace:
            cmds.append(Cmd("strace --seccomp-bpf openat",
                            [self.strace, "-f", "-o", "/dev/null", "--seccomp-bpf", "-e", "trace=openat", *argv]))
        for lab, a in configs.items():
            f = tmp / (re.sub(r"\W+", "_", lab) + ".jsonl")
            cmds.append(Cmd(lab, brokerctl("-e", "trace=openat", "--audit", str(f), *a, "--", *argv),
                            before=lambda f=f: f.unlink(missing_ok=True)))
        pcts: dict[str, list[tuple[float, float, int]]] = {lab: [] for lab in configs}

        # read each audit log right after its run (the next run of that config truncates it)
        res: dict[str, list[Result]] = {c.label: [] for c in cmds}
        for r in range(o.rounds):
            order = list(cmds[r % len(cmds):]) + list(cmds[: r % len(cmds)])
            if r % 2:
                order.reverse()
            for c in order:
                res[c.label].append(run(c.argv, before=c.before))
                if c.label in configs:
                    f = tmp / (re.sub(r"\W+", "_", c.label) + ".jsonl")
                    lat = []
                    with open(f) as fh:
                        for line in fh:
                            rec = json.loads(line)
                            if ' "/dev/null"' in rec["event"]:  # the loop's calls, not the loader's
                                lat.append(rec["latency_us"])
                    lat.sort()
                    pcts[c.label].append((_pct(lat, 50), _pct(lat, 99), len(lat)))
            log(f"latency: round {r + 1}/{o.rounds} done")
        shutil.rmtree(tmp, ignore_errors=True)
        nat = res["native"]

        def e2e(lab: str) -> float:
            return per_round(res, lambda i: (res[lab][i].loop_ns - nat[i].loop_ns) / o.latency_calls / 1000.0)

        s = e2e("strace --seccomp-bpf openat") if self.strace else None
        t = Table(f"Per-decision latency: {o.latency_calls} x openat, -e trace=openat, --audit on "
                  f"(median of {o.rounds} alternating rounds)",
                  ["configuration", "p50 stop->verdict", "p99 stop->verdict", "end-to-end us/call (wall)",
                   "vs strace --seccomp-bpf"])
        self.data["latency"] = {}
        for lab in configs:
            p50 = med([p[0] for p in pcts[lab]])
            p99 = med([p[1] for p in pcts[lab]])
            e = e2e(lab)
            t.add(lab, f"{p50:.0f} us", f"{p99:.0f} us", f"{e:.1f}", fx(ratio(e, s)) if s else "—")
            self.data["latency"][lab] = {"p50_us": p50, "p99_us": p99, "e2e_us": e}
        if s is not None:
            t.add("strace --seccomp-bpf -e trace=openat", "—", "—", f"{s:.1f}", "1.00x")
        t.add("calls settled by a static rule", "no stop", "no stop", "see the micro table",
              "(the kernel filter decides)")
        t.notes.append("stop->verdict = the audit log's latency_us (from the shim's decision start to the "
                       "last verdict); end-to-end = extra wall time per openat+close measured by the tracee "
                       "against native, audit writing included.")
        self.tables.append(t)

    # -- CPU placement -----------------------------------------------------------
    def placement(self) -> None:
        """The same decision loop with the three processes of a decision
        (tracee, shim, authorizer) on one CPU or spread: how much of the cost
        is cross-CPU wake-ups."""
        o = self.o
        cpus = sorted(os.sched_getaffinity(0))
        taskset = shutil.which("taskset")
        if len(cpus) < 2 or taskset is None:
            t = Table("CPU placement", ["configuration", "overhead us/openat+close"])
            t.add("n/a: needs 2 CPUs and taskset", "")
            self.tables.append(t)
            return
        c0, c1 = str(cpus[0]), str(cpus[1])
        pa = py_authz()
        argv = [str(build("openat")), str(o.openat_calls)]
        bd = ["-e", "trace=openat"]
        cmds = [
            Cmd("native", argv),
            Cmd("brokerd, scheduler's choice", brokerctl(*bd, "-a", pa, "--", *argv)),
            Cmd("brokerd, all on one CPU", [taskset, "-c", c0, *brokerctl(*bd, "-a", pa, "--", *argv)]),
            Cmd("brokerd, shim+authorizer on one CPU, tracee on another",
                [taskset, "-c", c0, *brokerctl(*bd, "-a", pa, "--", taskset, "-c", c1, *argv)]),
            Cmd("brokerd, each on its own CPU (shim; authorizer+tracee)",
                [taskset, "-c", c0, *brokerctl(*bd, "-a", f"{taskset} -c {c1} {pa}", "--", taskset, "-c", c1, *argv)]),
            # the in-process decision (#13), as the user pins it: brokerctl --cpu
            Cmd("brokerd in-process py, scheduler's choice", brokerctl("-a", "py:inproc_cont:az", "--", *argv),
                cwd=str(AUTHZ)),
            Cmd("brokerd in-process py, all on one CPU (--cpu)",
                brokerctl("--cpu", c0, "-a", "py:inproc_cont:az", "--", *argv), cwd=str(AUTHZ)),
            Cmd("brokerd 4 in-process py, all on one CPU (--cpu)",
                brokerctl("--cpu", c0, *["-a", "py:inproc_cont:az"] * 4, "--", *argv), cwd=str(AUTHZ)),
            # the same without the stable arguments' guarantees (UNSAFE): the pinned open's share
            Cmd("brokerd in-process py, all on one CPU (--cpu), --no-stable-args",
                brokerctl("--cpu", c0, "--no-stable-args", "-a", "py:inproc_cont:az", "--", *argv), cwd=str(AUTHZ)),
            # the same with the pure-Python stop loop (brokerd.tracer.accel off): the accelerator's share
            Cmd("brokerd in-process py, all on one CPU (--cpu), BROKERD_ACCEL=0",
                ["env", "BROKERD_ACCEL=0", *brokerctl("--cpu", c0, "-a", "py:inproc_cont:az", "--", *argv)],
                cwd=str(AUTHZ)),
            Cmd("C tracer floor, scheduler's choice", [str(build("floor")), "cont", *argv]),
            Cmd("C tracer floor, all on one CPU", [taskset, "-c", c0, str(build("floor")), "cont", *argv]),
            # what any tracer pays on one CPU for brokerd's guarantees (the pinned open's system
            # calls), and for one question to the least Python authorizer (bench/c/floor.c)
            Cmd("C tracer floor + a pinned open's calls, all on one CPU",
                [taskset, "-c", c0, str(build("floor")), "pin", *argv]),
            Cmd("C tracer floor + a minimal Python authorizer, all on one CPU",
                ["env", f"FLOOR_PYTHON={sys.executable}", taskset, "-c", c0, str(build("floor")), "ask", *argv]),
        ]
        if self.strace:
            sb = [self.strace, "-f", "-o", "/dev/null", "--seccomp-bpf", "-e", "trace=openat", *argv]
            cmds += [Cmd("strace --seccomp-bpf, scheduler's choice", sb),
                     Cmd("strace --seccomp-bpf, all on one CPU", [taskset, "-c", c0, *sb])]
        res = alternate(cmds, o.rounds, "placement")
        nat = res["native"]
        t = Table(f"CPU placement: {o.openat_calls} x openat+close, -e trace=openat, one Python authorizer "
                  f"(median of {o.rounds} alternating rounds)",
                  ["configuration", "overhead us/openat+close", "x strace, same placement"])
        ov = {c.label: per_round(res, lambda i, lab=c.label: (res[lab][i].loop_ns - nat[i].loop_ns) / o.openat_calls / 1e3)
              for c in cmds if c.label != "native"}
        for lab, v in ov.items():
            ref = None
            if self.strace and not lab.startswith("strace"):
                ref = ov["strace --seccomp-bpf, all on one CPU" if "all on one CPU" in lab
                         else "strace --seccomp-bpf, scheduler's choice"]
            t.add(lab, f"{v:.1f}", fx(v / ref) if ref else "—")
        t.notes.append("taskset pins the processes: a decision is a chain of four wake-ups "
                       "(tracee -> shim -> authorizer -> shim -> tracee); every hop that crosses CPUs "
                       "pays an inter-processor wake-up, which is expensive in a VM. An in-process decision "
                       "is two (tracee -> shim -> tracee), strace's two stops per call four. On one CPU no "
                       "wake-up crosses CPUs and what is left is each tracer's own CPU per call: the C tracer "
                       "floor (bench/c/floor.c) is what any tracer pays for one seccomp stop; with a pinned open's "
                       "calls (path read, plain-path check, SET_SYSCALL_INFO), what any tracer pays for the "
                       "guarantees brokerd gives a judged open; with a minimal Python authorizer (reads lines, "
                       "answers cont, no parsing), what any external Python decision costs on one CPU.")
        self.data["placement_us"] = ov
        if self.strace:
            one = ov["strace --seccomp-bpf, all on one CPU"]
            r = ov["brokerd in-process py, all on one CPU (--cpu)"] / max(one, 1e-9)
            self.target("one in-process decision vs strace, both on one CPU (--cpu)",
                        f"{ov['brokerd in-process py, all on one CPU (--cpu)']:.1f} vs {one:.1f} us: {r:.2f}x",
                        "<= 1.0x", r <= 1.0)
        self.tables.append(t)

    # -- real workloads --------------------------------------------------------
    def sandbox_policy(self) -> bool:
        """Does brokerctl ship the path-sandbox policy (``--policy sandbox:...``)?"""
        helptext = subprocess.run(brokerctl("--help"), capture_output=True, text=True).stdout
        if "--policy" not in helptext:
            return False
        listing = subprocess.run([sys.executable, "-m", "brokerd.cli.main", "policy", "list"], capture_output=True,
                                 text=True).stdout
        return re.search(r"^sandbox\b", listing, re.M) is not None

    def real(self) -> None:
        o = self.o
        work = Path(tempfile.mkdtemp(prefix="brokerd-bench-real-"))
        try:
            proj = _make_c_project(work / "proj", o.build_files)
            big = _make_static_project(work / "static", o.static_progs, o.static_modules)
            pyscript = _make_import_script(work / "imports.py")
            archive = _make_archive(work, o.tar_files)
            out = work / "x"

            def fresh_out() -> None:
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()

            make = shutil.which("make") or "make"
            tar = shutil.which("tar") or "tar"
            small_make = f"make -j2 ({o.build_files} C files)"
            big_make = f"make -j2 ({o.static_progs} static programs)"
            workloads = {
                small_make: ([make, "-B", "-j2", "-s", "-C", str(proj)], None),
                big_make: ([make, "-B", "-j2", "-s", "-C", str(big)], None),
                "python: import ~100 stdlib modules": ([sys.executable, "-I", str(pyscript)], None),
                f"tar -xf ({o.tar_files} files)": ([tar, "-xf", str(archive), "-C", str(out)], fresh_out),
                "true": (["/bin/true"], None),
            }
            simple = ["-e", "trace=openat,openat2,execve", "-a", py_authz("sandbox.py")]
            kinds = {"native": None, "simple": simple}
            notes = ["simple = a plain Python authorizer subscribed to openat/openat2/execve doing a path-prefix "
                     "check (bench/authz/sandbox.py)"]
            #: the bigger build runs only natively and under the shipped sandbox (and its
            #: parts): several seconds natively, it would take minutes per call
            only_policy = {big_make}
            policy = self.sandbox_policy()
            dirs: dict[str, str] = {}
            if policy:
                # read-only system, read-write only where the workload writes
                ro = ",".join(f"--ro={d}" for d in ("/usr", "/lib", "/lib64", "/etc", "/dev/null", "/dev/urandom"))
                pyro = f"--ro={os.path.realpath(sys.base_prefix)},--ro={ROOT / '.venv'}"
                # make runs its children with setresuid as root: allow it
                as_root = "--allow-syscall=setresuid,--allow-syscall=setresgid"
                dirs = {
                    small_make: f"{proj},{tempfile.gettempdir()},{ro},{as_root}",
                    big_make: f"{big},{tempfile.gettempdir()},{ro},{as_root}",
                    "python: import ~100 stdlib modules": f"{work},{ro},{pyro}",
                    f"tar -xf ({o.tar_files} files)": f"{out},{ro},--ro={archive}",
                    "true": f"{work},{ro}",
                }
                kinds["policy"] = "policy"
                kinds["per-call"] = "per-call"
                notes.insert(0, "policy = the shipped path sandbox `--policy sandbox:RW_DIRS,--ro=/usr,--ro=/lib,"
                                "--ro=/etc,...` (clients/policies/sandbox.py: every path call checked after "
                                "resolving it, unknown calls ENOSYS; make also gets --allow-syscall=setresuid,"
                                "setresgid); with Landlock its kernel layer settles opens, exec, mkdir, unlink, "
                                "rename (no stop); per-call = the same policy with --no-landlock (every path call "
                                "judged by the authorizer)")
                notes.append(f"{big_make}: {o.static_progs} programs of {o.static_modules} generated modules each, "
                             "linked with -static, plus a small archive (ar): the size of the issue's own example "
                             "(#12: 5.6 s natively); run natively and under the policy only (— elsewhere)")
            else:
                notes.append("no shipped path-sandbox policy yet (no --policy in `brokerctl run --help`)")
            builds = (small_make, big_make)
            cmds = []
            for name, (argv, before) in workloads.items():
                for kind, extra in kinds.items():
                    if kind == "native":
                        cmds.append(Cmd(f"{name}|native", argv, before=before))
                    elif name in only_policy and kind != "policy":
                        continue
                    elif kind in ("policy", "per-call"):
                        pol = ["--policy", "sandbox:" + dirs[name]]
                        flag = ["--no-landlock"] if kind == "per-call" else []
                        cmds.append(Cmd(f"{name}|{kind}", brokerctl(*flag, *pol, "--", *argv), before=before))
                    else:
                        cmds.append(Cmd(f"{name}|simple", brokerctl(*extra, "--", *argv), before=before))
                if policy and name in builds:  # the sandbox's parts, no tracer (bench/parts.py)
                    for part in PARTS:
                        cmds.append(Cmd(f"{name}|{part}", [sys.executable, "-m", "bench.parts", part, "--policy",
                                                           "sandbox:" + dirs[name], "--", *argv], before=before))
            res = alternate(cmds, o.rounds, "real workloads")
            sb = "policy" if policy else "simple"
            t = Table(f"Real workloads: native vs sandboxed (wall time, median of {o.rounds} alternating rounds)",
                      ["workload", "native", *(f"{k}" for k in kinds if k != "native"),
                       *(f"{k} x native" for k in kinds if k != "native")])
            self.data["real"] = {}
            for name in workloads:
                n = res[f"{name}|native"]
                walls, xs = [], []
                row = {"native_s": med([r.wall for r in n]), "native_cpu_s": med([r.cpu for r in n])}
                for k in kinds:
                    if k == "native":
                        continue
                    s_ = res.get(f"{name}|{k}")
                    if s_ is None:
                        walls.append("—")
                        xs.append("—")
                        continue
                    x = per_round(res, lambda i, n=n, s_=s_: s_[i].wall / n[i].wall)
                    walls.append(f"{med([r.wall for r in s_]):.3f} s")
                    xs.append(fx(x))
                    row[f"{k}_s"], row[f"{k}_ratio"] = med([r.wall for r in s_]), x
                    row[f"{k}_cpu_s"] = med([r.cpu for r in s_])
                    if name in builds and k == sb:
                        self.target(f"{name} under the sandbox ({k}) vs native", f"{x:.2f}x", "<= 1.15x",
                                    x <= 1.15)
                shown = name if name != "true" else "/bin/true (fixed start-up cost)"
                t.add(shown, f"{row['native_s']:.3f} s", *walls, *xs)
                self.data["real"][name] = row
            t.notes += [n + "." for n in notes]
            t.notes.append("Wall time includes brokerctl's own start-up (see the /bin/true row).")
            self.tables.append(t)
            if policy:
                self.tables.append(self._parts_table(res, builds, dirs, workloads, o.rounds))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _parts_table(self, res: dict[str, list[Result]], builds: Sequence[str], dirs: dict[str, str],
                     workloads: dict, rounds: int) -> Table:
        """The C builds under each part of the sandbox alone (same rounds as the
        real workloads), and what the full sandbox stopped for (one more run)."""
        t = Table(f"C builds under parts of the sandbox (wall and CPU, median of {rounds} alternating rounds)",
                  ["build", "configuration", "wall", "wall x native", "CPU (user+sys)", "CPU x native"])
        labels = {"native": "native", "filter": "seccomp filter only (no tracer)", "landlock": "Landlock only",
                  "kernel": "filter + Landlock (no tracer)", "policy": "full sandbox (tracer, filter, Landlock)"}
        self.data["parts"] = {}
        for name in builds:
            n = res[f"{name}|native"]
            rows = {}
            for k in ("native", *PARTS, "policy"):
                s_ = res[f"{name}|{k}"]
                xw = per_round(res, lambda i, n=n, s_=s_: s_[i].wall / n[i].wall)
                xc = per_round(res, lambda i, n=n, s_=s_: s_[i].cpu / n[i].cpu)
                rows[k] = {"wall_s": med([r.wall for r in s_]), "cpu_s": med([r.cpu for r in s_]),
                           "wall_ratio": xw, "cpu_ratio": xc}
                t.add(name, labels[k], f"{rows[k]['wall_s']:.3f} s", fx(xw), f"{rows[k]['cpu_s']:.3f} s", fx(xc))
            counts = _stop_counts(brokerctl("--policy", "sandbox:" + dirs[name], "--", *workloads[name][0]))
            if counts:
                rows["stops"] = counts
                by = ", ".join(f"{k} {v}" for k, v in sorted(counts["stops"].items(), key=lambda kv: -kv[1]))
                t.notes.append(f"{name}: the full sandbox stopped {counts['total']} times ({by}); the broker's "
                               f"own CPU {counts['broker_cpu_s']:.3f} s, start-up included (one more run, "
                               "BROKERD_STOP_COUNTS).")
            self.data["parts"][name] = rows
        t.notes.append("The parts run without a tracer (bench/parts.py): the session's filter with every stop "
                       "turned into an allow, the Landlock wall and the policy's layer, or both; CPU = user+sys "
                       "of the command and all its descendants (brokerctl's start-up included where it runs).")
        return t

    # -- scale -----------------------------------------------------------------
    def scale(self) -> None:
        o = self.o
        pa = py_authz()
        t = Table(f"Scale: openat+close loops for {o.scale_seconds:g} s each, all tracees at once "
                  f"(median of {o.rounds} alternating rounds)",
                  ["workload", "native calls/s", "brokerd decisions/s", "slowest/fair native",
                   "slowest/fair brokerd", "starved (0 calls)"])
        self.data["scale"] = {}
        for prog, n in (("threads", o.threads), ("procs", o.procs)):
            argv = [str(build(prog)), str(n), str(o.scale_seconds)]
            cmds = [Cmd("native", argv), Cmd("brokerd", brokerctl("-e", "trace=openat", "-a", pa, "--", *argv))]
            res = alternate(cmds, o.rounds, f"scale {prog}")
            row = {}
            for lab in ("native", "brokerd"):
                rates, fair, starved = [], [], []
                for r in res[lab]:
                    counts = [int(x) for x in re.search(r"^counts (.*)$", r.stdout, re.M).group(1).split()]
                    el = int(re.search(r"^elapsed_ns (\d+)", r.stdout, re.M).group(1)) / 1e9
                    rates.append(sum(counts) / el)
                    mean = sum(counts) / len(counts)
                    fair.append(min(counts) / mean if mean else 0.0)
                    starved.append(sum(1 for c in counts if c == 0))
                row[lab] = (med(rates), med(fair), max(starved))
            label = f"{n} threads, one process" if prog == "threads" else f"{n} processes"
            t.add(label, f"{row['native'][0]:,.0f}", f"{row['brokerd'][0]:,.0f}", f"{row['native'][1]:.2f}",
                  f"{row['brokerd'][1]:.2f}", f"{row['brokerd'][2]} of {n}")
            self.data["scale"][prog] = row
        t.notes.append("slowest/fair = the slowest tracee's call count / the mean count (1.00 = perfectly fair, "
                       "0 = starved). brokerd: -e trace=openat, one Python authorizer answering cont; each "
                       "openat is a decision.")
        self.tables.append(t)

    # -- memory ----------------------------------------------------------------
    def memory(self) -> None:
        o = self.o
        pa = py_authz()
        exe = str(build("decisions"))
        cmd = brokerctl("-e", "trace=getppid", "-a", pa, "--", exe, str(o.decisions))
        log(f"memory: {o.decisions} decisions (about {o.decisions * 150e-6:.0f} s)")
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        samples: dict[str, tuple[int, int]] = {}
        cpu: dict[str, tuple[float, float, float]] = {}
        loop_ns = None
        t0 = time.perf_counter()
        assert p.stdout is not None
        for line in p.stdout:
            line = line.strip()
            if line in ("start", "end"):
                time.sleep(0.1)  # the tracee sleeps 0.4 s after its mark
                authz = _descendant_with(p.pid, str(AUTHZ / "cont.py"))
                tracee = _descendant_with(p.pid, exe)
                samples[line] = (_rss_kb(p.pid), _rss_kb(authz) if authz else 0)
                cpu[line] = (_cpu_s(p.pid), _cpu_s(authz), _cpu_s(tracee))
            elif line.startswith("loop_ns"):
                loop_ns = int(line.split()[2])
        rc = p.wait()
        err = p.stderr.read() if p.stderr else ""
        if rc != 0 or "start" not in samples or "end" not in samples:
            raise BenchError(f"memory run failed ({rc}): {err[-2000:]}")
        wall = time.perf_counter() - t0
        t = Table(f"Memory: {o.decisions:,} decisions (getppid, one Python authorizer)",
                  ["process", "RSS at start", "RSS at end", "growth"])
        self.data["memory"] = {}
        ok = True
        for i, name in enumerate(("shim (brokerctl run)", "authorizer (python)")):
            a, b = samples["start"][i], samples["end"][i]
            g = (b - a) / a if a else 0.0
            ok = ok and g <= 0.10
            t.add(name, f"{a / 1024:.1f} MiB", f"{b / 1024:.1f} MiB", f"{g * 100:+.1f}%")
            self.data["memory"][name] = {"start_kb": a, "end_kb": b}
        per = loop_ns / o.decisions / 1000 if loop_ns else float("nan")
        names = ("shim", "authorizer", "tracee (user+kernel, stops included)")
        used = [(cpu["end"][i] - cpu["start"][i]) / o.decisions * 1e6 for i in range(3)]
        self.data["cpu_us_per_decision"] = dict(zip(names, used, strict=True)) | {"wall": per}
        t.notes.append("CPU per decision (from /proc utime+stime): " + ", ".join(
            f"{n} {u:.1f} us" for n, u in zip(names, used, strict=True))
            + f"; wall {per:.1f} us: the rest is waiting for wake-ups.")
        t.notes.append(f"{per:.0f} us per decision over the loop ({wall:.0f} s in all). RSS from /proc/PID/status "
                       "VmRSS after 1,000 warm-up decisions and after the last one.")
        self.tables.append(t)
        g = [(samples["end"][i] - samples["start"][i]) / samples["start"][i] * 100 for i in (0, 1)]
        self.target(f"memory flat over {o.decisions:,} decisions",
                    f"shim {g[0]:+.1f}%, authorizer {g[1]:+.1f}%", "within 10%", ok)

    # -- output ------------------------------------------------------------------
    def report(self) -> str:
        out = [machine_line(), ""]
        for t in self.tables:
            out.append(t.render())
        if self.targets:
            tt = Table("Targets", ["target", "reached", "goal", "result"])
            for row in self.targets:
                tt.add(*row)
            out.append(tt.render())
        return "\n".join(out)


def _pct(xs: Sequence[float], p: float) -> float:
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _shipped_sandbox_policy(helptext: str) -> tuple[list[str], str] | None:
    """The path-sandbox policy shipped in clients/, once `brokerctl run` has --policy."""
    if "--policy" not in helptext:
        return None
    for cand in ("path-sandbox", "sandbox"):
        probe = subprocess.run(brokerctl("--policy", cand, "--", "/bin/true"), capture_output=True, text=True)
        if probe.returncode == 0:
            return (["--policy", cand], f"the shipped policy `--policy {cand}`")
    return None


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_s(pid: int | None) -> float:
    """utime + stime of ``pid`` in seconds."""
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _descendant_with(root: int, needle: str) -> int | None:
    parents: dict[int, int] = {}
    cmdlines: dict[int, str] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parents[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmdlines[int(d)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
    for pid, cmd in cmdlines.items():
        if needle in cmd and not cmd.startswith("sh "):
            p = pid
            while p > 1:
                p = parents.get(p, 0)
                if p == root:
                    return pid
    return None


def _make_c_project(d: Path, nfiles: int) -> Path:
    d.mkdir(parents=True)
    objs = []
    for i in range(nfiles):
        (d / f"m{i}.c").write_text(
            "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <math.h>\n"
            "#include \"common.h\"\n"
            + "".join(
                f"double f{i}_{j}(const char *s, double x) {{ double a = 0; for (size_t k = 0; k < strlen(s); k++)"
                f" a += sqrt(x * k + {j}); return a + atof(s); }}\n" for j in range(12))
            + f"int m{i}(void) {{ char b[64]; snprintf(b, sizeof b, \"%d\", {i}); return (int)f{i}_0(b, {i}.0); }}\n")
        objs.append(f"m{i}.o")
    (d / "common.h").write_text("#pragma once\n#include <stddef.h>\n")
    decls = "".join(f"int m{i}(void);\n" for i in range(nfiles))
    calls = "".join(f"  s += m{i}();\n" for i in range(nfiles))
    (d / "main.c").write_text(f"{decls}int main(void) {{\n  int s = 0;\n{calls}  return s == 42;\n}}\n")
    (d / "Makefile").write_text(
        "CFLAGS = -O1\nOBJS = main.o " + " ".join(objs) + "\n"
        "prog: $(OBJS)\n\t$(CC) -o $@ $(OBJS) -lm\n"
        "%.o: %.c common.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n")
    return d


def _stop_counts(cmd: Sequence[str]) -> dict | None:
    """One run of ``cmd`` (a brokerctl run) with BROKERD_STOP_COUNTS: its report."""
    with tempfile.TemporaryDirectory(prefix="brokerd-bench-stops-") as d:
        out = Path(d) / "stops.jsonl"
        try:
            run(cmd, env={**os.environ, "BROKERD_STOP_COUNTS": str(out)})
            return json.loads(out.read_text().splitlines()[-1])
        except (BenchError, OSError, ValueError, IndexError) as e:
            log(f"stop count failed: {e}")
            return None


def _make_static_project(d: Path, nprogs: int, modules: int) -> Path:
    """The issue's kind of build: ``nprogs`` programs of ``modules`` generated
    modules each, linked statically against a small archive and libm."""
    d.mkdir(parents=True)
    progs = []
    for p in range(nprogs):
        objs = []
        for m in range(modules):
            name = f"p{p}_m{m}"
            (d / f"{name}.c").write_text(
                "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <math.h>\n"
                "#include \"util.h\"\n"
                + "".join(
                    f"double {name}_f{j}(const char *s, double x) {{ double a = 0; for (size_t k = 0; "
                    f"k < strlen(s); k++) a += sqrt(x * k + {j}) * util_scale(k); return a + atof(s); }}\n"
                    for j in range(16))
                + f"int {name}(void) {{ char b[64]; snprintf(b, sizeof b, \"%d\", {m}); "
                  f"return (int){name}_f0(b, {p}.0); }}\n")
            objs.append(f"{name}.o")
        decls = "".join(f"int p{p}_m{m}(void);\n" for m in range(modules))
        calls = "".join(f"  s += p{p}_m{m}();\n" for m in range(modules))
        (d / f"p{p}.c").write_text(f"#include <stdio.h>\n{decls}int main(void) {{\n  int s = 0;\n{calls}"
                                   "  printf(\"%d\\n\", s);\n  return 0;\n}\n")
        objs.append(f"p{p}.o")
        progs.append((f"p{p}", objs))
    (d / "util.h").write_text("#pragma once\n#include <stddef.h>\ndouble util_scale(size_t k);\n")
    (d / "util.c").write_text("#include \"util.h\"\ndouble util_scale(size_t k) { return 1.0 + (double)(k % 7) / 8; }\n")
    rules = "".join(f"{p}: {' '.join(objs)} libutil.a\n\t$(CC) -static -o $@ {' '.join(objs)} libutil.a -lm\n"
                    for p, objs in progs)
    (d / "Makefile").write_text(
        "CFLAGS = -O2\nPROGS = " + " ".join(p for p, _ in progs) + "\nall: $(PROGS)\n"
        "libutil.a: util.o\n\t$(AR) rcs $@ util.o\n" + rules
        + "%.o: %.c util.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n")
    return d


STDLIB_MODULES = (
    "abc argparse ast asyncio base64 bisect bz2 calendar collections concurrent.futures configparser "
    "contextlib copy csv ctypes dataclasses datetime decimal difflib email email.mime.text enum fnmatch "
    "fractions ftplib functools getopt gettext glob gzip hashlib heapq hmac html html.parser http.client "
    "http.server imaplib inspect io ipaddress itertools json logging logging.handlers lzma mailbox "
    "mimetypes multiprocessing numbers operator optparse pathlib pickle pkgutil platform plistlib poplib "
    "pprint queue random re sched secrets selectors shlex shutil signal smtplib socket socketserver sqlite3 "
    "ssl statistics string struct subprocess tarfile tempfile textwrap threading timeit tokenize tomllib "
    "traceback typing unittest urllib.parse urllib.request uuid warnings weakref xml.dom.minidom "
    "xml.etree.ElementTree zipfile zlib"
).split()


def _make_import_script(path: Path) -> Path:
    path.write_text(f"import importlib\nfor m in {STDLIB_MODULES!r}:\n    importlib.import_module(m)\n")
    return path


def _make_archive(work: Path, nfiles: int) -> Path:
    src = work / "tree"
    for i in range(nfiles):
        sub = src / f"d{i % 20:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}.txt").write_bytes((f"file {i}\n" * (64 + i % 200)).encode())
    archive = work / "tree.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(src, arcname="tree")
    shutil.rmtree(src)
    return archive


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"Machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}, "
            f"Linux {platform.release()}, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}")


# ---------------------------------------------------------------------------
# profiling (optional: needs py-spy)
# ---------------------------------------------------------------------------
#: what ``--profile-config`` profiles: brokerctl arguments and the directory to run in
PROFILE_CONFIGS = {
    "external": (lambda: ["-e", "trace=openat", "-a", py_authz()], None),
    "inproc": (lambda: ["-a", "py:inproc_cont:az"], AUTHZ),
    "inproc4": (lambda: ["-a", "py:inproc_cont:az"] * 4, AUTHZ),
}


def profile(calls: int, out: Path, config: str = "external") -> str:
    """py-spy on the shim during the openat workload, judged by ``config``
    (PROFILE_CONFIGS); returns a summary."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(pyspy):
        raise SystemExit("bench: --profile needs py-spy (.venv/bin/pip install py-spy)")
    exe = str(build("openat"))
    # Blocking mode (py-spy stops the shim for each sample): --nonblocking loses
    # a third of its samples here and the rest are skewed.  --idle keeps the
    # samples taken while the shim waits in epoll_wait.
    args, cwd = PROFILE_CONFIGS[config]
    cmd = [pyspy, "record", "--format", "raw", "--rate", "500", "--idle", "-o", str(out), "--",
           *brokerctl(*args(), "--", exe, str(calls))]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        raise BenchError(f"py-spy failed: {p.stderr[-2000:]}")
    return summarise_profile(out)


# Categories of the shim's time, tried on each frame from the leaf up; the
# first frame that matches one decides.  A rule sees the function name, the
# file and the source text of the sampled line.
EPOLL = "epoll wait (idle: authorizer round trip, tracee running)"
CATEGORIES: list[tuple[str, Callable[[str, str, str], bool]]] = [
    (EPOLL, lambda fn, path, src: ".poll(" in src and fn in ("poll_once", "_poll_once")),
    ("waitpid", lambda fn, path, src: "waitpid" in src),
    ("signalfd read", lambda fn, path, src: "self._sfd" in src and "os.read" in src),
    ("ptrace requests (GET_SYSCALL_INFO, CONT, regs)", lambda fn, path, src: path.endswith("tracer/ptrace.py")),
    ("argument decode (decode_args, memory reads)", lambda fn, path, src: "decode_args" in fn or path.endswith("/args.py")),
    ("event formatting (codec.format_event)", lambda fn, path, src: fn in ("format_event", "format_call")),
    ("reply parsing (LineBuffer, codec.parse_reply)",
     lambda fn, path, src: fn == "parse_reply" or path.endswith("/linebuf.py")),
    ("audit log (json.dumps, write)", lambda fn, path, src: "_audit_writer" in fn or fn == "write" and "cli/" in path),
    ("writes to the authorizer (os.write)", lambda fn, path, src: "os.write" in src),
    ("reads from the authorizer (os.read)", lambda fn, path, src: "os.read" in src),
]
OTHER = "other Python (loop, dispatch, deadlines, stack walk, bookkeeping)"


def _frame(frame: str) -> tuple[str, str, int]:
    m = re.match(r"^(.*) \((.*?):(\d+)\)$", frame)
    if not m:
        return frame, "", 0
    return m.group(1), m.group(2), int(m.group(3))


def _source(path: str, line: int) -> str:
    import linecache

    if not path.startswith("/"):
        for base in (ROOT, ROOT / "brokerd", ROOT / "protocol"):
            if (base / path).exists():
                path = str(base / path)
                break
    return linecache.getline(path, line).strip()


def categorise(stack: Sequence[str]) -> str:
    for fr in reversed(stack):
        fn, path, line = _frame(fr)
        src = _source(path, line) if line else ""
        for name, test in CATEGORIES:
            if test(fn.rsplit(".", 1)[-1], path, src):
                return name
    return OTHER


def summarise_profile(path: Path, top: int = 15) -> str:
    stacks: list[tuple[list[str], int]] = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            st, _, n = line.rpartition(" ")
            try:
                stacks.append((st.split(";"), int(n)))
            except ValueError:
                continue
    total = sum(n for _, n in stacks) or 1
    # only the shim's loop after start-up: drop import-time and set-up stacks
    loop = [(s, n) for s, n in stacks if any(_is_loop(fr, ("run",)) for fr in s)]
    loop_total = sum(n for _, n in loop) or 1
    cats: dict[str, int] = {}
    self_time: dict[str, int] = {}
    incl: dict[str, int] = {}
    for s, n in loop:
        c = categorise(s)
        cats[c] = cats.get(c, 0) + n
        if c == EPOLL:
            continue
        fn, p, ln = _frame(s[-1])
        key = f"{fn} ({_short(p)}:{ln}) {_source(p, ln)[:60]}"
        self_time[key] = self_time.get(key, 0) + n
        for fr in {_func(x) for x in s}:
            incl[fr] = incl.get(fr, 0) + n
    busy = loop_total - cats.get(EPOLL, 0)
    lines = [f"py-spy samples: {total} in all, {loop_total} in the shim's loop: {busy} busy "
             f"({100 * busy / loop_total:.0f}%), {loop_total - busy} idle in epoll_wait",
             "", "Where the loop's time goes (share of loop samples | of busy samples):"]
    for name, n in sorted(cats.items(), key=lambda kv: -kv[1]):
        b = "" if name == EPOLL else f" | {100 * n / max(busy, 1):5.1f}%"
        lines.append(f"  {100 * n / loop_total:5.1f}%{b or ' |   —   '}  {name}")
    lines += ["", f"Top {top} lines by self time (share of busy samples):"]
    for fr, n in sorted(self_time.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / max(busy, 1):5.1f}%  {fr}")
    lines += ["", f"Top {top} functions by inclusive time (share of busy samples):"]
    skip = ("main (", "cmd_run (", "<module> (", "_run_module_as_main (", "_run_code (")
    for fr, n in sorted(((k, v) for k, v in incl.items() if not k.startswith(skip)
                         and not _is_loop(k, ("run", "poll_once", "_poll_once"))), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / max(busy, 1):5.1f}%  {fr}")
    return "\n".join(lines)


def _is_loop(frame: str, names: tuple[str, ...]) -> bool:
    """Is ``frame`` ('Class.name (path...)') one of the shim loop's ``names``?
    The loop lives in brokerd/tracer/shim/loop.py (shim.py before the split)."""
    m = re.match(r"^(?:\w+\.)?(\w+) \((.*?)(?::\d+)?\)$", frame)
    return bool(m) and m.group(1) in names and "tracer/shim" in m.group(2)


def _func(frame: str) -> str:
    """'name (path:line)' -> 'name (path)'."""
    m = re.match(r"^(.*) \((.*?):\d+\)$", frame)
    return f"{m.group(1)} ({_short(m.group(2))})" if m else frame


def _short(path: str) -> str:
    for marker in ("/brokerd/", "/protocol/", "/clients/"):
        if marker in path:
            return path[path.index(marker) + 1:]
    return path.rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="scale every workload down (about a minute in all)")
    p.add_argument("--only", metavar="SECTIONS", help=f"comma list of sections to run: {','.join(SECTIONS)}")
    p.add_argument("--rounds", type=int, help="alternating rounds per comparison (default 5, --quick 3)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every call count by this factor")
    p.add_argument("--decisions", type=int, help="decisions in the memory test (default 1000000, --quick 20000)")
    p.add_argument("--json", metavar="FILE", help="also write the raw figures to FILE")
    p.add_argument("--profile", metavar="FILE", nargs="?", const=str(Path(tempfile.gettempdir()) / "brokerd-bench-profile.txt"),
                   help="instead of the tables: py-spy (raw/collapsed) profile of the shim during the openat "
                        "workload, written to FILE, and a summary")
    p.add_argument("--profile-config", choices=sorted(PROFILE_CONFIGS), default="external",
                   help="who judges each openat while profiling: one external plain Python authorizer (default), "
                        "one in-process policy, or 4 stacked in-process policies")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    q = a.quick
    s = a.scale * (0.1 if q else 1.0)
    o = Opts(
        rounds=a.rounds or (3 if q else 5),
        getppid_calls=max(100, int(200_000 * s)),
        openat_calls=max(100, int(20_000 * s)),
        latency_calls=max(100, int(20_000 * s)),
        decisions=a.decisions or (20_000 if q else 1_000_000),
        scale_seconds=1.0 if q else 3.0,
        threads=64,
        procs=100,
        build_files=max(2, int(20 * min(1.0, a.scale * (0.3 if q else 1.0)))),
        tar_files=max(20, int(2000 * s)),
        quick=q,
        static_progs=max(1, int(14 * min(1.0, a.scale * (0.15 if q else 1.0)))),
    )
    if a.profile:
        print(profile(max(1000, int(50_000 * a.scale)), Path(a.profile), a.profile_config))
        print(f"\nraw stacks: {a.profile}")
        return 0
    only = SECTIONS if not a.only else tuple(x.strip() for x in a.only.split(","))
    bad = [x for x in only if x not in SECTIONS]
    if bad:
        print(f"bench: unknown section(s) {', '.join(bad)} (choose from {', '.join(SECTIONS)})", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    b = Bench(o)
    t0 = time.perf_counter()
    for sec in SECTIONS:
        if sec in only:
            log(f"section {sec}")
            getattr(b, sec)()
    print(b.report())
    print(f"({'quick' if q else 'full'} run, {time.perf_counter() - t0:.0f} s)")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine_line(), "opts": o.__dict__, "data": b.data,
                                            "targets": b.targets}, indent=1, default=str))
    return 0
