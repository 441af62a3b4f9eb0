"""The path sandbox policy against real programs."""

from __future__ import annotations

import os
import sys

import pytest
from conftest import brokerctl
from test_clients_progs import progs  # noqa: F401

SYSTEM_RO = "--ro=/usr,--ro=/lib64,--ro=/etc/ld.so.cache"


@pytest.fixture
def box(tmp_path):
    box = tmp_path / "box"
    box.mkdir()
    (box / "in.txt").write_text("inside\n")
    (tmp_path / "secret.txt").write_text("outside\n")
    os.symlink(tmp_path / "secret.txt", box / "escape")  # planted from outside
    return box


def run(box, *argv: str):
    # the program itself must be reachable: its directory is read-only in the box
    exe_dir = os.path.dirname(argv[0]) if "/" in argv[0] else "/usr/bin"
    return brokerctl("run", "--policy", f"sandbox:{box},{SYSTEM_RO},--ro={exe_dir}", "--", *argv)


def test_allows_inside_denies_outside(box, progs):  # noqa: F811
    r = run(box, progs["fsops"], f"open:{box}/in.txt", "open:/etc/hostname", f"open:{box}/../secret.txt",
            f"open:{box}/escape", f"write:{box}/new.txt", "write:/tmp/brokerd-sandbox-test")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["open ok", "open EACCES", "open EACCES", "open EACCES", "write ok", "write EACCES"]
    assert (box / "new.txt").read_text() == "x\n"


def test_relative_paths_cwd_and_dirfd(box, progs):  # noqa: F811
    r = run(box, progs["fsops"], f"chdir:{box}", "open:in.txt", "open:../secret.txt", "open:escape",
            f"openat:{box}:in.txt", f"openat:{box}:../secret.txt", "chdir:/usr", "open:bin/sh")
    assert r.stdout.splitlines() == ["chdir ok", "open ok", "open EACCES", "open EACCES",
                                     "openat ok", "openat EACCES", "chdir ok", "open ok"]


def test_links_denied_unknown_syscalls_enosys(box, progs):  # noqa: F811
    r = run(box, progs["fsops"], f"symlink:/etc/shadow:{box}/s", f"link:{box}/in.txt:{box}/h", "getcpu",
            f"mkdir:{box}/sub", "mkdir:/tmp/brokerd-nope", f"unlink:{box}/in.txt")
    assert r.stdout.splitlines() == ["symlink EPERM", "link EPERM", "getcpu ENOSYS", "mkdir ok",
                                     "mkdir EACCES", "unlink ok"]
    assert not os.path.lexists(box / "s")


def test_read_only_dirs_are_not_writable(box, progs):  # noqa: F811
    ro = box.parent / "ro"
    ro.mkdir()
    (ro / "f").write_text("ro\n")
    r = brokerctl("run", "--policy", f"sandbox:{box},--ro={ro},{SYSTEM_RO},--ro={os.path.dirname(progs['fsops'])}",
                  "--", progs["fsops"],
                  f"open:{ro}/f", f"write:{ro}/f", f"chmod:{ro}/f", f"rename:{ro}/f:{box}/f")
    assert r.stdout.splitlines() == ["open ok", "write EACCES", "chmod EACCES", "rename EACCES"]


def test_coreutils_and_shell_pipeline(box):
    r = run(box, "sh", "-c", f"cd {box} && cat in.txt && cat escape; echo piped | tr a-z A-Z > out.txt; "
                             "cat out.txt; ls /etc >/dev/null 2>&1 || echo no-etc")
    assert "inside\n" in r.stdout
    assert "outside" not in r.stdout
    assert "escape: Permission denied" in r.stderr
    assert "PIPED\n" in r.stdout
    assert "no-etc\n" in r.stdout


def test_python_inside(box):
    # Python needs its own tree readable (it is under /usr or the venv).
    prefix = os.path.realpath(sys.base_prefix)
    r = brokerctl("run", "--policy", f"sandbox:{box},{SYSTEM_RO},--ro={prefix},--ro={os.path.realpath(sys.prefix)}",
                  "--", sys.executable, "-S", "-c",
                  f"print(open('{box}/in.txt').read().strip())\n"
                  "try:\n open('/etc/hostname')\nexcept OSError as e: print(e.strerror)")
    assert r.stdout.splitlines() == ["inside", "Permission denied"], r.stderr


def test_make_runs_inside_the_sandbox(tmp_path):
    # make (as root) calls setresuid; identity calls must not be refused
    (tmp_path / "Makefile").write_text("all:\n\techo built > out.txt\n")
    from conftest import brokerctl

    r = brokerctl("run", "--policy", f"sandbox:{tmp_path},--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/etc",
                  "--", "make", "-s", "-C", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.txt").read_text() == "built\n"


def test_a_sandbox_directory_that_does_not_exist_is_warned_about(tmp_path):
    missing = tmp_path / "no-such-box"
    r = brokerctl("run", "--policy", f"sandbox:{missing},{SYSTEM_RO},--ro=/usr/bin", "--", "true")
    assert r.returncode == 0, r.stderr
    assert f"sandbox: warning: {missing} does not exist" in r.stderr
