"""The shim keeps an O_PATH descriptor of each tracee thread's root
(brokerd/tracer/resolve.py RootFds) for resolving the opens it pins,
instead of opening /proc/TID/root for every judged open.  A kept root
must never be used once the thread's root may be another: after a chroot
(the call stops and switches keeping off), or for another process that got
the same pid; and the descriptors of exited processes are closed."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import BROKERCTL
from waiting import read_line, read_rest

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="chroot, mounts and ns_last_pid need root"),
              pytest.mark.usefixtures("accel_mode")]  # compiled stop-loop calls and the pure-Python fallback


def _files(tmp_path, jail_at: str):
    """tmp/d/f says "outside"; in JAIL (at ``jail_at`` below it) f is a
    symlink to g, which says "inside"."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "f").write_text("outside\n")
    inner = tmp_path / "jail" / jail_at.lstrip("/")
    inner.mkdir(parents=True)
    (inner / "g").write_text("inside\n")
    os.symlink("g", inner / "f")
    return tmp_path / "jail", d


def _run(authz: str, argv: list[str], *opts: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BROKERCTL, "run", *opts, "-e", "trace=openat", "-a", authz, "--", *argv],
                          capture_output=True, text=True, timeout=120)


def test_after_a_chroot_opens_resolve_in_the_new_root(cprog, rules, tmp_path):
    """The program opens D/f (a plain file: the open is pinned and its root
    kept), chroots into a jail where the same path is a symlink, and opens
    it again: natively it reads the symlink's target.  Resolved against the
    kept (old) root the second open was pinned as a symlink-free path and
    failed with ELOOP."""
    jail, d = _files(tmp_path, str(tmp_path / "d"))
    argv = [str(cprog("rootswap")), "chroot", str(jail), str(d / "f")]
    native = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert native.stdout == "before outside\nafter inside\n", native
    r = _run(rules(), argv)
    assert r.stdout == native.stdout, r.stderr[-2000:]


def test_a_reused_pid_never_gets_the_former_process_root(cprog, rules, tmp_path):
    """A child opens D/f and exits; another child made with the same pid
    (ns_last_pid) in a mount namespace of its own (clone(CLONE_NEWNS): no
    call that stops) bind-mounts a jail over D, where f is a symlink, and
    opens D/f: natively it reads the target.  Resolved against the first
    child's kept root (the old namespace, where D/f is a plain file) the
    open failed: EACCES at the check at exit (ELOOP where it was pinned)."""
    jail, d = _files(tmp_path, "/")
    argv = [str(cprog("rootswap")), "reuse", str(jail), str(d), str(d / "f")]
    native = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if "noreuse" in native.stdout:
        pytest.skip("the machine forks too busily to have the same pid twice")
    assert native.stdout == "first outside\nsecond inside\n", native
    for _ in range(5):
        r = _run(rules(), argv, "--no-landlock")  # a Landlock domain forbids mount(2)
        if "noreuse" not in r.stdout:
            break
    else:
        pytest.skip("the machine forks too busily to have the same pid twice")
    assert r.stdout == native.stdout, r.stderr[-2000:]


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_roots_of_exited_processes_are_closed(cprog, rules, tmp_path):
    """300 short-lived children each make a pinned open (their roots are
    kept): once they are gone the shim holds no more descriptors than
    before them (with roots only dropped when the bound is reached it held
    64 more)."""
    f = tmp_path / "f"
    f.write_text("x\n")
    p = subprocess.Popen([*BROKERCTL, "run", "-e", "trace=openat", "-a", rules(), "--",
                          str(cprog("rootswap")), "many", "300", str(f)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert read_line(p.stdout) == "start\n"
        before = _fds(p.pid)
        p.stdin.write("\n")
        p.stdin.flush()
        assert read_line(p.stdout) == "done\n"
        after = _fds(p.pid)
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.wait(timeout=60) == 0, read_rest(p.stderr)[-2000:]
    finally:
        p.kill()
        p.wait(timeout=60)
    assert after <= before + 1, (before, after)


def test_resolving_from_a_kept_root_is_resolving_through_its_path(tmp_path):
    """resolve() from a kept root descriptor (the general path of a judged
    open, since session 8) gives what resolving through the root's path
    gives, in a root that is not the broker's: absolute links restarting at
    that root, relative and chained links, a link to a directory on the
    way, ``.`` and ``..`` (stopping at the root), a final link followed or
    not, a dangling link, an absent component, a loop, a magic link of
    this process's own, and the root itself."""
    from brokerd.tracer.resolve import resolve

    jail = tmp_path / "jail"
    (jail / "a" / "b").mkdir(parents=True)
    (jail / "a" / "b" / "f").write_text("x")
    os.symlink("/a/b", jail / "abs")  # absolute: the jail's /a/b, never the broker's
    os.symlink("b/f", jail / "a" / "rel")
    os.symlink("rel", jail / "a" / "chain")
    os.symlink("/nowhere", jail / "dangling")
    os.symlink("loop", jail / "loop")
    os.symlink("/proc", jail / "proc")
    me = os.getpid()
    j = os.fsencode(jail)
    in_jail = [b"/a/b/f", b"/abs/f", b"/a/rel", b"/a/chain", b"/abs/../a/./b/f", b"/../../a/b/f", b"/dangling",
               b"/absent/x", b"/a/b/absent", b"/loop", b"/loop/x", b"/", b"/abs", b"/proc/self/fd/0", b"/a/rel/x"]
    # and in the broker's own root: the magic links of this process's /proc
    at_root = [j + p for p in in_jail] + [b"/proc/self/fd/0", b"/proc/self/fd/0/x", b"/proc/thread-self/cwd",
                                          b"/proc/%d/cwd" % me, b"/proc/%d/root/proc/self/exe" % me]
    for root, paths in ((j, in_jail), (b"/", at_root)):
        _same_from_kept_root(root, paths, me)
    fd = os.open(jail, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        assert resolve(j, b"/abs/f", me, me, True, fd).path == b"/a/b/f"  # (in the jail)
        assert resolve(j, b"/a/chain", me, me, False, fd).path == b"/a/chain"
    finally:
        os.close(fd)


def _same_from_kept_root(root: bytes, paths: list[bytes], me: int) -> None:
    from brokerd.tracer.resolve import resolve

    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path in paths:
            for follow in (True, False):
                via_path = resolve(root, path, me, me, follow)
                via_fd = resolve(root, path, me, me, follow, fd)
                if via_path is None or via_fd is None:
                    assert via_path is via_fd is None, (path, follow, via_path, via_fd)
                    continue
                st_p, st_f = via_path.st, via_fd.st
                assert (via_path.path, via_path.exists, via_path.parent) == (via_fd.path, via_fd.exists,
                                                                           via_fd.parent), (path, follow)
                assert (st_p is None) == (st_f is None), (path, follow)
                if st_p is not None and st_f is not None:
                    assert (st_p.st_dev, st_p.st_ino, st_p.st_mode) == (st_f.st_dev, st_f.st_ino, st_f.st_mode)
    finally:
        os.close(fd)
