"""The Python authorizer library: its protocol session (real lines), its
blocking loop over pipes, its trio form over a socketpair, path resolution,
and end to end under brokerctl."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import trio
from brokerd.clients.authorizer import (
    Authorizer,
    Syscall,
    cont,
    deliver,
    fail,
    ok,
    resolve_path,
    skip_fail,
    step,
    suppress,
    with_sets,
)
from brokerd.protocol import codec
from conftest import brokerctl
from waiting import read_line

GREETING = b"hello 1 role=broker session=7\n"


def make() -> Authorizer:
    az = Authorizer("t", events=("exec",))

    @az.on("openat")
    def openat(call):
        return skip_fail("EACCES") if call.path(1) == "/etc/shadow" else cont()

    @az.on_result("getuid")
    def fake(ret):
        return ok(0)

    @az.on("write")
    def boom(call):
        raise RuntimeError("policy bug")

    @az.on("getresuid")
    def res(call):
        return "skip-ok 0 ; set 1 \"\\x00\\x00\\x00\\x00\""

    return az


def test_handshake_and_replies_carry_ids():
    s = make().session()
    hello = codec.parse_reply(s.feed(GREETING))
    assert hello.get("role") == "authorizer" and hello.get("name") == "t"
    assert hello.get("trace") == "getresuid,getuid,openat,write"
    assert hello.get("events") == "exec" and hello.get("signals") == "no"
    assert s.id == "7" and s.mode == "hello"
    assert s.feed(b"hello 1 role=broker\n") == b""  # the confirmation is not answered
    assert s.feed(b'syscall 4 10 10 x86_64 openat AT_FDCWD, "/etc/shadow", O_RDONLY, 00\n') == b"4 skip-fail EACCES\n"
    assert s.feed(b'syscall 5 10 10 x86_64 openat AT_FDCWD, "/etc/hostname", O_RDONLY, 00\n') == b"5 cont\n"
    assert s.feed(b"syscall 6 10 10 x86_64 getuid\n") == b"6 step\n"
    assert s.feed(b"sysret 6 10 10 x86_64 getuid ok 1000\n") == b"6 ok 0\n"
    assert s.feed(b'proc 10 10 exec "/bin/cat"\n') == b""
    assert s.feed(b"error bad-verdict something\n") == b""
    assert s.feed(b"syscall 8 10 10 x86_64 getresuid 0x10, 0x18, 0x20\n") == b'8 skip-ok 0 ; set 1 "\\x00\\x00\\x00\\x00"\n'


def test_signals():
    az = Authorizer("sig")
    s0 = az.session()
    s0.feed(GREETING)
    assert s0.feed(b"signal 3 10 10 SIGINT\n") == b"3 deliver\n"  # no handler: delivered

    @az.on_signal
    def no_int(sig):
        return suppress() if sig.signo == 2 else deliver()

    s = az.session()
    assert codec.parse_reply(s.feed(GREETING)).get("signals") == "yes"
    assert s.feed(b"signal 4 10 10 SIGINT\n") == b"4 suppress\n"
    assert s.feed(b"signal 5 10 10 SIGTERM\n") == b"5 deliver\n"


def test_handler_exception_is_failsafe_deny(capsys):
    s = make().session()
    s.feed(GREETING)
    assert s.feed(b'syscall 9 10 10 x86_64 write 1, "x", 1\n') == b"9 skip-fail EPERM\n"
    assert "policy bug" in capsys.readouterr().err


def test_plain_peer_gets_replies_in_order_without_ids():
    s = make().session()
    assert s.feed(b'syscall 1 10 10 x86_64 openat AT_FDCWD, "/etc/shadow", O_RDONLY, 00\n') == b"skip-fail EACCES\n"
    assert s.mode == "plain"
    assert s.feed(b"syscall 2 10 10 x86_64 close 3\n") == b"cont\n"  # no handler: the default
    assert s.feed(b"not a protocol line\n") == b"skip-fail EPERM\n"  # keeps its place in the stream


def test_default_and_helpers():
    az = Authorizer("d", default="skip-fail ENOSYS", trace="all")
    s = az.session()
    assert codec.parse_reply(s.feed(GREETING)).get("trace") == "all"
    assert s.feed(b"syscall 1 1 1 x86_64 getpid\n") == b"1 skip-fail ENOSYS\n"
    assert codec.format_reply(with_sets(ok(0), (2, b"\x01"))) == b'ok 0 ; set 2 "\\x01"\n'
    assert codec.format_reply(fail("EIO")) == b"fail EIO\n"
    assert codec.format_reply(step()) == b"step\n"


def test_blocking_loop_over_real_pipes(tmp_path):
    script = tmp_path / "az.py"
    script.write_text(textwrap.dedent('''
        from brokerd.clients.authorizer import Authorizer, skip_fail
        az = Authorizer("pipe")
        @az.on("unlinkat")
        def no_unlink(call):
            return skip_fail("EROFS")
        az.main()
    '''))
    p = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    p.stdin.write(GREETING)
    p.stdin.flush()
    assert read_line(p.stdout).startswith(b"hello 1 role=authorizer name=pipe trace=unlinkat")
    p.stdin.write(b'hello 1 role=broker\nsyscall 3 5 5 x86_64 unlinkat AT_FDCWD, "x", 0\n')
    p.stdin.flush()
    assert read_line(p.stdout) == b"3 skip-fail EROFS\n"
    p.stdin.close()
    assert p.wait(timeout=10) == 0


class _Writes:
    """A stdout that records each write (what reaches the pipe at once)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def flush(self) -> None:
        pass


