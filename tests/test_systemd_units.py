"""The daemon as systemd runs it: socket activation (LISTEN_FDS/LISTEN_PID,
fd 3), sd_notify datagrams (READY, STATUS, MAINPID, WATCHDOG at half
WATCHDOG_USEC, RELOADING, STOPPING) on an abstract-namespace NOTIFY_SOCKET,
and ``systemd-analyze verify`` on the shipped units."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_fixtures import BROKERD, Notify, run_ctl

UNITS = Path(__file__).parent.parent / "systemd"


def _spawn_activated(lsock: socket.socket, config: Path, env: dict, **kw) -> subprocess.Popen:
    """Start brokerd the way systemd does with brokerd.socket: the listening
    socket as fd 3, LISTEN_FDS=1 and LISTEN_PID set to the daemon's own pid
    (the shell execs the daemon, so the pid is the same)."""
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="brokerd.socket", **env)
    env.pop("BROKERD_SOCKET", None)
    fd = lsock.fileno()
    shell = f'export LISTEN_PID=$$; exec "$@" 3<&{fd}'
    return subprocess.Popen(["/bin/bash", "-c", shell, "bash", *BROKERD, "--config", str(config)], env=env,
                            pass_fds=(fd,), **kw)


def _activated(tmp_path, notify_addr: str, extra_env: dict | None = None):
    path = str(tmp_path / "activated.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(16)
    config = tmp_path / "brokerd.toml"
    config.write_text("")
    log = open(tmp_path / "brokerd.log", "w")  # noqa: SIM115
    proc = _spawn_activated(lsock, config, {"NOTIFY_SOCKET": notify_addr, **(extra_env or {})},
                            stdout=log, stderr=subprocess.STDOUT)
    return proc, lsock, path, log


def test_socket_activation_and_sd_notify(tmp_path):
    name = f"@brokerd-test-{os.getpid()}-{time.monotonic_ns()}"
    notify = Notify(name)
    watchdog_usec = 200_000
    proc, lsock, path, log = _activated(tmp_path, name, {"WATCHDOG_USEC": str(watchdog_usec)})
    try:
        ready = notify.wait("READY=1")
        fields = dict(line.split("=", 1) for line in ready.split("\n"))
        assert fields["MAINPID"] == str(proc.pid)
        assert fields["STATUS"] == "0 session(s), 0 authorizer(s)"
        # WATCHDOG=1 every 0.1 s (half of WATCHDOG_USEC): the pings keep
        # coming.  Each within 25 watchdog periods (5 s), not a tight wall-clock
        # bound: on a loaded machine the daemon's timer may run late (a
        # daemon that stopped pinging still fails here)
        for _ in range(4):
            notify.wait("WATCHDOG=1", timeout=25 * watchdog_usec / 1e6)
        # it serves on the socket it was given (fd 3), not one of its own
        r = run_ctl("stats", "--json", env={"BROKERD_SOCKET": path})
        assert r.returncode == 0, r.stderr + (tmp_path / "brokerd.log").read_text()
        assert "socket activation" in (tmp_path / "brokerd.log").read_text()
        # a registration changes STATUS
        reg = subprocess.Popen([sys.executable, "-m", "brokerd.cli.main", "serve", "--once", "--name", "x", "--",
                                "cat"], env=dict(os.environ, BROKERD_SOCKET=path), stderr=subprocess.DEVNULL)
        notify.wait("STATUS=0 session(s), 1 authorizer(s)")
        reg.kill()
        reg.wait(timeout=60)
        # reload: RELOADING=1, then READY=1 again
        proc.send_signal(signal.SIGHUP)
        notify.wait("RELOADING=1")
        notify.wait("READY=1")
        # stop: STOPPING=1, a clean exit, and the socket (systemd's) stays
        proc.send_signal(signal.SIGTERM)
        notify.wait("STOPPING=1")
        assert proc.wait(10) == 0
        assert os.path.exists(path)
        # systemd still holds the listening socket: the next daemon gets it again
        proc2 = _spawn_activated(lsock, tmp_path / "brokerd.toml", {"NOTIFY_SOCKET": name},
                                 stderr=subprocess.DEVNULL)
        try:
            notify.wait("READY=1")
            assert run_ctl("sessions", env={"BROKERD_SOCKET": path}).returncode == 0
        finally:
            proc2.terminate()
            proc2.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
        lsock.close()
        notify.close()
        log.close()


def test_no_watchdog_for_another_pid_and_no_notify_socket(tmp_path):
    # WATCHDOG_PID names someone else: no pings; LISTEN_PID of another
    # process: not our socket, so it binds its own path
    notify = Notify(str(tmp_path / "n.sock"))
    config = tmp_path / "c.toml"
    config.write_text("")
    sock = str(tmp_path / "own.sock")
    env = dict(os.environ, NOTIFY_SOCKET=notify.addr, WATCHDOG_USEC="100000", WATCHDOG_PID="1",
               LISTEN_FDS="1", LISTEN_PID="1")
    proc = subprocess.Popen([*BROKERD, "--socket", sock, "--config", str(config)], env=env,
                            stderr=subprocess.DEVNULL)
    try:
        notify.wait("READY=1")
        assert notify.read(0.4) is None  # no WATCHDOG=1
        assert os.path.exists(sock)
    finally:
        proc.terminate()
        proc.wait(10)
        notify.close()
    assert not os.path.exists(sock)


def test_units_verify():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (scripts/setup installs it)")
    units = sorted(p.name for p in UNITS.iterdir())
    assert units == ["brokerd-authorizer@.service", "brokerd.service", "brokerd.socket"]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for u in units:
            shutil.copy(UNITS / u, d)
        os.symlink("brokerd-authorizer@.service", os.path.join(d, "brokerd-authorizer@audit.service"))
        r = subprocess.run([analyze, "verify", *(os.path.join(d, u) for u in
                                                 ("brokerd.socket", "brokerd.service",
                                                  "brokerd-authorizer@audit.service"))],
                           capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    # verify complains about binaries that are not installed here; nothing else
    problems = [line for line in out.splitlines() if line.strip() and "is not executable" not in line
                and "No such file or directory" not in line]
    assert r.returncode == 0 or not problems, out
    assert not problems, out
    service = (UNITS / "brokerd.service").read_text()
    for directive in ("Type=notify", "WatchdogSec=", "OOMScoreAdjust=-1000", "NoNewPrivileges=yes",
                      "ProtectSystem=strict", "SystemCallFilter=", "RestrictAddressFamilies=AF_UNIX"):
        assert directive in service
    assert "ListenStream=/run/brokerd/brokerd.sock" in (UNITS / "brokerd.socket").read_text()
