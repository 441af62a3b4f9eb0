"""Resolve a path the way the kernel will for a tracee, one component at a
time, inside the tracee's root (``/proc/TID/root``).

The broker resolves each judged open once, before anyone judges it: the
result is the ``realN`` note policies see, and what the exit-stop check
compares the opened descriptor with (``docs/security.md``).  A generic
``realpath`` run by the broker gets three things wrong, each of which made
ordinary programs fail (issue 16):

* ``/proc/self`` and ``/proc/thread-self`` (behind ``/dev/stdin``,
  ``/dev/fd/N``...) would name the *broker*; here they name the tracee;
* magic links (``/proc/PID/fd/N``, ``cwd``, ``root``, ``exe``) are not
  symlinks to a path: a final one is the object it refers to, kept as
  ``/proc/PID/fd/N`` (the program's own descriptor), never followed as text;
* a link that vanishes between ``lstat`` and ``readlink`` raised out of
  the loop; here the walk starts again (a few times), then gives up (None).

Absolute link targets restart at the tracee's root, ``..`` stops there.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from collections import deque
from collections.abc import Callable

from brokerd.protocol.record import Record, _set

from .accel import accel

MAX_LINKS = 40  # the kernel's own limit (ELOOP)
ATTEMPTS = 3  # walks tried when a link changes under the resolver
MAGIC = re.compile(rb"/proc/\d+(?:/task/\d+)?/(?:fd/\d+|cwd|root|exe|map_files/[^/]+|ns/[^/]+)\Z")


class Resolved(Record):
    """Where a path leads in the tracee's view.

    ``path``: the real path (``realN``); ``exists``: its last component
    exists; ``parent``: the real path of the directory that holds (or would
    hold) it, None if that directory does not exist either; ``st``: the
    ``lstat`` of the last component when it exists (the object itself when
    it is a magic link or ``/``)."""

    __slots__ = ("path", "exists", "parent", "st")
    path: bytes
    exists: bool
    parent: bytes | None
    st: os.stat_result | None

    def __init__(self, path: bytes, exists: bool, parent: bytes | None,
                 st: os.stat_result | None = None) -> None:
        _set(self, "path", path)
        _set(self, "exists", exists)
        _set(self, "parent", parent)
        _set(self, "st", st)


class _Changed(Exception):
    """A link changed while it was being read: walk again."""


def resolve(root: bytes, path: bytes, tgid: int, tid: int, follow_last: bool = True,
            at: int | None = None) -> Resolved | None:
    """Resolve absolute ``path`` under ``root`` (``/proc/TID/root``) for
    thread ``tid`` of process ``tgid``; ``follow_last=False`` for opens that
    do not follow a final symlink (``O_NOFOLLOW``, ``O_CREAT|O_EXCL``).
    ``at``: the thread's kept root descriptor (:class:`RootFds`), looked up
    from instead of ``root`` (each lookup through ``/proc/TID/root`` is a
    procfs walk and a ptrace access check).  None when it cannot be
    resolved soundly here (too many links, a magic link in the middle, an
    unreadable directory, a path that keeps changing)."""
    fs = _PathFs(root) if at is None else _FdFs(at)
    for _ in range(ATTEMPTS):
        try:
            return _walk(fs, path, tgid, tid, follow_last)
        except _Changed:
            continue
    return None


class _PathFs:
    """The tracee's file system seen through ``/proc/TID/root``."""

    __slots__ = ("root",)

    def __init__(self, root: bytes) -> None:
        self.root = root

    def lstat(self, path: bytes) -> os.stat_result:
        return os.lstat(self.root + path)

    def stat(self, path: bytes) -> os.stat_result:
        return os.stat(self.root + path)

    def readlink(self, path: bytes) -> bytes:
        return os.readlink(self.root + path)


