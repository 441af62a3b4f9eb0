"""Small readers of /proc/PID files the tracer needs (no caching: a pid's
facts change with exec, setuid and exit)."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable

from brokerd.protocol.args import constant

#: /proc/PID entries a Landlock domain keeps from outside processes: ``mem`` itself, and what
#: lies beneath ``fd/``, ``map_files/`` and ``ns/`` (a namespace descriptor, for setns; listing
#: those directories stays allowed, as with the wall)
PROC_FILES = frozenset({"mem"})
PROC_DIRS = frozenset({"fd", "map_files", "ns"})
#: /proc/PID entries that change their process when written and whose open for
#: writing the kernel checks only by the file's owner (the process's uid while it
#: is dumpable) or a capability root has, never ptrace-mode access: no Landlock
#: domain covers them, so the guard refuses opening them for writing outside the
#: session (seen open under the wall on 6.18, as root; the owner's uid too where
#: the file mode allows).  Self-only ones are left out: the kernel refuses another
#: process's ``comm``, ``loginuid``, ``attr/*`` itself
PROC_WRITABLE = frozenset({
    "oom_score_adj", "oom_adj",  # make it the OOM killer's first victim
    "clear_refs",  # clear its referenced/soft-dirty bits, reset its peak RSS
    "coredump_filter",  # what its core dump holds
    "timerslack_ns",  # its timer slack (CAP_SYS_NICE)
    "autogroup",  # the nice value of its scheduling autogroup
    "sched",  # reset its scheduler statistics
    "uid_map", "gid_map", "projid_map", "setgroups",  # map a user namespace it made, before it does
    "timens_offsets",  # clock offsets of a time namespace it made, before it enters
    "make-it-fail", "fail-nth",  # fault injection into it (CONFIG_FAULT_INJECTION)
    "latency",  # clear its latency records (CONFIG_LATENCYTOP)
})
#: cgroup files (cgroup v1 or v2, wherever mounted) whose write acts on processes
#: that no Landlock domain or ptrace-mode check protects (seen on 6.18: under the
#: wall a root program froze a cgroup holding an outside process): how the guard
#: judges opening one for writing.  ``members``: the write acts on every process of
#: the cgroup and of those beneath it, refused when one is outside the session (the
#: rule of every file not named here too: ``memory.max`` OOM-kills them, ``cpu.max``
#: starves them); ``moves``: it moves the process whose pid write(2) gives later,
#: unseen at the open: refused unless the user opted out of the wall
CGROUP_WRITABLE: dict[str, str] = {
    "cgroup.kill": "members",  # SIGKILL to every one of them (v2, 5.14+)
    "cgroup.freeze": "members",  # freeze them (v2, 5.2+)
    "freezer.state": "members",  # freeze them (v1 freezer)
    "cgroup.procs": "moves", "cgroup.threads": "moves", "tasks": "moves",  # move any process in
}
CGROUP_DEFAULT_RULE = "members"
#: file systems a Landlock layer must keep every write from before opens for writing
#: need not stop (layers.bars_procfs_writes): their files act on other processes
WRITE_GUARDED_FS = frozenset({"proc", "cgroup", "cgroup2"})
#: what /proc/PID/fd/N of a namespace descriptor reads: ``TYPE:[INODE]``
NS_LINK = re.compile(r"(cgroup|ipc|mnt|net|pid|time|user|uts):\[\d+\]")
PROC_PATH = re.compile(r"/proc/(\d+)/(?:task/(\d+)/)?([^/]*)")
AT_FDCWD = constant("AT_FDCWD")
MAX_LINKS = 40


def status_field(pid: int, key: bytes) -> list[bytes] | None:
    """The words after ``key:`` in /proc/PID/status, or None."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(key + b":"):
                    return line.split()[1:]
    except OSError:
        pass
    return None


def read_whole(path: str) -> bytes:
    """The whole of a /proc file, in as few reads as it takes (one, mostly;
    line-by-line text reading costs more than the kernel's own work)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts = []
        while chunk := os.read(fd, 1 << 16):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)

def tgid_of(tid: int) -> int:
    """The thread group (process) a thread belongs to; ``tid`` if unknown."""
    words = status_field(tid, b"Tgid")
    return int(words[0]) if words else tid


def uids_of(pid: int) -> tuple[int, ...]:
    """(real, effective, saved, fs) uids, or () if the process is gone."""
    words = status_field(pid, b"Uid")
    return tuple(int(w) for w in words) if words else ()


def pgrp_and_ppid(pid: int) -> tuple[int, int] | None:
    """(process group, parent pid) from /proc/PID/stat; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            rest = f.read().rsplit(b") ", 1)[1].split()
        return int(rest[2]), int(rest[1])
    except (OSError, IndexError, ValueError):
        return None


