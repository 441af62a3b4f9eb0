"""Kernel layers: the file-system and network rules an authorizer declares in
its handshake, for the broker to compile into one Landlock layer (sans-IO).

A rule the kernel enforces holds without a stop, without a race (Landlock
checks the path the VFS resolved) and after the broker is gone, so an
authorizer declares what it can as a layer and keeps judging per call only
what the layer cannot say.  Handshake attributes (PROTOCOL.md 7.6)::

    fs="read,execute /usr"        allow RIGHTS beneath a directory (or on a file)
    fs-handled=all                the rights the layer denies unless a rule allows
    net="connect 80,443"          allow TCP RIGHTS on PORTS
    net-handled=bind,connect      the network rights the layer denies
    scope=signal,abstract-unix    Landlock scoping
    settle=all                    calls the layer may settle (strace syntax)
    unjudged=%stat,readlink       calls it need not judge while its layer is in force

Everything here is data and pure functions: :func:`parse_layer` turns the
attributes into an immutable :class:`LayerSpec`, :func:`layer_attrs` back;
:func:`settled_calls` says which syscalls a layer decides completely at a
given Landlock ABI (:data:`SETTLES` is the table), so the broker stops
asking the authorizer about them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from .record import Record, _set
from .selection import TraceError, parse_trace

__all__ = ["FS_RIGHTS", "NET_RIGHTS", "SCOPES", "RIGHT_ABI", "FILE_RIGHTS", "SETTLES", "LAYER_KEYS",
           "FsRule", "NetRule", "LayerSpec", "parse_layer", "layer_attrs", "layer_to_json", "settled_calls"]

#: file-system rights, in wire order
FS_RIGHTS: tuple[str, ...] = ("read", "write", "execute", "create", "remove", "truncate", "ioctl-dev", "list")
NET_RIGHTS: tuple[str, ...] = ("bind", "connect")
SCOPES: tuple[str, ...] = ("signal", "abstract-unix")
#: the first Landlock ABI that can express each right or scope
RIGHT_ABI: Mapping[str, int] = MappingProxyType({
    "read": 1, "write": 1, "execute": 1, "create": 1, "remove": 1, "truncate": 3, "ioctl-dev": 5, "list": 1,
    "bind": 4, "connect": 4, "signal": 6, "abstract-unix": 6,
})
#: ``list`` is the directory half of ``read``: listing names beneath a
#: directory, reading no file (a layer handling ``read`` handles it)
IMPLIED: Mapping[str, frozenset[str]] = MappingProxyType({"read": frozenset({"list"})})
#: the rights that mean something on a file (not a directory)
FILE_RIGHTS = frozenset({"read", "write", "execute", "truncate", "ioctl-dev"})
LAYER_KEYS = frozenset({"fs", "fs-handled", "net", "net-handled", "scope", "settle", "unjudged"})

_OPEN_RIGHTS = frozenset({"read", "write", "create", "truncate"})
#: syscall -> the rights a layer must handle to decide every use of it
#: (a call absent here is never settled by a layer: stat, chmod, chdir,
#: ioctl on inherited descriptors, UDP and AF_UNIX sockets...)
SETTLES: Mapping[str, frozenset[str]] = MappingProxyType({
    **{n: _OPEN_RIGHTS for n in ("open", "openat", "openat2", "creat")},
    **{n: frozenset({"execute"}) for n in ("execve", "execveat")},
    **{n: frozenset({"create"}) for n in ("mkdir", "mkdirat", "mknod", "mknodat", "symlink", "symlinkat",
                                          "link", "linkat")},
    **{n: frozenset({"remove"}) for n in ("rmdir", "unlink", "unlinkat")},
    **{n: frozenset({"create", "remove"}) for n in ("rename", "renameat", "renameat2")},
    **{n: frozenset({"truncate"}) for n in ("truncate", "truncate64", "ftruncate", "ftruncate64")},
})


class FsRule(Record):
    """Allow ``rights`` beneath ``path`` (or on the file ``path``)."""

    __slots__ = ("rights", "path")
    rights: frozenset[str]
    path: str

    def __init__(self, rights: frozenset[str], path: str) -> None:
        _set(self, "rights", rights)
        _set(self, "path", path)


class NetRule(Record):
    """Allow the TCP ``rights`` (bind, connect) on ``ports``."""

    __slots__ = ("rights", "ports")
    rights: frozenset[str]
    ports: tuple[int, ...]

    def __init__(self, rights: frozenset[str], ports: tuple[int, ...]) -> None:
        _set(self, "rights", rights)
        _set(self, "ports", ports)


class LayerSpec(Record):
    """One authorizer's kernel layer, as declared (whatever the kernel)."""

    __slots__ = (
        "fs_handled", "fs", "net_handled", "net", "scopes", "settle", "_settle_names", "unjudged",
    )
    _hidden = ("_settle_names",)
    fs_handled: frozenset[str]
    fs: tuple[FsRule, ...]
    net_handled: frozenset[str]
    net: tuple[NetRule, ...]
    scopes: frozenset[str]
    settle: str
    _settle_names: frozenset[str] | None
    #: calls the authorizer lets run unasked while its layer is in force, though the
    #: layer does not decide them (e.g. metadata look-ups: the layer guards contents)
    unjudged: frozenset[str]

    def __init__(self, fs_handled: frozenset[str] = frozenset(), fs: tuple[FsRule, ...] = (),
                 net_handled: frozenset[str] = frozenset(), net: tuple[NetRule, ...] = (),
                 scopes: frozenset[str] = frozenset(), settle: str = "all",
                 _settle_names: frozenset[str] | None = None,
                 unjudged: frozenset[str] = frozenset()) -> None:
        _set(self, "fs_handled", fs_handled)
        _set(self, "fs", fs)
        _set(self, "net_handled", net_handled)
        _set(self, "net", net)
        _set(self, "scopes", scopes)
        _set(self, "settle", settle)
        _set(self, "_settle_names", _settle_names)
        _set(self, "unjudged", unjudged)

    def at_abi(self, abi: int) -> LayerSpec:
        """What ABI ``abi`` can express of it (rules keep only those rights)."""
        def ok(r: str) -> bool:
            return RIGHT_ABI[r] <= abi
        fs_h = frozenset(filter(ok, self.fs_handled))
        net_h = frozenset(filter(ok, self.net_handled))
        return LayerSpec(
            fs_h, tuple(FsRule(r.rights & fs_h, r.path) for r in self.fs if r.rights & fs_h),
            net_h, tuple(NetRule(r.rights & net_h, r.ports) for r in self.net if r.rights & net_h),
            frozenset(filter(ok, self.scopes)), self.settle, self._settle_names, self.unjudged)

    def missing(self, abi: int) -> tuple[str, ...]:
        """The declared rights and scopes ABI ``abi`` cannot express."""
        return tuple(r for r in (*FS_RIGHTS, *NET_RIGHTS, *SCOPES)
                     if r in self.fs_handled | self.net_handled | self.scopes and RIGHT_ABI[r] > abi)

    def handles_anything(self) -> bool:
        return bool(self.fs_handled or self.net_handled or self.scopes)


