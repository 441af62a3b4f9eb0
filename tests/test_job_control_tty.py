"""Job control in a real terminal (tmux): Ctrl-Z stops the traced job, fg
resumes it, Ctrl-C ends it with the status a shell expects."""

from __future__ import annotations

import re
import shlex
import sys
import time

import pytest

#: the compiled stop loop and the pure-Python one (conftest.accel_mode)
pytestmark = pytest.mark.usefixtures("accel_mode")


def test_ctrl_z_fg_ctrl_c(tmux, rules):
    loop = "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done"
    cmd = [sys.executable, "-m", "brokerd.cli.main", "run", "-a", rules(), "--", "sh", "-c", loop]
    tmux.send(shlex.join(cmd), "Enter")
    tmux.wait_for("tick 3")
    tmux.send("C-z")
    screen = tmux.wait_for("Stopped")
    last = max(int(w.split()[1]) for w in screen.splitlines() if w.startswith("tick "))
    time.sleep(0.6)  # not a wait for something: a while in which a stopped job must print nothing
    after = max(int(w.split()[1]) for w in tmux.screen().splitlines() if w.startswith("tick "))
    assert after <= last + 1, "the job kept running after Ctrl-Z"
    tmux.send("clear; fg", "Enter")
    tmux.wait_for(f"tick {after + 3}")
    tmux.send("C-c")
    tmux.send("echo status=$?", "Enter")
    screen = tmux.wait_for(re.compile(r"^status=\d+", re.M))
    assert "status=130" in screen
