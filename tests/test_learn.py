"""brokerctl learn (issue #17): learn a policy from a real run, enforce it, and
the same program succeeds while a changed one that reads outside what was
learned is denied.  Real programs: a C build with make, a Python script that
imports packages and writes a report, git committing to a repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import BROKERCTL

pytestmark = pytest.mark.skipif(not (shutil.which("make") and shutil.which("cc") and shutil.which("git")),
                                reason="needs make, cc and git")

MAKEFILE = """\
all: hello
hello: hello.o
\tcc -o hello hello.o
hello.o: hello.c
\tcc -c hello.c{extra}
clean:
\trm -f hello hello.o
"""
HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello, confined"); return 0; }\n'

REPORT_PY = """\
import csv, io, json, statistics, xml.dom.minidom
from email.mime.text import MIMEText
rows = list(csv.reader(io.StringIO("a,1\\nb,2\\nc,4\\n")))
mean = statistics.mean(int(n) for _, n in rows)
doc = xml.dom.minidom.parseString("<r/>")
mail = MIMEText(json.dumps({"mean": mean}))
with open("report.txt", "w") as f:
    f.write(f"{len(rows)} rows, mean {mean}, {doc.documentElement.tagName}, {mail.get_content_type()}\\n")
{extra}print("report written")
"""


def bctl(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)  # brokerd importable from any cwd
    e.update(env or {})
    return subprocess.run([*BROKERCTL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e)


def learn_and_enforce(tmp_path: Path, work: Path, argv: list[str], reset, env: dict | None = None):
    """Learn twice (same file), then enforce: the run succeeds.  The policy's path."""
    policy, again = tmp_path / "learned.toml", tmp_path / "again.toml"
    r = bctl("learn", "-o", str(policy), "--", *argv, cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    reset()
    r = bctl("learn", "-o", str(again), "--", *argv, cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert policy.read_text() == again.read_text(), "learning twice gave different files"
    check = bctl("policy", "check", str(policy), cwd=work)
    assert check.returncode == 0 and ": ok:" in check.stdout, check.stderr
    reset()
    r = bctl("run", "--policy", str(policy), "--", *argv, cwd=work, env=env)
    assert r.returncode == 0, f"enforced run failed:\n{r.stdout}\n{r.stderr}\n{policy.read_text()}"
    return policy, r


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    s = tmp_path / "outside" / "secret.txt"
    s.parent.mkdir()
    s.write_text("TOP-SECRET-LEARN\n")
    return s


def test_make_learn_enforce_then_changed_build_denied(tmp_path, secret):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "Makefile").write_text(MAKEFILE.format(extra=""))
    (proj / "hello.c").write_text(HELLO_C)

    def reset():
        for f in ("hello", "hello.o"):
            (proj / f).unlink(missing_ok=True)

    policy, r = learn_and_enforce(tmp_path, proj, ["make"], reset)
    assert subprocess.run([str(proj / "hello")], capture_output=True, text=True, timeout=120).stdout == "hello, confined\n"
    text = policy.read_text()
    assert f'path = ["{proj}/**"]' in text  # the build tree, collapsed, read-write
    assert 'path = ["/usr/**"]' in text  # the system, read-only
    assert not re.search(r"/proc/\d", text)  # no pid of this run
    # the kernel layer: the same grants; gcc's temporaries are a name pattern Landlock cannot say,
    # so the layer is a floor under the per-call rules
    assert '[layer]' in text and 'settle = "none"' in text and "/tmp/*.s is a name pattern" in text
    assert re.search(r'rights = \["execute", "read"\]\npath = "/usr"', text)
    assert re.search(rf'rights = \["all"\]\npath = "{re.escape(str(proj))}"', text)

    # the same build, changed to read a file outside what it learned
    (proj / "Makefile").write_text(MAKEFILE.format(extra=f" && cat {secret}"))
    reset()
    r = bctl("run", "--policy", str(policy), "--", "make", cwd=proj)
    assert r.returncode != 0
    assert "TOP-SECRET" not in r.stdout + r.stderr
    assert "Permission denied" in r.stderr

    # --check lists it without enforcing (the build runs, the read is reported)
    reset()
    r = bctl("learn", "--check", str(policy), "--", "make", cwd=proj)
    assert r.returncode == 1, r.stderr
    assert "TOP-SECRET" in r.stdout
    assert 'would deny: ' in r.stderr and f'"{secret}"' in r.stderr and "skip-fail EACCES" in r.stderr


def test_python_script_learn_enforce_then_changed_script_denied(tmp_path, secret):
    work = tmp_path / "py"
    work.mkdir()
    script = work / "report.py"
    script.write_text(REPORT_PY.replace("{extra}", ""))
    python = "/usr/bin/python3"

    def reset():
        (work / "report.txt").unlink(missing_ok=True)

    env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": ""}
    # no -S: site's .pth files put directories on sys.path (setup's brokerd.pth adds /opt/brokerd/python)
    # that the interpreter only lists; listing is learned as the layer's "list" right, not as reading
    # beneath them, so the layer stays exact
    policy, r = learn_and_enforce(tmp_path, work, [python, "report.py"], reset, env)
    assert r.stdout == "report written\n"
    assert (work / "report.txt").read_text() == "3 rows, mean 2.3333333333333335, r, text/plain\n"
    # every grant is one Landlock can say: the kernel decides opens and execs, the seccomp filter
    # the calls that take no path; the broker is asked only about stat-like calls
    assert 'settle = "all"' in policy.read_text()
    if os.path.isdir("/opt/brokerd/python"):  # listed from setup's brokerd.pth: names only
        assert '[[layer.fs]]\nrights = ["list"]\npath = "/opt/brokerd/python"' in policy.read_text()
    audit = tmp_path / "audit.jsonl"
    reset()
    r = bctl("run", "--audit", str(audit), "--policy", str(policy), "--", python, "report.py", cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    asked = {json.loads(line)["call"] for line in audit.read_text().splitlines()}
    assert asked and not asked & {"openat", "execve", "mmap", "read", "brk"}, asked

    script.write_text(REPORT_PY.replace("{extra}", f"print(open({str(secret)!r}).read())\n"))
    r = bctl("run", "--policy", str(tmp_path / "learned.toml"), "--", python, "report.py", cwd=work, env=env)
    assert r.returncode != 0
    assert "PermissionError" in r.stderr and "TOP-SECRET" not in r.stdout


def _git_env(tmp_path: Path) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
            "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z", "LC_ALL": "C"}


def test_git_commit_learn_enforce_then_message_from_outside_denied(tmp_path, secret):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = _git_env(tmp_path)
    git = ["git", "commit", "-q", "-a", "-m", "change"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env={**os.environ, **env}, timeout=120)
    (repo / "file.txt").write_text("0\n")
    subprocess.run(["git", "-C", str(repo), "add", "file.txt"], check=True, env={**os.environ, **env}, timeout=120)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "first"], check=True, env={**os.environ, **env}, timeout=120)
    n = iter(range(1, 100))

    def reset():  # each commit needs a change to commit
        (repo / "file.txt").write_text(f"{next(n)}\n")

    reset()
    learn_and_enforce(tmp_path, repo, git, reset, env)
    log = subprocess.run(["git", "-C", str(repo), "log", "--oneline"], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=120).stdout
    assert len(log.splitlines()) == 4  # first + two learning commits + the enforced one

    reset()
    r = bctl("run", "--policy", str(tmp_path / "learned.toml"), "--", "git", "commit", "-q", "-a", "-F", str(secret),
             cwd=repo, env=env)
    assert r.returncode != 0
    assert "Permission denied" in r.stderr
    log2 = subprocess.run(["git", "-C", str(repo), "log", "--format=%s"], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120).stdout
    assert "TOP-SECRET" not in log2


