"""Fuzzing the shim (issue 16): random authorizer behaviour (garbage, huge
lines, stalls, stray lines, bad `set`, wrong verdicts, death) against random
program behaviour (threads exiting mid-decision, fork+exec storms, children
killed mid-call, a vanishing symlink, exit_group/execve from a thread), for a
bounded time.  Zero crashes of the broker: the program always ends,
brokerctl always exits with a status, never a traceback, no tracee left."""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
import time

import pytest
from conftest import BROKERCTL

FUZZ_SECONDS = float(os.environ.get("BROKERD_FUZZ_SECONDS", "75"))

CHAOTIC = r'''
import os, random, sys, time
rnd = random.Random(int(sys.argv[1]))
timeout = float(sys.argv[2])
out = sys.stdout
def say(s):
    out.write(s + "\n"); out.flush()
sys.stdin.readline()  # the broker's hello
hand = rnd.random() < 0.6
if hand:
    say("hello 1 role=authorizer name=chaos trace=all events=all" + (" signals=yes" if rnd.random() < 0.3 else ""))
else:
    say("cont")
def pick(ev_id, kind):
    p = "" if not hand else f"{ev_id} "
    r = rnd.random()
    if kind == "sysret":
        return rnd.choice([p + "cont", p + "ok 0", p + "fail EPERM", "garbage(", p + "skip-fail EPERM"])
    if kind == "signal":
        return rnd.choice([p + "deliver", p + "suppress", p + "cont", "%%%"])
    if r < 0.55: return p + "cont"
    if r < 0.60: return "@@ garbage \x01"
    if r < 0.62: return p + "cont ; set 1 \"" + "x" * 70000 + "\""
    if r < 0.66: time.sleep(timeout * rnd.uniform(0.5, 3)); return p + "cont"
    if r < 0.70: say(p + "cont"); say("77777 cont"); return p + "cont"
    if r < 0.74: return p + rnd.choice(["cont ; set 2+9223372036854775807 \"x\"", "cont ; set 9 \"x\"",
                                        "cont ; set 1+-5 \"x\""])
    if r < 0.80: return p + "step"
    if r < 0.85: return p + "skip-fail EPERM"
    if r < 0.87: return p + "nosuchcall 1, 2"
    if r < 0.89: return p + "deliver"
    if r < 0.91: return p + "skip-ok 99999999999999999999999"
    if r < 0.93 and hand: return f"fetch {ev_id} 1 0 100"
    if r < 0.935: os._exit(0)
    return p + "cont"
for line in sys.stdin:
    w = line.split()
    if not w or w[0] not in ("syscall", "sysret", "signal"):
        continue
    say(pick(w[1], w[0]))
'''


def _tracee_states(marker: str) -> str:
    """Where each leftover thread is (state, wchan, /proc syscall line): a
    broker hang leaves a tracee in a ptrace-stop ("t") nobody resumes; a
    program waiting for itself shows its own wait (do_wait, futex...)."""
    lines = []
    for pid in _leftovers(marker):
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                base = f"/proc/{pid}/task/{tid}"
                with open(f"{base}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                with open(f"{base}/wchan") as f:
                    wchan = f.read()
                with open(f"{base}/syscall") as f:
                    call = f.read().strip()
                lines.append(f"{pid}/{tid} {state} wchan={wchan} syscall={call}")
        except OSError:
            pass
    return "\n".join(lines)


def _run_bounded(argv: list[str], timeout: float, marker: str, what: str,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run brokerctl with its output in files (a pipe nobody drains would
    stall it); if it has not exited after ``timeout`` s, fail with the
    leftover threads' states (read before anything is killed), then kill."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(argv, stdout=out, stderr=err, text=True, env={**os.environ, **(env or {})})
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            states = _tracee_states(marker)
            for pid in _leftovers(marker):
                os.kill(pid, 9)
            p.kill()
            p.wait(timeout=60)
            err.seek(0)
            raise AssertionError(f"brokerctl hung: {what}\n{err.read()[-2000:]}\ntracees:\n{states}") from None
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, p.returncode, out.read(), err.read())


def _leftovers(marker: str) -> list[int]:
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(d))
            except OSError:
                pass
    return found


