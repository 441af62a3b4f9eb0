"""Authorizers' kernel layers, compiled for the running kernel.

An authorizer declares a layer in its handshake (:mod:`brokerd.protocol.layers`,
PROTOCOL.md 7.6); here it becomes one :class:`~.landlock.Layer` per
authorizer, with only what the kernel's Landlock ABI can express.  The
launched child applies them in stack order after the wall, before exec, so
each only narrows.  What an ABI lacks, and the calls that therefore stay on
the per-call path, are reported by :func:`plan`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence

from brokerd.protocol.layers import LayerSpec, settled_calls
from brokerd.protocol.record import Record, _set

from . import landlock

_FS = landlock.ACCESS_FS
_MAKE = ("make_reg", "make_dir", "make_sym", "make_fifo", "make_sock", "make_char", "make_block", "refer")
#: protocol right -> Landlock access names (``refer`` needs ABI 2 and is dropped below it)
FS_BITS: dict[str, tuple[str, ...]] = {
    "read": ("read_file", "read_dir"), "write": ("write_file",), "execute": ("execute",),
    "create": _MAKE, "remove": ("remove_file", "remove_dir"), "truncate": ("truncate",),
    "ioctl-dev": ("ioctl_dev",), "list": ("read_dir",),
}
_FILE_ONLY = ("execute", "write_file", "read_file", "truncate", "ioctl_dev")
NET_BITS = {"bind": "bind_tcp", "connect": "connect_tcp"}
SCOPE_BITS = {"signal": "signal", "abstract-unix": "abstract_unix_socket"}


def _fs_mask(rights: Iterable[str], abi: int, *, file: bool = False) -> int:
    names = (n for r in rights for n in FS_BITS[r] if _FS[n][1] <= abi and (not file or n in _FILE_ONLY))
    mask = 0
    for n in names:
        mask |= _FS[n][0]
    return mask


def compile_layer(spec: LayerSpec, abi: int) -> landlock.Layer | None:
    """``spec`` as a Landlock ruleset on ABI ``abi``; None when nothing of it
    is expressible.  A rule on a path that does not exist is left out (there
    is nothing beneath it to allow); a rule on a file keeps its file rights."""
    at = spec.at_abi(abi)
    paths = []
    for r in at.fs:
        try:
            is_dir = stat.S_ISDIR(os.stat(r.path).st_mode)
        except OSError:
            continue
        mask = _fs_mask(r.rights, abi, file=not is_dir)
        if mask:
            paths.append(landlock.PathRule(r.path, mask))
    net_mask = 0
    for right in at.net_handled:
        net_mask |= landlock.ACCESS_NET[NET_BITS[right]][0]
    ports = tuple(landlock.PortRule(p, sum(landlock.ACCESS_NET[NET_BITS[right]][0] for right in n.rights))
                  for n in at.net for p in n.ports)
    scoped = 0
    for s in at.scopes:
        scoped |= landlock.SCOPES[SCOPE_BITS[s]][0]
    handled = _fs_mask(at.fs_handled, abi)
    if not handled and not net_mask and not scoped:
        return None
    refer, since = _FS["refer"]
    if abi >= since and not handled & refer:
        # the kernel counts refer as handled by every layer of a domain that
        # handles a file right (the wall does), so a layer silent about it
        # (network ports only, reads only) would make every link or rename
        # across directories fail with EXDEV: it allows refer beneath / (the
        # wall's rule); its own rights still bar a move that would widen them
        handled |= refer
        paths.append(landlock.PathRule("/", refer))
    return landlock.Layer(handled, net_mask, scoped, tuple(paths), ports)


class Plan(Record):
    """The layers a launched session applies, and per stack position the calls they settle."""

    __slots__ = ("layers", "settled")
    layers: tuple[landlock.Layer, ...]
    settled: tuple[frozenset[str], ...]

    def __init__(self, layers: tuple[landlock.Layer, ...] = (),
                 settled: tuple[frozenset[str], ...] = ()) -> None:
        _set(self, "layers", layers)
        _set(self, "settled", settled)


def plan(specs: Sequence[tuple[str, LayerSpec | None]], abi: int, log: Callable[[str], None]) -> Plan:
    """Compile every declared layer (``(name, spec)`` in stack order) for ABI
    ``abi`` (0: no Landlock, nothing applied, nothing settled) and say, in
    one line each, what stays per call."""
    declared = [(n, s) for n, s in specs if s is not None]
    if not declared:
        return Plan((), tuple(frozenset() for _ in specs))
    if abi <= 0:
        log("no Landlock (not in this kernel, refused here, or --no-landlock): the kernel layers of "
            f"{', '.join(n for n, _ in declared)} are not applied; their calls are decided per call")
        return Plan((), tuple(frozenset() for _ in specs))
    layers: list[landlock.Layer] = []
    settled: list[frozenset[str]] = []
    for name, spec in specs:
        layer = compile_layer(spec, abi) if spec is not None else None
        if layer is None:
            settled.append(frozenset())
            continue
        layers.append(layer)
        settled.append(settled_calls(spec, abi))
        missing = spec.missing(abi)  # type: ignore[union-attr]
        if missing:
            log(f"Landlock ABI {abi} cannot express {', '.join(missing)} of {name}'s layer: "
                "those stay per call")
    return Plan(tuple(layers), tuple(settled))


def bars_procfs_writes(layers: Iterable[landlock.Layer], procfs_at: Iterable[str]) -> bool:
    """Does one of ``layers`` keep every procfs and cgroup file (their file
    systems mounted at ``procfs_at``: procfs.WRITE_GUARDED_FS) from being
    opened for writing?  So when it handles ``write_file`` and none of its
    write rules lies on, beneath or above such a mount (rule paths resolved
    as the kernel resolved them when the rule was made).  Then another
    process's /proc/PID/oom_score_adj and the like (procfs.PROC_WRITABLE),
    and the ``cgroup.kill``, ``cgroup.freeze``, ``cgroup.procs`` of a cgroup
    holding it (procfs.CGROUP_WRITABLE), which no ptrace-mode check covers,
    are the kernel's to refuse, and opens for writing need not stop for the
    guard: a domain also refuses mount, so no such file system appears later
    where the layer allows writing."""
    write = landlock.ACCESS_FS["write_file"][0]
    mounts = [m.rstrip("/") + "/" for m in procfs_at]
    for layer in layers:
        if not layer.handled_fs & write:
            continue
        granted = [os.path.realpath(r.path).rstrip("/") + "/" for r in layer.paths if r.access & write]
        if not any(g.startswith(m) or m.startswith(g) for g in granted for m in mounts):
            return True
    return False

