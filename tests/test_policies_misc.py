"""audit, fakeid, timeshift and strict against real programs."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import pytest
from conftest import brokerctl
from test_clients_progs import progs  # noqa: F401

pytestmark = pytest.mark.usefixtures("policy_mode")  # each test in-process and as a process

# -- audit ------------------------------------------------------------------

def test_audit_logs_every_call_with_its_result(tmp_path):
    log = tmp_path / "audit.jsonl"
    r = brokerctl("run", "--policy", f"audit:{log}", "--", "cat", "/etc/hostname", "/nonexistent")
    assert r.returncode == 1
    assert r.stdout == open("/etc/hostname").read()
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    calls = [x for x in recs if "name" in x]
    opens = {x["call"].split('"')[1]: x["result"] for x in calls if x["name"] == "openat" and '"/' in x["call"]}
    assert opens["/etc/hostname"].startswith("ok ")
    assert opens["/nonexistent"] == "fail ENOENT"
    assert any(x["name"] == "exit_group" and x["result"] is None for x in calls)
    assert any(x.get("proc") == "exec" for x in recs)
    assert all(x["event"].startswith("syscall ") and x["verdict"] == "cont" for x in calls)


def test_audit_narrowed_shell_pipeline(tmp_path):
    log = tmp_path / "a.jsonl"
    r = brokerctl("run", "--policy", f"audit:{log},--trace=execve+pipe2+pipe", "--", "sh", "-c", "echo hi | tr h H")
    assert r.stdout == "Hi\n"
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    names = {x.get("name") for x in recs} - {None}
    assert names and names <= {"execve", "pipe2", "pipe"}
    assert {"pipe", "pipe2"} & names
    assert [x["event"].split('"')[1] for x in recs if x.get("proc") == "exec"] == [os.path.realpath("/bin/sh"), os.path.realpath(shutil.which("tr"))]


def test_audit_logs_a_fork_with_the_child_it_made(tmp_path):
    """A stepped clone/fork's result now reaches authorizers: the journal
    records the child's pid as its result (before: logged at entry with
    "result": null), the pid the following proc fork/clone line names."""
    log = tmp_path / "a.jsonl"
    r = brokerctl("run", "--policy", f"audit:{log},--trace=clone+clone3+fork+vfork", "--",
                  "sh", "-c", "/bin/true & wait; /bin/true")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    made = [x for x in recs if x.get("name") in ("clone", "clone3", "fork", "vfork")]
    children = {x["event"].split()[-1] for x in recs if x.get("proc") in ("fork", "vfork", "clone")}
    assert len(made) >= 2, recs
    assert all(x["result"] is not None and x["result"].startswith("ok ") for x in made), made
    assert {x["result"].split()[1] for x in made} <= children


# -- fakeid -----------------------------------------------------------------

def test_fakeid_default_zero_and_given_ids(progs):  # noqa: F811
    r = brokerctl("run", "--policy", "fakeid:4242,77", "--", progs["fsops"], "ids")
    assert r.stdout == "uid 4242 euid 4242 gid 77 egid 77 res 4242 4242 4242 resg 77 77 77\n", r.stderr
    r = brokerctl("run", "--policy", "fakeid", "--", progs["fsops"], "ids")
    assert r.stdout == "uid 0 euid 0 gid 0 egid 0 res 0 0 0 resg 0 0 0\n"


def test_fakeid_coreutils_and_python():
    assert brokerctl("run", "--policy", "fakeid:1234", "--", "id", "-u").stdout == "1234\n"
    r = brokerctl("run", "--policy", "fakeid:1234,55", "--", sys.executable, "-S", "-c",
                  "import os; print(os.getuid(), os.getgid(), os.getresuid())")
    assert r.stdout == "1234 55 (1234, 1234, 1234)\n"


# -- timeshift --------------------------------------------------------------

def _clock(out: str) -> dict[str, list[int]]:
    return {ln.split()[0]: [int(x) for x in ln.split()[1:]] for ln in out.splitlines()}


def test_timeshift_syscalls_shifted(progs):  # noqa: F811
    r = brokerctl("run", "--policy", "timeshift:-1d", "--", progs["fsops"], "clock")
    assert r.returncode == 0, r.stderr
    c = _clock(r.stdout)
    expect = time.time() - 86400
    for key in ("clock_gettime", "gettimeofday", "time"):
        assert abs(c[key][0] - expect) < 30, (key, c[key])
    assert c["time"][0] == c["time"][1]  # the return value and *tloc agree
    assert 0 <= c["clock_gettime"][1] < 10**9
    assert abs(c["monotonic"][0] - time.monotonic()) < 30  # not a wall clock: untouched


def test_timeshift_absolute_and_vdso_limit(progs):  # noqa: F811
    r = brokerctl("run", "--policy", "timeshift:@946684800", "--", progs["fsops"], "clock")
    assert 946684800 <= _clock(r.stdout)["gettimeofday"][0] < 946684800 + 30
    # glibc's clock_gettime goes through the vDSO: no syscall, no shift (documented limit)
    r = brokerctl("run", "--policy", "timeshift:@946684800", "--", "date", "+%Y")
    assert r.stdout.strip() == time.strftime("%Y")


# -- strict -----------------------------------------------------------------

def test_strict_armed_by_prctl_kills_other_calls(progs):  # noqa: F811
    r = brokerctl("run", "--policy", "strict", "--", progs["fsops"], "open:/etc/hostname", "strict",
                  "open:/etc/hostname", input="abc\n")
    assert r.stdout == "open ok\narmed 0\nread 4\n"
    assert r.returncode == -9  # SIGKILL at the open after arming


def test_strict_read_write_exit_survive(progs):  # noqa: F811
    r = brokerctl("run", "--policy", "strict", "--", progs["fsops"], "strict", "exit:3", input="")
    assert r.stdout == "armed 0\nread 0\n"
    assert r.returncode == 3


def test_strict_now_static_program(progs):  # noqa: F811
    r = brokerctl("run", "--policy", "strict:--now", "--", progs["tiny"])
    assert r.stdout == "jailed\n"
    assert r.returncode == -9


def test_strict_now_kills_dynamic_program():
    r = brokerctl("run", "--policy", "strict:--now", "--", "true")
    assert r.returncode == -9
