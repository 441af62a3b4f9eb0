"""Calls a kernel layer settles, attacked as test_toctou.py attacks per-call
decisions (issue #12): a symlink swapped and a path flipped by another
thread never win, and not one of those opens stops; a killed broker leaves
no program running outside its box."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from conftest import BROKERCTL, brokerctl
from waiting import wait_for

from brokerd.tracer import landlock

EXTRA: tuple[str, ...] = ()  # set to ("--no-landlock",) by hand to see the tests fail per call

pytestmark = pytest.mark.skipif(landlock.abi_version() < 3, reason="needs Landlock ABI 3 (opens settle)")

#: a layer that allows read/execute on the system and the program's directory,
#: everything beneath WORK, reading GOOD; BAD is nowhere.  Per call it would
#: deny BAD by resolving the path; it logs every call it is asked about, and
#: subscribes to getppid so that the session keeps its tracer.
LAYERED = '''
import os, sys
from brokerd.clients.authorizer import Authorizer, cont, kernel_layer, skip_fail
work, good, bad, prog, log = sys.argv[1:6]
system = [("read,execute", d) for d in ("/usr", "/lib", "/lib64", "/etc", os.path.dirname(prog))]
az = Authorizer("layered", layer=kernel_layer(system + [("all", work), ("read", good)], fs_handled="all"))

@az.on("open", "openat", "getppid")
def judge(call):
    with open(log, "a") as f:
        f.write(call.name + "\\n")
    if call.name == "getppid":
        return cont()
    return skip_fail("EACCES") if call.resolve_path(call.path_args()[0]) == bad else cont()

az.run()
'''


@pytest.fixture
def files(tmp_path):
    good, bad, work = tmp_path / "good", tmp_path / "bad", tmp_path / "work"
    good.write_text("good\n")
    bad.write_text("bad\n")
    work.mkdir()
    return good, bad, work


def _counts(stdout: str) -> dict[str, int]:
    words = stdout.split()
    return dict(zip(words[::2], map(int, words[1::2]), strict=True))


def test_swapped_symlink_never_wins_and_never_stops(cprog, authz, files, tmp_path):
    good, bad, work = files
    prog, log = str(cprog("symswap")), tmp_path / "asked.log"
    r = brokerctl("run", *EXTRA, "-a", authz(LAYERED) + f" {work} {good} {bad} {prog} {log}", "--",
                  prog, str(work), "200000", str(good), str(bad))
    assert r.returncode == 0, r.stderr
    c = _counts(r.stdout)
    assert c["bad"] == 0, c
    assert c["good"] > 0 and c["denied"] > 0, c  # the link did point at BAD: the kernel refused it
    asked = log.read_text().split() if log.exists() else []
    assert "openat" not in asked and "open" not in asked, asked[:5]  # zero stops for the opens


def test_flipped_path_never_wins_and_never_stops(cprog, authz, tmp_path):
    good, bad, work = tmp_path / "g1", tmp_path / "b1", tmp_path / "work"  # same length: flipped in place
    good.write_text("good\n")
    bad.write_text("bad\n")
    work.mkdir()
    prog, log = str(cprog("toctou")), tmp_path / "asked.log"
    for mode in ("thread", "process"):
        r = brokerctl("run", "-a", authz(LAYERED) + f" {work} {good} {bad} {prog} {log}", "--",
                      prog, mode, "200000", str(good), str(bad))
        assert r.returncode == 0, r.stderr
        c = _counts(r.stdout)
        assert c["bad"] == 0 and c["good"] > 0 and c["denied"] > 0, (mode, c)
    asked = log.read_text().split() if log.exists() else []
    assert "openat" not in asked and "open" not in asked, asked[:5]


def test_killed_broker_leaves_nothing_running(tmp_path):
    """SIGKILL the broker in the middle of a sandboxed loop: the program dies
    with it (PTRACE_O_EXITKILL), so nothing goes on outside the box."""
    box = tmp_path / "box"
    box.mkdir()
    secret = tmp_path / "secret"
    secret.write_text("outside\n")
    script = f"while :; do cat {secret} > {box}/leak 2>/dev/null; echo tick >> {box}/ticks; done"
    p = subprocess.Popen([*BROKERCTL, "run", "--policy", f"sandbox:{box},--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/etc",
                          "--", "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    wait_for((box / "ticks").exists, 60, "the program to run (its first tick)")
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)

    def group_gone() -> bool:
        try:
            os.killpg(p.pid, 0)  # the session's processes (sh, cat...) are in its group
        except ProcessLookupError:
            return True
        return False

    wait_for(group_gone, 30, "the program to die with its broker (it outlived it)")
    assert not (box / "leak").exists() or (box / "leak").read_text() == ""
