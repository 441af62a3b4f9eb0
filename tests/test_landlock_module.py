"""tracer/landlock.py: ABI probing, the wall per ABI, layers cut to an ABI,
and a real domain: the kernel refuses what the wall promises."""

from __future__ import annotations

import os

import pytest

from brokerd.tracer import landlock as ll


def test_wall_per_abi():
    refer = ll.ACCESS_FS["refer"][0]  # allowed beneath /: the wall narrows no rename (test_learn_moves)
    assert ll.wall(7) == ll.Layer(handled_fs=refer, scoped=ll.SCOPES["signal"][0], paths=(ll.PathRule("/", refer),))
    old = ll.wall(5)
    assert old.handled_fs == ll.ACCESS_FS["make_block"][0] | refer and old.paths == (ll.PathRule("/", old.handled_fs),)
    assert not old.scoped
    assert ll.wall(1).handled_fs == ll.ACCESS_FS["make_block"][0]  # no refer right before ABI 2


def test_layer_within_an_abi():
    write, trunc = ll.ACCESS_FS["write_file"][0], ll.ACCESS_FS["truncate"][0]
    tcp = ll.ACCESS_NET["connect_tcp"][0]
    layer = ll.Layer(handled_fs=write | trunc, handled_net=tcp, scoped=ll.SCOPES["signal"][0],
                     paths=(ll.PathRule("/tmp", write | trunc),), ports=(ll.PortRule(443, tcp),))
    cut = layer.within(2)
    assert (cut.handled_fs, cut.handled_net, cut.scoped) == (write, 0, 0)
    assert cut.paths == (ll.PathRule("/tmp", write),) and cut.ports == ()
    assert layer.within(7) == layer
    with pytest.raises(ValueError):
        ll.restrict(ll.Layer())


@pytest.mark.skipif(ll.abi_version() < 1, reason="this kernel has no Landlock")
def test_a_domain_cuts_memory_and_signals_to_outside():
    parent = os.getpid()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(r)
        try:
            ll.restrict(ll.wall(ll.abi_version()))
            results = []
            for what in (lambda: os.close(os.open(f"/proc/{parent}/mem", os.O_RDWR)),
                         lambda: os.kill(parent, 0)):
                try:
                    what()
                    results.append("ok")
                except OSError as e:
                    results.append(str(e.errno))
            os.write(w, " ".join(results).encode())
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 100).decode().split()
    os.waitpid(pid, 0)
    assert got[0] == str(13)  # EACCES: no ptrace-mode access outside the domain
    if ll.abi_version() >= ll.ABI_SCOPE:
        assert got[1] == str(1)  # EPERM: the signal scope
