"""brokerctl attach --ask, driven as a person would in a real terminal (tmux):
attach to a running service, deny one open, allow another, save the policy,
detach (the service keeps serving), then run the service under the saved
policy with the same outcome."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time

from conftest import brokerctl
from test_job_control_tty import tmux  # noqa: F401  (fixture)


def _wait(path, pattern: str, timeout: float = 15) -> str:
    end = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        if re.search(pattern, text, re.M):
            return text
        assert time.monotonic() < end, f"{pattern!r} not in {path}:\n{text[-2000:]}"
        time.sleep(0.05)


def test_ask_deny_allow_save_detach_replay(tmux, cprog, tmp_path):  # noqa: F811
    secret, public = tmp_path / "secret", tmp_path / "public"
    secret.write_text("s\n")
    public.write_text("p\n")
    out = tmp_path / "svc.out"
    policy = tmp_path / "saved.toml"
    svc = subprocess.Popen([str(cprog("service")), f"{secret},{public}"], stdout=open(out, "w"))
    try:
        _wait(out, r"^3 ")
        cmd = [sys.executable, "-m", "brokerd.cli.main", "attach", str(svc.pid), "--ask", "-e", "trace=openat",
               "--save-policy", str(policy)]
        tmux.send(shlex.join(cmd), "Enter")
        screen = tmux.wait_for(f'openat(AT_FDCWD, "{secret}"')
        assert "[a]llow" in screen
        tmux.send("D EACCES", "Enter")  # always deny the secret
        tmux.wait_for(f'openat(AT_FDCWD, "{public}"')
        tmux.send("A", "Enter")  # always allow the public one
        # from now on the rules answer: the service goes on without prompts
        text = _wait(out, rf"{secret} EACCES\n(.*\n)*.*{secret} EACCES")
        assert f"{public} ok" in text
        screen = tmux.wait_for("= -1 EACCES")
        tmux.send("C-c")
        screen = tmux.wait_for("rule(s) saved")
        assert "detached from" in screen
        assert re.search(r"\d+\s+\d+\s+openat", screen), screen  # the summary table
        # the service keeps serving, untraced, and opens the secret again
        n = len(out.read_text().splitlines())
        end = time.monotonic() + 15
        while not any(line.endswith(f"{secret} ok") for line in out.read_text().splitlines()[n:]):
            assert time.monotonic() < end, "the service did not open the secret again after detach"
            time.sleep(0.05)
        assert svc.poll() is None
    finally:
        svc.kill()
        svc.wait()
    saved = policy.read_text()
    assert 'verdict = "skip-fail EACCES"' in saved and 'verdict = "allow"' in saved
    check = brokerctl("policy", "check", str(policy))
    assert check.returncode == 0, check.stdout + check.stderr
    r = brokerctl("run", "--policy", str(policy), "--", str(cprog("service")), f"{secret},{public}", "2")
    assert r.stdout.splitlines() == [f"0 {secret} EACCES", f"0 {public} ok", f"1 {secret} EACCES", f"1 {public} ok"], r.stderr