def test_blocking_loop_answers_lines_read_together_in_one_write(capsys):
    """Lines that wait together (several threads' questions) are read in one
    go and answered with one write; an over-long line is refused with one
    log line and the stream goes on; a line cut by the end of input is not
    answered."""
    import io

    ask = (b'syscall 4 10 10 x86_64 openat AT_FDCWD, "/etc/shadow", O_RDONLY, 00\n'
           b'syscall 5 10 10 x86_64 openat AT_FDCWD, "/etc/hostname", O_RDONLY, 00\n')
    out = _Writes()
    assert make().run(io.BytesIO(GREETING + ask), out) == 0
    assert len(out.writes) == 1
    replies = out.writes[0].splitlines()
    assert replies[0].startswith(b"hello 1 role=authorizer") and replies[1:] == [b"4 skip-fail EACCES", b"5 cont"]
    out = _Writes()
    make().run(io.BytesIO(GREETING + b"x" * (codec.MAX_LINE + 10) + b"\n" + ask + b"syscall 6 10 10 x86_64 openat"), out)
    assert b"".join(out.writes).splitlines()[1:] == [b"4 skip-fail EACCES", b"5 cont"]
    err = capsys.readouterr().err
    assert "line-too-long" in err and "partial-line" in err


async def test_trio_serve_concurrent_over_socketpair():
    az = Authorizer("async")
    slow_started = trio.Event()

    @az.on("read")
    async def slow(call):
        slow_started.set()
        await trio.sleep(0.2)
        return skip_fail("EIO")

    @az.on("write")
    async def fast(call):
        await slow_started.wait()
        return cont()

    a, b = trio.socket.socketpair()
    server, client = trio.SocketStream(a), trio.SocketStream(b)
    async with trio.open_nursery() as n:
        n.start_soon(lambda: az.serve(server, concurrency=4))
        await client.send_all(GREETING)
        buf = b""
        while not buf.endswith(b"\n"):
            buf += await client.receive_some(4096)
        assert buf.startswith(b"hello 1 role=authorizer name=async")
        await client.send_all(b"hello 1 role=broker\nsyscall 1 5 5 x86_64 read 0, 0x1000, 10\n"
                              b'syscall 2 5 6 x86_64 write 1, "x", 1\n')
        buf = b""
        while buf.count(b"\n") < 2:
            buf += await client.receive_some(4096)
        assert buf.splitlines() == [b"2 cont", b"1 skip-fail EIO"]  # the fast answer first
        await client.aclose()


