"""brokerctl attach --ask, driven as a person would in a real terminal (tmux):
attach to a running service, deny one open, allow another, save the policy,
detach (the service keeps serving), then run the service under the saved
policy with the same outcome."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

from conftest import brokerctl
from waiting import wait_for, wait_for_text


def test_ask_deny_allow_save_detach_replay(tmux, cprog, tmp_path):
    secret, public = tmp_path / "secret", tmp_path / "public"
    secret.write_text("s\n")
    public.write_text("p\n")
    out = tmp_path / "svc.out"
    policy = tmp_path / "saved.toml"
    svc = subprocess.Popen([str(cprog("service")), f"{secret},{public}"], stdout=open(out, "w"))
    try:
        wait_for_text(out, r"^3 ")
        cmd = [sys.executable, "-m", "brokerd.cli.main", "attach", str(svc.pid), "--ask", "-e", "trace=openat",
               "--save-policy", str(policy)]
        tmux.send(shlex.join(cmd), "Enter")
        screen = tmux.wait_for(f'openat(AT_FDCWD, "{secret}"')
        assert "[a]llow" in screen
        tmux.send("D EACCES", "Enter")  # always deny the secret
        tmux.wait_for(f'openat(AT_FDCWD, "{public}"')
        tmux.send("A", "Enter")  # always allow the public one
        # from now on the rules answer: the service goes on without prompts
        text = wait_for_text(out, rf"{secret} EACCES\n(.*\n)*.*{secret} EACCES")
        assert f"{public} ok" in text
        screen = tmux.wait_for("= -1 EACCES")
        tmux.send("C-c")
        screen = tmux.wait_for("rule(s) saved")
        assert "detached from" in screen
        assert re.search(r"\d+\s+\d+\s+openat", screen), screen  # the summary table
        # the service keeps serving, untraced, and opens the secret again
        n = len(out.read_text().splitlines())
        wait_for(lambda: out.read_text().splitlines()[n:], 60, "the service to open the secret again after detach",
                 until=lambda new: any(line.endswith(f"{secret} ok") for line in new))
        assert svc.poll() is None
    finally:
        svc.kill()
        svc.wait(timeout=60)
    saved = policy.read_text()
    assert 'verdict = "skip-fail EACCES"' in saved and 'verdict = "allow"' in saved
    check = brokerctl("policy", "check", str(policy))
    assert check.returncode == 0, check.stdout + check.stderr
    r = brokerctl("run", "--policy", str(policy), "--", str(cprog("service")), f"{secret},{public}", "2")
    assert r.stdout.splitlines() == [f"0 {secret} EACCES", f"0 {public} ok", f"1 {secret} EACCES", f"1 {public} ok"], r.stderr
