"""Network: connect/bind/sendto/sendmsg only to listed addresses.

    brokerctl run --policy network:127.0.0.1:8080,10.0.0.0/8,[::1]:443,unix:/run/app/* -- PROG
    python3 -m brokerd.clients.policies.network [--errno EACCES] [--allow-family AF_NETLINK] [--log] RULE...

A RULE is one of

* ``CIDR`` (any port), ``CIDR:PORT``, ``CIDR:LOW-HIGH``, ``CIDR:*``; IPv6 in
  brackets: ``[::1]:443``, ``[fd00::/8]``; a bare address is a /32 (/128).
  IPv4-mapped IPv6 addresses (``::ffff:1.2.3.4``) are judged as IPv4.
* ``unix:GLOB``: an AF_UNIX path, judged after resolution against the
  tracee's cwd (``*`` stays within a component, ``**`` crosses ``/``);
  abstract names are written ``unix:@name``.

``connect``, ``bind``, ``sendto`` with an address and ``sendmsg``/``sendmmsg``
with a ``msg_name`` (read from tracee memory) must match a rule, else they fail
with EACCES (``--errno``).  Sends without an address go to the socket's
connected peer, already judged at ``connect``; ``connect(AF_UNSPEC)``
(dissolving an association) is allowed.  Other families (AF_NETLINK,
AF_PACKET...) are denied unless ``--allow-family``.  On i386, ``socketcall``
network calls are denied (their arguments are behind a pointer);
``io_uring_setup`` fails with ENOSYS (io_uring sends without syscalls).
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import re
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from brokerd.clients.authorizer import (
    Authorizer,
    SockAddr,
    Syscall,
    cont,
    kernel_layer,
    resolve_path,
    skip_fail,
    sockaddr_of,
)
from brokerd.protocol.args import unpack_sockaddr
from brokerd.protocol.types import Ptr, Str

from brokerd.globs import glob_to_regex  # noqa: F401  (re-exported: the rule files use it)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class IpRule:
    net: Network
    low: int = 0
    high: int = 65535

    def matches(self, host: str, port: int) -> bool:
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.version == self.net.version and ip in self.net and self.low <= port <= self.high


@dataclass(frozen=True)
class UnixRule:
    pattern: re.Pattern[str]

    def matches(self, path: str) -> bool:
        return self.pattern.fullmatch(path) is not None


_PORTS = re.compile(r"(\d+)(?:-(\d+))?\Z")


def parse_rule(text: str) -> IpRule | UnixRule:
    """``10.0.0.0/8:80``, ``[::1]:443``, ``127.0.0.1``, ``unix:/run/*.sock`` -> a rule (ValueError if bad)."""
    if text.startswith("unix:"):
        return UnixRule(re.compile(glob_to_regex(text[5:])))
    port = "*"
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected ':PORT' after ']'")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text
    try:
        net = ipaddress.ip_network(host, strict=False)
    except ValueError as e:
        raise ValueError(f"{text!r}: {e}") from None
    if port in ("*", ""):
        return IpRule(net)
    m = _PORTS.match(port)
    if m is None:
        raise ValueError(f"{text!r}: bad port {port!r} (PORT, LOW-HIGH or *)")
    low = int(m.group(1))
    high = int(m.group(2) or low)
    if not 0 <= low <= high <= 65535:
        raise ValueError(f"{text!r}: port out of range")
    return IpRule(net, low, high)


#: calls naming an address directly: the index of their sockaddr argument
ADDRESSED = {"connect": 1, "bind": 1, "sendto": 4}
#: calls naming addresses in their msghdr(s), read from tracee memory
MSG_SENDS = frozenset({"sendmsg", "sendmmsg"})
#: a send naming no address (it goes to the connected peer, judged at connect)
PEER = "peer"
#: the note a replayed event carries the journal's destinations in (clients/replay.py)
DESTS_NOTE = "dests"


def destinations(call: Syscall) -> list[SockAddr | None] | None:
    """Every address the call sends to, connects or binds to (None in the
    list: a send to the connected peer); None for a call naming none.  In a
    replayed journal: the destinations recorded while the process lived.
    Raises OSError/ValueError/struct.error when tracee memory cannot be read."""
    recorded = call.notes.get(DESTS_NOTE)
    if isinstance(recorded, Str):
        return [parse_endpoint(t) for t in os.fsdecode(recorded.data).split("\n") if t]
    if call.name in ADDRESSED:
        return [call.sockaddr(ADDRESSED[call.name])]
    if call.name in MSG_SENDS:
        count = 1 if call.name == "sendmsg" else max(0, min(call.num(2), 1024))
        return _msg_names(call, 1, count, call.name == "sendmmsg")
    return None


def endpoint(call: Syscall, sa: SockAddr | None) -> str | None:
    """A destination as rule text (``127.0.0.1:80``, ``[::1]:53``,
    ``unix:/run/x.sock`` resolved against the caller's cwd, ``unix:@name``,
    ``peer``); None for a family the rules cannot name."""
    if sa is None:
        return PEER
    if sa.family == "AF_INET" and sa.host and sa.port is not None:
        return f"{sa.host}:{sa.port}"
    if sa.family == "AF_INET6" and sa.host and sa.port is not None:
        return f"[{sa.host}]:{sa.port}"
    if sa.family == "AF_UNIX" and sa.path is not None:
        path = sa.path or "@"  # "": autobind, an abstract name the kernel picks
        if not path.startswith("@"):
            base = "/" if path.startswith("/") else call.cwd()
            real = resolve_path(path, base, pid=None if call.replay else call.pid, tid=call.tid,
                                follow=call.name != "bind") if base else None
            if real is None:
                return None
            path = real
        return f"unix:{path}"
    return None


def unreadable(call: Syscall, i: int) -> bool:
    """Is sockaddr argument ``i`` an address that could not be read (not NULL,
    which names no address)?  Where it goes is unknown: denied, as an
    unreadable ``msg_name`` is (call.sockaddr says None for both)."""
    v = call.arg(i)
    return isinstance(v, Ptr) and v.value != 0


def parse_endpoint(text: str) -> SockAddr | None:
    """:func:`endpoint`'s text back to a SockAddr (None: ``peer``)."""
    if text == PEER:
        return None
    if text.startswith("unix:"):
        return SockAddr("AF_UNIX", path=text[5:])
    host, _, port = text.rpartition(":")
    if host.startswith("["):
        return SockAddr("AF_INET6", host[1:-1], int(port))
    return SockAddr("AF_INET", host, int(port)) if port.isdigit() else SockAddr("unknown")


def _msg_names(call: Syscall, arg: int, count: int, mmsg: bool) -> list[SockAddr | None]:
    """The destination of each msghdr sendmsg/sendmmsg passes (None: no address).
    Raises OSError when tracee memory cannot be read."""
    base = call.num(arg)
    wide = call.abi == "x86_64"
    ptr_fmt, hdr_size = ("<QI", 56) if wide else ("<II", 28)
    stride = hdr_size + 8 if mmsg and wide else hdr_size + 4 if mmsg else hdr_size
    out: list[SockAddr | None] = []
    for k in range(count):
        head = call.read_memory(base + k * stride, struct.calcsize(ptr_fmt))
        name, namelen = struct.unpack(ptr_fmt, head)
        if name == 0 or namelen == 0:
            out.append(None)
            continue
        raw = call.read_memory(name, min(namelen, 128))
        out.append(sockaddr_of(unpack_sockaddr(raw)))
    return out


#: more TCP ports than this in the rules: the layer does not handle that right
MAX_LAYER_PORTS = 1024


def _layer(ip_rules: Sequence[IpRule], families: set[str]):
    """The TCP part in the kernel, as a floor: connect and bind only to the
    ports some rule allows (Landlock knows ports, not addresses, UDP or
    AF_UNIX: those, and the addresses, stay per call; nothing is settled).
    None when the rules allow (nearly) every port anyway."""
    if families & {"AF_INET", "AF_INET6"}:
        return None
    ports = sorted({p for r in ip_rules for p in range(r.low, r.high + 1)}) if \
        sum(r.high - r.low + 1 for r in ip_rules) <= MAX_LAYER_PORTS else None
    if ports is None:
        return None
    if not ports:
        return kernel_layer(net_handled="bind,connect", settle="none")
    return kernel_layer(net=[("bind,connect", ports)], settle="none")


def build(argv: Sequence[str]) -> Authorizer:
    p = argparse.ArgumentParser(prog="network", description=__doc__.split("\n\n")[0])
    p.add_argument("rules", nargs="*", metavar="RULE", help="CIDR[:PORT], [V6CIDR]:PORT or unix:GLOB")
    p.add_argument("--errno", default="EACCES", help="errno for denied calls (default EACCES)")
    p.add_argument("--allow-family", action="append", default=[], metavar="AF_NAME",
                   help="allow every address of this family (e.g. AF_NETLINK)")
    p.add_argument("--log", action="store_true", help="print every denial on stderr")
    a = p.parse_intermixed_args(argv)  # RULE,--log,RULE: rules anywhere among the options
    try:
        rules = [parse_rule(r) for r in a.rules]
    except ValueError as e:
        p.error(str(e))
    ip_rules = [r for r in rules if isinstance(r, IpRule)]
    unix_rules = [r for r in rules if isinstance(r, UnixRule)]
    families = {f if f.startswith("AF_") else "AF_" + f.upper() for f in a.allow_family}
    denial = skip_fail(a.errno)
    az = Authorizer("network", layer=_layer(ip_rules, families))

    def allowed(call: Syscall, sa: SockAddr | None, binding: bool) -> bool:
        if sa is None:
            return True  # no address: the connected peer
        if sa.family in families:
            return True
        if sa.family in ("AF_INET", "AF_INET6"):
            if sa.host is None or sa.port is None:
                return False
            return any(r.matches(sa.host, sa.port) for r in ip_rules)
        if sa.family == "AF_UNIX":
            path = sa.path or ""
            if path and not path.startswith("@"):
                base = "/" if path.startswith("/") else call.cwd()
                if base is None:
                    return False
                resolved = resolve_path(path, base, pid=None if call.replay else call.pid, tid=call.tid,
                                        follow=not binding)
                if resolved is None:
                    return False
                path = resolved
            elif not path:
                path = "@"  # autobind: an abstract name the kernel picks
            return any(r.matches(path) for r in unix_rules)
        return sa.family == "AF_UNSPEC" and not binding

    def verdict(call: Syscall, ok: bool) -> object:
        if ok:
            return cont()
        if a.log:
            print(f"network: pid {call.pid}: {call.text()} -> denied", file=sys.stderr, flush=True)
        return denial

    @az.on("connect", "bind")
    def connect(call: Syscall) -> object:
        return verdict(call, not unreadable(call, 1) and allowed(call, call.sockaddr(1), call.name == "bind"))

    @az.on("sendto")
    def sendto(call: Syscall) -> object:
        return verdict(call, not unreadable(call, 4) and allowed(call, call.sockaddr(4), False))

    @az.on("sendmsg", "sendmmsg")
    def sendmsg(call: Syscall) -> object:
        try:
            names = destinations(call) or []  # in replay: where the journal says it sent
        except (OSError, ValueError, struct.error):
            return verdict(call, False)  # cannot see where it goes: fail closed
        return verdict(call, all(allowed(call, sa, False) for sa in names))

    @az.on("socketcall")
    def socketcall(call: Syscall) -> object:
        return verdict(call, call.num(0) not in (2, 3, 11, 16, 20))  # BIND CONNECT SENDTO SENDMSG SENDMMSG

    @az.on("io_uring_setup")
    def io_uring(call: Syscall) -> object:
        return skip_fail(errno.ENOSYS)

    return az


def main(argv: Sequence[str] | None = None) -> None:
    build(sys.argv[1:] if argv is None else argv).main()


if __name__ == "__main__":
    main()

__all__ = ["build", "main", "parse_rule", "glob_to_regex", "IpRule", "UnixRule", "destinations", "endpoint",
           "parse_endpoint", "PEER"]