def _rights(text: str, known: tuple[str, ...], what: str) -> frozenset[str]:
    if text == "all":
        return frozenset(known)
    out = frozenset(r for r in text.split(",") if r)
    bad = sorted(out - set(known))
    if bad or not out:
        raise ValueError(f"{what}={text!r}: unknown right {', '.join(bad) or '(none)'} "
                         f"(known: {', '.join(known)}, all)")
    return out


def _fs_rule(value: str) -> FsRule:
    rights, _, path = value.partition(" ")
    if not path.startswith("/"):
        raise ValueError(f"fs={value!r}: expected \"RIGHTS /absolute/path\"")
    return FsRule(_rights(rights, FS_RIGHTS, "fs"), path)


def _net_rule(value: str) -> NetRule:
    rights, _, ports = value.partition(" ")
    try:
        nums = tuple(int(p, 10) for p in ports.split(","))
    except ValueError:
        nums = ()
    if not nums or any(not 0 <= p <= 65535 for p in nums):
        raise ValueError(f"net={value!r}: expected \"RIGHTS PORT[,PORT...]\" with ports 0..65535")
    return NetRule(_rights(rights, NET_RIGHTS, "net"), nums)


def parse_layer(attrs: Iterable[tuple[str, str]]) -> LayerSpec | None:
    """The layer a hello's attributes declare, None if they declare none.
    Raises ValueError naming the bad attribute (the broker answers
    ``error bad-hello``).  An omitted ``fs-handled``/``net-handled`` is the
    union of the rights its rules name."""
    attrs = [(k, v) for k, v in attrs if k in LAYER_KEYS]
    if not attrs:
        return None
    one = dict(attrs)
    fs = tuple(_fs_rule(v) for k, v in attrs if k == "fs")
    net = tuple(_net_rule(v) for k, v in attrs if k == "net")
    fs_h = (_rights(one["fs-handled"], FS_RIGHTS, "fs-handled") if "fs-handled" in one
            else frozenset().union(*(r.rights for r in fs)))
    net_h = (_rights(one["net-handled"], NET_RIGHTS, "net-handled") if "net-handled" in one
             else frozenset().union(*(r.rights for r in net)))
    scopes = _rights(one["scope"], SCOPES, "scope") if "scope" in one else frozenset()
    handled = fs_h.union(*(IMPLIED.get(r, frozenset()) for r in fs_h))
    for r in fs:
        if not r.rights <= handled:
            raise ValueError(f"fs=\"{_join(r.rights, FS_RIGHTS)} {r.path}\": allows rights the layer "
                             f"does not handle (fs-handled={_join(fs_h, FS_RIGHTS)})")
    for n in net:
        if not n.rights <= net_h:
            raise ValueError(f"net rule for ports {n.ports}: allows rights the layer does not handle")
    settle = one.get("settle", "all")
    try:
        names = parse_trace(settle)
    except TraceError as e:
        raise ValueError(f"settle={settle!r}: {e}") from None
    unjudged: frozenset[str] = frozenset()
    if "unjudged" in one:
        try:
            sel = parse_trace(one["unjudged"])
        except TraceError as e:
            raise ValueError(f"unjudged={one['unjudged']!r}: {e}") from None
        if sel is None:
            raise ValueError("unjudged=all would leave every call unjudged: name the calls")
        unjudged = sel
    spec = LayerSpec(fs_h, fs, net_h, net, scopes, settle, names, unjudged)
    if not spec.handles_anything():
        raise ValueError("a layer must handle some right or scope (fs-handled, net-handled, scope)")
    return spec


