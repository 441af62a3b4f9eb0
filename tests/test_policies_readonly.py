"""The read-only policy against real programs."""

from __future__ import annotations

import sys

import pytest
from conftest import brokerctl, landlock_brokerctl
from test_clients_progs import progs  # noqa: F401


@pytest.fixture(autouse=True, params=["landlock", "no-landlock"])
def landlock_mode(request, monkeypatch):
    """Every test twice: with the policy's Landlock layer, and per call only."""
    monkeypatch.setattr(sys.modules[__name__], "brokerctl", landlock_brokerctl(request.param))
    return request.param


def test_writes_fail_with_erofs_reads_work(tmp_path, progs):  # noqa: F811
    (tmp_path / "f").write_text("data\n")
    (tmp_path / "d").mkdir()
    r = brokerctl("run", "--policy", "readonly", "--", progs["fsops"], f"open:{tmp_path}/f", f"write:{tmp_path}/f",
                  f"write:{tmp_path}/new", f"mkdir:{tmp_path}/m", f"unlink:{tmp_path}/f", f"rename:{tmp_path}/f:{tmp_path}/g",
                  f"chmod:{tmp_path}/f", f"symlink:x:{tmp_path}/l", f"link:{tmp_path}/f:{tmp_path}/h", "write:/dev/null")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["open ok"] + [f"{a} EROFS" for a in
                                                   ("write", "write", "mkdir", "unlink", "rename", "chmod", "symlink", "link")] + ["write ok"]
    assert (tmp_path / "f").read_text() == "data\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]


def test_shell_pipeline_and_coreutils(tmp_path):
    (tmp_path / "f").write_text("hello\n")
    r = brokerctl("run", "--policy", "readonly", "--", "sh", "-c",
                  f"cd {tmp_path}; cat f | tr a-z A-Z; echo x > g; touch f; rm f; cp f g; echo done >/dev/null; echo ok")
    assert r.stdout == "HELLO\nok\n"
    for msg in ("cannot create g: Read-only file system", "cannot touch 'f': Read-only file system",
                "cannot remove 'f': Read-only file system", "Read-only file system"):
        assert msg in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_allow_dir_and_python(tmp_path):
    w = tmp_path / "w"
    w.mkdir()
    code = ("import os\n"
            f"open('{w}/ok.txt', 'w').write('x')\n"
            f"try:\n open('{tmp_path}/no.txt', 'w')\nexcept OSError as e: print(e.errno == __import__('errno').EROFS)\n")
    r = brokerctl("run", "--policy", f"readonly:--allow={w}", "--", sys.executable, "-S", "-c", code)
    assert r.stdout == "True\n", r.stderr
    assert (w / "ok.txt").read_text() == "x"
    assert not (tmp_path / "no.txt").exists()
