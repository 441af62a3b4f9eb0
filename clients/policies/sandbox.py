"""Path sandbox: files may be opened only under the given directories.

The seed's own example (2011): "sandboxed code should only be allowed to open
files in /home/sandbox/, /lib/ and /usr/lib/", with link creation denied and
syscalls opted in, so that calls added by new kernels are denied by default::

    brokerctl run --policy sandbox:/home/sandbox,/lib,/usr/lib,--ro=/usr/bin -- PROG

    python3 -m brokerd.clients.policies.sandbox [--ro DIR]... [--allow-syscall NAME]...
                                                 [--errno EACCES] DIR...

* ``DIR`` (positional): read and write below it; ``--ro DIR``: read, stat,
  exec below it (a file works too: ``--ro /etc/ld.so.cache``).
* Every path argument is judged after resolving the tracee's cwd
  (``/proc/PID/cwd``), its dirfd (``/proc/PID/fd/N``), ``..`` and symlinks;
  the directories themselves are resolved at start (``/lib`` -> ``/usr/lib``
  on merged-/usr systems).  Outside them: ``EACCES`` (``--errno``).
* A path that reaches no file but an open pipe or socket (``fstat`` as
  ``newfstatat(1, "", AT_EMPTY_PATH)``, ``/proc/self/fd/N`` of a pipe) acts
  on a descriptor already open and is allowed.
* ``symlink``/``symlinkat``: only a target that stays in the read-write
  directories wherever the link is moved among them: relative with no
  ``..`` (``lib64 -> lib``, ``libx.so -> libx.so.1``), or absolute below one
  of them, with no ``..``; others ``EPERM``.  A link leading elsewhere,
  renamed over a directory between the check of a path call and the
  kernel's use of the path (chmod, chown, utimes, xattrs by path are judged
  per call even under the kernel layer), would carry a checked path out,
  and it points whoever follows it later (the user's shell, a backup)
  outside.  ``python3 -m venv --copies`` works (without ``--copies`` its
  ``bin/python`` links to the interpreter outside).
* ``link``/``linkat`` (hard links): both names below read-write
  directories, so the file is one the program could already read and write
  and its new name is in the box: nothing becomes reachable that was not (a
  ``--ro`` or outside file linked in would become writable through the new
  name: ``EXDEV``, what the kernel layer and a cross-device link say, so
  ``ln``/``cp -l`` fall back to copying).  ``sem_open`` (multiprocessing's
  locks) links a file it made in ``/dev/shm``: list ``/dev/shm``.
* ``/dev/null``, ``/dev/zero``, ``/dev/full``, ``/dev/random``,
  ``/dev/urandom`` can be opened for reading and writing and looked up (every
  ``cmd 2>/dev/null`` of a script): they hold no data and reach no other
  process.  Each is taken at start only if the node at that name is that
  device (major:minor), and then allowed by its identity (device and inode),
  as the kernel layer allows it; a node of another name is judged as a path.
  ``--no-devices`` drops them.  ``/dev/tty`` (the terminal: another
  program's keystrokes when in the foreground), ``/dev/shm`` (shared with
  every process) and ``/proc`` (every process's command line: ``ps``) stay
  the user's choice: list them.
* Sockets: ``socketpair`` of ``AF_UNIX`` (no address: it reaches only the
  process and its children; other families ``EAFNOSUPPORT``), ``sendto``
  without an address (with one, ``EPERM``: a datagram pair's ``sendto`` may
  name any socket), the receiving calls, ``shutdown``, ``getsockopt``.
  ``socket``, ``connect``, ``bind``, ``sendmsg`` stay ``ENOSYS`` (asyncio's
  self-pipe needs no more).  A call named in ``--allow-syscall`` loses its
  rule (``sendto`` with the network policy).
* ``mknod``/``mknodat`` of a character or block device: always ``EPERM`` (a
  ``/dev/kmsg`` or raw-disk node made in a writable directory would reach
  the device); fifos, sockets and regular files are path-checked.
* Calls that change the file behind a descriptor (``fchmod``, ``fchown``,
  ``ftruncate``, ``fallocate``, ``fsetxattr``..., and ``fchmodat``/
  ``fchownat`` of ``""`` with ``AT_EMPTY_PATH``): the descriptor's file
  (``/proc/PID/fd/N``) must be below a read-write directory, so a file of a
  ``--ro`` directory opened for reading cannot be made mode 777 or given
  away.
* Signals (``kill``, ``tkill``, ``tgkill``, ``rt_sigqueueinfo``,
  ``rt_tgsigqueueinfo``, ``pidfd_send_signal``) only to processes of the
  same session: traced by the same broker (their ``TracerPid`` is the
  caller's).  Anything else (a process outside, ``kill(-1)``, ``kill(0)`` or
  ``kill(-PGRP)`` of a group with an outside member, a ``/proc/PID``
  directory used as a pidfd) fails with ``EPERM``.
* The same for every other call that names a process (the tables'
  ``process-access`` and ``process-control`` classes) and that the box runs
  at all: ``prlimit64``, ``sched_setaffinity``, ``sched_setparam``/
  ``sched_setscheduler``/``sched_setattr``, ``setpriority``, ``ioprio_set``,
  ``get_robust_list`` act on the caller (pid 0) and its session; aimed
  outside (another process, a group with an outside member, ``PRIO_USER``)
  they fail with ``EPERM``.  The Landlock wall already refuses the ones that
  need ptrace-mode access (``get_robust_list``, ``kcmp``, ``move_pages``...)
  outside the session, and the broker's guard the others unless the user
  chose ``--no-landlock``; this check holds under ``--no-landlock`` and
  attach too.
* Opt-in: the syscalls in :data:`SAFE` (memory, signals, I/O on open
  descriptors, process control...) run unchecked, those in :data:`READ_PATH`
  / :data:`WRITE_PATH` are path-checked; **every other syscall fails with
  ENOSYS**, as on a kernel that lacks it (so libc falls back, e.g. clone3 ->
  clone), including calls unknown to brokerd's tables.  ``--allow-syscall``
  adds to the safe list.
* ``ioctl(TIOCSTI)`` (typing into the terminal) and namespace flags in
  ``clone``/``clone3`` are denied with EPERM.  ``clone3`` itself fails with
  ENOSYS (libc falls back to ``clone``) unless named in ``--allow-syscall``:
  then each call is judged on the read-only copy of its struct the broker
  makes (namespace flags EPERM); with ``--no-stable-args`` there is no copy
  and the broker keeps it ENOSYS.

Limits: the path is read from tracee memory at syscall entry, so another
thread (or process sharing the memory) can change it after the check, and a
symlink created *outside* the sandbox can be swapped between check and use
(TOCTOU, the seed's point); descriptors inherited from outside are not
judged.  See docs/policies.md.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import stat
import sys
from collections.abc import Sequence

from brokerd.clients.authorizer import (
    Authorizer,
    Syscall,
    cont,
    kernel_layer,
    opens_for_writing,
    path_under,
    skip_fail,
    to_reply,
    tracer_of,
)
from brokerd.protocol.abi import all_names, names_in
from brokerd.protocol.args import FLAGSETS, constant, value_to_int
from brokerd.protocol.types import Str

#: Run without any check: they act on memory, signals, the process itself or
#: descriptors that were judged when opened.
SAFE = frozenset("""
read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2 close close_range
fstat fstat64 fstatfs fstatfs64 lseek _llseek getdents getdents64 dup dup2 dup3 fcntl fcntl64
flock fsync fdatasync syncfs fadvise64 fadvise64_64 fchdir sendfile sendfile64 splice tee copy_file_range
mmap mmap2 mprotect munmap brk madvise mremap msync mincore mlock mlock2 munlock mlockall munlockall
rt_sigaction rt_sigprocmask rt_sigreturn sigreturn restart_syscall sigaltstack rt_sigsuspend rt_sigpending
rt_sigtimedwait rt_sigtimedwait_time64 pause alarm
getpid getppid gettid getuid geteuid getgid getegid getuid32 geteuid32 getgid32 getegid32
getresuid getresgid getresuid32 getresgid32 getgroups getgroups32 getpgrp getpgid getsid setpgid
setuid setgid setreuid setregid setresuid setresgid setfsuid setfsgid setgroups
setuid32 setgid32 setreuid32 setregid32 setresuid32 setresgid32 setfsuid32 setfsgid32 setgroups32
setsid getrlimit ugetrlimit prlimit64 getrusage times sysinfo uname umask getcwd getpriority
arch_prctl set_thread_area get_thread_area set_tid_address set_robust_list get_robust_list rseq
futex futex_time64 futex_waitv prctl membarrier getrandom
clock_gettime clock_gettime64 clock_getres clock_getres_time64 clock_nanosleep
clock_nanosleep_time64 nanosleep gettimeofday time
sched_yield sched_getaffinity sched_setaffinity sched_getparam sched_getscheduler
sched_get_priority_max sched_get_priority_min sched_setparam sched_setscheduler sched_setattr
sched_getattr setpriority ioprio_set ioprio_get
exit exit_group wait4 waitpid waitid clone clone3 fork vfork
pipe pipe2 eventfd eventfd2 poll ppoll ppoll_time64 select _newselect pselect6 pselect6_time64
epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2
timerfd_create timerfd_settime timerfd_gettime signalfd signalfd4 setitimer getitimer
timer_create timer_settime timer_gettime timer_getoverrun timer_delete memfd_create ioctl
getsockname getpeername getsockopt socketpair sendto recvfrom recvmsg recvmmsg shutdown
""".split())

#: Path-checked, reading / writing (so only below the read-write
#: directories); from the syscall tables' classes (protocol/abi.py).
READ_PATH = names_in("fs-read")
WRITE_PATH = names_in("fs-write")
#: change the file behind a descriptor: the descriptor's file is judged
FD_WRITE = names_in("fd-write")
OPEN = names_in("open") - {"creat"}  # creat: a write by path (WRITE_PATH)
LINKS = names_in("link")
MKNOD = names_in("mknod")
SIGNALS = names_in("signal-send")
#: calls that name another process: only the caller's session (signals too)
TARGETED = names_in("process-access") | names_in("process-control")
AT_EMPTY_PATH = constant("AT_EMPTY_PATH")
#: the S_IFMT types mknod may create inside the box (no devices)
NODE_TYPES = frozenset({stat.S_IFREG, stat.S_IFIFO, stat.S_IFSOCK, 0})


#: metadata look-ups (stat, access, readlink, chdir, xattrs...): outside the
#: box they fail with ENOENT, as if absent (gcc probes include directories
#: that may not exist: a missing one is normal, an EACCES one fatal), except on
#: the way in: the box's own ancestors (git and sqlite lstat them) are allowed
METADATA = READ_PATH - {"execve", "execveat"}
#: calls of SAFE whose arguments are checked, by argument rules the kernel
#: filter tests (their arguments are registers): no stop, and they hold with
#: or without the broker; clone3 keeps its flags in memory, where no filter
#: can look: it fails with ENOSYS, so libc falls back to clone
NAMESPACES = "|".join(n for n, _ in FLAGSETS["unshare_flags"].bits
                      if n.startswith("CLONE_NEW") and n != "CLONE_NEWTIME")  # 0x80: clone's exit signal byte
#: clone3's namespace flags (its exit signal has a field of its own), for ``--allow-syscall=clone3``
CLONE3_NAMESPACES = sum(v for n, v in FLAGSETS["unshare_flags"].bits if n.startswith("CLONE_NEW"))
RULES = ("ioctl arg2=TIOCSTI => skip-fail EPERM", f"clone arg1&{NAMESPACES} => skip-fail EPERM")
#: sockets the box makes reach nothing outside it: a pair of connected
#: AF_UNIX sockets has no address (asyncio's self-pipe, a child's channel),
#: and a send names no other destination (a datagram pair's ``sendto`` with an
#: address would reach any named socket, ``/dev/log`` or a daemon's); ``socket``,
#: ``connect``, ``bind`` and ``sendmsg`` (its address is in memory) stay ENOSYS.
#: Register tests, so the filter decides them (no stop); dropped for a call
#: the user names in ``--allow-syscall`` (with the network policy, say)
SOCKET_RULES = {
    "socketpair": ("socketpair arg1=AF_UNIX => cont", "socketpair => skip-fail EAFNOSUPPORT"),
    "sendto": ("sendto arg6=0 => cont", "sendto => skip-fail EPERM"),
}
DENIED = ("clone3:ENOSYS",)
#: hard links: both names below read-write directories; symlinks: only
#: pointing down from where they are (no Landlock right can say either)
HARD_LINKS = frozenset({"link", "linkat"}) & LINKS
SYMLINKS = LINKS - HARD_LINKS
#: what the kernel layer must not settle: symlink creation (judged on its
#: target), device nodes, and the descriptor forms judged by the descriptor's file
KEEP_PER_CALL = "!symlink,symlinkat,%mknod,ftruncate,ftruncate64"
#: device nodes every program may read and write: they hold no data and reach
#: no other process (a sink, endless zeros, a full disk, the kernel's random
#: numbers); each is taken only if the node at that name is the device these
#: numbers name, and then allowed by its identity (device and inode), as the
#: kernel layer allows it, never by a name a program could give another file
DEVICES = {"/dev/null": (1, 3), "/dev/zero": (1, 5), "/dev/full": (1, 7),
           "/dev/random": (1, 8), "/dev/urandom": (1, 9)}


def harmless_devices() -> dict[str, tuple[int, int]]:
    """The :data:`DEVICES` present here, as ``path -> (st_dev, st_ino)``."""
    found = {}
    for path, (major, minor) in DEVICES.items():
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (major, minor):
            found[path] = (st.st_dev, st.st_ino)
    return found


def _is_node(path: str, nodes: dict[str, tuple[int, int]]) -> bool:
    """Is ``path`` (resolved) one of ``nodes``, by identity?"""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in nodes.values()


def _ancestor(path: str, roots: Sequence[str]) -> bool:
    """Is ``path`` a directory on the way to one of ``roots``?"""
    prefix = path.rstrip("/") + "/"
    return any(r.startswith(prefix) for r in roots)


#: with the layer in force, these run unasked (``--hide-outside`` keeps them
#: per call): the layer guards contents, and a build makes tens of thousands
#: of them (gcc's realpath: one readlink per path component)
LOOKUPS = names_in("stat") | names_in("lstat") | names_in("fstat") | names_in("statfs") | frozenset({
    "newfstatat", "fstatat64", "statx", "access", "faccessat", "faccessat2", "readlink", "readlinkat",
    "getxattr", "lgetxattr", "listxattr", "llistxattr", "getxattrat", "listxattrat", "chdir"}) & all_names()


#: with the layer in force these run unasked too: the broker's guard, which
#: refuses them outside the session whenever the Landlock wall is up, stops
#: only those that name another process (pid 0, glibc's getrlimit: no stop;
#: a build made ~4 prlimit64 stops per process)
CONTROL = names_in("process-control")


def _layer(rw: Sequence[str], ro: Sequence[str], devices: Sequence[str], hide_outside: bool):
    """The same box in the kernel: everything beneath the read-write
    directories, read and execute beneath the read-only ones, read and write
    of the harmless device nodes (no ``ioctl-dev``: the random pool's
    root-only ioctls stay out of reach), nothing else."""
    unjudged = (frozenset() if hide_outside else LOOKUPS) | CONTROL
    return kernel_layer([("all", d) for d in rw] + [("read,execute", d) for d in ro]
                        + [("read,write", d) for d in devices],
                        fs_handled="all", settle=KEEP_PER_CALL, unjudged=sorted(unjudged))


def _resolve_dir(d: str) -> str:
    return os.path.realpath(os.path.abspath(d))


def build(argv: Sequence[str]) -> Authorizer:
    p = argparse.ArgumentParser(prog="sandbox", description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="*", metavar="DIR", help="read-write directories")
    p.add_argument("--ro", action="append", default=[], metavar="DIR", help="read-only directory (or file)")
    p.add_argument("--allow-syscall", action="append", default=[], metavar="NAME[+NAME]",
                   help="run these syscalls unchecked too")
    p.add_argument("--errno", default="EACCES", help="errno for paths outside (default EACCES)")
    p.add_argument("--log", action="store_true", help="print every denial on stderr")
    p.add_argument("--hide-outside", action="store_true",
                   help="with Landlock too, judge metadata look-ups per call (ENOENT outside; slower)")
    p.add_argument("--no-devices", action="store_true",
                   help="no /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom unless listed")
    a = p.parse_intermixed_args(argv)  # DIR,--ro=X,DIR: positionals anywhere
    for d in (*a.dirs, *a.ro):
        if not os.path.exists(d):  # a typo would silently deny everything below it
            print(f"sandbox: warning: {d} does not exist (create it, or nothing can be opened there)",
                  file=sys.stderr, flush=True)
    rw = tuple(_resolve_dir(d) for d in a.dirs)
    ro_only = tuple(_resolve_dir(d) for d in a.ro)
    ro = rw + ro_only
    devices = {} if a.no_devices else harmless_devices()
    known = (*ro, *devices)  # the box's ancestors: on the way in
    asked = frozenset(n for s in a.allow_syscall for n in re.split(r"[,+]", s) if n)
    safe = SAFE | asked
    # allowed by name, clone3 is judged per call: its flags are in memory, where
    # the filter cannot look; the broker shows a read-only copy, which the call uses
    clone3 = asked & {"clone3"}
    denial = skip_fail(a.errno)
    hidden = skip_fail(errno.ENOENT)
    moved = skip_fail(errno.EXDEV)  # a hard link that would carry a file into the box
    # calls that need no look run without a stop (static allow); calls it
    # names nowhere fail with ENOSYS in the kernel filter; the layer settles
    # opens, exec, mkdir, unlink, rename... where the kernel has Landlock
    traced = OPEN | MKNOD | READ_PATH | WRITE_PATH | FD_WRITE | SIGNALS | (TARGETED & safe) | clone3
    denied = () if clone3 else DENIED
    rules = (*RULES, *(r for n, rs in SOCKET_RULES.items() if n not in asked for r in rs))
    az = Authorizer("sandbox", trace=traced, allow=(safe - traced - {"clone3"}) & all_names(),
                    deny=denied, rules=rules, unknown="deny:ENOSYS",
                    layer=_layer(rw, ro_only, tuple(devices), a.hide_outside))

    def judge(call: Syscall, indices: Sequence[int], writing: bool, outside: object | None = None) -> object:
        """``outside``: the answer for a path outside the box (default: the denial)."""
        roots = rw if writing else ro
        for i in indices:
            if call.data(i) == b"" and call._at_flags() & AT_EMPTY_PATH and not writing:
                continue  # fstatat(fd, "", AT_EMPTY_PATH): the descriptor, judged when opened
            path = call.resolve_path(i)  # writing to "" + AT_EMPTY_PATH: the descriptor's file
            if path is None:
                return denial
            if not path.startswith("/"):
                continue  # pipe:[N], socket:[N]...: a descriptor already open, not a file
            if not path_under(path, roots):
                if devices and call.name in OPEN | METADATA and _is_node(path, devices):
                    continue  # /dev/null...: the node itself, whatever its name
                if not writing and call.name in METADATA:
                    return cont_reply if _ancestor(path, known) else hidden
                if not writing and not os.path.lexists(path):
                    return hidden  # what the kernel layer answers too: a missing file is missing
                return outside or denial
        return cont_reply

    @az.on("*")
    def any_call(call: Syscall) -> object:
        verdict = decide(call)
        if a.log and verdict is not cont_reply:
            print(f"sandbox: pid {call.pid}: {call.text()} -> {to_reply(verdict).verdict}", file=sys.stderr, flush=True)
        return verdict

    cont_reply = cont()

    def decide(call: Syscall) -> object:
        name = call.name
        if name in OPEN:
            flags = call.open_flags() or 0
            return judge(call, call.path_args(), opens_for_writing(flags))
        if name in HARD_LINKS:
            # the new name first, then the file: one from outside the read-write
            # directories would become writable there; EXDEV, as the layer says
            idx = call.path_args()
            verdict = judge(call, idx[1:], True)
            return verdict if verdict is not cont_reply else judge(call, idx[:1], True, moved)
        if name in SYMLINKS and not _points_inside(call, rw):
            return skip_fail(errno.EPERM)
        if name in MKNOD and not _harmless_node(call):
            return skip_fail(errno.EPERM)
        if name in WRITE_PATH:
            idx = call.path_args()
            if not idx or call.data(idx[0]) is None and name.startswith(("utimensat", "futimesat")):
                return _fd_write(call, rw, denial)
            return judge(call, idx, True)
        if name in READ_PATH:
            return judge(call, call.path_args(), False)
        if name in FD_WRITE:
            return _fd_write(call, rw, denial)
        if name in SIGNALS or name in TARGETED and name in safe:
            return cont_reply if _same_session(call) else skip_fail(errno.EPERM)
        if name in clone3:
            return skip_fail(errno.EPERM) if _clone3_flags(call) & CLONE3_NAMESPACES else cont_reply
        if name in safe:  # asked only with --allow-syscall of a traced call
            return cont_reply
        return skip_fail(errno.ENOSYS)

    return az


def _fd_write(call: Syscall, rw: Sequence[str], denial: object) -> object:
    """fchmod(fd), ftruncate(fd), utimensat(fd, NULL, ...): act on the
    descriptor's file, which must be below a read-write directory (a pipe or
    socket is no file and passes)."""
    target = call.fd_path(call.num(0))
    if target is not None and (not target.startswith("/") or path_under(target, rw)):
        return cont()
    return denial


def _clone3_flags(call: Syscall) -> int:
    """clone3's flags (0 when its struct cannot be read: the kernel then fails
    the call itself, EFAULT or EINVAL)."""
    v = call.field(0, "flags")
    return 0 if v is None else value_to_int(v, "clone3_flags")


def _points_inside(call: Syscall, rw: Sequence[str]) -> bool:
    """Does a symlink's target (its first argument, never looked up by the
    call) stay in the read-write directories wherever the link is moved
    among them: relative and only down from the link's own directory, or
    absolute and below one of them, with no ``..`` either way?  A link that
    leads elsewhere, renamed over a directory between the check of a path
    call and the kernel's use of the path (chmod, chown, utimes, xattrs by
    path stay per call even under the kernel layer), would carry a checked
    path out of the box; and it points whoever follows it later outside."""
    v = call.arg(0)
    if not isinstance(v, Str) or v.truncated or b".." in v.data.split(b"/"):
        return False
    return not v.data.startswith(b"/") or path_under("/" + os.path.normpath(os.fsdecode(v.data)).lstrip("/"), rw)


def _harmless_node(call: Syscall) -> bool:
    """mknod/mknodat of a regular file, fifo or socket (not a device)."""
    kinds = call.spec.args if call.spec else ()
    if "mode" not in kinds:
        return False
    return stat.S_IFMT(call.num(kinds.index("mode"))) in NODE_TYPES


def _same_session(call: Syscall) -> bool:
    """Does a call that names processes (a signal, prlimit64, setpriority...)
    reach only processes of the caller's session, i.e. traced by the same
    broker?  (Every process, a user's, an unknown target: no.)  Under ptrace
    the caller's tracer is the session's shim."""
    targets = call.target_pids()
    mine = tracer_of(call.tid)
    return targets is not None and bool(mine) and all(tracer_of(t) == mine for t in targets)


def main(argv: Sequence[str] | None = None) -> None:
    build(sys.argv[1:] if argv is None else argv).main()


if __name__ == "__main__":
    main()
