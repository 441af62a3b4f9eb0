"""brokerctl replay: recorded journals through new policies."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import BROKERCTL, brokerctl

pytestmark = pytest.mark.usefixtures("policy_mode")  # each test in-process and as a process

ALLOW_ALL = "sed -u s/.*/cont/"  # a plain authorizer that allows everything (and sees everything)


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    path = tmp_path_factory.mktemp("journal") / "run.jsonl"
    r = brokerctl("run", "--audit", str(path), "-a", ALLOW_ALL, "--", "cat", "/etc/hostname", "/etc/shadow")
    assert r.returncode == 0, r.stderr
    return path


def test_changed_decision_listed_exit_1(journal):
    r = brokerctl("replay", str(journal), "--authorizer", "sh clients/examples/deny-shadow.sh")
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].endswith('openat AT_FDCWD, "/etc/shadow", O_RDONLY, 00: cont -> skip-fail EACCES')
    assert "1 decision changed" in r.stderr


def test_same_decisions_exit_0(journal):
    r = brokerctl("replay", str(journal), "--policy", "fakeid")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert "0 decisions changed" in r.stderr


def test_replay_of_a_denying_journal_against_allow_all(tmp_path):
    path = tmp_path / "deny.jsonl"
    brokerctl("run", "--audit", str(path), "--policy", "readonly", "--", "sh", "-c", f"echo x > {tmp_path}/f")
    assert any(json.loads(line)["verdict"] == "skip-fail 30" for line in path.read_text().splitlines())
    r = brokerctl("replay", str(path), "-a", ALLOW_ALL)
    assert r.returncode == 1
    assert "skip-fail EROFS -> cont" in r.stdout


def test_audit_policy_journal_results_replaced(tmp_path):
    path = tmp_path / "audit.jsonl"
    brokerctl("run", "--policy", f"audit:{path}", "--", "id", "-u")
    r = brokerctl("replay", str(path), "--policy", "fakeid:4242")
    assert r.returncode == 1, r.stderr
    assert any(line.endswith("geteuid: cont, ok 0 -> cont, ok 4242") or line.endswith("getuid: cont, ok 0 -> cont, ok 4242")
               for line in r.stdout.splitlines()), r.stdout


def test_toml_policy_in_replay(journal, tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('[[rule]]\nsyscall = "openat"\npath = "/etc/host*"\nverdict = "skip-fail ENOENT"\n')
    r = brokerctl("replay", str(journal), "--policy", str(p))
    assert r.returncode == 1
    assert '"/etc/hostname", O_RDONLY, 00: cont -> skip-fail ENOENT' in r.stdout


def test_bad_journal_and_usage(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event": "syscall 1 2 2 x86_64 getpid", "verdict": "cont"}\nnot json\n')
    r = brokerctl("replay", str(bad), "-a", ALLOW_ALL)
    assert r.returncode == 2 and r.stderr.startswith(f"brokerctl: {bad}: line 2: not JSON")
    r = brokerctl("replay", str(bad))
    assert r.returncode == 2 and "give the policy to try" in r.stderr
    r = brokerctl("replay", "/nonexistent", "-a", ALLOW_ALL)
    assert r.returncode == 1 and r.stderr.strip() == "brokerctl: /nonexistent: No such file or directory"


def _execs(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """brokerctl ARGS under strace -f: its result and every program it executed."""
    out = tmp_path / "execs"
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o", str(out),
                        *BROKERCTL, *args], capture_output=True, text=True, timeout=120)
    return r, [ln for ln in out.read_text().splitlines() if "execve(" in ln and "= 0" in ln]


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (scripts/setup installs it)")
def test_shipped_policies_are_asked_in_process(journal, tmp_path):
    """replay, learn --check and policy explain ask a --policy the way `run
    --policy` does, in brokerctl's own process: before, each started
    `sh -c python3 -m brokerd.clients.policies.NAME` (two more programs)."""
    r, execs = _execs(tmp_path, "replay", str(journal), "--policy", "fakeid", "--policy", "readonly")
    assert r.returncode == 0 and "0 decisions changed" in r.stderr, r.stderr
    assert len(execs) == 1, execs  # brokerctl itself
    r, execs = _execs(tmp_path, "policy", "explain", "readonly", "openat")
    assert r.returncode == 0 and "policy readonly (handshake)" in r.stdout, r.stderr
    assert len(execs) == 1, execs
