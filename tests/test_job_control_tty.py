"""Job control in a real terminal (tmux): Ctrl-Z stops the traced job, fg
resumes it, Ctrl-C ends it with the status a shell expects."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (scripts/setup installs it)")


class Tmux:
    def __init__(self) -> None:
        self.name = f"brokerd-{uuid.uuid4().hex[:8]}"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", "200", "-y", "50",
                        "bash --norc --noprofile"], check=True)
        self.send("PS1='$ '", "Enter")

    def send(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name, "-S", "-200"],
                              capture_output=True, text=True, check=True).stdout

    def wait_for(self, text: str | re.Pattern, timeout: float = 15) -> str:
        end = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if (text.search(screen) if isinstance(text, re.Pattern) else text in screen):
                return screen
            if time.monotonic() > end:
                raise AssertionError(f"{text!r} not on screen:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def tmux():
    t = Tmux()
    yield t
    t.close()


def test_ctrl_z_fg_ctrl_c(tmux, rules):
    loop = "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done"
    cmd = [sys.executable, "-m", "brokerd.cli.main", "run", "-a", rules(), "--", "sh", "-c", loop]
    tmux.send(shlex.join(cmd), "Enter")
    tmux.wait_for("tick 3")
    tmux.send("C-z")
    screen = tmux.wait_for("Stopped")
    last = max(int(w.split()[1]) for w in screen.splitlines() if w.startswith("tick "))
    time.sleep(0.6)
    after = max(int(w.split()[1]) for w in tmux.screen().splitlines() if w.startswith("tick "))
    assert after <= last + 1, "the job kept running after Ctrl-Z"
    tmux.send("clear; fg", "Enter")
    tmux.wait_for(f"tick {after + 3}")
    tmux.send("C-c")
    tmux.send("echo status=$?", "Enter")
    screen = tmux.wait_for(re.compile(r"^status=\d+", re.M))
    assert "status=130" in screen