def holds(pid: int, link: str, skip: int = -1) -> bool:
    """Does process ``pid`` hold a descriptor whose link reads ``link`` (other than ``skip``)?"""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for n in names:
        try:
            if int(n) != skip and os.readlink(f"/proc/{pid}/fd/{n}") == link:
                return True
        except (OSError, ValueError):
            continue
    return False


def in_namespace(pid: int, link: str) -> bool:
    """Is process ``pid`` in the namespace ``link`` (``TYPE:[INODE]``) names,
    or does it make its children there (``pid_for_children``, ``time_for_children``)?"""
    kind = link.split(":", 1)[0]
    for entry in (kind, f"{kind}_for_children"):
        try:
            if os.readlink(f"/proc/{pid}/ns/{entry}") == link:
                return True
        except OSError:
            continue
    return False


def proc_entry_of(tid: int, tgid: int, dirfd: int, path: bytes, files: frozenset[str] = PROC_FILES,
                  through: Callable[[int], bool] = lambda pid: False,
                  end: list[str] | None = None) -> tuple[int, str] | None:
    """(PID, entry) when ``path``, resolved as thread ``tid`` would resolve it
    (its root, cwd or ``dirfd``; ``/proc/self``, ``/proc/thread-self`` and
    symlinks followed), goes through ``/proc/PID/ENTRY`` (or
    ``/proc/PID/task/TID/ENTRY``, reported as TID): one of ``files`` (``mem``),
    or anything beneath ``fd/``, ``map_files/`` or ``ns/``.  Beneath the
    ``fd/`` of a process ``through`` says the program may reach (its own),
    the descriptor's link is followed instead: ``/proc/self/fd/N/ENTRY``, N
    a descriptor of another process's ``/proc/PID``, is that process's ENTRY.
    When the walk ends elsewhere, the path it ended on (in the thread's
    root, every symlink followed) is appended to ``end``."""
    root = f"/proc/{tid}/root"
    if path.startswith(b"/"):
        cur = ""
    else:
        base = f"/proc/{tid}/cwd" if dirfd == AT_FDCWD else f"/proc/{tid}/fd/{dirfd}"
        try:
            cur = os.readlink(base).rstrip("/")
        except OSError:
            return None
    todo = [c for c in os.fsdecode(path).split("/") if c][::-1]
    links = 0
    while todo:
        comp = todo.pop()
        if comp == ".":
            continue
        if comp == "..":
            cur = cur.rsplit("/", 1)[0]
            continue
        cur = f"{cur}/{comp}"
        if cur == "/proc/self":
            cur = f"/proc/{tgid}"
        elif cur == "/proc/thread-self":
            cur = f"/proc/{tgid}/task/{tid}"
        m = PROC_PATH.fullmatch(cur)
        if m and (m.group(3) in files or m.group(3) in PROC_DIRS and todo):
            pid = int(m.group(2) or m.group(1))
            if not (m.group(3) == "fd" and through(pid)):
                return pid, m.group(3)
        try:
            target = os.readlink(root + cur) if stat.S_ISLNK(os.lstat(root + cur).st_mode) else None
        except OSError:
            target = None  # missing: the rest is taken as written
        if target is None or target.startswith(("pipe:", "socket:", "anon_inode:")):
            continue
        links += 1
        if links > MAX_LINKS:
            return None
        cur = cur.rsplit("/", 1)[0] if not target.startswith("/") else ""
        todo.extend(c for c in target.split("/")[::-1] if c)
    if end is not None:
        end.append(cur or "/")
    return None


def procfs_mounts(mountinfo: str, types: frozenset[str] = frozenset({"proc"})) -> tuple[str, ...]:
    """The mount points of every procfs (or file system of ``types``:
    :data:`WRITE_GUARDED_FS`) in ``mountinfo`` (the text of
    /proc/PID/mountinfo), a bind mount of one /proc file included: field 5
    is the mount point (octal escapes for space, tab, newline, backslash),
    the type follows the `` - `` separator."""
    points = []
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        if sep and len(fields) > 4 and tail.split(" ", 1)[0] in types:
            points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    return tuple(points)
