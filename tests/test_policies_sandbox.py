"""The path sandbox policy against real programs."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys

import pytest
from conftest import brokerctl, landlock_brokerctl
from test_clients_progs import progs  # noqa: F401

pytestmark = pytest.mark.usefixtures("policy_mode")  # each test in-process and as a process


@pytest.fixture(autouse=True, params=["landlock", "no-landlock"])
def landlock_mode(request, monkeypatch):
    """Every test twice: with the policy's Landlock layer, and per call only."""
    monkeypatch.setattr(sys.modules[__name__], "brokerctl", landlock_brokerctl(request.param))
    return request.param


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


def test_symlinks_denied_unknown_syscalls_enosys(box, progs):  # noqa: F811
    r = run(box, progs["fsops"], f"symlink:/etc/shadow:{box}/s", f"link:{box}/in.txt:{box}/h", "getcpu",
            f"mkdir:{box}/sub", "mkdir:/tmp/brokerd-nope", f"unlink:{box}/in.txt")
    assert r.stdout.splitlines() == ["symlink EPERM", "link ok", "getcpu ENOSYS", "mkdir ok",
                                     "mkdir EACCES", "unlink ok"]
    assert not os.path.lexists(box / "s")
    assert (box / "h").read_text() == "inside\n"


def test_read_only_dirs_are_not_writable(box, progs):  # noqa: F811
    ro = box.parent / "ro"
    ro.mkdir()
    (ro / "f").write_text("ro\n")
    (box.parent / "rw").mkdir()
    # directories before and after an option (argparse's plain parse said "unrecognized arguments")
    r = brokerctl("run", "--policy", f"sandbox:{box.parent / 'rw'},--ro={ro},{box},{SYSTEM_RO},"
                  f"--ro={os.path.dirname(progs['fsops'])}",
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
    r = brokerctl("run", "--policy", f"sandbox:{tmp_path},--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/etc",
                  "--", "make", "-s", "-C", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.txt").read_text() == "built\n"


# -- issue #16: holes found by an adversarial run as root ------------------------
@pytest.fixture
def holes(box, cprog):
    """Run tests/progs/boxholes.c inside sandbox:BOX with a --ro directory RO."""
    prog = str(cprog("boxholes"))
    ro = box.parent / "ro"
    ro.mkdir()
    (ro / "f").write_text("ro\n")
    os.chmod(ro / "f", 0o644)

    def run_ops(*ops: str, opts: tuple[str, ...] = ()):
        return brokerctl("run", *opts, "--policy",
                         f"sandbox:{box},--ro={ro},{SYSTEM_RO},--ro={os.path.dirname(prog)}", "--", prog, *ops)

    return run_ops, ro


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes and chown of others' files need root")
def test_no_device_nodes_inside_the_box(box, holes):
    """Before: mknod of a character/block device in a writable directory was
    allowed, and a /dev/kmsg node read the kernel log."""
    run_ops, _ro = holes
    r = run_ops(f"mknod-chr:{box}/kmsg", f"mknod-blk:{box}/sda", f"mknodat-chr:{box}/kmsg2",
                f"mkfifo:{box}/fifo", "mkfifo:/tmp/brokerd-box-fifo")
    assert r.stdout.splitlines() == ["mknod-chr EPERM", "mknod-blk EPERM", "mknodat-chr EPERM",
                                     "mkfifo ok", "mkfifo EACCES"], r.stderr
    assert not os.path.lexists(box / "kmsg") and not os.path.lexists(box / "sda")
    assert not os.path.lexists("/tmp/brokerd-box-fifo")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another owner needs root")
def test_fd_forms_cannot_change_a_read_only_file(box, holes):
    """Before: fchmod/fchown (and fchownat(fd, "", AT_EMPTY_PATH)) were never
    checked, so a --ro file opened for reading became mode 777, owned by nobody."""
    run_ops, ro = holes
    (box / "mine").write_text("rw\n")
    r = run_ops(f"fchmod:{ro}/f", f"fchown:{ro}/f", f"fchownat-empty:{ro}/f", f"fchmodat:{ro}/f",
                f"fchmod:{box}/mine", f"fchown:{box}/mine")
    assert r.stdout.splitlines() == ["fchmod EACCES", "fchown EACCES", "fchownat-empty EACCES",
                                     "fchmodat EACCES", "fchmod ok", "fchown ok"], r.stderr
    st = os.stat(ro / "f")
    assert (st.st_mode & 0o777, st.st_uid) == (0o644, 0)
    assert os.stat(box / "mine").st_mode & 0o777 == 0o777


def test_signals_stay_inside_the_session(holes):
    """Before: kill/tgkill (and kill of a whole outside group) reached any
    process outside the sandbox.  (Never test kill(-1) here: a regression
    would signal every process of the machine; tests/test_guard.py checks it
    without sending anything.)  Without Landlock (--no-landlock, or where the
    kernel lacks its signal scope, or attach) the policy's own check is all
    there is: that is what runs here."""
    run_ops, _ro = holes
    outside = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        r = run_ops(f"kill:{outside.pid}", f"tgkill:{outside.pid}", f"kill:-{outside.pid}", "kill-child",
                    opts=("--no-landlock",))
        assert r.stdout.splitlines() == ["kill EPERM", "tgkill EPERM", "kill EPERM", "kill-child ok"], r.stderr
        assert outside.poll() is None
    finally:
        outside.kill()
        outside.wait(timeout=60)


def _ioprio(pid: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(252, 1, pid)  # ioprio_get(IOPRIO_WHO_PROCESS, pid), x86_64


def _process_state(pid: int) -> tuple:
    """What the calls below could change in process ``pid``."""
    limits = next(ln for ln in open(f"/proc/{pid}/limits") if ln.startswith("Max open files"))
    return (limits, os.sched_getaffinity(pid), os.getpriority(os.PRIO_PROCESS, pid),
            os.sched_getscheduler(pid), _ioprio(pid))


PROCESS_OPS = ("prlimit", "affinity", "nice", "sched", "param", "ioprio", "robust")


@pytest.mark.skipif(os.geteuid() != 0 or os.cpu_count() < 2, reason="as root (same uid as the victim), 2+ CPUs")
def test_calls_on_other_processes_stay_inside_the_session(holes):
    """Before: prlimit64, sched_setaffinity and get_robust_list ran unchecked
    (the box's safe list), so a sandboxed program could change the limits and
    CPUs of any process of its uid; setpriority, sched_setscheduler/setparam
    and ioprio_set failed with ENOSYS even on the program itself.  Now each
    works on the caller (pid 0) and a child in the session, and fails with
    EPERM on a process outside (and on a group with an outside member); the
    victim is unchanged.  --no-landlock: the policy's check is all there is
    (the wall covers only get_robust_list of these); with the layer, the
    policy leaves the process-control calls to the broker's guard, which
    refuses the same targets under the wall."""
    run_ops, _ro = holes
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        before = _process_state(victim.pid)
        ops = [f"{op}:{t}" for t in ("0", "child", str(victim.pid)) for op in PROCESS_OPS]
        r = run_ops(*ops, f"nice-pgrp:{victim.pid}")
        want = ([f"{op} ok" for op in PROCESS_OPS] * 2 + [f"{op} EPERM" for op in PROCESS_OPS]
                + ["nice-pgrp EPERM"])
        assert r.stdout.splitlines() == want, r.stderr
        assert _process_state(victim.pid) == before
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait(timeout=60)


# -- issue #12: a sandbox people can use ----------------------------------------
MAKEFILE = """\
CFLAGS = -O0 -Wall
OBJS = main.o util.o
hello: $(OBJS)
\t$(CC) -o $@ $(OBJS)
%.o: %.c util.h
\t$(CC) $(CFLAGS) -c -o $@ $<
"""


@pytest.mark.skipif(not all(shutil.which(p) for p in ("make", "cc", "git")), reason="needs make, cc and git")
def test_c_project_builds_and_git_works(tmp_path, landlock_mode):
    """The documented example (docs/policies.md): make -j2 of a C project and
    git, as written, in a box holding only the project; outside, reading is
    EACCES, a missing file ENOENT; a metadata look-up is ENOENT per call, and
    runs unasked under the kernel layer (the layer guards contents)."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / ".tmp").mkdir()
    (proj / "Makefile").write_text(MAKEFILE)
    (proj / "util.h").write_text("int answer(void);\n")
    (proj / "util.c").write_text('#include "util.h"\nint answer(void) { return 42; }\n')
    (proj / "main.c").write_text('#include <stdio.h>\n#include "util.h"\n'
                                 'int main(void) { printf("%d\\n", answer()); return 0; }\n')
    secret = tmp_path / "secret.txt"
    secret.write_text("outside\n")
    script = (f"cd {proj} && make -s -j2 && ./hello && git init -q && git add -A && "
              "git -c user.name=me -c user.email=me@example.org commit -qm build && git log --format=%s; "
              f"cat {secret}; cat {tmp_path}/missing; stat -c %s {secret}")
    r = brokerctl("run", "--policy", f"sandbox:{proj},--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/etc",
                  "--", "sh", "-c", script, env={"HOME": str(proj), "TMPDIR": str(proj / ".tmp")}, timeout=300)
    if landlock_mode == "landlock":
        assert r.stdout.splitlines() == ["42", "build", "8"], r.stderr
    else:
        assert r.stdout.splitlines() == ["42", "build"], r.stderr
        assert "stat: cannot statx" in r.stderr and "No such file or directory" in r.stderr.split("stat:")[-1]
    assert f"cat: {secret}: Permission denied" in r.stderr
    assert f"cat: {tmp_path}/missing: No such file or directory" in r.stderr
    assert "fatal" not in r.stderr and "warning" not in r.stderr


def test_hide_outside_keeps_metadata_per_call(tmp_path, landlock_mode):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside\n")
    box = tmp_path / "box"
    box.mkdir()
    r = brokerctl("run", "--policy", f"sandbox:{box},--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/etc,--hide-outside",
                  "--", "sh", "-c", f"stat -c %s {secret}; stat -c %F {tmp_path}")
    assert r.stdout.splitlines() == ["directory"], r.stderr  # the box's parent: on the way in
    assert "No such file or directory" in r.stderr


def test_a_sandbox_directory_that_does_not_exist_is_warned_about(tmp_path):
    missing = tmp_path / "no-such-box"
    r = brokerctl("run", "--policy", f"sandbox:{missing},{SYSTEM_RO},--ro=/usr/bin", "--", "true")
    assert r.returncode == 0, r.stderr
    assert f"sandbox: warning: {missing} does not exist" in r.stderr


def test_clone3_allowed_by_name_is_judged_on_its_flags(box, cprog):
    """Before: --allow-syscall=clone3 changed nothing (clone3 stayed ENOSYS,
    silently).  Now clone3 runs when allowed by name, judged per call on the
    read-only copy of its struct the broker makes: namespace flags EPERM, as
    for clone; its children (CLONE_UNTRACED too) stay in the box."""
    prog = str(cprog("clone3"))
    r = brokerctl("run", "--policy", f"sandbox:{box},{SYSTEM_RO},--ro={os.path.dirname(prog)},--allow-syscall=clone3",
                  "--", prog, "plain", "untraced", "newuser")
    assert r.stdout.splitlines() == ["plain: clone3 ok, child open EACCES", "untraced: clone3 ok, child open EACCES",
                                     "newuser: clone3 EPERM"], r.stderr
    r = brokerctl("run", "--policy", f"sandbox:{box},{SYSTEM_RO},--ro={os.path.dirname(prog)}", "--", prog, "plain")
    assert r.stdout.splitlines() == ["plain: clone3 ENOSYS, child open died"], r.stderr  # not allowed: libc falls back
    # no read-only copy to judge (--no-stable-args): the broker keeps it ENOSYS
    r = brokerctl("run", "--no-stable-args", "--policy",
                  f"sandbox:{box},{SYSTEM_RO},--ro={os.path.dirname(prog)},--allow-syscall=clone3", "--", prog, "newuser")
    assert r.stdout.splitlines() == ["newuser: clone3 ENOSYS"], r.stderr


def test_bash_with_no_shlvl_does_not_read_bashrc(box):
    """A top-level ``bash -c`` (SHLVL unset or 0: cron, services, a test
    harness) sources ~/.bashrc when its stdin is a network connection, which
    it tests with ``getpeername``; ENOSYS from the box counted as one, so every
    such bash said "bash: HOME/.bashrc: Permission denied".  getpeername and
    getsockname run as natively (ENOTSOCK on a pipe)."""
    home = box.parent / "home"
    home.mkdir()
    (home / ".bashrc").write_text("echo rc-read\n")
    r = brokerctl("run", "--policy", f"sandbox:{box},{SYSTEM_RO},--ro=/usr/bin", "--", "bash", "-c", "echo ok",
                  input="", env={"SHLVL": "0", "HOME": str(home)})
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    assert "bashrc" not in r.stderr


def test_a_sleep_interrupted_by_sigchld_resumes(box):
    """Under a tracer even an ignored signal (SIGCHLD at its default) stops
    the thread and interrupts its call; the kernel resumes a sleep, a timed
    futex or poll with ``restart_syscall``, which the box answered ENOSYS:
    "sleep: cannot read realtime clock: Function not implemented", and
    Python's threads died of "The futex facility returned an unexpected
    error code" (abort).  restart_syscall is safe, as in every default."""
    r = brokerctl("run", "--policy", f"sandbox:{box},/dev/null,{SYSTEM_RO},--ro=/usr/bin", "--",
                  "sh", "-c", "sleep 0.05 & exec sleep 0.5")
    assert r.returncode == 0, r.stderr
    assert "Function not implemented" not in r.stderr


# -- session 9: what a Linux user expects a file-system sandbox to allow ---------
def _python_box(box, *extra: str) -> str:
    """sandbox:BOX with Python's own tree readable."""
    trees = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    return ",".join((f"sandbox:{box}", SYSTEM_RO, *(f"--ro={t}" for t in sorted(trees)), *extra))


def test_shell_redirections_to_dev_null_work(box):
    """Before: /dev/null was outside every box unless listed, so every
    ``cmd 2>/dev/null`` of a script failed ("cannot create /dev/null:
    Permission denied").  The harmless devices are in by default, by their
    identity: a file named ``null`` elsewhere is judged as a path, a link in
    the box to /dev/null reaches the device; --no-devices leaves them out."""
    fake = box.parent / "dev"
    fake.mkdir()
    (fake / "null").write_text("not a device\n")
    os.symlink("/dev/null", box / "sink")  # planted from outside
    script = (f"ls /nonexistent 2>/dev/null; : > /dev/null && echo x > {box}/sink && echo null-ok; "
              "head -c 3 /dev/zero | od -An -tx1; "
              f"head -c 8 /dev/urandom | wc -c; echo x > /dev/full; test -c /dev/null && echo is-char; "
              f"cat < {fake}/null; echo y > {fake}/null")
    r = run(box, "sh", "-c", script)
    assert r.stdout.splitlines() == ["null-ok", " 00 00 00", "8", "is-char"], r.stderr
    assert "No space left on device" in r.stderr or "I/O error" in r.stderr  # /dev/full, as natively
    assert r.stderr.count("Permission denied") == 2, r.stderr  # the fake one, read and written
    assert " /dev/null:" not in r.stderr
    r = run(box, "sh", "-c", ": > /dev/null && echo null-ok")
    assert r.stdout == "null-ok\n"
    r = brokerctl("run", "--policy", f"sandbox:{box},{SYSTEM_RO},--ro=/usr/bin,--no-devices", "--",
                  "sh", "-c", ": > /dev/null")
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_asyncio_starts_in_the_box(box):
    """Before: asyncio's event loop could not start (its self-pipe is
    ``socket.socketpair()``: ENOSYS).  An AF_UNIX pair, with sends that name
    no address, reaches nothing outside; other families, a send to an address
    and ``socket`` stay refused."""
    code = """
import asyncio, errno, socket
async def main():
    await asyncio.sleep(0)
    return "loop ok"
print(asyncio.run(main()))
def refused(f, *a):
    try:
        f(*a)
        print("allowed")
    except OSError as e:
        print(errno.errorcode[e.errno])
refused(socket.socketpair, socket.AF_INET)
a, b = socket.socketpair(type=socket.SOCK_DGRAM)
a.send(b"hi")
print(b.recv(5).decode())
refused(a.sendto, b"x", "/dev/log")
refused(socket.socket)
"""
    r = brokerctl("run", "--policy", _python_box(box), "--", sys.executable, "-S", "-c", code)
    assert r.stdout.splitlines() == ["loop ok", "EAFNOSUPPORT", "hi", "EPERM", "ENOSYS"], r.stderr


def test_multiprocessing_pool_runs_with_dev_shm_in_the_box(box):
    """Before: hard links were always EPERM, so glibc's sem_open (a file made
    in /dev/shm, then linked to its name) failed and ``multiprocessing.Pool``
    could not start.  A hard link is allowed when both names are below
    read-write directories; a --ro or outside file linked in would become
    writable there: EXDEV, as the kernel layer answers; a new name outside:
    EACCES."""
    ro = box.parent / "ro"
    ro.mkdir()
    (ro / "f").write_text("ro\n")
    (box / "sub").mkdir()
    code = f"""
import errno, multiprocessing, os
with multiprocessing.Pool(2) as p:
    print(p.map(abs, [-1, -2]))
def link(a, b):
    try:
        os.link(a, b)
        print("ok")
    except OSError as e:
        print(errno.errorcode[e.errno])
link("{box}/in.txt", "{box}/sub/in.txt")
link("{ro}/f", "{box}/f")
link("{box.parent}/secret.txt", "{box}/s")
link("{box}/in.txt", "{box.parent}/out")
"""
    r = brokerctl("run", "--policy", _python_box(box, "/dev/shm", f"--ro={ro}"), "--",
                  sys.executable, "-S", "-c", code)
    assert r.stdout.splitlines() == ["[1, 2]", "ok", "EXDEV", "EXDEV", "EACCES"], r.stderr
    assert (box / "sub" / "in.txt").read_text() == "inside\n"
    assert not (box / "f").exists() and not (box / "s").exists() and not (box.parent / "out").exists()


def test_python_venv_is_made_in_the_box(box):
    """Before: every symlink was EPERM, so ``python3 -m venv`` (its ``lib64 ->
    lib``) failed.  A symlink is made when its target stays in the read-write
    directories wherever it is moved among them: relative with no ``..``, or
    absolute below one of them; one leading elsewhere (renamed over a
    directory between a path check and the call, or followed later by the
    user) stays EPERM, so the interpreter itself is copied (``--copies``)."""
    code = f"""
import errno, os, subprocess, sys
os.chdir({str(box)!r})
r = subprocess.run([sys.executable, "-m", "venv", "--copies", "--without-pip", "v"])
print("venv", r.returncode, os.readlink("v/lib64"))
print(subprocess.run(["v/bin/python", "-c", "import sys; print(sys.prefix != sys.base_prefix)"],
                     capture_output=True, text=True).stdout.strip())
os.mkdir("d")
for target, name in [("in.txt", "d/same"), ("sub/x", "down"), ({str(box)!r} + "/in.txt", "abs"),
                     ("../in.txt", "d/up"), ("/etc/passwd", "out"), ({str(box)!r} + "/../secret.txt", "abs-up")]:
    try:
        os.symlink(target, name)
        print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
"""
    r = brokerctl("run", "--policy", _python_box(box), "--", sys.executable, "-S", "-c", code)
    assert r.stdout.splitlines() == ["venv 0 lib", "True", "d/same ok", "down ok", "abs ok", "d/up EPERM",
                                     "out EPERM", "abs-up EPERM"], r.stderr