class _FdFs:
    """The tracee's file system seen from a kept descriptor of its root:
    absolute paths looked up relative to it, as ``/proc/TID/root`` + path
    looks them up (a symlink met on the way, only possible in a race, is
    followed alike: from the broker's root)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def lstat(self, path: bytes) -> os.stat_result:
        return os.lstat(path[1:] or b".", dir_fd=self.fd)

    def stat(self, path: bytes) -> os.stat_result:
        return os.stat(path[1:] or b".", dir_fd=self.fd)

    def readlink(self, path: bytes) -> bytes:
        return os.readlink(path[1:], dir_fd=self.fd)


def _walk(fs: _PathFs | _FdFs, path: bytes, tgid: int, tid: int, follow_last: bool) -> Resolved | None:
    parts = deque(p for p in path.split(b"/") if p)
    cur = b""  # the real path so far; b"" is "/"
    cur_st: os.stat_result | None = None  # lstat of cur, when the walk just took it
    links = 0
    while parts:
        comp = parts.popleft()
        if comp == b".":
            continue
        cur_st = None
        if comp == b"..":
            cur = cur.rsplit(b"/", 1)[0]
            continue
        cand = cur + b"/" + comp
        if cand == b"/proc/self":
            cur = b"/proc/%d" % tgid
            continue
        if cand == b"/proc/thread-self":
            cur = b"/proc/%d/task/%d" % (tgid, tid)
            continue
        last = not parts
        try:
            st = fs.lstat(cand)
        except FileNotFoundError:
            if last:
                return Resolved(cand, False, cur or b"/")
            return Resolved(cand + b"/" + b"/".join(parts), False, None)
        except OSError:
            return None
        if not stat.S_ISLNK(st.st_mode) or (last and not follow_last):
            cur, cur_st = cand, st
            continue
        if MAGIC.match(cand):
            if not last:
                return None  # through another object's magic link: not resolved here
            try:
                obj = fs.stat(cand)
            except FileNotFoundError:
                raise _Changed from None
            except OSError:
                return None
            return Resolved(cand, True, cur or b"/", obj)
        links += 1
        if links > MAX_LINKS:
            return None
        try:
            target = fs.readlink(cand)
        except OSError:
            raise _Changed from None  # gone or no longer a link since the lstat
        if target.startswith(b"/"):
            cur = b""
        parts.extendleft(reversed([p for p in target.split(b"/") if p]))
    if not cur:
        try:
            return Resolved(b"/", True, b"/", fs.stat(b"/"))
        except OSError:
            return None
    if cur_st is not None:  # the last component, just looked at: no second lstat
        return Resolved(cur, True, cur.rsplit(b"/", 1)[0] or b"/", cur_st)
    try:
        st = fs.lstat(cur)
    except FileNotFoundError:
        raise _Changed from None
    except OSError:
        return None
    return Resolved(cur, True, cur.rsplit(b"/", 1)[0] or b"/", st)


def plain_path(root: bytes | int, path: bytes, follow_last: bool = True) -> os.stat_result | None:
    """The object canonical absolute ``path`` names under ``root`` (an
    O_PATH descriptor of the tracee's root from :class:`RootFds`, or the
    path ``/proc/TID/root``) when no component of it is a symlink (the last
    one may be, unfollowed, with ``follow_last=False``): one ``openat2`` with
    ``RESOLVE_NO_SYMLINKS|RESOLVE_IN_ROOT``, the kernel's own walk, instead
    of a Python ``lstat`` per component.  Then the real path is ``path``
    itself.  None when it is not so (a symlink, an absent component, no
    ``openat2``): :func:`resolve` then walks it."""
    if isinstance(root, int):
        return _plain_under(root, path, follow_last)
    try:
        rfd = os.open(root, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _plain_under(rfd, path, follow_last)
    finally:
        os.close(rfd)


def plain_ident(root: bytes | int, path: bytes, follow_last: bool = True) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of what :func:`plain_path` finds; from a kept
    root descriptor in one compiled call where brokerd.tracer.accel is built."""
    if isinstance(root, int):
        return plain_ident_at(root, path, follow_last)
    st = plain_path(root, path, follow_last)
    return None if st is None else (st.st_dev, st.st_ino)


def _plain_ident_at_py(rootfd: int, path: bytes, follow_last: bool) -> tuple[int, int] | None:
    st = plain_path(rootfd, path, follow_last)
    return None if st is None else (st.st_dev, st.st_ino)


#: :func:`plain_ident` from a kept root descriptor: the compiled call itself where
#: brokerd.tracer.accel is built (a judged open's check, no Python frame around it)
plain_ident_at: Callable[[int, bytes, bool], tuple[int, int] | None] = (
    accel.plain_stat if accel is not None else _plain_ident_at_py)