def test_merge_two_runs_into_one_policy(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "a.txt").write_text("a\n")
    (work / "b.txt").write_text("b\n")
    policy = tmp_path / "p.toml"
    j1, j2 = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    assert bctl("learn", "-o", str(policy), "--journal", str(j1), "--", "cat", "/etc/hostname", cwd=work).returncode == 0
    r = bctl("learn", "-o", str(policy), "--merge", "--journal", str(j2), "--", "head", "-c1", "/etc/os-release",
             cwd=work)
    assert r.returncode == 0, r.stderr
    text = policy.read_text()
    assert "# run: cat /etc/hostname" in text and "# run: head -c1 /etc/os-release" in text
    # both runs succeed under the merged policy; a third file does not
    for argv in (["cat", "/etc/hostname"], ["head", "-c1", "/etc/os-release"]):
        r = bctl("run", "--policy", str(policy), "--", *argv, cwd=work)
        assert r.returncode == 0, r.stderr
    r = bctl("run", "--policy", str(policy), "--", "cat", "/etc/passwd", cwd=work)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    # merging is order-free and repeatable: both journals at once give the same file
    both = tmp_path / "both.toml"
    r = bctl("learn", "-o", str(both), "--from", str(j1), "--from", str(j2), cwd=work)
    assert r.returncode == 0, r.stderr
    strip = lambda t: "\n".join(x for x in t.splitlines() if not x.startswith("# run:"))  # noqa: E731
    assert strip(both.read_text()) == strip(text)


