"""No way around the broker (issue #16, escapes 1-3): the traced program cannot
reach the broker's processes through /proc, their pipes, or signals by pidfd
and SIGIO.  Each attack runs with the Landlock wall (the default) and with
``--no-landlock``, where the guard's own checks stand in."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import BROKERCTL, brokerctl
from daemon_fixtures import OTHER_PY, run_ctl, shared_dir

from brokerd.tracer import landlock

NOBODY = 65534
MODES = [pytest.param([], id="landlock"), pytest.param(["--no-landlock"], id="guard")]

AUTHZ = r'''
import os, signal, sys
pidfile, sigfile = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGIO, lambda *_: open(sigfile, "a").write("SIGIO\n"))
with open(pidfile + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(pidfile + ".tmp", pidfile)
first = True
for line in sys.stdin:
    if first:
        first = False
        print("cont", flush=True)
        continue
    print("skip-fail EACCES" if '"/etc/hostname"' in line else "cont", flush=True)
'''

needs_landlock = pytest.mark.skipif(landlock.abi_version() < 6, reason="needs Landlock ABI 6 (signal scope)")


@pytest.fixture
def victim(tmp_path):
    """(authorizer command, its pid file, the file its SIGIO handler writes)."""
    d = shared_dir(tmp_path)
    (d / "authz.py").write_text(AUTHZ)
    pidfile, sigfile = d / "authz.pid", d / "sigio"
    return f"{sys.executable} -u {d / 'authz.py'} {pidfile} {sigfile}", pidfile, sigfile


def _run(mode, authz, *prog):
    return brokerctl("run", *mode, "-e", "trace=openat", "-a", authz, "--", *prog)


@needs_landlock
@pytest.mark.parametrize("mode", MODES)
def test_authorizer_memory_cannot_be_opened(mode, victim, cprog):
    authz, pidfile, _ = victim
    r = _run(mode, authz, "sh", "-c", f'{cprog("reach")} mem $(cat {pidfile})')
    assert r.stdout == "mem fail EACCES\n", r.stderr


@needs_landlock
@pytest.mark.parametrize("mode", MODES)
def test_root_cannot_open_the_shims_memory(mode, cprog):
    # as root, non-dumpable is no obstacle: only the wall (or the guard) stops it
    r = brokerctl("run", *mode, "--", "sh", "-c", f"exec {cprog('reach')} mem $PPID")
    assert r.stdout == "mem fail EACCES\n", r.stderr


@needs_landlock
@pytest.mark.parametrize("mode", MODES)
def test_answer_pipe_cannot_be_injected(mode, victim, cprog):
    authz, pidfile, _ = victim
    r = _run(mode, authz, "sh", "-c", f'{cprog("reach")} inject $(cat {pidfile}) /etc/hostname')
    assert r.stdout == "inject fail EACCES\nopen fail EACCES\n", r.stderr


@needs_landlock
@pytest.mark.parametrize("mode", MODES)
def test_answer_pipe_of_another_session_cannot_be_injected(mode, victim, cprog):
    authz, pidfile, _ = victim
    # session A: its program waits on a pipe we hold; session B's program goes for A's authorizer
    a = subprocess.Popen([*BROKERCTL, "run", *mode, "-e", "trace=openat", "-a", authz, "--", "sh", "-c", "read x"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not pidfile.exists() and time.monotonic() < deadline and a.poll() is None:
            time.sleep(0.02)
        assert pidfile.exists(), "session A did not start"
        r = brokerctl("run", *mode, "--", cprog("reach"), "inject", pidfile.read_text(), "/nonexistent")
        assert r.stdout.splitlines()[0] == "inject fail EACCES", r.stderr
    finally:
        a.communicate("x\n", timeout=20)


@needs_landlock
@pytest.mark.parametrize("mode", MODES)
def test_pidfd_signals_do_not_reach_the_broker(mode, victim, cprog):
    authz, pidfile, _ = victim
    reach = cprog("reach")
    r = _run(mode, authz, "sh", "-c", f"{reach} pidfd $(cat {pidfile}); exec {reach} pidfd $PPID")
    assert r.stdout == "pidfd fail EPERM\npidfd fail EPERM\n", r.stderr


@needs_landlock
@pytest.mark.parametrize("mode", MODES)
def test_sigio_does_not_reach_an_authorizer(mode, victim, cprog):
    authz, pidfile, sigfile = victim
    r = _run(mode, authz, "sh", "-c", f'exec {cprog("reach")} setown $(cat {pidfile}) /etc/hostname')
    # with the wall F_SETOWN itself succeeds and the kernel drops the SIGIO; the guard refuses it
    assert r.stdout in ("setown ok\nopen fail EACCES\n", "setown fail EPERM\nopen fail EACCES\n"), r.stderr
    assert not sigfile.exists(), "the authorizer got SIGIO from the traced program"


@needs_landlock
@pytest.mark.parametrize("mode", MODES)
def test_unprivileged_program_cannot_reach_its_authorizer(mode, victim, cprog, tmp_path):
    if not os.path.exists(OTHER_PY):
        pytest.skip("no system python for another user")
    authz, pidfile, sigfile = victim
    d = pidfile.parent
    d.chmod(0o1777)
    reach = d / "reach"
    reach.write_bytes(cprog("reach").read_bytes())
    reach.chmod(0o755)
    authz = authz.replace(sys.executable, OTHER_PY)
    prog = (f"{reach} mem $(cat {pidfile}); {reach} inject $(cat {pidfile}) /etc/hostname; "
            f"{reach} pidfd $(cat {pidfile}); exec {reach} setown $(cat {pidfile}) /etc/hostname")
    r = run_ctl("run", *mode, "-e", "trace=openat", "-a", authz, "--", "sh", "-c", prog, user=NOBODY)
    setown = "setown fail EPERM" if mode else "setown ok"  # the wall drops the SIGIO itself
    assert r.stdout.splitlines() == ["mem fail EACCES", "inject fail EACCES", "open fail EACCES",
                                     "pidfd fail EPERM", setown, "open fail EACCES"], r.stderr
    assert not sigfile.exists()


def test_symlink_into_proc_is_caught_by_the_guard(victim, cprog, tmp_path):
    authz, pidfile, _ = victim
    link = tmp_path / "innocent"
    r = _run(["--no-landlock"], authz, "sh", "-c",
             f'ln -s /proc/$(cat {pidfile})/mem {link}; exec {cprog("reach")} via {link}')
    assert r.stdout == "via fail EACCES\n", r.stderr


@needs_landlock
def test_wall_costs_signals_to_outside_processes_only():
    outside = subprocess.Popen(["sleep", "60"])
    try:
        prog = f"kill -0 {outside.pid} 2>/dev/null && echo outside-ok || echo outside-refused; " \
               "sleep 30 & kill $! && wait $!; echo inside $?"
        r = brokerctl("run", "--", "sh", "-c", prog)
        assert r.stdout == "outside-refused\ninside 143\n", r.stderr
        r = brokerctl("run", "--no-landlock", "--", "sh", "-c", prog)
        assert r.stdout == "outside-ok\ninside 143\n", r.stderr
    finally:
        outside.kill()
        outside.wait()





def test_attached_program_cannot_reach_the_attaching_broker(cprog, tmp_path):
    # attach cannot give a running process a Landlock domain: the guard's own checks protect the broker
    reach = cprog("reach")
    pidfile = tmp_path / "broker.pid"
    out = tmp_path / "out"
    prog = (f"while [ ! -s {pidfile} ]; do sleep 0.02; done; "
            f"{reach} mem $(cat {pidfile}); {reach} pidfd $(cat {pidfile}); {reach} via /proc/$(cat {pidfile})/mem")
    with open(out, "w") as f:
        svc = subprocess.Popen(["sh", "-c", prog], stdout=f)
    att = subprocess.Popen([*BROKERCTL, "attach", "-f", str(svc.pid), "-e", "trace=getppid"],
                           stderr=subprocess.PIPE, text=True)
    try:
        assert "attached to" in att.stderr.readline()
        pidfile.write_text(str(att.pid))
        assert svc.wait(timeout=30) == 0
        assert out.read_text() == "mem fail EACCES\npidfd fail EPERM\nvia fail EACCES\n", att.stderr
    finally:
        att.terminate()
        att.wait(timeout=20)
        if svc.poll() is None:
            svc.kill()
