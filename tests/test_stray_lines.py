"""Stray lines from an authorizer (issue #16 item 6): in handshake mode a line
without the event's ID answers nothing, so a debug print or an injected
`cont` cannot turn a pending denial into an allow.  (Plain mode matches
replies in order by design: tests/test_decision_unit.py and PROTOCOL.md 7.2.)"""

from __future__ import annotations

from conftest import brokerctl

# A handshake authorizer that, while it holds the question about the secret,
# prints a stray line first and its real, ID-prefixed denial after it.
STRAY = r'''
import sys
stray, default = sys.argv[1], sys.argv[2]
log = open(sys.argv[3], "a")
sys.stdin.readline()
print(f"hello 1 role=authorizer name=stray trace=openat default={default}", flush=True)
for line in sys.stdin:
    if line.startswith("error"):
        log.write(line); log.flush()
    if not line.startswith("syscall"):
        continue
    f = line.split()
    if '"/etc/hostname"' in line:
        print(stray, flush=True)
        print(f[1], "skip-fail EACCES", flush=True)
    else:
        print(f[1], "cont", flush=True)
'''


def _run(authz, cprog, tmp_path, stray: str, default: str = "deny"):
    log = tmp_path / "errors"
    log.touch()
    cmd = f"{authz(STRAY)} '{stray}' {default} {log}"
    r = brokerctl("run", "-a", cmd, "--", str(cprog("opener")), "/etc/hostname", "/etc/os-release")
    return r, log.read_text()


def test_stray_cont_does_not_answer_a_pending_denial(authz, cprog, tmp_path):
    r, errors = _run(authz, cprog, tmp_path, "cont")
    lines = r.stdout.splitlines()
    assert lines[0] == "/etc/hostname EACCES", r.stdout + r.stderr
    assert lines[1].startswith("/etc/os-release ok")
    assert "error missing-id" in errors  # the authorizer is told what was wrong


def test_stray_garbage_does_not_give_an_allow_default(authz, cprog, tmp_path):
    # default=allow: a garbled line taken for the pending answer would allow the open
    r, errors = _run(authz, cprog, tmp_path, "debug: looking at /etc/hostname", default="allow")
    assert r.stdout.splitlines()[0] == "/etc/hostname EACCES", r.stdout + r.stderr
    assert "error " in errors
