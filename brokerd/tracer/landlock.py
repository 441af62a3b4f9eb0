"""Landlock bindings (ctypes): the kernel's own wall around a launched session.

A Landlock domain, applied in the launched child before exec and inherited by
everything it creates, keeps the traced program away from the broker's
processes without a single stop:

* ptrace-mode access to any process outside the domain is denied, so
  ``/proc/PID/mem``, ``/proc/PID/fd/N``, ``/proc/PID/environ``, ptrace,
  ``process_vm_*`` and ``pidfd_getfd`` of the shim or an authorizer fail with
  EACCES/EPERM, whatever the uid (root included);
* ABI 6's ``LANDLOCK_SCOPE_SIGNAL`` refuses signals to processes outside the
  domain, by ``kill``, by pidfd, or by SIGIO through ``F_SETOWN``.

A domain needs something it handles.  From ABI 6 the signal scope is enough;
below, the wall handles one filesystem right (making block devices) and a rule
allows it beneath ``/``, so nothing is narrowed but the domain exists.  From
ABI 2 it also handles ``refer`` and allows it beneath ``/``: the kernel counts
``refer`` as handled by every layer once any layer of the domain handles a
file right, so a wall without that rule would make every rename or link
across directories fail with EXDEV under a policy's file-system layer.

The module is written for more than the wall: :class:`Layer` carries handled
rights, rules beneath paths, TCP port rules and scopes, so per-policy kernel
layers (issue #12) are built and applied with the same :func:`restrict`.
"""

from __future__ import annotations

import ctypes
import os
import struct

from brokerd.protocol.abi import ABIS
from brokerd.protocol.record import Record, _set

_NR = ABIS["x86_64"].nr  # the broker and its launched children are 64-bit
SYS_landlock_create_ruleset = _NR("landlock_create_ruleset")
SYS_landlock_add_rule = _NR("landlock_add_rule")
SYS_landlock_restrict_self = _NR("landlock_restrict_self")
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
RULE_NET_PORT = 2
PR_SET_NO_NEW_PRIVS = 38
SYS_prctl = _NR("prctl")
CAP_SYS_ADMIN = 21

# filesystem rights, with the ABI that introduced each
ACCESS_FS = {
    "execute": (1 << 0, 1), "write_file": (1 << 1, 1), "read_file": (1 << 2, 1), "read_dir": (1 << 3, 1),
    "remove_dir": (1 << 4, 1), "remove_file": (1 << 5, 1), "make_char": (1 << 6, 1), "make_dir": (1 << 7, 1),
    "make_reg": (1 << 8, 1), "make_sock": (1 << 9, 1), "make_fifo": (1 << 10, 1), "make_block": (1 << 11, 1),
    "make_sym": (1 << 12, 1), "refer": (1 << 13, 2), "truncate": (1 << 14, 3), "ioctl_dev": (1 << 15, 5),
}
ACCESS_NET = {"bind_tcp": (1 << 0, 4), "connect_tcp": (1 << 1, 4)}
SCOPES = {"abstract_unix_socket": (1 << 0, 6), "signal": (1 << 1, 6)}
#: the first ABI with each whole feature
ABI_NET, ABI_SCOPE = 4, 6
#: ABI 7 can log denials to the audit subsystem; by default only those of the
#: executable that made the domain, and brokerd makes it just before exec:
#: LOG_NEW_EXEC_ON asks for the program's own denials (docs/security.md)
ABI_AUDIT = 7
RESTRICT_SELF_LOG_NEW_EXEC_ON = 1 << 1

_ATTR = struct.Struct("=QQQ")  # handled_access_fs, handled_access_net, scoped
_PATH_BENEATH = struct.Struct("=Qi")  # packed: allowed_access, parent_fd
_NET_PORT = struct.Struct("=QQ")  # allowed_access, port

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class LandlockError(OSError):
    """A Landlock call failed; the message names the call."""


class PathRule(Record):
    """Allow ``access`` (ACCESS_FS bits) beneath ``path``."""

    __slots__ = ("path", "access")
    path: str
    access: int

    def __init__(self, path: str, access: int) -> None:
        _set(self, "path", path)
        _set(self, "access", access)


class PortRule(Record):
    """Allow ``access`` (ACCESS_NET bits) on TCP ``port``."""

    __slots__ = ("port", "access")
    port: int
    access: int

    def __init__(self, port: int, access: int) -> None:
        _set(self, "port", port)
        _set(self, "access", access)


