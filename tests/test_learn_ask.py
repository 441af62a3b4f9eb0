"""attach --ask --learned: ask mode starts from a learned policy (issue #17):
what the policy allows flows without a question, what it would deny is asked,
and the "always allow" answers are learned into the file, which then runs the
program with the same outcome."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

from conftest import brokerctl
from waiting import wait_for_text


def _learned_service(cprog, tmp_path):
    """The service learned reading only ``public``: (secret, public, its binary, the policy)."""
    secret, public = tmp_path / "secret", tmp_path / "public"
    secret.write_text("s\n")
    public.write_text("p\n")
    svc_bin = str(cprog("service"))
    policy = tmp_path / "svc.toml"
    r = brokerctl("learn", "-o", str(policy), "--", svc_bin, str(public), "1")
    assert r.returncode == 0, r.stderr
    return secret, public, svc_bin, policy


def test_ask_from_learned_policy_adds_the_answers(tmux, cprog, tmp_path):
    secret, public, svc_bin, policy = _learned_service(cprog, tmp_path)
    before = brokerctl("run", "--policy", str(policy), "--", svc_bin, f"{secret},{public}", "1")
    assert before.stdout.splitlines() == [f"0 {secret} EACCES", f"0 {public} ok"], before.stderr

    out = tmp_path / "svc.out"
    svc = subprocess.Popen([svc_bin, f"{secret},{public}"], stdout=open(out, "w"))
    try:
        wait_for_text(out, r"^3 ")
        cmd = [sys.executable, "-m", "brokerd.cli.main", "attach", str(svc.pid), "--ask", "-e", "trace=openat",
               "--learned", str(policy)]
        tmux.send(shlex.join(cmd), "Enter")
        screen = tmux.wait_for(f'openat(AT_FDCWD, "{secret}"')
        assert "[a]llow" in screen
        assert not re.search(rf'"{re.escape(str(public))}".*\) \?', screen), "asked about what the policy allows"
        tmux.send("A", "Enter")
        tmux.wait_for(re.compile(rf'"{re.escape(str(secret))}".*\) = \d'))  # the answer holds, no prompt
        tmux.send("C-c")
        screen = tmux.wait_for("answer(s) added")
        assert f"1 answer(s) added to {policy}" in screen
    finally:
        svc.kill()
        svc.wait(timeout=60)
    text = policy.read_text()
    assert str(secret) in text and "operator" in text
    check = brokerctl("policy", "check", str(policy))
    assert check.returncode == 0, check.stdout + check.stderr
    after = brokerctl("run", "--policy", str(policy), "--", svc_bin, f"{secret},{public}", "1")
    assert after.stdout.splitlines() == [f"0 {secret} ok", f"0 {public} ok"], after.stderr


def test_run_ask_from_learned_policy_adds_the_answers(tmux, cprog, tmp_path):
    """brokerctl run --ask --learned: the program starts under the learned
    policy's judgement, only what it would deny is asked (no -e needed), and
    the "always allow" answer is learned into the file."""
    secret, public, svc_bin, policy = _learned_service(cprog, tmp_path)
    out = tmp_path / "svc.out"
    cmd = [sys.executable, "-m", "brokerd.cli.main", "run", "--ask", "--learned", str(policy), "--",
           svc_bin, f"{secret},{public}", "1"]
    tmux.send(shlex.join(cmd) + f" > {shlex.quote(str(out))}; echo status=$?", "Enter")
    screen = tmux.wait_for(f'openat(AT_FDCWD, "{secret}"')
    assert "[a]llow" in screen
    assert not re.search(rf'"{re.escape(str(public))}".*\) \?', screen), "asked about what the policy allows"
    tmux.send("A", "Enter")
    screen = tmux.wait_for(re.compile(r"^status=\d+", re.M))
    assert "status=0" in screen and f"1 answer(s) added to {policy}" in screen, screen
    assert out.read_text().splitlines() == [f"0 {secret} ok", f"0 {public} ok"]
    after = brokerctl("run", "--policy", str(policy), "--", svc_bin, f"{secret},{public}", "1")
    assert after.stdout.splitlines() == [f"0 {secret} ok", f"0 {public} ok"], after.stderr


def test_run_ask_needs_a_terminal(tmp_path):
    r = subprocess.run([sys.executable, "-m", "brokerd.cli.main", "run", "--ask", "-e", "trace=openat", "--",
                        "true"], capture_output=True, text=True, start_new_session=True, stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no terminal" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "brokerd.cli.main", "run", "--learned", "x.toml", "--", "true"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "need --ask" in r.stderr, r.stderr