def _plain_under(rfd: int, path: bytes, follow_last: bool) -> os.stat_result | None:
    fd = _openat2(rfd, path, _PLAIN_FLAGS if follow_last else _PLAIN_FLAGS | os.O_NOFOLLOW,
                  _NO_SYMLINKS | _IN_ROOT)
    if fd < 0:
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


class RootFds:
    """O_PATH descriptors of tracee threads' roots, one per thread, kept
    between calls: :func:`plain_path` (and :func:`resolve`, for an open
    that is not plain) then walks from the kept descriptor instead of
    opening ``/proc/TID/root`` (and closing it, or looking up through it
    once per component) for every judged open.  At most ``limit`` are kept (the oldest closed first); a thread's
    is closed when it exits or execs (:meth:`forget`), and each is kept with
    the thread record it was opened for, so a reused tid never gets a
    former thread's root.

    A root changes by ``chroot``, ``pivot_root`` (of every process whose
    root was the old one), ``setns`` into a mount namespace and
    ``unshare(CLONE_NEWNS)``.  Those calls stop while descriptors are kept
    (``ROOT_CALLS``), and the first one a traced process makes closes them
    all and switches keeping off for the session (:meth:`off`): from then
    on every resolution opens ``/proc/TID/root`` again, as before.  A root
    changed behind the broker's back (a ``pivot_root`` by a process outside
    the session in a mount namespace the program made) can at worst make a
    call fail, never open something other than the judged path: what
    :func:`plain_path` (or a :func:`resolve` that found no symlink) says
    from a stale root is that the judged path names an object with no
    symlink on the way.  A pinned open then runs as ``openat2`` of exactly
    that path with ``RESOLVE_NO_SYMLINKS`` in the thread's actual root: it
    opens what the judged path names there, or fails (ELOOP, ENOENT).  An
    unpinned one is checked at exit against the object the stale walk
    found: another object is closed and the call fails with EACCES (a
    path that does not exist yet is checked by its path under
    ``/proc/TID/root``, the actual root, as before)."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self.on = True
        self._fds: dict[int, tuple[object, int]] = {}

    def get(self, tid: int, owner: object) -> int | None:
        """The kept root descriptor of thread ``tid`` (whose record is
        ``owner``), opened now if need be; None when keeping is off or the
        root cannot be opened (the caller opens ``/proc/TID/root`` itself)."""
        kept = self._fds.get(tid)
        if kept is not None:
            if kept[0] is owner:
                return kept[1]
            self.forget(tid)  # a former thread's tid
        if not self.on:
            return None
        try:
            fd = os.open(f"/proc/{tid}/root", os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return None
        if len(self._fds) >= self.limit:
            self.forget(next(iter(self._fds)))
        self._fds[tid] = (owner, fd)
        return fd

    @property
    def kept(self) -> dict[int, tuple[object, int]]:
        """The kept descriptors, tid -> (its thread's record, fd): read only
        (the compiled road, ``accel.fused_stop``, looks a thread's up as
        :meth:`get` does, and hands the rest to it)."""
        return self._fds

    def forget(self, tid: int) -> None:
        """Thread ``tid`` exited or exec'd: its root descriptor is closed."""
        kept = self._fds.pop(tid, None)
        if kept is not None:
            os.close(kept[1])

    def off(self) -> None:
        """A root may have changed: close every descriptor, keep none from now on."""
        self.on = False
        self.close()

    def close(self) -> None:
        for tid in list(self._fds):
            self.forget(tid)

    def __len__(self) -> int:
        return len(self._fds)


#: calls that change a thread's root (or another's: pivot_root): they switch RootFds off
ROOT_CALLS = frozenset({"chroot", "pivot_root", "setns", "unshare"})
_NO_SYMLINKS, _IN_ROOT = 0x04, 0x10
_PLAIN_FLAGS = os.O_PATH | os.O_CLOEXEC
_SYS_OPENAT2 = 437  # x86_64, the broker's own ABI
_libc = None


def _openat2(dirfd: int, path: bytes, flags: int, resolve_flags: int) -> int:
    """openat2(2), which Python's os module lacks; -1 on any failure."""
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    how = _HOWS.get((flags, resolve_flags))
    if how is None:
        how = _HOWS[flags, resolve_flags] = struct.pack("<QQQ", flags, 0, resolve_flags)
    return _libc.syscall(_SYS_OPENAT2, dirfd, path, how, 24)


_HOWS: dict[tuple[int, int], bytes] = {}  # struct open_how per (flags, resolve): a handful