#: what an authorizer does -> (chaos seed, its rules, the statuses chaos may end with).
#: Seed 7 (one round) forks a child and SIGKILLs it; seed 1 ends by a thread's
#: _exit (7); chaos's own deadline (CHAOS_SECONDS) ends it with 9.  Found by
#: the fuzz test (seed0=1796050416 run=71; seed0=2 run=13): a denied kill left
#: the child opening for ever and the parent in wait4; a clone3 whose result
#: was made 0 ran the flipper thread's loop in the main thread.  brokerctl,
#: like strace -f, waits for every traced process, so it never exited.  The
#: program's bugs, not the broker's: chaos.c now ends whatever is answered.
DENIALS = {
    "kill denied": (7, ["syscall * x86_64 kill * => skip-fail EPERM"], (0, 7)),
    "threads denied": (1, ["syscall * x86_64 clone3 * => skip-fail EPERM",
                           "syscall * x86_64 clone * => skip-fail EPERM"], (7,)),
    "clone3 returns 0": (1, ["syscall * x86_64 clone3 * => step", "sysret * clone3 * => ok 0"], (7, 9)),
}


@pytest.mark.parametrize("what", DENIALS)
def test_chaos_ends_whatever_is_denied(cprog, rules, tmp_path, what):
    """The fuzz test's program ends under any verdicts, so that a hang the
    fuzz test reports is always the broker's: with the child's SIGKILL
    denied, with every thread creation denied, with clone3 made to return 0."""
    seed, denials, statuses = DENIALS[what]
    chaos = str(cprog("chaos"))
    d = tmp_path / "box"  # only the program's (and brokerctl's) command lines name it
    d.mkdir()
    r = _run_bounded([*BROKERCTL, "run", "-a", rules(*denials), "--", chaos, str(seed), str(d), "1"],
                     60, str(d), what, env={"CHAOS_SECONDS": "3"})
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode in statuses, r.stderr[-2000:]
    assert not _leftovers(str(d))


@pytest.mark.slow
def test_fuzz_the_shim(cprog, tmp_path):
    chaos = str(cprog("chaos"))
    script = tmp_path / "chaotic.py"
    script.write_text(CHAOTIC)
    import sys

    seed0 = int(os.environ.get("BROKERD_FUZZ_SEED", str(int(time.time()))))
    rnd = random.Random(seed0)
    end = time.monotonic() + FUZZ_SECONDS
    runs = 0
    while time.monotonic() < end:
        seed = rnd.randrange(1 << 30)
        timeout = rnd.choice([0.05, 0.1, 0.3])
        d = tmp_path / f"run{runs}"
        d.mkdir()
        opts = ["--timeout", str(timeout), "--default", rnd.choice(["deny", "allow", "kill"])]
        if rnd.random() < 0.5:
            opts += ["-e", "trace=all"]
        stack = ["-a", f"{sys.executable} -u {script} {seed} {timeout}"]
        if rnd.random() < 0.3:
            stack += ["-a", f"{sys.executable} -u {script} {seed + 1} {timeout}"]
        what = f"seed0={seed0} run={runs} seed={seed} opts={opts}"
        r = _run_bounded([*BROKERCTL, "run", *opts, *stack, "--", chaos, str(seed), str(d),
                          str(rnd.randrange(10, 120))], 90, str(d), what)
        assert "Traceback" not in r.stderr, f"{what}\n{r.stderr[-3000:]}"
        # (a signal's death: brokerctl dies of it too, a negative status here)
        assert r.returncode in (0, 7, 9) or r.returncode >= 126 or r.returncode < 0, \
            f"{what}: status {r.returncode}\n{r.stderr[-2000:]}"
        assert not _leftovers(str(d)), f"{what}: tracees left behind"
        runs += 1
    assert runs >= 5
