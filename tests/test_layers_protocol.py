"""Kernel layers in the protocol (PROTOCOL.md 7.6): the handshake attributes,
the TOML [layer] table, the library, and which calls a layer settles on which
Landlock ABI (sans-IO; the vectors in protocol/vectors/layers.jsonl run in
test_protocol_vectors.py)."""

from __future__ import annotations

import pytest
from brokerd.clients.authorizer import Authorizer, kernel_layer
from brokerd.clients.policies.rulefile import PolicyFileError, build_from, loads
from brokerd.protocol import codec
from brokerd.protocol.layers import parse_layer, settled_calls

SANDBOX = kernel_layer([("read,execute", "/usr"), ("all", "/home/sandbox")], fs_handled="all")


def test_library_declares_its_layer_in_the_handshake() -> None:
    az = Authorizer("box", trace=["stat"], layer=SANDBOX, allow=["read"], unknown="deny:ENOSYS")
    line = codec.format_reply(az.hello()).decode()
    assert 'fs-handled=all fs="read,execute /usr" fs="all /home/sandbox"' in line
    assert "allow=read unknown=deny:ENOSYS" in line
    assert parse_layer(codec.parse_reply(line).attrs) == SANDBOX


def test_opens_are_settled_only_where_the_kernel_can_say_truncate() -> None:
    assert {"openat", "execve", "unlinkat", "renameat2", "mkdir"} <= settled_calls(SANDBOX, 7)
    on_abi2 = settled_calls(SANDBOX, 2)  # no LANDLOCK_ACCESS_FS_TRUNCATE: O_TRUNC would go unjudged
    assert "openat" not in on_abi2 and "truncate" not in on_abi2
    assert "execve" in on_abi2
    assert settled_calls(SANDBOX, 0) == frozenset()
    # never settled: what Landlock does not govern
    assert not {"stat", "newfstatat", "chmod", "chdir", "ioctl", "connect", "bind"} & settled_calls(SANDBOX, 7)


def test_settle_selection_keeps_calls_per_call() -> None:
    keep_links = kernel_layer([("all", "/tmp")], settle="!%link")
    assert "symlinkat" not in settled_calls(keep_links, 7) and "openat" in settled_calls(keep_links, 7)
    floor = kernel_layer([("all", "/tmp")], settle="none")
    assert settled_calls(floor, 7) == frozenset()


def test_unjudged_calls_run_unasked_only_under_a_layer() -> None:
    spec = kernel_layer([("all", "/box")], unjudged="%stat,readlink")
    assert {"stat", "readlink", "openat"} <= settled_calls(spec, 7)
    assert settled_calls(spec, 0) == frozenset()  # no Landlock: every call per call


def test_network_and_scope_layers_settle_nothing() -> None:
    net = kernel_layer(net=[("connect", [443])], scope="signal")
    assert settled_calls(net, 7) == frozenset()  # UDP and AF_UNIX stay per call
    assert net.at_abi(3).handles_anything() is False
    assert net.missing(3) == ("connect", "signal")


def test_policy_file_layer_table() -> None:
    p = loads('name = "b"\n[layer]\nfs_handled = "all"\nscope = ["signal"]\n'
              '[[layer.fs]]\nrights = ["read", "execute"]\npaths = ["/usr", "/etc"]\n'
              '[[layer.net]]\nrights = "connect"\nports = [443, 80]\n')
    assert p.layer is not None
    assert [r.path for r in p.layer.fs] == ["/usr", "/etc"]
    assert p.layer.net[0].ports == (443, 80)
    hello = codec.format_reply(build_from(p).hello()).decode()
    assert 'net="connect 443,80"' in hello and "scope=signal" in hello


@pytest.mark.parametrize(("text", "message"), [
    ('[layer]\nfs_handled = "read"\n[[layer.fs]]\nrights = "write"\npath = "/x"\n', "does not handle"),
    ('[layer]\n[[layer.fs]]\nrights = "reed"\npath = "/x"\n', "unknown right"),
    ('[layer]\n[[layer.fs]]\nrights = "read"\npath = "x"\n', "absolute"),
    ('[layer]\n[[layer.net]]\nrights = "connect"\nports = [70000]\n', "0..65535"),
    ('[layer]\nbogus = 1\n', "unknown key"),
    ('name = "x"\n[layer]\n[[layer.fs]]\nrights = "read"\n', "path"),
])
def test_bad_layer_tables_are_reported_with_their_line(text: str, message: str) -> None:
    with pytest.raises(PolicyFileError) as info:
        loads(text)
    (line, msg), = info.value.errors
    assert message in msg
    assert line == text.splitlines().index("[layer]") + 1
