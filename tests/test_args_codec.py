"""Argument decoding/encoding against an in-memory tracee."""

from __future__ import annotations

import struct

import pytest
from brokerd.protocol import args as A
from brokerd.protocol.abi import ABIS, SyscallSpec
from brokerd.protocol.types import Addr, Array, Fail, Field, Int, Oct, Ok, Ptr, Str, Struct, Sym
from hypothesis import given, settings
from hypothesis import strategies as st

X, I386, X32 = ABIS["x86_64"], ABIS["i386"], ABIS["x32"]
M64 = (1 << 64) - 1


class Mem:
    """A sparse tracee address space made of byte regions."""

    def __init__(self) -> None:
        self.regions: list[tuple[int, bytearray]] = []
        self.next = 0x10000

    def put(self, data: bytes, addr: int | None = None) -> int:
        if addr is None:
            addr = self.next
            self.next += (len(data) + 0x1000) & ~0xfff
        self.regions.append((addr, bytearray(data)))
        return addr

    def read(self, addr: int, size: int) -> bytes:
        for base, buf in self.regions:
            if base <= addr < base + len(buf):
                return bytes(buf[addr - base:addr - base + size])
        raise OSError(14, "Bad address")

    def read_cstr(self, addr: int, limit: int) -> tuple[bytes, bool]:
        b = self.read(addr, limit)
        i = b.find(b"\0")
        return (b, False) if i < 0 else (b[:i], True)

    def place(self, enc: A.Encoded) -> list[int]:
        """What the shim does with an Encoded: write blobs, fix relocations."""
        regs = list(enc.regs)
        addrs = {}
        for i, data in enc.blobs:
            addrs[i] = self.put(data)
            regs[i] = addrs[i]
        for i, off in enc.relocs:
            base, buf = next(r for r in self.regions if r[0] == addrs[i])
            v = int.from_bytes(buf[off:off + enc.ptr_size], "little") + base
            buf[off:off + enc.ptr_size] = v.to_bytes(enc.ptr_size, "little")
        return regs


def sa_in(ip: str, port: int) -> bytes:
    return struct.pack("<H", 2) + port.to_bytes(2, "big") + bytes(int(x) for x in ip.split(".")) + bytes(8)


# ---------------------------------------------------------------------------
# decoding at entry
# ---------------------------------------------------------------------------


def test_openat() -> None:
    m = Mem()
    p = m.put(b"/etc/passwd\0")
    vals = A.decode_args(X.by_name["openat"], [(-100) & M64, p, 0o2000000, 0o644], m)
    assert vals == (Sym(("AT_FDCWD",)), Str(b"/etc/passwd"), Sym(("O_RDONLY", "O_CLOEXEC")),
                    Oct(0o644))
    # i386 registers are 32-bit: AT_FDCWD arrives as 0xffffff9c
    vals = A.decode_args(I386.by_name["openat"], [0xFFFFFF9C, p, 0o1101, 0o600], m)
    assert vals[0] == Sym(("AT_FDCWD",))
    assert vals[2] == Sym(("O_WRONLY", "O_CREAT", "O_TRUNC"))


def test_null_unreadable_and_truncated() -> None:
    m = Mem()
    long = m.put(b"x" * 200 + b"\0")
    vals = A.decode_args(X.by_name["open"], [0, 0xdead0000, 0], m)
    assert vals[0] == Ptr(0)
    vals = A.decode_args(X.by_name["mkdir"], [0xdead0000, 0o755], m)
    assert vals[0] == Ptr(0xdead0000)
    # a string the kernel reads whole is decoded as a path is (PROTOCOL.md section 8): strsize
    # bounds data buffers only; pathsize bounds both
    assert A.decode_args(X.by_name["mq_unlink"], [long], m, strsize=16) == (Str(b"x" * 200),)
    assert A.decode_args(X.by_name["mq_unlink"], [long], m, pathsize=16) == (Str(b"x" * 16, 200),)
    assert A.decode_args(X.by_name["chdir"], [long], m) == (Str(b"x" * 200),)


