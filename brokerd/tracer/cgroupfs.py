"""Cgroup files the guard judges: which file system a path is on, and
which processes a cgroup and those beneath it hold.

Writing ``cgroup.kill``, ``cgroup.freeze`` (v2) or ``freezer.state`` (v1)
acts on every process of a cgroup's subtree, and ``cgroup.procs``,
``cgroup.threads`` or ``tasks`` moves any process (the one whose pid is
written): the kernel checks the file's permissions only (root, or a
delegated subtree's owner), never ptrace-mode access, so no Landlock domain
covers them (:data:`.procfs.CGROUP_WRITABLE` says how each is judged)."""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Callable

CGROUP_SUPER_MAGIC = 0x27E0EB
CGROUP2_SUPER_MAGIC = 0x63677270
CGROUP_MAGICS = frozenset({CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC})
#: the files that list a cgroup's processes, the first one readable is read
#: (v2 ``cgroup.procs`` fails with EOPNOTSUPP in a threaded cgroup: its threads)
_MEMBER_LISTS = ("cgroup.procs", "cgroup.threads", "tasks")


def fs_type(path: str) -> int | None:
    """The file system magic ``statfs(2)`` gives for ``path`` (a magic
    link such as /proc/TID/fd/N is followed to its object); None if unknown."""
    from .ptrace import _libc  # the broker's one handle on libc

    buf = ctypes.create_string_buffer(256)  # struct statfs (120 bytes on x86_64): f_type first
    if _libc.statfs(os.fsencode(path), buf) != 0:
        return None
    return int(struct.unpack_from("=q", buf.raw)[0])


def on_cgroupfs(path: str) -> bool:
    """Is ``path`` on a cgroup file system (v1 or v2)?"""
    return fs_type(path) in CGROUP_MAGICS


def holds_any(cgroup: str, outside: Callable[[int], bool]) -> bool:
    """Does the cgroup directory ``cgroup`` (a path the broker can open:
    ``/proc/self/fd/N`` of a directory it holds, so renames do not matter),
    or any cgroup beneath it, hold a process ``outside`` says yes to?  A
    list that cannot be read counts as holding one (fail closed); a cgroup
    removed meanwhile holds none (a cgroup with processes cannot be removed)."""
    try:
        for dirpath, _dirs, files in os.walk(cgroup, onerror=_raise):
            pids = _members(dirpath, files)
            if pids is None or any(outside(p) for p in pids):
                return True
    except OSError:
        return True
    return False


def _members(cgroup: str, files: list[str]) -> list[int] | None:
    """The pids (or tids) one cgroup lists; None if no list is readable."""
    for name in _MEMBER_LISTS:
        if name not in files:
            continue
        try:
            with open(os.path.join(cgroup, name), "rb") as f:
                return [int(w) for w in f.read().split()]
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            continue
    return None if any(n in files for n in _MEMBER_LISTS) else []


def _raise(err: OSError) -> None:
    if not isinstance(err, FileNotFoundError):
        raise err


def mount_id(fdinfo: str) -> int | None:
    """The ``mnt_id`` a /proc/PID/fdinfo/N file gives, None if unreadable."""
    try:
        with open(fdinfo, "rb") as f:
            for line in f:
                if line.startswith(b"mnt_id:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def cgroup_of(fd: int) -> tuple[int, str] | None:
    """(directory descriptor, name) of the cgroup file the broker's
    descriptor ``fd`` is (an O_PATH one), when it is one: the directory it
    lies in, opened by the path the kernel gives for ``fd`` and checked to
    hold that very file (its inode) on that very mount (a file bind-mounted
    elsewhere, ``mount --bind .../cgroup.kill /tmp/x``, is on a mount of its
    own).  None: not on a cgroup file system; ``(-1, "")``: on one, but its
    cgroup cannot be told (judge it refused).  The caller closes the descriptor."""
    if not on_cgroupfs(f"/proc/self/fd/{fd}"):
        return None
    try:
        parent, _, name = os.readlink(f"/proc/self/fd/{fd}").rpartition("/")
        dfd = os.open(parent or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return -1, ""
    try:
        mine, there = os.stat(fd), os.stat(name, dir_fd=dfd, follow_symlinks=False)
        same = ((mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)
                and mount_id(f"/proc/self/fdinfo/{fd}") == mount_id(f"/proc/self/fdinfo/{dfd}") is not None
                and on_cgroupfs(f"/proc/self/fd/{dfd}"))
    except OSError:
        same = False
    if same:
        return dfd, name
    os.close(dfd)
    return -1, ""