async def test_trio_serve_plain_peer_in_order():
    az = Authorizer("p")

    @az.on("close")
    async def close(call):
        await trio.sleep(0)
        return skip_fail("EBADF") if call.num(0) == 99 else cont()

    a, b = trio.socket.socketpair()
    server, client = trio.SocketStream(a), trio.SocketStream(b)
    async with trio.open_nursery() as n:
        n.start_soon(az.serve, server)
        await client.send_all(b"syscall 1 5 5 x86_64 close 99\nsyscall 2 5 5 x86_64 close 3\n")
        buf = b""
        while buf.count(b"\n") < 2:
            buf += await client.receive_some(4096)
        assert buf == b"skip-fail EBADF\ncont\n"
        await client.aclose()


def test_resolve_path(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    os.symlink("d/f", tmp_path / "rel")
    os.symlink("/etc", tmp_path / "abs")
    os.symlink("loop", tmp_path / "loop")
    t = str(tmp_path)
    assert resolve_path("d/../d/f", t) == f"{t}/d/f"
    assert resolve_path(f"{t}/rel", "/") == f"{t}/d/f"
    assert resolve_path(f"{t}/rel", "/", follow=False) == f"{t}/rel"
    assert resolve_path("abs/hostname", t) == "/etc/hostname"
    assert resolve_path("abs/../etc/passwd", t) == "/etc/passwd"  # .. after the symlink, as the kernel does
    assert resolve_path("loop", t) is None
    assert resolve_path("d/new/file", t) == f"{t}/d/new/file"
    assert resolve_path("/../../etc", "/") == "/etc"
    pid = os.getpid()
    assert resolve_path("/proc/self/cwd", "/", pid=pid) == os.getcwd()


def test_library_authorizer_end_to_end(cprog, authz):
    cmd = authz('''
        from brokerd.clients.authorizer import Authorizer, ok
        az = Authorizer("e2e")
        @az.on_result("getppid")
        def fake(ret):
            return ok(4242)
        az.main()
    ''')
    r = brokerctl("run", "-a", cmd, "--", str(cprog("calls")), "getppid", "getpid")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "getppid ok 4242"
    assert r.stdout.splitlines()[1] != "getpid ok 4242"


@pytest.mark.parametrize("bad", ["Authorizer('two words')", "Authorizer('x').on()"])
def test_bad_usage_raises(bad):
    with pytest.raises(ValueError):
        eval(bad, {"Authorizer": Authorizer})


def test_cached_marks_only_entry_answers_that_are_no_step():
    from brokerd.clients.authorizer import cached

    az = Authorizer("c")

    @az.on("openat")
    def openat(call):
        return cached(skip_fail("EACCES"))

    @az.on("getuid")
    def getuid(call):
        return cached(step())

    @az.on_result("getuid")
    def result(ret):
        return cached(ok(0))

    s = az.session()
    s.feed(GREETING)
    assert s.feed(b'hello 1 role=broker\n') == b""
    assert s.feed(b'syscall 3 9 9 x86_64 openat AT_FDCWD, "/x", O_RDONLY, 00\n') == b"3 skip-fail EACCES ; cache\n"
    assert s.feed(b"syscall 4 9 9 x86_64 getuid\n") == b"4 step\n"  # its result comes back to the handler
    assert s.feed(b"sysret 4 9 9 x86_64 getuid ok 5\n") == b"4 ok 0\n"


@pytest.mark.parametrize("flags, follows", [
    ("O_RDONLY", True), ("O_RDONLY|O_NOFOLLOW", False), ("O_WRONLY|O_CREAT|O_EXCL", False),
    ("O_PATH|O_CREAT|O_EXCL", True),  # O_PATH drops O_CREAT|O_EXCL: the kernel follows the link
    ("O_PATH|O_NOFOLLOW", False)])
def test_an_open_path_is_resolved_as_the_kernel_follows_it(tmp_path, flags, follows):
    """Without the broker's realN note (--no-stable-args), the library
    resolves the path itself: through a final symlink exactly when the
    open follows one (it said O_PATH|O_CREAT|O_EXCL did not)."""
    (tmp_path / "target").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    ev = codec.parse_event(f'syscall 1 {os.getpid()} {os.getpid()} x86_64 openat AT_FDCWD, "{tmp_path}/link", '
                           f'{flags}, 0')
    got = Syscall(ev).resolve_path(1)
    assert got == str(tmp_path / ("target" if follows else "link")), got
