"""Landlock's own denials in brokerd's journal (issue #12, "Denials stay
visible"): the kernel's audit records of a Landlock-settled denial become a
journal record with the per-call record's fields and ``by: "landlock"``."""

from __future__ import annotations

import json
import os

import pytest
from conftest import brokerctl

from brokerd.tracer import auditlog, landlock
from brokerd.tracer.auditlog import (
    AUDIT_EOE,
    AUDIT_LANDLOCK_ACCESS,
    AUDIT_LANDLOCK_DOMAIN,
    AUDIT_SYSCALL,
    Correlator,
    parse_record,
)

# real records, read from AUDIT_NLGRP_READLOG on Linux 6.18 (cat /etc/hostname in a sandbox)
ACCESS = ('audit(1796068766.406:6): domain=154db704e blockers=fs.read_file path="/etc/hostname" '
          'dev="vda" ino=612')
DOMAIN = ('audit(1796068766.406:6): domain=154db704e status=allocated mode=enforcing pid=32146 uid=0 '
          'exe="/root/.pyenv/versions/3.11.7/bin/python3.11" comm="brokerctl"')
SYSCALL = ('audit(1796068766.406:6): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c '
           'a1=7ffe9bdc7ad5 a2=0 a3=0 items=0 ppid=32145 pid=32146 auid=4294967295 uid=0 gid=0 euid=0 '
           'suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="cat" exe="/usr/bin/cat" '
           'key=(null)')
EOE = 'audit(1796068766.406:6): '


def test_parse_record_decodes_quoted_and_hex_paths():
    serial, f = parse_record(ACCESS)
    assert serial == 6 and f["domain"] == "154db704e" and f["path"] == "/etc/hostname"
    # a path with a space is written in hex by the kernel (audit_log_untrustedstring)
    _, f = parse_record('audit(1.2:7): domain=1 blockers=fs.write_file path=2F746D702F612062 dev="vda" ino=1')
    assert f["path"] == "/tmp/a b"
    with pytest.raises(ValueError):
        parse_record("type=1423 msg=garbage")


def feed_all(c: Correlator, records) -> list[dict]:
    out = []
    for t, text in records:
        out += [r.to_json() for r in c.feed(t, text)]
    return out


def test_a_denial_of_the_sessions_domain_has_the_per_call_fields():
    c = Correlator(lambda pid: pid == 32146)
    recs = feed_all(c, [(AUDIT_LANDLOCK_ACCESS, ACCESS), (AUDIT_LANDLOCK_DOMAIN, DOMAIN),
                        (AUDIT_SYSCALL, SYSCALL), (AUDIT_EOE, EOE)])
    assert len(recs) == 1
    r = recs[0]
    assert (r["pid"], r["call"], r["verdict"], r["by"], r["path"], r["blockers"]) == (
        32146, "openat", "fail EACCES", "landlock", "/etc/hostname", "fs.read_file")


def test_another_sessions_domain_is_ignored():
    c = Correlator(lambda pid: False)
    assert feed_all(c, [(AUDIT_LANDLOCK_ACCESS, ACCESS), (AUDIT_LANDLOCK_DOMAIN, DOMAIN),
                        (AUDIT_SYSCALL, SYSCALL)]) == []
    # and an ACCESS record of a domain never announced (made before we listened) too
    c = Correlator(lambda pid: True)
    assert feed_all(c, [(AUDIT_LANDLOCK_ACCESS, ACCESS), (AUDIT_SYSCALL, SYSCALL)]) == []


def test_a_denial_without_a_syscall_record_comes_out_at_the_end():
    c = Correlator(lambda pid: True)
    assert feed_all(c, [(AUDIT_LANDLOCK_DOMAIN, DOMAIN), (AUDIT_LANDLOCK_ACCESS, ACCESS)]) == []
    [r] = [d.to_json() for d in c.flush()]
    assert r["path"] == "/etc/hostname" and r["verdict"] == "fail EACCES" and r["by"] == "landlock"


def test_garbage_records_are_dropped_not_raised():
    c = Correlator(lambda pid: True)
    assert feed_all(c, [(AUDIT_LANDLOCK_ACCESS, "nonsense"), (AUDIT_SYSCALL, "audit(x): y")]) == []


@pytest.fixture
def audit_on():
    """Kernel audit enabled for the test (machine-wide AUDIT_SET), the previous state restored."""
    if os.geteuid() != 0:
        pytest.skip("enabling kernel audit and reading its records needs root")
    if landlock.abi_version() < 7:
        pytest.skip("Landlock reports its denials to audit from ABI 7")
    try:
        prev = auditlog.audit_enabled()
        if prev == 2:
            pytest.skip("audit is locked (enabled=2): its state cannot be set")
        auditlog.set_audit_enabled(1)
    except OSError as e:
        pytest.skip(f"kernel audit cannot be enabled here: {e.strerror}")
    try:
        yield
    finally:
        auditlog.set_audit_enabled(prev)


def test_a_landlock_denial_is_in_the_run_journal(tmp_path, audit_on):
    box = tmp_path / "box"
    box.mkdir()
    secret = tmp_path / "secret"
    secret.write_text("no\n")
    journal = tmp_path / "j.jsonl"
    r = brokerctl("run", "--audit", str(journal), "--policy",
                  f"sandbox:{box},--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/bin,--ro=/etc", "--", "cat", str(secret))
    assert r.returncode == 1 and "Permission denied" in r.stderr
    recs = [json.loads(line) for line in journal.read_text().splitlines()]
    mine = [x for x in recs if x.get("path") == str(secret)]
    assert [(x["call"], x["verdict"], x["by"], x["blockers"]) for x in mine] == [
        ("openat", "fail EACCES", "landlock", "fs.read_file")], recs
    assert mine[0]["pid"] > 0
    # settled by Landlock: no per-call decision about the file (zero stops for it)
    assert not [x for x in recs if str(secret) in x.get("event", "")], recs


def test_a_landlock_denial_reaches_the_daemons_audit_log(tmp_path, audit_on):
    """The same record in the daemon's audit trail (the shim's copy to the
    daemon, `Control.tee_audit`), for a session the daemon audits."""
    from daemon_fixtures import Daemon
    from waiting import wait_for

    box = tmp_path / "box"
    box.mkdir()
    secret = tmp_path / "secret"
    secret.write_text("no\n")
    log = tmp_path / "audit.jsonl"
    d = Daemon(tmp_path / "d", "--audit-log", str(log))
    try:
        r = brokerctl("run", "--policy", f"sandbox:{box},--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/bin,--ro=/etc",
                      "--", "cat", str(secret), env=d.env)
        assert r.returncode == 1 and "Permission denied" in r.stderr

        def mine() -> list[dict]:
            recs = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
            return [x for x in recs if x.get("path") == str(secret)]

        [rec] = wait_for(mine, what="the Landlock denial in the daemon's audit log")
        assert (rec["call"], rec["verdict"], rec["by"], rec["blockers"]) == (
            "openat", "fail EACCES", "landlock", "fs.read_file"), rec
        assert rec["uid"] == 0 and isinstance(rec["session"], int) and rec["pid"] > 0
    finally:
        d.stop()
