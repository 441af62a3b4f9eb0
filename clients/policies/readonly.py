"""Read-only: every call that would write to the file system fails with EROFS.

    brokerctl run --policy readonly -- PROG
    brokerctl run --policy readonly:--allow=/tmp -- PROG
    python3 -m brokerd.clients.policies.readonly [--allow DIR]... [--log]

As if every file system were mounted read-only: opening with ``O_WRONLY``,
``O_RDWR``, ``O_TRUNC``, ``O_TMPFILE`` (or ``O_CREAT`` of a missing file),
``creat``, ``mkdir*``, ``mknod*``, ``rmdir``, ``unlink*``, ``rename*``,
``link*``, ``symlink*``, ``chmod``/``fchmod*``, ``chown``/``fchown*``,
``truncate``/``ftruncate``, ``fallocate``, ``utime*``, ``setxattr*`` and
``removexattr*`` fail with EROFS.  Devices are not file systems content:
character devices (``/dev/null``, terminals) and descriptors that are no files
(pipes, sockets) stay writable, as on a read-only root.  ``--allow DIR`` keeps
a directory writable (a writable mount).  ``io_uring_setup`` fails with
ENOSYS: io_uring would write without syscalls.

Limits: ``write(2)`` is not traced, so descriptors inherited already open
for writing (a shell's ``> file`` around brokerctl) keep working; and paths
are resolved at syscall entry (TOCTOU, see docs/policies.md).
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import sys
from collections.abc import Sequence

from brokerd.clients.authorizer import (
    O_ACCMODE,
    O_TMPFILE_BIT,
    Authorizer,
    Syscall,
    cont,
    kernel_layer,
    opens_for_writing,
    path_under,
    skip_fail,
)
from brokerd.protocol.abi import names_in
from brokerd.protocol.args import constant

#: from the syscall tables' classes (protocol/abi.py), shared with sandbox
OPEN = names_in("open")
PATH_WRITES = names_in("fs-write") - OPEN
FD_WRITES = names_in("fd-write")
_O_CREAT = constant("O_CREAT")
#: what makes an open write even when the file exists
_WRITES = O_ACCMODE | constant("O_TRUNC") | O_TMPFILE_BIT


#: the rights a read-only world takes away (reading and executing stay)
WRITE_RIGHTS = "write,create,remove,truncate"


def _char_devices() -> list[str]:
    """The character devices a program may still write (``/dev/null``,
    terminals): those directly in /dev now, and every pty to come."""
    out = ["/dev/pts"]
    try:
        with os.scandir("/dev") as it:
            out += [e.path for e in it if not e.is_symlink() and stat.S_ISCHR(e.stat(follow_symlinks=False).st_mode)]
    except OSError:
        pass
    return out


def _layer(allowed: Sequence[str]):
    """The same in the kernel, as a floor under the per-call answers (which
    keep EROFS as the error; ``settle=none``): writing, creating, removing and
    truncating only beneath ``--allow`` directories and on character devices."""
    return kernel_layer([(WRITE_RIGHTS, d) for d in allowed] + [("write,truncate", d) for d in _char_devices()],
                        fs_handled=WRITE_RIGHTS, settle="none")


def build(argv: Sequence[str]) -> Authorizer:
    p = argparse.ArgumentParser(prog="readonly", description=__doc__.split("\n\n")[0])
    p.add_argument("--allow", action="append", default=[], metavar="DIR", help="keep DIR writable")
    p.add_argument("--log", action="store_true", help="print every denial on stderr")
    a = p.parse_args(argv)
    allowed = tuple(os.path.realpath(d) for d in a.allow)
    erofs = skip_fail(errno.EROFS)
    az = Authorizer("readonly", layer=_layer(allowed))

    def writable(path: str | None) -> bool:
        if path is None:
            return False
        if not path.startswith("/"):
            return True  # pipe:[N], socket:[N], anon_inode:...: no file system
        if path_under(path, allowed):
            return True
        try:
            return stat.S_ISCHR(os.stat(path).st_mode)
        except OSError:
            return False

    def deny(call: Syscall) -> object:
        if a.log:
            print(f"readonly: pid {call.pid}: {call.text()} -> EROFS", file=sys.stderr, flush=True)
        return erofs

    @az.on(*OPEN)
    def opening(call: Syscall) -> object:
        flags = call.open_flags() or 0
        if not opens_for_writing(flags):
            return cont()
        path = call.resolve_path(call.path_args()[0])
        if flags & ~_O_CREAT & _WRITES == 0 and call.name != "creat" and path and path.startswith("/") \
                and os.path.lexists(path):
            return cont()  # O_RDONLY|O_CREAT of an existing file writes nothing
        return cont() if writable(path) else deny(call)

    @az.on(*PATH_WRITES)
    def path_write(call: Syscall) -> object:
        idx = call.path_args()
        if not idx or call.data(idx[0]) is None:  # utimensat(fd, NULL, ...)
            return cont() if writable(call.fd_path(call.num(0))) else deny(call)
        return cont() if all(writable(call.resolve_path(i)) for i in idx) else deny(call)

    @az.on(*FD_WRITES)
    def fd_write(call: Syscall) -> object:
        return cont() if writable(call.fd_path(call.num(0))) else deny(call)

    @az.on("io_uring_setup")
    def io_uring(call: Syscall) -> object:
        return skip_fail(errno.ENOSYS)

    return az


def main(argv: Sequence[str] | None = None) -> None:
    build(sys.argv[1:] if argv is None else argv).main()


if __name__ == "__main__":
    main()