def test_write_buffer() -> None:
    m = Mem()
    b = m.put(b"this is data")
    assert A.decode_args(X.by_name["write"], [2, b, 12], m) == (Int(2), Str(b"this is data"), Int(12))
    assert A.decode_args(X.by_name["write"], [2, b, 12], m, strsize=4) == (
        Int(2), Str(b"this", total=12), Int(12))
    assert A.decode_args(X.by_name["read"], [0, b, 12], m) == (Int(0), Ptr(b), Int(12))


def test_sockaddr_and_socket() -> None:
    m = Mem()
    a = m.put(sa_in("127.0.0.1", 80))
    assert A.decode_args(X.by_name["connect"], [3, a, 16], m) == (
        Int(3), Struct((Sym(("AF_INET",)), Addr("127.0.0.1", 80))), Int(16))
    assert A.decode_args(X.by_name["socket"], [2, 0o2000001, 0], m) == (
        Sym(("AF_INET",)), Sym(("SOCK_STREAM", "SOCK_CLOEXEC")), Int(0))


def test_execve_argv() -> None:
    m = Mem()
    strs = [m.put(s + b"\0") for s in (b"/bin/ls", b"ls", b"-l")]
    argv = m.put(b"".join(p.to_bytes(8, "little") for p in strs[1:]) + bytes(8))
    env = m.put(bytes(8))
    vals = A.decode_args(X.by_name["execve"], [strs[0], argv, env], m)
    assert vals == (Str(b"/bin/ls"), Array((Str(b"ls"), Str(b"-l"))), Array(()))
    # x32/i386: 4-byte pointers
    argv32 = m.put(b"".join(p.to_bytes(4, "little") for p in strs[1:]) + bytes(4))
    assert A.decode_args(X32.by_name["execve"], [strs[0], argv32, 0], m)[1] == Array(
        (Str(b"ls"), Str(b"-l")))
    many = m.put(b"".join(strs[1].to_bytes(8, "little") for _ in range(40)) + bytes(8))
    arr = A.decode_args(X.by_name["execve"], [strs[0], many, 0], m)[1]
    assert isinstance(arr, Array) and len(arr.items) == 33 and arr.items[-1] == Field("more", Int(8))


def test_openat2_clone3_timespec() -> None:
    m = Mem()
    p = m.put(b"/tmp\0")
    how = m.put(struct.pack("<QQQ", 0o200000 | 0o2000000, 0, 0x8))
    v = A.decode_args(X.by_name["openat2"], [(-100) & M64, p, how, 24], m)
    assert v[2] == Struct((Field("flags", Sym(("O_RDONLY", "O_DIRECTORY", "O_CLOEXEC"))),
                           Field("mode", Oct(0)), Field("resolve", Sym(("RESOLVE_BENEATH",)))))
    ca = m.put(struct.pack("<11Q", 0x100 | 0x200, 0, 0, 0, 17, 0x7000, 4096, 0, 0, 0, 0))
    v = A.decode_args(X.by_name["clone3"], [ca, 88], m)
    assert isinstance(v[0], Struct) and v[0].fields[0] == Field("flags", Sym(("CLONE_VM", "CLONE_FS")))
    assert v[0].fields[4] == Field("exit_signal", Sym(("SIGCHLD",)))
    ts = m.put(struct.pack("<qq", 1, 500))
    assert A.decode_args(X.by_name["nanosleep"], [ts, 0], m) == (
        Struct((Field("tv_sec", Int(1)), Field("tv_nsec", Int(500)))), Ptr(0))
    ts32 = m.put(struct.pack("<ii", -1, 7))
    assert A.decode_args(I386.by_name["nanosleep"], [ts32, 0], m)[0] == Struct(
        (Field("tv_sec", Int(-1)), Field("tv_nsec", Int(7))))


