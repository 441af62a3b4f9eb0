"""Scratch memory the shim owns inside a tracee, which the tracee cannot write.

Rewritten arguments, and copies of the pointer arguments an authorizer
judged (paths, strings, sockaddrs), are placed here and the registers are
pointed at them, so the kernel uses exactly the bytes that were judged: no
other thread or process sharing memory can change them after the check (the
seed's 2011 TOCTOU point).

The region is a memfd created in the tracee (an injected ``memfd_create``),
opened again by the shim through ``/proc/TID/fd/N`` (a tracer may; no
``pidfd_getfd``, which container seccomp profiles refuse), mapped read-write *in the shim*,
then sealed (``F_SEAL_FUTURE_WRITE|SHRINK|GROW|SEAL``) before the tracee maps
it ``PROT_READ, MAP_SHARED``.  Because of the seal the kernel refuses the
tracee ``mprotect(PROT_WRITE)`` on it, ``write()`` through any descriptor of
it, and ``/proc/self/mem`` writes (FOLL_FORCE does not write through a
read-only shared mapping).  What is left, replacing or moving the mapping
(``munmap``, ``mremap``, ``mmap(MAP_FIXED)``, ``shmat(SHM_REMAP)``,
``remap_file_pages``), the kernel refuses too where it has ``mseal`` (6.10+):
the shim seals the mapping in the tracee (an injected ``mseal``, inherited by
forked children), so none of those calls needs to stop.  On older kernels
they stop, and the shim denies them for ranges that touch the region.
"""

from __future__ import annotations

import ctypes
import errno as E
import fcntl
import mmap
import os

from .procfs import read_whole

# 4096 slots: one per live thread that made a judged call.  Address space
# only: pages are used as slots are written.  A forked child shares its
# parent's region (and gives its slot back at exec or exit); past 4096 live
# threads a call waits for a slot (the shim parks it), it never fails.
REGION_SIZE = 64 << 20
SLOT_SIZE = 16 << 10
F_ADD_SEALS = 1033
F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_FUTURE_WRITE = 1, 2, 4, 16
MFD_CLOEXEC, MFD_ALLOW_SEALING = 1, 2
MEMFD_NAME = "brokerd-scratch"
SYS_MSEAL = 462  # the same number on x86_64 and i386


def can_seal() -> bool:
    """Does this kernel have ``mseal`` (sealing an empty range is a no-op)?"""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc.syscall(SYS_MSEAL, 0, 0, 0) == 0


class Region:
    """One sealed memfd mapped at ``addr`` in every process that shares it
    (a forked child inherits the mapping), with a slot per thread."""

    addr: int
    view: mmap.mmap
    size: int  # read when made (tests shrink it)
    slots: dict[int, int]  # tid -> offset
    free: list[int]
    ident: tuple[int, int]  # the memfd's (st_dev, st_ino): what /proc/PID/maps must show at addr
    #: the shim's resume count when the region became complete (mapped and sealed): only a
    #: thread let run after that can have forked a child holding the sealed mapping
    ready: int | None

    def __init__(self, addr: int, view: mmap.mmap, size: int | None = None,
                 slots: dict[int, int] | None = None, free: list[int] | None = None,
                 ident: tuple[int, int] = (0, 0), ready: int | None = None) -> None:
        self.addr = addr
        self.view = view
        self.size = REGION_SIZE if size is None else size
        self.slots = {} if slots is None else slots
        self.free = [] if free is None else free
        self.ident = ident
        self.ready = ready
        self.__post_init__()

    def __post_init__(self) -> None:
        if not self.free and not self.slots:
            self.free = list(range(self.size - SLOT_SIZE, -1, -SLOT_SIZE))

    def covers(self, start: int, length: int) -> bool:
        """Does [start, start+length) touch the region?"""
        length = max(length, 1)
        return start < self.addr + self.size and self.addr < start + length

    @staticmethod
    def fits(sizes: list[int]) -> bool:
        """Do blobs of ``sizes`` fit in one slot (aligned as reserve places them)?"""
        return sum((n + 15) & ~15 for n in sizes) <= SLOT_SIZE

    def slot(self, tid: int) -> int | None:
        """The address (in the tracee) of the thread's slot, taken now if it
        has none; None if no slot is free.  One blob of up to SLOT_SIZE bytes
        goes there (a pinned open's); :meth:`reserve` places several."""
        off = self.slots.get(tid)
        if off is None:
            if not self.free:
                return None
            off = self.slots[tid] = self.free.pop()
        return self.addr + off

    def reserve(self, tid: int, sizes: list[int], tail: bool = False) -> list[int] | None:
        """Addresses (in the tracee) for blobs of ``sizes`` in the thread's
        slot, or None if no slot is free (check :meth:`fits` first).  With
        ``tail``, at the slot's end: a struct copied at a call's entry
        (openat2's ``open_how``) stays there while its path, copied at the
        verdict, goes to the slot's start."""
        at = self.slot(tid)
        if at is None:
            return None
        off = at - self.addr
        addrs = []
        pos = off + SLOT_SIZE - sum((n + 15) & ~15 for n in sizes) if tail else off
        if pos < off:
            return None
        for n in sizes:
            if pos + n > off + SLOT_SIZE:
                return None
            addrs.append(self.addr + pos)
            pos = (pos + n + 15) & ~15
        return addrs

    def write(self, addr: int, data: bytes) -> None:
        """Write through the shim's own writable mapping (the tracee's is read-only)."""
        off = addr - self.addr
        self.view[off:off + len(data)] = data

    def release(self, tid: int) -> None:
        off = self.slots.pop(tid, None)
        if off is not None:
            self.free.append(off)


def adopt(tid: int, remote_fd: int) -> tuple[mmap.mmap, tuple[int, int]]:
    """Take the tracee's memfd into the shim, size it, map it writable here,
    seal it.  Returns the view (which keeps the memory alive) and the memfd's
    (st_dev, st_ino), by which :func:`mapped_in` knows the tracee's mapping."""
    where = f"/proc/{tid}/fd/{remote_fd}"
    try:
        fd = os.open(where, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"open {where}: {e.strerror}") from None
    try:
        if not os.readlink(where).startswith(f"/memfd:{MEMFD_NAME}") or os.fstat(fd).st_size:
            raise OSError(E.EBADF, f"{where} is not the fresh memfd the shim asked for")
        os.ftruncate(fd, REGION_SIZE)
        view = mmap.mmap(fd, REGION_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        fcntl.fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return view, (st.st_dev, st.st_ino)


def mapped_in(pid: int, region: Region) -> bool:
    """Does process ``pid`` map ``region``'s memfd over the whole region,
    read-only and shared, from offset 0 (one line of /proc/PID/maps)?

    The shim writes the region through its own mapping of the memfd; a
    process believed to have the region without this mapping would have the
    kernel read the judged copies from memory of its own (a child forked
    before the region's mmap completed, or after ``MADV_DONTFORK`` on it),
    so it is asked rather than assumed.  False when ``pid`` is gone."""
    want = f"\n{region.addr:08x}-{region.addr + region.size:08x} r--s 00000000 ".encode()  # as the kernel pads
    try:
        maps = b"\n" + read_whole(f"/proc/{pid}/maps")
        at = maps.find(want)
        if at < 0:
            return False
        fields = maps[at + 1:maps.find(b"\n", at + 1)].split()
        major, minor = (int(x, 16) for x in fields[3].split(b":"))
        return (int(fields[4]), os.makedev(major, minor)) == (region.ident[1], region.ident[0])
    except (OSError, ValueError, IndexError):
        return False

