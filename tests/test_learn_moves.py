"""brokerd learn, calls with two paths (issue #17): a rename or link is
allowed only by a rule that covers both its paths, by position: the learned
policy allows the moves the run made (within its tree, and from the staging
directory it made into its tree) and no other, so a changed program that
renames a file it only read into its writable tree is denied, and
``learn --check`` reports it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_learn import bctl

PY = ["/usr/bin/python3", "-S"]
ENV = {"PYTHONDONTWRITEBYTECODE": "1"}
SCRIPT = """\
import os, sys
stage, data = sys.argv[1], sys.argv[2]
os.mkdir(stage)
with open(os.path.join(stage, "part"), "w") as f:
    f.write(open(data).read().upper())
os.rename(os.path.join(stage, "part"), "report.tmp")      # from the staging directory into the tree
os.rmdir(stage)
os.rename("report.tmp", "report.txt")                      # within the tree
for extra in sys.argv[3:]:                                 # the changed program: more moves
    src, dst = extra.split("=")
    try:
        os.rename(src, dst)
        print("moved", dst)
    except OSError as e:
        print("denied", dst, e.strerror)
print(open("report.txt").read().strip())
"""


@pytest.fixture
def setup(tmp_path: Path):
    work, outside = tmp_path / "w", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "mover.py").write_text(SCRIPT)
    (outside / "data.txt").write_text("data\n")
    return work, outside, tmp_path / "stage"


def _reset(work: Path, stage: Path) -> None:
    (work / "report.txt").unlink(missing_ok=True)
    shutil.rmtree(stage, ignore_errors=True)


@pytest.mark.parametrize("landlock", [[], ["--no-landlock"]], ids=["layer", "per-call"])
def test_rename_needs_both_paths_covered(setup, tmp_path, landlock):
    work, outside, stage = setup
    argv = [*PY, "mover.py", str(stage), str(outside / "data.txt")]
    policy, again = tmp_path / "p.toml", tmp_path / "again.toml"
    for out in (policy, again):
        _reset(work, stage)
        r = bctl("learn", "-o", str(out), "--", *argv, cwd=work, env=ENV)
        assert r.returncode == 0 and r.stdout == "DATA\n", r.stderr
    assert policy.read_text() == again.read_text(), "learning twice gave different files"
    text = policy.read_text()
    assert f'from = ["{stage}/**"]\nto = ["{work}/**"]' in text  # the move the run made, by position
    assert bctl("policy", "check", str(policy), cwd=work).returncode == 0

    _reset(work, stage)
    r = bctl("run", *landlock, "--policy", str(policy), "--", *argv, cwd=work, env=ENV)
    assert r.returncode == 0 and r.stdout == "DATA\n", r.stdout + r.stderr

    # the changed program: moves the file it only read into its tree, and a tree file back out
    (work / "mine.txt").write_text("mine\n")
    changed = [*argv, f"{outside / 'data.txt'}={work / 'stolen.txt'}", f"{work / 'mine.txt'}={stage}.txt"]
    _reset(work, stage)
    r = bctl("run", *landlock, "--policy", str(policy), "--", *changed, cwd=work, env=ENV)
    assert r.returncode == 0, r.stderr
    assert f"denied {work / 'stolen.txt'} Permission denied" in r.stdout, r.stdout
    assert f"denied {stage}.txt" in r.stdout, r.stdout
    assert (outside / "data.txt").exists() and not (work / "stolen.txt").exists()
    assert (work / "mine.txt").exists()


def test_check_reports_the_rename(setup, tmp_path):
    """learn --check replays through the per-call rules only (no layer): the
    rename out of the read-only file's directory is listed."""
    work, outside, stage = setup
    argv = [*PY, "mover.py", str(stage), str(outside / "data.txt")]
    policy = tmp_path / "p.toml"
    _reset(work, stage)
    assert bctl("learn", "-o", str(policy), "--", *argv, cwd=work, env=ENV).returncode == 0
    _reset(work, stage)
    r = bctl("learn", "--check", str(policy), "--", *argv, f"{outside / 'data.txt'}={work / 'stolen.txt'}",
             cwd=work, env=ENV)
    assert r.returncode == 1, r.stdout + r.stderr
    denied = [line for line in r.stderr.splitlines() if "would deny" in line]
    assert len(denied) == 1 and "rename" in denied[0] and "stolen.txt" in denied[0], r.stderr


def test_rename_across_directories_under_a_layer(tmp_path):
    """A traced program under a policy with a file-system layer renames a
    file from one allowed directory into another (Python's os.rename: no
    copy fallback, as mv has).  The kernel counts ``refer`` as handled by
    every layer of the domain once one handles file rights, so the broker's
    wall must allow it beneath /: without that every such rename was EXDEV."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_text("x")
    policy = tmp_path / "p.toml"
    policy.write_text(f'[layer]\nfs_handled = "all"\nsettle = "none"\n[[layer.fs]]\nrights = "all"\npath = "{tmp_path}"\n'
                      '[[layer.fs]]\nrights = ["read", "execute"]\npaths = ["/usr", "/etc"]\n'
                      '[[rule]]\nsyscall = ["rename"]\nverdict = "allow"\n')
    code = f"import os; os.rename({str(a / 'f')!r}, {str(b / 'f')!r}); print('moved')"
    r = bctl("run", "--policy", str(policy), "--", *PY, "-c", code, cwd=tmp_path, env=ENV)
    assert r.returncode == 0 and r.stdout == "moved\n", r.stderr
    # the layer still decides: out of the allowed tree is refused
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir(exist_ok=True)
    (outside / "g").write_text("y")
    code = f"import os; os.rename({str(outside / 'g')!r}, {str(b / 'g')!r})"
    r = bctl("run", "--policy", str(policy), "--", *PY, "-c", code, cwd=tmp_path, env=ENV)
    assert r.returncode != 0 and (outside / "g").exists()
