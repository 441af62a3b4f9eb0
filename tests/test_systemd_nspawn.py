"""The units under a real systemd: a debootstrapped Debian 12 root booted
with systemd-nspawn, brokerd installed in it from this tree.  Socket
activation, Type=notify (READY and STATUS) and a traced session through the
installed daemon and a system authorizer run by brokerd-authorizer@.service
are proven by systemd itself."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from waiting import text_of, wait_for

# slow; and the module's container (debootstrap up to 900 s, the copy, the wheels, the install) is
# built in the first test's setup, which pytest-timeout's 600 s (pyproject) counts: a slow mirror
# would end the whole run ("thread" method) rather than this module
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BROKERD_NSPAWN_CACHE", "/var/cache/brokerd-test"))
IMAGE = CACHE / "root"


def _need(cmd: str) -> None:
    if shutil.which(cmd) is None:
        pytest.skip(f"{cmd} is not installed (scripts/setup installs it where it can); cannot boot a real systemd")


def _image() -> Path:
    """A cached Debian 12 root with python3; built once (about a minute)."""
    if (IMAGE / "usr/bin/python3").exists():
        return IMAGE
    _need("debootstrap")
    tmp = CACHE / "root.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["debootstrap", "--include=python3,python3-venv,dbus", "bookworm", str(tmp),
                        "http://deb.debian.org/debian"], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        pytest.skip(f"debootstrap failed, cannot build the container root: {r.stderr[-500:]}")
    tmp.rename(IMAGE)
    return IMAGE


def _sh(root: Path, script: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a script in the root, not booted (for installing)."""
    return subprocess.run(["systemd-nspawn", "-q", "--register=no", "--keep-unit", "-D", str(root), "/bin/sh", "-c", script],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def container(tmp_path_factory):
    _need("systemd-nspawn")
    base = _image()
    root = tmp_path_factory.mktemp("nspawn") / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)], check=True, timeout=600)
    src = root / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "_build", "__pycache__", "*.egg-info"))
    # wheels built here (the container reaches no package index by itself), installed offline there
    wheels = root / "wheels"
    w = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    if w.returncode != 0:
        pytest.fail(f"building the wheels failed:\n{w.stderr[-2000:]}")
    # the documented install script, as an administrator would run it
    r = _sh(root, "/src/scripts/install-system --wheels /wheels")
    if r.returncode != 0:
        pytest.fail(f"installing brokerd in the container failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    units = root / "etc/systemd/system"
    (units / "sockets.target.wants").mkdir(exist_ok=True)  # systemctl enable brokerd.socket, offline
    os.symlink("/etc/systemd/system/brokerd.socket", units / "sockets.target.wants/brokerd.socket")
    (root / "etc/brokerd/authorizers").mkdir(parents=True, exist_ok=True)
    (root / "etc/brokerd/authorizers/no-shadow.env").write_text(
        "COMMAND=sh /src/clients/examples/deny-shadow.sh\nSCOPE=system\n")
    boot = subprocess.Popen(["systemd-nspawn", "-q", "--boot", "--register=no", "--keep-unit", "-D", str(root)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        leader = _leader(boot.pid)
        c = Container(leader)
        wait_for(lambda: c.run("systemctl is-system-running").stdout.strip(), 90, "the container's systemd to come up",
                 until=lambda state: state in ("running", "degraded"), interval=0.5)
        yield c
    finally:
        # the container's systemd first: killing systemd-nspawn alone leaves it
        # running, reparented to the host's init (seen: a booted container left
        # behind by every run); its PID namespace dies with it
        kids = subprocess.run(["pgrep", "-P", str(boot.pid)], capture_output=True, text=True, timeout=120).stdout.split()
        for kid in map(int, kids):
            try:
                os.kill(kid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        boot.send_signal(signal.SIGKILL)
        boot.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _leader(nspawn_pid: int) -> int:
    """The container's PID 1 as seen from here: the child of systemd-nspawn running systemd."""
    def systemd_child() -> int | None:
        kids = subprocess.run(["pgrep", "-P", str(nspawn_pid)], capture_output=True, text=True, timeout=120).stdout.split()
        return next((int(k) for k in kids if text_of(f"/proc/{k}/comm").strip() == "systemd"), None)

    return wait_for(systemd_child, 60, "systemd-nspawn to start the container's systemd", interval=0.2)


class Container:
    def __init__(self, leader: int) -> None:
        self.leader = leader

    def run(self, cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", "-t", str(self.leader), "-a", "/bin/sh", "-c", cmd],
                              capture_output=True, text=True, timeout=timeout)


def test_socket_activation_and_notify(container):
    assert container.run("systemctl is-active brokerd.socket").stdout.strip() == "active"
    # the first client connection starts the service through the socket
    r = container.run("brokerctl stats")
    assert r.returncode == 0, r.stdout + r.stderr
    assert container.run("systemctl is-active brokerd.service").stdout.strip() == "active"
    show = container.run("systemctl show brokerd.service -p Type -p StatusText -p WatchdogUSec -p NRestarts").stdout
    assert "Type=notify" in show
    assert "session" in show  # STATUS= sent by the daemon over sd_notify
    assert "WatchdogUSec=30s" in show and "NRestarts=0" in show


def test_traced_session_through_installed_units(container):
    r = container.run("systemctl start brokerd-authorizer@no-shadow")
    wait_for(lambda: container.run("brokerctl authorizers").stdout, 30,
             f"the no-shadow authorizer to register (systemctl start: {r.returncode} {r.stderr.strip()})",
             until=lambda listed: "no-shadow" in listed, interval=0.1)
    r = container.run("brokerctl run -- cat /etc/hostname /etc/shadow; echo status=$?")
    assert "Permission denied" in r.stdout + r.stderr, r.stdout + r.stderr
    assert "status=1" in r.stdout
    # the daemon stayed up; systemd saw no failure
    assert container.run("systemctl is-failed brokerd.service").stdout.strip() != "failed"
