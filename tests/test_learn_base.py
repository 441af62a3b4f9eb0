"""brokerctl learn --base (issue #17): learn only what a shipped policy denies;
the file written is ONE policy (the base, widened by what the run needed), not
one stacked on the base (a stack can only narrow).  Real programs: a C build
with make under the sandbox, the same build under readonly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_learn import HELLO_C, MAKEFILE, bctl

pytestmark = pytest.mark.skipif(not (shutil.which("make") and shutil.which("cc")), reason="needs make and cc")


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    p = tmp_path / "proj"
    p.mkdir()
    (p / "Makefile").write_text(MAKEFILE.format(extra=""))
    (p / "hello.c").write_text(HELLO_C)
    return p


def _reset(proj: Path) -> None:
    for f in ("hello", "hello.o"):
        (proj / f).unlink(missing_ok=True)


def _learn_twice(tmp_path: Path, proj: Path, base: str, argv: list[str]) -> Path:
    policy, again = tmp_path / "learned.toml", tmp_path / "again.toml"
    for out in (policy, again):
        _reset(proj)
        r = bctl("learn", "--base", base, "-o", str(out), "--", *argv, cwd=proj)
        assert r.returncode == 0, r.stderr
    assert policy.read_text() == again.read_text(), "learning twice gave different files"
    check = bctl("policy", "check", str(policy), cwd=proj)
    assert check.returncode == 0 and ": ok:" in check.stdout and base in check.stdout, check.stdout + check.stderr
    return policy


def test_sandbox_base_widened_by_what_make_needed(tmp_path, proj):
    """Under the sandbox (the build tree read-write, the system read-only) make
    fails: gcc's temporaries in /tmp are outside.  Learned on that base, the
    file is the sandbox plus the temporaries: the build runs confined, files
    the sandbox allows and the run never touched stay allowed, what neither
    allows stays denied."""
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("TOP-SECRET-BASE\n")
    base = f"sandbox:{proj},--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/etc"
    _reset(proj)
    r = bctl("run", "--policy", base, "--", "make", cwd=proj)
    assert r.returncode != 0, "the base alone lets the build run: nothing to learn"

    policy = _learn_twice(tmp_path, proj, base, ["make"])
    text = policy.read_text()
    assert f'base = "{base}"' in text and 'path = ["/tmp/*.s"]' in text
    assert f"{proj}" not in text.split("base = ")[1].split("\n", 1)[1], "learned what the base allows already"
    _reset(proj)
    r = bctl("run", "--policy", str(policy), "--", "make", cwd=proj)
    assert r.returncode == 0, r.stderr
    assert subprocess.run([str(proj / "hello")], capture_output=True, text=True, timeout=120).stdout == "hello, confined\n"
    # the base still decides the rest: its tree is writable (never learned), the secret is not readable
    r = bctl("run", "--policy", str(policy), "--", "sh", "-c", f"echo new > {proj}/new.txt; cat {secret}", cwd=proj)
    assert (proj / "new.txt").read_text() == "new\n"
    assert r.returncode != 0 and "TOP-SECRET" not in r.stdout and "Permission denied" in r.stderr


def test_readonly_base_learns_the_writes(tmp_path, proj):
    """readonly + make: the build's writes (its tree, gcc's temporaries) are
    learned; any other write is still EROFS, reading anything still works."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    policy = _learn_twice(tmp_path, proj, "readonly", ["make"])
    _reset(proj)
    r = bctl("run", "--policy", str(policy), "--", "make", cwd=proj)
    assert r.returncode == 0, r.stderr
    r = bctl("run", "--policy", str(policy), "--", "sh", "-c", f"cat /etc/hostname; echo x > {elsewhere}/f",
             cwd=proj)
    assert r.stdout.strip() and "Read-only file system" in r.stderr
    assert not (elsewhere / "f").exists()


@pytest.mark.parametrize("landlock", [[], ["--no-landlock"]], ids=["layer", "per-call"])
def test_a_learned_read_does_not_open_for_writing(tmp_path, landlock):
    """A file the run only read, outside the sandbox: the widened policy
    opens it for reading; opening it for writing goes on to the base, which
    denies it (a read grant is no write grant), in the kernel layer and in
    the per-call rules alike."""
    work, outside = tmp_path / "w", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    data = outside / "data.txt"
    data.write_text("data\n")
    base = f"sandbox:{work},--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/etc"
    policy = tmp_path / "p.toml"
    r = bctl("learn", "--base", base, "-o", str(policy), "--", "cat", str(data), cwd=work)
    assert r.returncode == 0 and r.stdout == "data\n", r.stderr
    r = bctl("run", *landlock, "--policy", str(policy), "--", "cat", str(data), cwd=work)
    assert r.returncode == 0 and r.stdout == "data\n", r.stderr
    r = bctl("run", *landlock, "--policy", str(policy), "--", "sh", "-c", f"echo changed >> {data}", cwd=work)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    assert data.read_text() == "data\n"


def test_bad_base_is_one_line(tmp_path):
    for base, why in (("nosuch", "no shipped policy"), ("audit", "no shipped policy"),
                      ("sandbox:--bogus", "unrecognized arguments")):
        r = bctl("learn", "--base", base, "-o", str(tmp_path / "x.toml"), "--", "true", cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and why in r.stderr, r.stderr
    (tmp_path / "b.toml").write_text('base = "sandbox:/nonexistent-x"\ndefault = "deny"\n')
    r = bctl("policy", "check", str(tmp_path / "b.toml"), cwd=tmp_path)
    assert r.returncode == 1 and "does not apply with a base" in r.stderr and "Traceback" not in r.stderr


def test_network_base_learns_the_sends(tmp_path):
    """network base allowing the TCP and UDP ports: only the AF_UNIX sends
    are learned (sendmsg's UDP destination is judged from the journal's
    record, so it is not learned as a denial of the base); the widened policy
    runs the program, the base still denies a new address."""
    from test_learn_net import ENV, PROG, PY, _free_ports

    work = tmp_path / "w"
    work.mkdir()
    tcp, udp, udp2 = _free_ports(3)
    base = f"network:127.0.0.1:{tcp},127.0.0.1:{udp}"
    argv = [*PY, PROG, str(tcp), str(udp), str(work / "sock")]
    policy = tmp_path / "n.toml"
    r = bctl("learn", "--base", base, "-o", str(policy), "--", *argv, cwd=work, env=ENV)
    assert r.returncode == 0, r.stderr
    rules = policy.read_text().split("name = ")[1]
    assert f'addr = ["unix:{work / "sock"}"]' in rules and "127.0.0.1" not in rules and "sendmsg" not in rules, rules
    r = bctl("run", "--policy", str(policy), "--", *argv, cwd=work, env=ENV)
    assert r.stdout.split() == ["tcp", "tcp", "sendto", "udp", "sendmsg", "msg", "unix", "unix"], r.stdout + r.stderr
    r = bctl("run", "--policy", str(policy), "--", *argv, str(tcp), str(udp2), str(work / "sock"), cwd=work, env=ENV)
    assert r.stdout.split()[2:6] == ["sendto", "EACCES", "sendmsg", "EACCES"], r.stdout + r.stderr
