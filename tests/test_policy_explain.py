"""brokerctl policy explain: where each call of a policy is decided (issue #12)."""

from __future__ import annotations

import pytest
from conftest import brokerctl

from brokerd.tracer import landlock


@pytest.mark.skipif(landlock.abi_version() < 3, reason="needs Landlock ABI 3 for opens to settle")
def test_sandbox_explained_on_this_kernel(tmp_path):
    r = brokerctl("policy", "explain", f"sandbox:{tmp_path},--ro=/usr", "openat", "stat", "read", "getcpu", "symlink")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f'fs="all {tmp_path}"' in out
    sections = {line.split(":")[0]: next_line.split() for line, next_line in zip(out.splitlines(), out.splitlines()[1:], strict=False)
                if line.endswith(tuple("0123456789"))}
    assert sections["Landlock layer (kernel, no stop)"] == ["openat"]
    assert sections["the authorizer (per call)"] == ["symlink"]
    assert sections["unjudged while the layer is in force (no stop)"] == ["stat"]  # metadata: contents are guarded
    assert sections["seccomp filter"] in (["read"], ["getcpu"])  # runs / fails with ENOSYS
    assert "ENOSYS" in out and "lacks nothing" in out


def test_without_landlock_everything_is_per_call(tmp_path):
    r = brokerctl("policy", "explain", "--no-landlock", f"sandbox:{tmp_path}", "openat", "execve")
    assert r.returncode == 0, r.stderr
    assert "the authorizer (per call): 2" in r.stdout
    assert "lacks: Landlock" in r.stdout and "per call: " in r.stdout


def test_unknown_syscall_is_a_usage_error():
    r = brokerctl("policy", "explain", "readonly", "opneat")
    assert r.returncode == 2 and "opneat" in r.stderr and "Traceback" not in r.stderr