def test_writev_iovec() -> None:
    m = Mem()
    a, b = m.put(b"hello "), m.put(b"world")
    iov = m.put(struct.pack("<QQQQ", a, 6, b, 5))
    assert A.decode_args(X.by_name["writev"], [1, iov, 2], m)[1] == Array(
        (Str(b"hello "), Str(b"world")))


def test_unknown_syscall_and_i386_widths() -> None:
    m = Mem()
    spec = X.spec(999)
    assert A.decode_args(spec, [1, 2, 3, 4, 5, 6], m) == tuple(Ptr(k) for k in range(1, 7))
    assert A.decode_args(I386.by_name["lseek"], [3, 0xFFFFFFFF, 2], m) == (
        Int(3), Int(-1), Sym(("SEEK_END",)))
    assert A.decode_args(X.by_name["lseek"], [3, 0xFFFFFFFF, 2], m)[1] == Int(0xFFFFFFFF)


# ---------------------------------------------------------------------------
# results and output buffers
# ---------------------------------------------------------------------------


def test_decode_result() -> None:
    assert A.decode_result(X.by_name["openat"], (-2) & M64) == Fail(2)
    assert A.decode_result(X.by_name["openat"], 3) == Ok(Int(3))
    assert A.decode_result(X.by_name["mmap"], 0x7F0000001000) == Ok(Ptr(0x7F0000001000))
    assert A.decode_result(X.by_name["lseek"], (-4096) & M64) == Ok(Int(-4096))
    assert A.decode_result(I386.by_name["open"], 0xFFFFFFFE) == Fail(2)
    assert A.decode_result(I386.by_name["mmap2"], 0xF7000000) == Ok(Ptr(0xF7000000))


def test_decode_outbufs() -> None:
    m = Mem()
    b = m.put(b"root:x:0:0\n" + bytes(100))
    assert A.decode_outbufs(X.by_name["read"], [3, b, 100], 11, m) == ((1, Str(b"root:x:0:0\n")),)
    assert A.decode_outbufs(X.by_name["read"], [3, b, 100], 11, m, strsize=4) == (
        (1, Str(b"root", total=11)),)
    assert A.decode_outbufs(X.by_name["read"], [3, b, 100], (-9) & M64, m) == ()
    assert A.decode_outbufs(X.by_name["close"], [3], 0, m) == ()
    fds = m.put(struct.pack("<ii", 3, 4))
    assert A.decode_outbufs(X.by_name["pipe2"], [fds, 0], 0, m) == ((0, Array((Int(3), Int(4)))),)
    sa = m.put(sa_in("10.0.0.1", 4242))
    ln = m.put(struct.pack("<I", 16))
    assert A.decode_outbufs(X.by_name["accept"], [3, sa, ln], 5, m) == (
        (1, Struct((Sym(("AF_INET",)), Addr("10.0.0.1", 4242)))),)
    ts = m.put(struct.pack("<ii", 5, 6))
    assert A.decode_outbufs(I386.by_name["clock_gettime"], [1, ts], 0, m) == (
        (1, Struct((Field("tv_sec", Int(5)), Field("tv_nsec", Int(6))))),)


# ---------------------------------------------------------------------------
# encoding rewritten calls
# ---------------------------------------------------------------------------


def roundtrip(spec: SyscallSpec, values: tuple, raw: list[int] | None = None) -> tuple:
    m = Mem()
    enc = A.encode_args(spec, values, raw or [0] * 6)
    regs = m.place(enc)
    return A.decode_args(spec, regs, m, strsize=4096)