def test_bad_input_is_one_line(tmp_path):
    r = bctl("learn", "--", "true", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "-o" in r.stderr
    (tmp_path / "x.toml").write_text('name = "hand-written"\n')
    r = bctl("learn", "-o", str(tmp_path / "x.toml"), "--merge", "--", "true", cwd=tmp_path)
    assert r.returncode == 2 and "not written by brokerctl learn" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    r = bctl("learn", "-o", str(tmp_path / "y.toml"), "--from", str(tmp_path / "bad.jsonl"), cwd=tmp_path)
    assert r.returncode == 2 and "line 1" in r.stderr and "Traceback" not in r.stderr


def test_replay_judges_paths_resolved_during_the_run(tmp_path):
    """A relative path in a recorded journal: replay (and learn --check) judge
    the path the audit policy resolved while the process lived, instead of
    calling it unknown and denying it (a false alarm before)."""
    work = tmp_path / "w"
    work.mkdir()
    (work / "data.txt").write_text("x\n")
    journal = tmp_path / "j.jsonl"
    r = bctl("run", "--policy", f"audit:{journal}", "--", "stat", "-c", "%s", "data.txt", cwd=work)
    assert r.returncode == 0 and r.stdout == "2\n", r.stderr
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[rule]]\nsyscall = ["statx", "newfstatat", "lstat", "stat"]\n'
                     f'not_path = ["{work}/**", "/usr/**", "/etc/**", "/proc/**", "*:*"]\nverdict = "skip-fail EACCES"\n')
    r = bctl("replay", str(journal), "--policy", str(rules), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 decisions changed" in r.stderr


def test_policy_file_static_rules_are_checked(tmp_path):
    """The rule file's static rules (what learn writes): bad ones are one line each, with the line."""
    f = tmp_path / "s.toml"
    f.write_text('allow = ["brk", "no_such_call"]\nunknown = "deny:NOPE"\n')
    r = bctl("policy", "check", str(f), cwd=tmp_path)
    assert r.returncode == 1
    assert f"{f}:1: allow: unknown syscall 'no_such_call'" in r.stderr
    assert f"{f}:2: unknown 'deny:NOPE': not an errno" in r.stderr
    f.write_text('allow = ["brk"]\nunknown = "deny:ENOSYS"\n[[rule]]\nsyscall = "openat"\nverdict = "allow"\n')
    r = bctl("policy", "check", str(f), cwd=tmp_path)
    assert r.returncode == 0 and "traces openat" in r.stdout, r.stdout + r.stderr


IOCTL_PY = """\
import fcntl, sys, termios
def ioctl(req):
    try:
        fcntl.ioctl(1, req, bytes(64))
        return "ok"
    except OSError as e:
        return str(e.errno)
print("TCGETS", ioctl(termios.TCGETS))
for req in sys.argv[1:]:
    print(req, ioctl(int(req, 0)))
"""


def test_ioctl_is_judged_per_request(tmp_path):
    """The learned policy allows the ioctl requests the run made, not ioctl as a
    whole: TIOCSTI (typing into the user's terminal) is denied, also with high
    bits set (the kernel ignores them; a rule on the value would not)."""
    work = tmp_path / "w"
    work.mkdir()
    (work / "io.py").write_text(IOCTL_PY)
    policy = tmp_path / "io.toml"
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    r = bctl("learn", "-o", str(policy), "--", "/usr/bin/python3", "io.py", cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    native = r.stdout
    text = policy.read_text()
    assert 'comment = "ioctl: TCGETS, as the run made it"' in text and '"ioctl"' not in text.split("\n[")[0]
    audit = tmp_path / "a.jsonl"
    r = bctl("run", "--audit", str(audit), "--policy", str(policy), "--", "/usr/bin/python3", "io.py",
             "0x5412", "0x100005412", cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == native.strip()  # the learned request behaves natively
    denied = [json.loads(line) for line in audit.read_text().splitlines()
              if '"ioctl"' in line and json.loads(line)["verdict"] == "skip-fail 25"]
    assert len(denied) == 2, audit.read_text()
    assert r.stdout.splitlines()[1:] == ["0x5412 25", "0x100005412 25"]


def test_check_reports_calls_no_run_made(tmp_path):
    """learn --check applies the policy's static rules as the kernel filter
    would: a system call no learning run made fails with ENOSYS there, so a
    changed program making one is listed (before, replay asked only about the
    calls the rules trace, and the check said nothing would be denied)."""
    work = tmp_path / "w"
    work.mkdir()
    policy = tmp_path / "p.toml"
    py = ["/usr/bin/python3", "-S", "-c"]
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    r = bctl("learn", "-o", str(policy), "--", *py, "print('plain')", cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert '"getpriority"' not in policy.read_text()
    changed = "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"
    r = bctl("learn", "--check", str(policy), "--", *py, changed, cwd=work, env=env)
    assert r.returncode == 1 and r.stdout.strip().lstrip("-").isdigit(), r.stderr
    assert re.search(r"would deny: .* getpriority .*-> skip-fail ENOSYS", r.stderr), r.stderr
    r = bctl("run", "--policy", str(policy), "--", *py, changed, cwd=work, env=env)
    assert r.returncode != 0 and "Function not implemented" in r.stderr  # what the check said


def test_a_multi_line_shell_script_is_learned(tmp_path):
    """Before: the command went into the policy's ``# run:`` comment as it
    was, so a ``sh -c`` script of several lines ended the comment and learn
    failed ("internal error, the learned policy does not load: TOML
    syntax").  The comment shows it escaped, on one line, and merging keeps it."""
    work = tmp_path / "w"
    work.mkdir()
    argv = ["sh", "-c", "echo one > out.txt\ncat out.txt"]
    policy, r = learn_and_enforce(tmp_path, work, argv, lambda: (work / "out.txt").unlink(missing_ok=True))
    assert r.stdout == "one\n"
    assert "# run: sh -c 'echo one > out.txt\\ncat out.txt'\n" in policy.read_text()
    r = bctl("learn", "-o", str(policy), "--merge", "--", *argv, cwd=work)
    assert r.returncode == 0, r.stderr
    assert policy.read_text().count("# run:") == 1


def test_a_learned_policy_runs_again_after_the_directory_it_made_is_removed(tmp_path):
    """Before: a directory the program made (``mkdir build``, ``python3 -m
    venv v``, ``git init r``) still existed when the policy was written, so
    its layer rule was on it; on the next run from a clean tree (after ``rm
    -r``, in CI) a rule on a missing path was left out and the kernel refused
    to make it again (EACCES).  The layer allows writing in its parent and
    the per-call rules still decide the name."""
    work = tmp_path / "w"
    work.mkdir()
    out = tmp_path / "out"  # beside the tree it runs in (the tree itself is granted whole)
    argv = ["sh", "-c", f"mkdir {out} && echo x > {out}/f && cat {out}/f"]
    policy, r = learn_and_enforce(tmp_path, work, argv, lambda: shutil.rmtree(out, ignore_errors=True))
    assert r.stdout == "x\n"
    assert f"{out}/** does not exist before the run" in policy.read_text()
    r = bctl("run", "--policy", str(policy), "--", "mkdir", str(tmp_path / "other"), cwd=work)
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_a_learned_policy_runs_again_after_the_file_it_made_is_removed(tmp_path):
    """Before: a file the program wrote outside its tree (``sort -o
    /tmp/out``, a log) got a layer rule on the file alone; on the next run
    without it the rule on a missing path was left out and the kernel refused
    to make it (EACCES).  The layer allows making files in its directory and
    the per-call rules still decide the name."""
    work = tmp_path / "w"
    work.mkdir()
    out = tmp_path / "out.txt"
    argv = ["sh", "-c", f"echo x > {out} && cat {out}"]
    policy, r = learn_and_enforce(tmp_path, work, argv, lambda: out.unlink(missing_ok=True))
    assert r.stdout == "x\n"
    assert f"made or written: 1 file in {tmp_path}" in policy.read_text()
    r = bctl("run", "--policy", str(policy), "--", "sh", "-c", f"echo y > {tmp_path}/other.txt", cwd=work)
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_tar_extracts_under_its_learned_policy(tmp_path):
    """Before: ``tar x`` and ``cp -a`` set times with ``utimensat(fd, NULL,
    ...)`` (glibc's futimens), whose NULL path nobody resolved: learn said
    "Not learned (a path nobody could resolve; denied): utimensat" and the
    enforced run failed ("Cannot utime: Permission denied").  A NULL path
    of utimensat/futimesat is the file behind the descriptor, as the kernel
    takes it."""
    work = tmp_path / "w"
    (work / "d").mkdir(parents=True)
    (work / "d" / "a").write_text("a\n")
    subprocess.run(["tar", "czf", str(work / "t.tgz"), "-C", str(work), "d"], check=True, timeout=60)
    argv = ["sh", "-c", "mkdir x && tar xzf t.tgz -C x && cp -a d y && cat x/d/a y/a"]
    policy, r = learn_and_enforce(tmp_path, work, argv,
                                  lambda: [shutil.rmtree(work / n, ignore_errors=True) for n in ("x", "y")])
    assert r.stdout == "a\na\n", r.stderr
    assert "Not learned" not in policy.read_text()
