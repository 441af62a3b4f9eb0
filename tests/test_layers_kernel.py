"""Authorizers' kernel layers applied to launched programs (PROTOCOL.md 7.6):
the kernel decides what a layer settles (the authorizer is not asked), stacked
layers only narrow, and --no-landlock puts the same calls back on the
per-call path with the same outcome."""

from __future__ import annotations

import pytest
from conftest import brokerctl

from brokerd.tracer import landlock

pytestmark = pytest.mark.skipif(landlock.abi_version() < 3, reason="needs Landlock ABI 3 (truncate) for opens to settle")

#: an authorizer with a layer: read/execute everywhere, everything beneath RW;
#: per call (what it answers when no layer is in force) the same, and it logs
#: every call it is asked about
BOX = '''
import sys
from brokerd.clients.authorizer import Authorizer, cont, kernel_layer, opens_for_writing, path_under, skip_fail
rw, log = sys.argv[1], sys.argv[2]
az = Authorizer("box", layer=kernel_layer([("read,execute", "/"), ("all", rw)], fs_handled="all"))

@az.on("open", "openat", "creat", "unlinkat", "unlink", "mkdir", "mkdirat")
def judge(call):
    with open(log, "a") as f:
        f.write(call.name + "\\n")
    writing = call.name not in ("open", "openat") or opens_for_writing(call.open_flags() or 0)
    path = call.resolve_path(call.path_args()[0])
    return cont() if not writing or (path and path_under(path, [rw])) else skip_fail("EACCES")

az.run()
'''

SCRIPT = 'echo a > {rw}/f && cat {rw}/f; echo b > {out}/f || echo denied; mkdir {out}/d || echo nodir; rm {rw}/f && echo removed'


@pytest.fixture
def dirs(tmp_path):
    (tmp_path / "rw").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path


@pytest.mark.parametrize("landlock_on", [True, False], ids=["landlock", "no-landlock"])
def test_layer_settles_opens_in_the_kernel(dirs, authz, landlock_on):
    rw, out, log = dirs / "rw", dirs / "out", dirs / "asked.log"
    cmd = authz(BOX) + f" {rw} {log}"
    r = brokerctl("run", *([] if landlock_on else ["--no-landlock"]), "-a", cmd, "--",
                  "sh", "-c", SCRIPT.format(rw=rw, out=out))
    assert r.stdout.splitlines() == ["a", "denied", "nodir", "removed"], r.stderr
    assert not (out / "f").exists() and not (out / "d").exists()
    asked = log.read_text().split() if log.exists() else []
    if landlock_on:
        assert asked == []  # the kernel decided every open, mkdir and unlink: no stop, no question
        assert "Permission denied" in r.stderr
    else:
        assert {"openat", "mkdir", "unlinkat"} <= set(asked)  # per call, same outcome
        assert "no Landlock" in r.stderr or "--no-landlock" in r.stderr


def test_stacked_layers_only_narrow(dirs, authz):
    wide, narrow = dirs / "rw", dirs / "rw" / "sub"
    narrow.mkdir()
    a = authz(BOX) + f" {wide} {dirs}/a.log"
    b = authz(BOX) + f" {narrow} {dirs}/b.log"
    script = f"echo x > {wide}/f || echo wide-denied; echo y > {narrow}/f && echo narrow-ok"
    for order in ((a, b), (b, a)):
        r = brokerctl("run", "-a", order[0], "-a", order[1], "--", "sh", "-c", script)
        assert r.stdout.splitlines() == ["wide-denied", "narrow-ok"], r.stderr
    assert not (wide / "f").exists()


def test_a_bad_layer_fails_the_handshake_closed(dirs, authz):
    bad = authz('''
        import sys
        print("hello 1 role=authorizer name=bad trace=openat fs=\\"read relative/path\\"", flush=True)
        for line in sys.stdin:
            pass
    ''')
    r = brokerctl("run", "-a", bad, "--", "cat", "/etc/hostname")
    assert r.returncode != 0
    assert "relative/path" in r.stderr and "Traceback" not in r.stderr
