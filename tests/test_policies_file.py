"""Declarative TOML policies: running them, and `brokerctl policy check`."""

from __future__ import annotations

import textwrap

import pytest
from brokerd.clients.policies.rulefile import PolicyFileError, loads
from conftest import brokerctl
from test_clients_progs import progs  # noqa: F401

pytestmark = pytest.mark.usefixtures("policy_mode")  # each test in-process and as a process

POLICY = '''
name = "demo"
default = "allow"

[[rule]]
syscall = ["openat", "open"]
path = "/etc/shadow*"
verdict = "skip-fail EACCES"

[[rule]]
syscall = ["openat", "open", "creat"]
writes = true
not_path = "{tmp}/**"
verdict = "deny"

[[rule]]
syscall = ["mkdir", "mkdirat"]
raw_path = "forbidden*"
verdict = "skip-fail EDQUOT"

[[rule]]
syscall = ["getuid", "geteuid"]
result = "ok 4242"

[[rule]]
syscall = "unlinkat"
flags = "AT_REMOVEDIR"
verdict = "skip-fail EBUSY"
'''


@pytest.fixture
def policy(tmp_path):
    path = tmp_path / "demo.toml"
    path.write_text(POLICY.format(tmp=tmp_path))
    return path


def test_policy_file_against_programs(tmp_path, policy, progs):  # noqa: F811
    (tmp_path / "d").mkdir()
    r = brokerctl("run", "--policy", str(policy), "--", progs["fsops"], "open:/etc/shadow", "open:/etc/hostname",
                  f"write:{tmp_path}/ok", "write:/tmp/brokerd-demo-no", f"chdir:{tmp_path}", "mkdir:forbidden1",
                  "mkdir:fine", "ids")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:7] == ["open EACCES", "open ok", "write ok", "write EPERM", "chdir ok",
                                         "mkdir EDQUOT", "mkdir ok"]
    assert r.stdout.splitlines()[7].startswith("uid 4242 euid 4242 gid ")


def test_policy_file_shell_and_file_prefix(tmp_path, policy):
    (tmp_path / "d").mkdir()
    r = brokerctl("run", "--policy", f"file:{policy}", "--", "sh", "-c",
                  f"cat /etc/shadow; echo x > {tmp_path}/y; rm -r {tmp_path}/d; id -u")
    assert r.stdout == "4242\n"
    assert "/etc/shadow: Permission denied" in r.stderr
    assert "Device or resource busy" in r.stderr
    assert (tmp_path / "y").read_text() == "x\n"


def test_default_deny_traces_everything(tmp_path, progs):  # noqa: F811
    p = tmp_path / "p.toml"
    p.write_text(textwrap.dedent('''
        default = "deny"
        deny_errno = "ENOSYS"
        [[rule]]
        syscall = "*"
        verdict = "allow"
        [[rule]]
        syscall = "getcpu"
        verdict = "allow"
    '''))
    pol = loads(p.read_text())
    assert pol.trace == "all"
    r = brokerctl("run", "--policy", str(p), "--", progs["fsops"], "getcpu")
    assert r.stdout == "getcpu ok\n"


def test_check_ok(policy):
    r = brokerctl("policy", "check", str(policy))
    assert r.returncode == 0
    assert r.stdout.startswith(f"{policy}: ok: 5 rules, traces ")


BAD = '''name = "bad"
default = "allow"

[[rule]]
syscall = ["openat", "opn"]
path = "relative/*"
verdict = "skip-fail EACCES"

[[rule]]
syscall = "openat"
flags = "O_BOGUS"
arg7 = 1
verdict = "skipfail"

[[rule]]
syscall = "getuid"
verdict = "kill"
result = "ok 0"
'''


def test_check_reports_semantic_errors_with_lines(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(BAD)
    r = brokerctl("policy", "check", str(p))
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert f"{p}:5: rule 1: unknown syscall 'opn'" in lines
    assert any(x.startswith(f"{p}:6: rule 1: path glob 'relative/*' must be absolute") for x in lines)
    assert any(x.startswith(f"{p}:12: rule 2: unknown key 'arg7'") for x in lines)
    assert any(x.startswith(f"{p}:13: rule 2: verdict 'skipfail' is neither a verdict") for x in lines)
    assert any(x.startswith(f"{p}:18: rule 3: a rule with a 'result'") for x in lines)
    assert "Traceback" not in r.stderr


def test_check_reports_toml_syntax_errors_with_lines(tmp_path):
    p = tmp_path / "syntax.toml"
    p.write_text('default = "allow"\n[[rule]]\nsyscall = "openat"\nverdict = skip\n')
    r = brokerctl("policy", "check", str(p))
    assert r.returncode == 1
    assert r.stderr.startswith(f"{p}:4: TOML syntax: ")
    assert len(r.stderr.splitlines()) == 1


def test_run_refuses_a_bad_policy_file_in_one_line(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(BAD)
    r = brokerctl("run", "--policy", str(p), "--", "true")
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and "unknown syscall 'opn'" in r.stderr


def test_missing_file_and_unknown_policy():
    r = brokerctl("policy", "check", "/nonexistent.toml")
    assert r.returncode == 1 and r.stderr.strip() == "/nonexistent.toml: No such file or directory"
    r = brokerctl("run", "--policy", "nosuch", "--", "true")
    assert r.returncode == 2 and "no policy 'nosuch'" in r.stderr


def test_loads_error_object():
    with pytest.raises(PolicyFileError) as e:
        loads('[[rule]]\nsyscall = "read"\n', "x.toml")
    assert e.value.errors == [(1, "rule 1: no 'verdict' (or 'result')")]
