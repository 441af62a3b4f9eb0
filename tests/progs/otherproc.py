"""Every call that acts on another process named by a pid or a pidfd (setns
too: it joins the namespaces of the process a pidfd names), tried
on PID (argv[1]), each harmlessly: one line per call, ``NAME ok`` or
``NAME ERRNAME`` (``setup ERRNAME``: its pidfd could not be had).  Whether the
call reached the process reads from the result: EPERM/EACCES is a refusal;
anything else (the results in REACHED) means the kernel granted access and
went on (to an unmapped address, hence EFAULT/ENOMEM, or signal 0).

process_mrelease is left out: it acts only on a process already being
killed."""

from __future__ import annotations

import ctypes
import errno
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

#: what a call that reached its target returns here
REACHED = {"process_vm_readv": "EFAULT", "process_vm_writev": "EFAULT", "process_madvise": "ENOMEM"}
UNMAPPED = 0x10000  # nobody maps it: access granted, then EFAULT/ENOMEM
MADV_COLD = 20
PERF_TYPE_SOFTWARE, PERF_ATTR_SIZE = 1, 128
CLONE_NEWUTS = 0x04000000


def _perf_attr() -> ctypes.Array:
    """A disabled software cpu-clock event of user space only (struct perf_event_attr)."""
    attr = (ctypes.c_uint8 * PERF_ATTR_SIZE)()
    ctypes.c_uint32.from_buffer(attr, 0).value = PERF_TYPE_SOFTWARE
    ctypes.c_uint32.from_buffer(attr, 4).value = PERF_ATTR_SIZE
    ctypes.c_uint64.from_buffer(attr, 40).value = 1 | 1 << 5 | 1 << 6  # disabled, exclude_kernel, exclude_hv
    return attr


def calls(pid: int) -> dict[str, tuple]:
    """name -> (number, arguments...) on ``pid``, in the x86_64 numbering."""
    buf = ctypes.create_string_buffer(8)
    local = (ctypes.c_uint64 * 2)(ctypes.addressof(buf), 1)
    remote = (ctypes.c_uint64 * 2)(UNMAPPED, 1)
    page = (ctypes.c_uint64 * 2)(UNMAPPED, 4096)
    head, size, nodes = ctypes.c_void_p(), ctypes.c_size_t(), ctypes.c_ulong(1)
    return {
        "kill": (62, pid, 0),  # signal 0: the permission check alone
        "tgkill": (234, pid, pid, 0),
        "process_vm_readv": (310, pid, local, 1, remote, 1, 0),
        "process_vm_writev": (311, pid, local, 1, remote, 1, 0),
        "kcmp": (312, pid, pid, 0, 0, 0),  # KCMP_FILE of descriptor 0 with itself
        "get_robust_list": (274, pid, ctypes.byref(head), ctypes.byref(size)),
        "move_pages": (279, pid, 0, None, None, None, 0),
        "migrate_pages": (256, pid, 64, ctypes.byref(nodes), ctypes.byref(nodes)),
        "perf_event_open": (298, _perf_attr(), pid, -1, -1, 0),
        "pidfd_getfd": (438, "pidfd", 0, 0),
        "pidfd_send_signal": (424, "pidfd", 0, None, 0),
        "process_madvise": (440, "pidfd", page, 1, MADV_COLD, 0),
        "setns": (308, "pidfd", CLONE_NEWUTS),  # join its UTS namespace (the same one here: no change)
    }


def main() -> None:
    pid = int(sys.argv[1])
    for name, (nr, *args) in calls(pid).items():
        try:
            args = [os.pidfd_open(pid or os.getpid()) if a == "pidfd" else a for a in args]
        except OSError as e:
            print(name, "setup", errno.errorcode[e.errno], flush=True)
            continue
        r = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) if isinstance(a, int) else a for a in args))
        print(name, "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()], flush=True)


if __name__ == "__main__":
    main()