class Layer(Record):
    """One Landlock ruleset: what it handles (denied unless a rule allows it)
    and the rules; applied with :func:`restrict`, which only ever narrows."""

    __slots__ = ("handled_fs", "handled_net", "scoped", "paths", "ports")
    handled_fs: int
    handled_net: int
    scoped: int
    paths: tuple[PathRule, ...]
    ports: tuple[PortRule, ...]

    def __init__(self, handled_fs: int = 0, handled_net: int = 0, scoped: int = 0,
                 paths: tuple[PathRule, ...] = (), ports: tuple[PortRule, ...] = ()) -> None:
        _set(self, "handled_fs", handled_fs)
        _set(self, "handled_net", handled_net)
        _set(self, "scoped", scoped)
        _set(self, "paths", paths)
        _set(self, "ports", ports)

    def handles_anything(self) -> bool:
        return bool(self.handled_fs or self.handled_net or self.scoped)

    def within(self, abi: int) -> Layer:
        """This layer cut to what ``abi`` can enforce (best effort: a right the
        kernel lacks is not handled, so it stays with per-call checks)."""
        fs, net, scoped = (supported(ACCESS_FS, abi), supported(ACCESS_NET, abi), supported(SCOPES, abi))
        return Layer(self.handled_fs & fs, self.handled_net & net, self.scoped & scoped,
                     tuple(PathRule(r.path, r.access & fs) for r in self.paths if r.access & fs),
                     tuple(PortRule(r.port, r.access & net) for r in self.ports if r.access & net) if net else ())


def supported(table: dict[str, tuple[int, int]], abi: int) -> int:
    """The bits of ``table`` (ACCESS_FS, ACCESS_NET, SCOPES) that ``abi`` knows."""
    mask = 0
    for bit, since in table.values():
        if abi >= since:
            mask |= bit
    return mask


def abi_version() -> int:
    """The running kernel's Landlock ABI, 0 when it has none (not built,
    disabled at boot, or a seccomp filter around us refuses the call)."""
    v = _libc.syscall(SYS_landlock_create_ruleset, None, 0, CREATE_RULESET_VERSION)
    return int(v) if v > 0 else 0


def wall(abi: int) -> Layer:
    """The broker's wall for ``abi`` (>= 1): a domain that narrows no file
    access but cuts ptrace-mode access, and from ABI 6 signals, to outside."""
    refer = ACCESS_FS["refer"][0] if abi >= ACCESS_FS["refer"][1] else 0
    if abi >= ABI_SCOPE:
        return Layer(handled_fs=refer, scoped=SCOPES["signal"][0], paths=(PathRule("/", refer),))
    block = ACCESS_FS["make_block"][0] | refer
    return Layer(handled_fs=block, paths=(PathRule("/", block),))


def _call(nr: int, what: str, *args: object) -> int:
    ret = _libc.syscall(nr, *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise LandlockError(err, f"{what}: {os.strerror(err)}")
    return int(ret)


def restrict(layer: Layer) -> None:
    """Put the calling thread (and everything it execs or forks from now on)
    in a new domain made of ``layer``.  Sets no_new_privs unless we may skip
    it (CAP_SYS_ADMIN: root keeps setuid programs working)."""
    if not layer.handles_anything():
        raise ValueError("a Landlock layer must handle some access or scope")
    attr = ctypes.create_string_buffer(_ATTR.pack(layer.handled_fs, layer.handled_net, layer.scoped))
    size = _ATTR.size if layer.scoped else 16 if layer.handled_net else 8
    rfd = _call(SYS_landlock_create_ruleset, "landlock_create_ruleset", attr, ctypes.c_size_t(size), 0)
    try:
        for rule in layer.paths:
            pfd = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
            try:
                buf = ctypes.create_string_buffer(_PATH_BENEATH.pack(rule.access, pfd))
                _call(SYS_landlock_add_rule, f"landlock_add_rule({rule.path})", rfd, RULE_PATH_BENEATH, buf, 0)
            finally:
                os.close(pfd)
        for port in layer.ports:
            buf = ctypes.create_string_buffer(_NET_PORT.pack(port.access, port.port))
            _call(SYS_landlock_add_rule, f"landlock_add_rule(port {port.port})", rfd, RULE_NET_PORT, buf, 0)
        if not _has_cap_sys_admin():
            _call(SYS_prctl, "prctl(PR_SET_NO_NEW_PRIVS)", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        flags = RESTRICT_SELF_LOG_NEW_EXEC_ON if abi_version() >= ABI_AUDIT else 0
        _call(SYS_landlock_restrict_self, "landlock_restrict_self", rfd, flags)
    finally:
        os.close(rfd)


def _has_cap_sys_admin() -> bool:
    """Landlock (like seccomp) needs no_new_privs unless we hold CAP_SYS_ADMIN."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except (OSError, ValueError):
        pass
    return False
