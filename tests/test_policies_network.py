"""The network policy against real programs (loopback only)."""

from __future__ import annotations

import socket
import sys
import textwrap

import pytest
from brokerd.clients.policies.network import parse_rule
from conftest import brokerctl, landlock_brokerctl


@pytest.fixture(autouse=True, params=["landlock", "no-landlock"])
def landlock_mode(request, monkeypatch):
    """Every test twice: with the policy's Landlock layer, and per call only."""
    monkeypatch.setattr(sys.modules[__name__], "brokerctl", landlock_brokerctl(request.param))
    return request.param


pytestmark = pytest.mark.usefixtures("policy_mode")  # each test in-process and as a process

CLIENT = textwrap.dedent('''
    import errno, socket, sys
    port = int(sys.argv[1])
    def attempt(what, fn):
        try:
            fn(); print(what, "ok")
        except OSError as e:
            print(what, errno.errorcode[e.errno])
    for host in ("127.0.0.1", "127.0.0.2"):
        s = socket.socket(); attempt("connect " + host, lambda: s.connect((host, port))); s.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for host in ("127.0.0.1", "127.0.0.3"):
        attempt("sendto " + host, lambda: u.sendto(b"x", (host, port)))
        attempt("sendmsg " + host, lambda: u.sendmsg([b"x"], [], 0, (host, port)))
    attempt("connect udp", lambda: u.connect(("127.0.0.1", port)))
    attempt("send connected", lambda: u.send(b"x"))
    x = socket.socket(socket.AF_UNIX)
    attempt("unix " + sys.argv[2], lambda: x.connect(sys.argv[2]))
''')


@pytest.fixture
def server(tmp_path):
    srv = socket.socket()
    srv.bind(("0.0.0.0", 0))
    srv.listen(8)
    path = tmp_path / "app.sock"
    usrv = socket.socket(socket.AF_UNIX)
    usrv.bind(str(path))
    usrv.listen(8)
    yield srv.getsockname()[1], str(path)
    srv.close()
    usrv.close()


def test_only_listed_addresses(tmp_path, server):
    port, upath = server
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    r = brokerctl("run", "--policy", f"network:127.0.0.1/32:{port},unix:{tmp_path}/*.sock", "--",
                  sys.executable, "-S", str(script), str(port), upath)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "connect 127.0.0.1 ok", "connect 127.0.0.2 EACCES",
        "sendto 127.0.0.1 ok", "sendmsg 127.0.0.1 ok", "sendto 127.0.0.3 EACCES", "sendmsg 127.0.0.3 EACCES",
        "connect udp ok", "send connected ok", f"unix {upath} ok"]


def test_wrong_port_and_unlisted_unix(tmp_path, server):
    port, upath = server
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    r = brokerctl("run", "--policy", f"network:127.0.0.0/8:{port + 1}-{port + 2},--errno=ECONNREFUSED", "--",
                  sys.executable, "-S", str(script), str(port), upath)
    assert r.stdout.splitlines() == [
        "connect 127.0.0.1 ECONNREFUSED", "connect 127.0.0.2 ECONNREFUSED",
        "sendto 127.0.0.1 ECONNREFUSED", "sendmsg 127.0.0.1 ECONNREFUSED",
        "sendto 127.0.0.3 ECONNREFUSED", "sendmsg 127.0.0.3 ECONNREFUSED",
        "connect udp ECONNREFUSED", "send connected EDESTADDRREQ", f"unix {upath} ECONNREFUSED"]


def test_shell_tool_connect(server):
    port, _ = server
    # bash's /dev/tcp is a real connect(2) from a shell
    cmd = f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo open || echo refused"
    allowed = brokerctl("run", "--policy", f"network:127.0.0.1:{port}", "--", "bash", "-c", cmd)
    denied = brokerctl("run", "--policy", "network:10.0.0.0/8", "--", "bash", "-c", cmd)
    assert allowed.stdout == "open\n"
    assert denied.stdout == "refused\n"
    assert "Permission denied" in denied.stderr


@pytest.mark.parametrize(("rule", "host", "port", "match"), [
    ("10.0.0.0/8", "10.1.2.3", 80, True),
    ("10.0.0.0/8:443", "10.1.2.3", 80, False),
    ("[::1]:443", "::1", 443, True),
    ("127.0.0.1:1000-2000", "::ffff:127.0.0.1", 1500, True),
    ("[fd00::/8]", "fd12::1", 9, True),
])
def test_rule_syntax(rule, host, port, match):
    assert parse_rule(rule).matches(host, port) is match


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "1.2.3.4:99999", "[::1", "host:80", "1.2.3.4:x"])
def test_bad_rules_are_usage_errors(bad):
    r = brokerctl("run", "--policy", f"network:{bad}", "--", "true")
    assert r.returncode != 0


def test_files_move_and_link_across_directories_under_the_network_policy(tmp_path):
    """Before: the network policy's kernel layer (TCP ports only) said
    nothing about Landlock's ``refer``, which the kernel counts as handled by
    every layer of a domain that handles a file right (the broker's wall
    does): every rename or hard link across directories failed with EXDEV
    (``mv`` fell back to a copy, ``ln`` and ``os.rename`` failed)."""
    (tmp_path / "d").mkdir()
    (tmp_path / "a").write_text("x\n")
    r = brokerctl("run", "--policy", "network", "--", sys.executable, "-S", "-c",
                  f"import os; os.chdir({str(tmp_path)!r}); os.rename('a', 'd/a'); os.link('d/a', 'b'); print('ok')")
    assert r.stdout == "ok\n", r.stderr
    assert (tmp_path / "b").read_text() == "x\n"
