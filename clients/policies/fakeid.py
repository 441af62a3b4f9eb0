"""Fake identity: the program sees uid/gid 0 (or the ids given).

    brokerctl run --policy fakeid -- id            # uid=0(root) gid=0(root) ...
    brokerctl run --policy fakeid:1000,1000 -- id
    python3 -m brokerd.clients.policies.fakeid [UID [GID]]

``getuid``/``geteuid``/``getgid``/``getegid`` (and the i386 ``*32``
variants) are stepped and their result replaced (``ok 0``);
``getresuid``/``getresgid`` are stepped and the three ids are written into
the caller's out-pointers with ``set`` clauses.  Only what the program is
*told* changes: the kernel still checks the real credentials (opening a
root-only file still fails), and ``/proc/self/status`` or files' owners
still show the truth.  ``getgroups`` is not faked.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Sequence

from brokerd.clients.authorizer import Authorizer, SysResult, cont, ok

UID_CALLS = ("getuid", "geteuid", "getuid32", "geteuid32")
GID_CALLS = ("getgid", "getegid", "getgid32", "getegid32")
RES_CALLS = ("getresuid", "getresgid", "getresuid32", "getresgid32")


def build(argv: Sequence[str]) -> Authorizer:
    if len(argv) > 2 or any(not a.isdigit() for a in argv):
        sys.exit("usage: fakeid [UID [GID]]  (decimal ids, default 0 0)")
    uid = int(argv[0]) if argv else 0
    gid = int(argv[1]) if len(argv) > 1 else uid
    az = Authorizer("fakeid")

    @az.on_result(*UID_CALLS)
    def fake_uid(ret: SysResult) -> object:
        return ok(uid) if ret.ok else cont()

    @az.on_result(*GID_CALLS)
    def fake_gid(ret: SysResult) -> object:
        return ok(gid) if ret.ok else cont()

    @az.on_result(*RES_CALLS)
    def fake_res(ret: SysResult) -> object:
        if not ret.ok:
            return cont()  # EFAULT stays EFAULT
        value = struct.pack("<I", uid if "uid" in ret.name else gid)
        return ok(0, sets=[(1, value), (2, value), (3, value)])

    return az


def main(argv: Sequence[str] | None = None) -> None:
    build(sys.argv[1:] if argv is None else argv).main()


if __name__ == "__main__":
    main()
