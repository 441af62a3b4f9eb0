"""brokerctl policy explain: where each call of a policy is decided (issue #12)."""

from __future__ import annotations

import pytest
from conftest import brokerctl

from brokerd.tracer import landlock


def _sections(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    return {line.rsplit(":", 1)[0]: nxt.split() for line, nxt in zip(lines, lines[1:], strict=False)
            if line.endswith(tuple("0123456789")) and not line.startswith(" ")}


@pytest.mark.skipif(landlock.abi_version() < 3, reason="needs Landlock ABI 3 for opens to settle")
def test_sandbox_explained_on_this_kernel(tmp_path):
    r = brokerctl("policy", "explain", f"sandbox:{tmp_path},--ro=/usr", "openat", "stat", "read", "getcpu", "symlink",
                  "chmod", "ioctl", "clone")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"    all beneath: {tmp_path}" in out.splitlines()
    assert "    read,execute beneath: /usr" in out.splitlines()
    sections = _sections(out)
    assert sections["Landlock layer (kernel, no stop)"] == ["openat"]
    # no Landlock right for a file's mode, nor for a symlink's target
    assert sections["the authorizer (per call)"] == ["symlink", "chmod"]
    assert sections["unjudged while the layer is in force (no stop)"] == ["stat"]  # metadata: contents are guarded
    assert sections["seccomp filter: runs (no stop)"] == ["read"]
    assert sections["seccomp filter: fails with ENOSYS (no stop)"] == ["getcpu"]
    # TIOCSTI and namespace flags: register tests in the filter, no stop
    assert sorted(sections["seccomp filter: argument rules, then runs (no stop)"]) == ["clone", "ioctl"]
    assert "lacks nothing" in out
    # what keeps the sandbox on the tracer path, over all calls (not only those asked about)
    assert "tracer: needed" in out and "mode, owner, times" in out and "chmod" in out.split("tracer:")[1]


def test_without_landlock_everything_is_per_call(tmp_path):
    r = brokerctl("policy", "explain", "--no-landlock", f"sandbox:{tmp_path}", "openat", "execve")
    assert r.returncode == 0, r.stderr
    assert "the authorizer (per call): 2" in r.stdout
    assert "lacks: Landlock" in r.stdout and "per call: " in r.stdout


def test_unknown_syscall_is_a_usage_error():
    r = brokerctl("policy", "explain", "readonly", "opneat")
    assert r.returncode == 2 and "opneat" in r.stderr and "Traceback" not in r.stderr


def test_readonly_sums_up_its_character_devices():
    # before: the layer line named all ~90 character devices of /dev, one
    # fs="write,truncate /dev/..." attribute each, on one 3,000-character line
    r = brokerctl("policy", "explain", "readonly", "openat")
    assert r.returncode == 0, r.stderr
    layer = r.stdout.split("kernel layer: ", 1)[1].split("\n")
    assert layer[0].startswith("fs-handled=") and 'fs="' not in layer[0]
    assert layer[1].startswith("    write,truncate beneath: ") and "null" in layer[1]
    assert len(layer[1]) < 200  # here: "91 entries of /dev (null, pts, tty, zero, urandom, random, ...)"
