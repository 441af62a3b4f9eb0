"""Smoke test of the benchmark runner (bench/): it builds its workloads, runs
the quickest configuration of one section and prints the expected table.
Never asserts a time or a ratio: those depend on the machine."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_micro_prints_table():
    if shutil.which("gcc") is None:
        pytest.skip("gcc is required to build the bench workloads (scripts/setup installs it)")
    p = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "micro", "--rounds", "1", "--scale", "0.01"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout
    assert out.startswith("Machine: ")
    assert "### Syscall-heavy micro: 200 x getppid" in out
    assert "### Syscall-heavy micro: 100 x openat+close" in out
    rows = ["native", "brokerd (a) openat only", "brokerd (b) 60 common", "brokerd (c) everything",
            "brokerd 4 stacked, openat", "brokerd awk, openat", "brokerd static rule, openat",
            "brokerd argument rule, openat", "brokerd cached verdict, openat",
            "brokerd getppid decided, ptrace", "brokerd getppid decided, notify",
            "brokerd in-process py, openat", "brokerd 4 in-process py, openat", "brokerd in-process py, no stable args",
            "C tracer floor: stop, CONT", "C tracer floor: + args, path"]
    if shutil.which("strace"):
        rows += ["strace -f", "strace --seccomp-bpf openat"]
    for row in rows:
        assert re.search(rf"^\| {re.escape(row)} +\| [\d.]+ ms +\| [\d.]+x ", out, re.M), f"no row {row!r}:\n{out}"
    assert "### Targets" in out
    if shutil.which("strace"):
        for target in ("unsubscribed calls (getppid)", "one decision vs strace", "4 stacked authorizers vs strace",
                       "call settled by a static rule vs strace", "one in-process decision vs strace",
                       "one external plain Python authorizer vs strace", "4 stacked in-process policies vs strace"):
            assert re.search(rf"^\| {re.escape(target)}.*\| (PASS|MISS) +\|$", out, re.M), f"no target {target!r}"


def test_bench_quick_placement_prints_the_one_cpu_floors():
    """The placement section runs every one-CPU row, the C floors included
    (a pinned open's calls; one question to a minimal Python authorizer)."""
    if shutil.which("gcc") is None or shutil.which("taskset") is None:
        pytest.skip("gcc and taskset are required (scripts/setup installs them)")
    if len(__import__("os").sched_getaffinity(0)) < 2:
        pytest.skip("the placement section needs 2 CPUs")
    p = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "placement", "--rounds", "1", "--scale", "0.05"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    for row in ("brokerd in-process py, all on one CPU (--cpu)",
                "brokerd in-process py, all on one CPU (--cpu), --no-stable-args", "C tracer floor, all on one CPU",
                "C tracer floor + a pinned open's calls, all on one CPU",
                "C tracer floor + a minimal Python authorizer, all on one CPU"):
        assert re.search(rf"^\| {re.escape(row)} +\| -?[\d.]+ +\|", p.stdout, re.M), f"no row {row!r}:\n{p.stdout}"


def test_bench_rejects_unknown_section():
    p = subprocess.run([sys.executable, "-m", "bench", "--only", "nope"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2
    assert "unknown section" in p.stderr


def test_profile_summary_categorises_stacks(tmp_path):
    sys.path.insert(0, str(ROOT))
    try:
        from bench.runner import summarise_profile
    finally:
        sys.path.remove(str(ROOT))
    shim = ROOT / "brokerd" / "tracer" / "shim" / "loop.py"
    lines = shim.read_text().splitlines()
    poll = next(i for i, line in enumerate(lines, 1) if "self._ep.poll(" in line)
    stops = shim.parent / "stops.py"
    base = f"main (brokerd/cli/main.py:1);Stops.run ({stops}:1)"
    raw = tmp_path / "raw.txt"
    raw.write_text(
        f"{base};EventLoop.poll_once ({shim}:{poll}) 60\n"
        f"{base};EventLoop.poll_once ({shim}:1);cont (brokerd/tracer/ptrace.py:148) 30\n"
        f"{base};EventLoop.poll_once ({shim}:1);format_event (protocol/codec.py:1) 10\n"
        "<module> (x.py:1) 5\n"
    )
    text = summarise_profile(raw)
    assert "105 in all, 100 in the shim's loop: 40 busy" in text
    assert re.search(r"60\.0% \|\s+—\s+epoll wait", text)
    assert re.search(r"30\.0% \|\s+75\.0%\s+ptrace requests", text)
    assert re.search(r"10\.0% \|\s+25\.0%\s+event formatting", text)


@pytest.mark.parametrize("part, seccomp", [("filter", "2"), ("landlock", "0"), ("kernel", "2")])
def test_bench_parts_run_the_program_under_one_part_without_a_tracer(tmp_path, part, seccomp):
    # bench/parts.py: what each part of the sandbox costs alone (the "parts" table)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.write_text("secret\n")
    p = subprocess.run(
        [sys.executable, "-m", "bench.parts", part, "--policy",
         f"sandbox:{tmp_path},--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/etc,--ro=/proc", "--",
         "sh", "-c", f"grep -E '^(Seccomp|TracerPid):' /proc/self/status; cat /etc/hostname >/dev/null; "
                     f"echo x > {tmp_path}/out; echo made=$?; cat {outside}; echo read=$?"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert lines[:4] == ["TracerPid:", "0", "Seccomp:", seccomp], p.stdout
    assert "made=0" in lines and (tmp_path / "out").read_text() == "x\n"
    assert lines[-1] == ("read=0" if part == "filter" else "read=1")  # the layer holds without the broker


def test_policy_path_micro_prints_one_figure_per_stack():
    """bench/policy_path.py (the broker's Python from a decoded openat to its
    Decision, in a loop) runs a real shim's entry pipeline with in-process
    members and prints one line per stack size (never a time asserted)."""
    p = subprocess.run([sys.executable, "-m", "bench.policy_path", "--calls", "200", "--members", "1",
                        "--members", "4"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.splitlines()
    assert len(lines) == 2, p.stdout
    assert re.match(r"policy path, 1 in-process member: [\d.]+ us CPU per decision", lines[0]), lines[0]
    assert re.match(r"policy path, 4 in-process members: [\d.]+ us CPU per decision", lines[1]), lines[1]


@pytest.mark.parametrize("accel_env", ["", "0"])
def test_pin_path_micro_pins_and_prints_the_pins_share(accel_env):
    """bench/pin_path.py (a judged open's policy path with stable arguments
    on, its pin's plain-path check real) pins the open, on the compiled and
    on the pure-Python path, and prints both runs and their difference
    (never a time asserted)."""
    env = dict(os.environ, BROKERD_ACCEL=accel_env)
    p = subprocess.run([sys.executable, "-m", "bench.pin_path", "--calls", "200"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.splitlines()
    assert len(lines) == 3, p.stdout
    assert re.match(r"--no-stable-args: [\d.]+ us CPU per decision", lines[0]), lines[0]
    assert re.match(r"pinned: [\d.]+ us CPU per decision", lines[1]), lines[1]
    assert re.match(r"the pin: -?[\d.]+ us", lines[2]), lines[2]
