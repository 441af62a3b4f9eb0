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
from dataclasses import dataclass

MAX_LINKS = 40  # the kernel's own limit (ELOOP)
ATTEMPTS = 3  # walks tried when a link changes under the resolver
MAGIC = re.compile(rb"/proc/\d+(?:/task/\d+)?/(?:fd/\d+|cwd|root|exe|map_files/[^/]+|ns/[^/]+)\Z")


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a path leads in the tracee's view.

    ``path``: the real path (``realN``); ``exists``: its last component
    exists; ``parent``: the real path of the directory that holds (or would
    hold) it, None if that directory does not exist either; ``st``: the
    ``lstat`` of the last component when it exists (the object itself when
    it is a magic link or ``/``)."""

    path: bytes
    exists: bool
    parent: bytes | None
    st: os.stat_result | None = None


class _Changed(Exception):
    """A link changed while it was being read: walk again."""


def resolve(root: bytes, path: bytes, tgid: int, tid: int, follow_last: bool = True) -> Resolved | None:
    """Resolve absolute ``path`` under ``root`` (``/proc/TID/root``) for
    thread ``tid`` of process ``tgid``; ``follow_last=False`` for opens that
    do not follow a final symlink (``O_NOFOLLOW``, ``O_CREAT|O_EXCL``).
    None when it cannot be resolved soundly here (too many links, a magic
    link in the middle, an unreadable directory, a path that keeps changing)."""
    for _ in range(ATTEMPTS):
        try:
            return _walk(root, path, tgid, tid, follow_last)
        except _Changed:
            continue
    return None


def _walk(root: bytes, path: bytes, tgid: int, tid: int, follow_last: bool) -> Resolved | None:
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
            st = os.lstat(root + cand)
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
                obj = os.stat(root + cand)
            except FileNotFoundError:
                raise _Changed from None
            except OSError:
                return None
            return Resolved(cand, True, cur or b"/", obj)
        links += 1
        if links > MAX_LINKS:
            return None
        try:
            target = os.readlink(root + cand)
        except OSError:
            raise _Changed from None  # gone or no longer a link since the lstat
        if target.startswith(b"/"):
            cur = b""
        parts.extendleft(reversed([p for p in target.split(b"/") if p]))
    if not cur:
        try:
            return Resolved(b"/", True, b"/", os.stat(root + b"/"))
        except OSError:
            return None
    if cur_st is not None:  # the last component, just looked at: no second lstat
        return Resolved(cur, True, cur.rsplit(b"/", 1)[0] or b"/", cur_st)
    try:
        st = os.lstat(root + cur)
    except FileNotFoundError:
        raise _Changed from None
    except OSError:
        return None
    return Resolved(cur, True, cur.rsplit(b"/", 1)[0] or b"/", st)


def plain_path(root: bytes, path: bytes, follow_last: bool = True) -> os.stat_result | None:
    """The object canonical absolute ``path`` names under ``root``
    (``/proc/TID/root``) when no component of it is a symlink (the last one
    may be, unfollowed, with ``follow_last=False``): one ``openat2`` with
    ``RESOLVE_NO_SYMLINKS|RESOLVE_IN_ROOT``, the kernel's own walk, instead
    of a Python ``lstat`` per component.  Then the real path is ``path``
    itself.  None when it is not so (a symlink, an absent component, no
    ``openat2``): :func:`resolve` then walks it."""
    try:
        rfd = os.open(root, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = _openat2(rfd, path, os.O_PATH | os.O_CLOEXEC | (0 if follow_last else os.O_NOFOLLOW),
                      _NO_SYMLINKS | _IN_ROOT)
        if fd < 0:
            return None
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)
    finally:
        os.close(rfd)


_NO_SYMLINKS, _IN_ROOT = 0x04, 0x10
_SYS_OPENAT2 = 437  # x86_64, the broker's own ABI
_libc = None


def _openat2(dirfd: int, path: bytes, flags: int, resolve_flags: int) -> int:
    """openat2(2), which Python's os module lacks; -1 on any failure."""
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    how = struct.pack("<QQQ", flags, 0, resolve_flags)
    return _libc.syscall(_SYS_OPENAT2, dirfd, path, how, len(how))
