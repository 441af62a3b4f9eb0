"""Argument rules declared in the handshake: the broker evaluates them with
no round trip, falls back to the authorizer when none matches, and the
result is the same as the authorizer's own answer would be."""

from __future__ import annotations

from conftest import brokerctl

RULES = r'''
import sys
log = open(sys.argv[1], "a")
sys.stdin.readline()
print('hello 1 role=authorizer name=rules trace=openat '
      'rule="openat path2=/etc/host* => skip-fail EACCES" '
      'rule="openat arg3&O_WRONLY|O_RDWR => skip-fail EROFS" '
      'rule="openat path2=/usr/lib/** => cont"', flush=True)
for line in sys.stdin:
    if not line.startswith("syscall"):
        continue
    log.write(line); log.flush()
    f = line.split()
    # what the rules say, decided here the slow way, for calls no rule matched
    deny = "/etc/host" in line or "O_WRONLY" in line or "O_RDWR" in line
    print(f[1], "skip-fail EACCES" if deny else "cont", flush=True)
'''


def test_rules_decide_without_asking_and_fall_back(authz, cprog, tmp_path):
    log = tmp_path / "log"
    out = tmp_path / "out"
    r = brokerctl("run", "--audit", "-", "-a", authz(RULES) + f" {log}", "--", "sh", "-c",
                  f"{cprog('opener')} /etc/hostname /etc/os-release; echo x > {out}")
    lines = r.stdout.splitlines()
    assert lines[0] == "/etc/hostname EACCES"
    assert lines[1].startswith("/etc/os-release ok")
    assert "Read-only file system" in r.stderr  # sh's O_WRONLY|O_CREAT open: the flag rule
    seen = log.read_text()
    assert '"/etc/hostname"' not in seen  # settled by the path rule
    assert "O_WRONLY" not in seen  # settled by the flag rule
    assert 'AT_FDCWD, "/usr/lib/' not in seen and 'AT_FDCWD, "/lib/x86_64-linux-gnu/libc.so.6"' in seen  # glob is exact
    assert '"/etc/os-release"' in seen  # no rule matched: asked
    assert 'openat AT_FDCWD, \\"/etc/hostname\\"' in r.stderr  # still audited


def test_bad_rule_is_refused_with_its_text(authz, cprog, tmp_path):
    bad = RULES.replace("arg3&O_WRONLY|O_RDWR", "arg9&O_WRONLY")
    r = brokerctl("run", "-a", authz(bad) + f" {tmp_path / 'log'}", "--", str(cprog("opener")), "/etc/hostname")
    assert "bad matcher 'arg9&O_WRONLY'" in r.stderr