@pytest.mark.parametrize("name,values", [
    ("openat", (Sym(("AT_FDCWD",)), Str(b"/tmp/x"), Sym(("O_WRONLY", "O_CREAT")), Oct(0o600))),
    ("connect", (Int(3), Struct((Sym(("AF_INET6",)), Addr("::1", 443))), Int(28))),
    ("openat2", (Int(5), Str(b"a/b"), Struct((Field("flags", Sym(("O_RDONLY",))), Field("mode", Oct(0)),
                                              Field("resolve", Sym(("RESOLVE_IN_ROOT",))))), Int(24))),
    ("execve", (Str(b"/bin/sh"), Array((Str(b"sh"), Str(b"-c"), Str(b"true"))), Array((Str(b"A=1"),)))),
    ("writev", (Int(1), Array((Str(b"ab"), Str(b"cde"))), Int(2))),
    ("nanosleep", (Struct((Field("tv_sec", Int(2)), Field("tv_nsec", Int(3)))), Ptr(0))),
    ("write", (Int(1), Str(b"hi\n"), Int(3))),
])
def test_encode_then_decode(name: str, values: tuple) -> None:
    assert roundtrip(X.by_name[name], values) == values


def test_encode_clone3_and_i386() -> None:
    ca = Struct((Field("flags", Sym(("CLONE_VM",))), Field("exit_signal", Sym(("SIGCHLD",)))))
    out = roundtrip(X.by_name["clone3"], (ca, Int(64)))
    assert out[1] == Int(64)
    assert isinstance(out[0], Struct) and out[0].fields[0] == Field("flags", Sym(("CLONE_VM",)))
    vals = (Str(b"/bin/true"), Array((Str(b"true"),)), Ptr(0))
    assert roundtrip(I386.by_name["execve"], vals) == vals
    enc = A.encode_args(I386.by_name["kill"], (Int(-1), Sym(("SIGKILL",))), [0, 0])
    assert enc.regs[:2] == (0xFFFFFFFF, 9)
    assert enc.ptr_size == 4


def test_encode_rules() -> None:
    spec = X.by_name["write"]
    # a truncated string means "unchanged": keep the original pointer; length as given
    enc = A.encode_args(spec, (Int(2), Str(b"abc", total=4096), Int(10)), [1, 0x5000, 4096])
    assert enc.regs[:3] == (2, 0x5000, 10) and enc.blobs == ()
    enc = A.encode_args(spec, (Int(-1), Ptr(0x6000), Int(5)), [1, 0x5000, 4096, 7, 8, 9])
    assert enc.regs == (M64, 0x6000, 5, 7, 8, 9)
    # sockaddr sets its length argument
    enc = A.encode_args(X.by_name["connect"], (Int(3), Struct((Sym(("AF_UNIX",)), Str(b"/run/x.sock"))),
                                               Int(110)), [3, 0, 110])
    assert enc.blobs == ((1, b"\x01\x00/run/x.sock\x00"),) and enc.regs[2] == 14
    enc = A.encode_args(X.by_name["openat"], (Int(3), Str(b"f"), Sym(("O_RDWR",), 0x40000000)), [0] * 4)
    assert enc.regs[2] == 2 | 0x40000000 and enc.blobs == ((1, b"f\0"),)
    with pytest.raises(ValueError, match="O_BOGUS"):
        A.encode_args(X.by_name["openat"], (Int(3), Str(b"f"), Sym(("O_BOGUS",))), [0] * 4)
    with pytest.raises(ValueError, match="argument 1"):
        A.encode_args(X.by_name["close"], (Str(b"x"),), [0])
    with pytest.raises(ValueError, match="takes 1 arguments"):
        A.encode_args(X.by_name["close"], (Int(1), Int(2)), [0])


# ---------------------------------------------------------------------------
# flags and sockaddrs
# ---------------------------------------------------------------------------


