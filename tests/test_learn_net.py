"""brokerctl learn, network (issue #17): a small server/client program's TCP
ports go into the Landlock layer (bind/connect), and every address it sends
to (sendto, and sendmsg's, read from its memory at the call) is recorded in
the journal and learned as a per-call rule: UDP and AF_UNIX destinations,
which Landlock cannot name.  A changed client sending elsewhere is denied."""

from __future__ import annotations

import socket
from pathlib import Path

from test_learn import bctl

PROG = str(Path(__file__).resolve().parent / "progs" / "netpeers.py")
PY = ["/usr/bin/python3", "-S"]
ENV = {"PYTHONDONTWRITEBYTECODE": "1"}


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_learned_addresses_and_ports(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    tcp, udp, tcp2, udp2 = _free_ports(4)
    path, path2 = str(work / "sock"), str(work / "other")
    argv = [*PY, PROG, str(tcp), str(udp), path]
    policy, again = tmp_path / "net.toml", tmp_path / "again.toml"
    for out in (policy, again):
        r = bctl("learn", "-o", str(out), "--", *argv, cwd=work, env=ENV)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["tcp", "tcp", "sendto", "udp", "sendmsg", "msg", "unix", "unix"], r.stdout
    assert policy.read_text() == again.read_text(), "learning twice gave different files"
    text = policy.read_text()
    assert f'[[layer.net]]\nrights = ["bind"]\nports = [{min(tcp, udp)}, {max(tcp, udp)}]' in text
    assert f'[[layer.net]]\nrights = ["connect"]\nports = [{tcp}]' in text
    assert f'addr = ["127.0.0.1:{udp}"]' in text and f'addr = ["unix:{path}"]' in text
    assert '"sendmsg"' in text.split("addr = [\"127.0.0.1:" + str(udp))[0].rsplit("[[rule]]", 1)[1]
    assert 'addr = ["peer"]' in text  # sendall on the connected socket
    check = bctl("policy", "check", str(policy), cwd=work)
    assert check.returncode == 0, check.stderr

    r = bctl("run", "--policy", str(policy), "--", *argv, cwd=work, env=ENV)
    assert r.returncode == 0 and r.stdout.split() == ["tcp", "tcp", "sendto", "udp", "sendmsg", "msg", "unix",
                                                      "unix"], r.stdout + r.stderr
    # the changed client: every send goes somewhere the run never sent to
    listener = socket.socket()
    listener.bind(("127.0.0.1", tcp2))
    listener.listen()
    try:
        r = bctl("run", "--policy", str(policy), "--", *argv, str(tcp2), str(udp2), path2, cwd=work, env=ENV)
    finally:
        listener.close()
    assert r.stdout.split() == ["tcp", "EACCES", "sendto", "EACCES", "sendmsg", "EACCES", "unix", "EACCES"], \
        r.stdout + r.stderr


def test_journal_records_sendmsg_destinations(tmp_path):
    """The audit journal says where sendmsg sent (its msghdr is in the
    program's memory, gone after the run), so replay and --check judge it."""
    import json

    work = tmp_path / "w"
    work.mkdir()
    tcp, udp = _free_ports(2)
    journal = tmp_path / "j.jsonl"
    r = bctl("run", "--policy", f"audit:{journal}", "--", *PY, PROG, str(tcp), str(udp), str(work / "s"), cwd=work,
             env=ENV)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in journal.read_text().splitlines()]
    sends = [x for x in recs if x.get("name") == "sendmsg"]
    assert sends and sends[0]["dests"] == [f"127.0.0.1:{udp}"]
    rules = tmp_path / "r.toml"
    rules.write_text(f'[[rule]]\nsyscall = ["sendmsg"]\naddr = "127.0.0.1:{udp + 1 if udp < 65535 else udp - 1}"\n'
                     'verdict = "allow"\n[[rule]]\nsyscall = ["sendmsg"]\nverdict = "deny"\n')
    r = bctl("replay", str(journal), "--policy", str(rules), cwd=tmp_path)
    assert "1 decisions changed" in r.stderr or "1 decision changed" in r.stderr, r.stdout + r.stderr