def _join(rights: Iterable[str], order: tuple[str, ...]) -> str:
    s = set(rights)
    return "all" if s == set(order) else ",".join(r for r in order if r in s)


def layer_to_json(spec: LayerSpec | None) -> dict | None:
    """The JSON form of the conformance vectors (protocol/vectors/layers.jsonl)."""
    if spec is None:
        return None
    return {"fs-handled": sorted(spec.fs_handled),
            "fs": [{"rights": sorted(r.rights), "path": r.path} for r in spec.fs],
            "net-handled": sorted(spec.net_handled),
            "net": [{"rights": sorted(r.rights), "ports": list(r.ports)} for r in spec.net],
            "scope": sorted(spec.scopes), "settle": spec.settle, "unjudged": sorted(spec.unjudged)}


def layer_attrs(spec: LayerSpec | None) -> tuple[tuple[str, str], ...]:
    """The canonical handshake attributes of ``spec`` (parse_layer's inverse)."""
    if spec is None:
        return ()
    out: list[tuple[str, str]] = []
    if spec.fs_handled:
        out.append(("fs-handled", _join(spec.fs_handled, FS_RIGHTS)))
    out += [("fs", f"{_join(r.rights, FS_RIGHTS)} {r.path}") for r in spec.fs]
    if spec.net_handled:
        out.append(("net-handled", _join(spec.net_handled, NET_RIGHTS)))
    out += [("net", f"{_join(r.rights, NET_RIGHTS)} {','.join(map(str, r.ports))}") for r in spec.net]
    if spec.scopes:
        out.append(("scope", _join(spec.scopes, SCOPES)))
    if spec.settle != "all":
        out.append(("settle", spec.settle))
    if spec.unjudged:
        out.append(("unjudged", ",".join(sorted(spec.unjudged))))
    return tuple(out)


def settled_calls(spec: LayerSpec | None, abi: int) -> frozenset[str]:
    """The syscalls ``spec`` decides completely on Landlock ABI ``abi`` (0:
    none): those whose :data:`SETTLES` rights it all handles there and that
    its ``settle`` selection names."""
    if spec is None or abi <= 0:
        return frozenset()
    handled = spec.at_abi(abi).fs_handled
    names = spec._settle_names if spec._settle_names is not None or spec.settle == "all" \
        else parse_trace(spec.settle)
    return frozenset(n for n, need in SETTLES.items()
                     if need <= handled and (names is None or n in names)) | spec.unjudged