def test_format_examples() -> None:
    assert A.format_flags("open_flags", 0) == Sym(("O_RDONLY",))
    assert A.format_flags("open_flags", 0o4010001) == Sym(("O_WRONLY", "O_SYNC"))
    assert A.format_flags("open_flags", 0o20200002) == Sym(("O_RDWR", "O_TMPFILE"))
    assert A.format_flags("open_flags", 0x80000000) == Sym(("O_RDONLY",), 0x80000000)
    assert A.format_flags("access_mode", 0) == Sym(("F_OK",))
    assert A.format_flags("access_mode", 6) == Sym(("W_OK", "R_OK"))
    assert A.format_flags("prot", 0) == Sym(("PROT_NONE",))
    assert A.format_flags("whence", 9) == Int(9)
    assert A.format_flags("dirfd", -100) == Sym(("AT_FDCWD",))
    assert A.format_flags("signo", 2) == Sym(("SIGINT",))
    assert A.format_flags("mode", 0o644) == Oct(0o644)
    assert A.format_flags("clone_flags", 0x11 | 0x100) == Sym(("CLONE_VM", "SIGCHLD"))
    assert A.format_flags("msg_flags", 0) == Int(0)
    assert A.format_flags("ioctl_req", 0x5413) == Sym(("TIOCGWINSZ",))
    assert A.format_flags("ioctl_req", 0xC0105512) == Ptr(0xC0105512)
    assert A.format_flags("path", 0x1000) == Ptr(0x1000)
    assert A.value_to_int(Sym(("O_NDELAY",)), "open_flags") == 0o4000
    assert A.value_to_int(Sym(("AT_FDCWD",)), "fd") == -100  # unambiguous in any kind
    assert A.value_to_int(Sym(("SIGTERM",)), "int") == 15
    with pytest.raises(ValueError, match="'O_NOPE' for a 'open_flags'"):
        A.value_to_int(Sym(("O_NOPE",)), "open_flags")
    with pytest.raises(ValueError):
        A.value_to_int(Str(b"x"), "int")


ALL_KINDS = sorted(A.KINDS)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=-(1 << 31), max_value=(1 << 64) - 1))
def test_format_flags_round_trips_for_every_kind(v: int) -> None:
    for kind in ALL_KINDS:
        assert A.value_to_int(A.format_flags(kind, v), kind) == v, kind


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(A.FLAGSETS)), st.integers(min_value=0, max_value=(1 << 40)))
def test_flag_round_trip_small_values(kind: str, v: int) -> None:
    assert A.value_to_int(A.format_flags(kind, v), kind) == v


@given(st.ip_addresses(v=4), st.integers(0, 65535))
def test_sockaddr_inet_round_trip(ip, port: int) -> None:
    v = Struct((Sym(("AF_INET",)), Addr(str(ip), port)))
    data = A.pack_sockaddr(v)
    assert len(data) == 16 and A.unpack_sockaddr(data) == v


@given(st.ip_addresses(v=6), st.integers(0, 65535), st.integers(0, 2**32 - 1))
def test_sockaddr_inet6_round_trip(ip, port: int, scope: int) -> None:
    fields = (Sym(("AF_INET6",)), Addr(str(ip), port)) + ((Field("scope_id", Int(scope)),) if scope else ())
    data = A.pack_sockaddr(Struct(fields))
    assert len(data) == 28 and A.unpack_sockaddr(data) == Struct(fields)


@given(st.binary(min_size=1, max_size=100).filter(lambda b: b"\0" not in b))
def test_sockaddr_unix_round_trip(path: bytes) -> None:
    v = Struct((Sym(("AF_UNIX",)), Str(path)))
    assert A.unpack_sockaddr(A.pack_sockaddr(v)) == v
    abstract = Struct((Sym(("AF_UNIX",)), Str(b"\0" + path)))
    assert A.pack_sockaddr(abstract) == b"\x01\x00\x00" + path
    assert A.unpack_sockaddr(A.pack_sockaddr(abstract)) == abstract


def test_sockaddr_other_families() -> None:
    assert A.unpack_sockaddr(b"\x01\x00") == Struct((Sym(("AF_UNIX",)),))
    nl = b"\x10\x00" + bytes(10)
    assert A.unpack_sockaddr(nl) == Struct((Sym(("AF_NETLINK",)), Str(bytes(10))))
    assert A.pack_sockaddr(A.unpack_sockaddr(nl)) == nl
    assert A.unpack_sockaddr(b"\x63\x00ab") == Struct((Int(99), Str(b"ab")))
    with pytest.raises(ValueError):
        A.pack_sockaddr(Struct((Sym(("AF_INET",)), Addr("::1", 1))))
