"""Helpers for the daemon tests: a real ``brokerd`` process on a real Unix
socket (readiness through sd_notify, as systemd sees it), registered
authorizers through ``brokerctl serve``, brokerctl runs pointed at it, and
processes of other users."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from waiting import read_rest, wait_for

BROKERD = [sys.executable, "-m", "brokerd.daemon.main"]
BROKERCTL = [sys.executable, "-m", "brokerd.cli.main"]
SITE = sysconfig.get_paths()["purelib"]  # the venv's, with the editable brokerd
# A Python another uid can execute (the venv's interpreter may live under /root).
OTHER_PY = "/usr/bin/python3.11" if os.path.exists("/usr/bin/python3.11") else sys.executable
ROOT = Path(__file__).resolve().parent.parent
#: where each part of the package comes from (pyproject's package-dir)
PACKAGE_DIRS = {"brokerd": "brokerd", "brokerd/protocol": "protocol", "brokerd/clients": "clients"}
#: the venv's packages brokerctl needs at run time (not the test tools)
DEPENDENCIES = ("trio", "outcome", "sniffio", "attr", "attrs", "idna", "sortedcontainers", "ptrace", "elftools")
_readable: list[str] = []


def readable_copy() -> str:
    """A copy of brokerd (laid out as installed) and its dependencies that
    other uids can read, made once per test session: the checkout and its
    venv may sit in a 0700 home, where another user cannot import them."""
    import atexit
    import shutil
    import tempfile

    if _readable:
        return _readable[0]
    d = Path(tempfile.mkdtemp(prefix="brokerd-readable-", dir="/tmp"))
    atexit.register(shutil.rmtree, d, True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for dest, src in PACKAGE_DIRS.items():  # parents first: brokerd, then the parts it contains
        shutil.copytree(ROOT / src, d / dest, ignore=skip, dirs_exist_ok=True)
    for name in DEPENDENCIES:
        if (Path(SITE) / name).is_dir():
            shutil.copytree(Path(SITE) / name, d / name, ignore=skip)
    for path in [d, *d.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    _readable.append(str(d))
    return str(d)


def release_fifo(fifo) -> bool:
    """Let a program blocked opening ``fifo`` for reading go on (if alive);
    False when nobody has it open for reading (yet): poll it with waiting.wait_for."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        return False
    return True


class Notify:
    """A NOTIFY_SOCKET like systemd's: a datagram socket (path or abstract)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addr = path
        self.sock.bind(b"\0" + path[1:].encode() if path.startswith("@") else path)
        self.messages: list[str] = []

    def read(self, timeout: float) -> str | None:
        self.sock.settimeout(timeout)
        try:
            msg = self.sock.recv(65536).decode()
        except TimeoutError:
            return None
        self.messages.append(msg)
        return msg

    def wait(self, needle: str, timeout: float = 10.0) -> str:
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {needle!r} from sd_notify; got {self.messages}")
            msg = self.read(left)
            if msg is not None and needle in msg.split("\n"):
                return msg

    def close(self) -> None:
        self.sock.close()


class Daemon:
    """``brokerd --socket PATH`` in a subprocess, ready when it says READY=1."""

    def __init__(self, root: Path, *args: str, config: str = "", env: dict | None = None, user: bool = False,
                 nofile: int | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.socket = str(root / "brokerd.sock")
        self.config = root / "brokerd.toml"
        self.config.write_text(config)
        self.log = root / "brokerd.log"
        self.notify = Notify(str(root / "notify.sock"))
        e = dict(os.environ, NOTIFY_SOCKET=self.notify.addr)
        e.pop("BROKERD_SOCKET", None)
        e.update(env or {})
        self._logf = open(self.log, "w")  # noqa: SIM115
        cmd = [*BROKERD, "--system" if not user else "--user", "--socket", self.socket,
               "--config", str(self.config), *args]
        limit = None if nofile is None else (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
        self.proc = subprocess.Popen(cmd, stdout=self._logf, stderr=subprocess.STDOUT, env=e, preexec_fn=limit)
        try:
            self.notify.wait("READY=1")
        except AssertionError:
            self.stop()
            raise AssertionError(f"brokerd did not start: {self.log.read_text()}") from None

    @property
    def env(self) -> dict:
        return {"BROKERD_SOCKET": self.socket}

    def ctl(self, *args: str, user: int | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
        return run_ctl(*args, env=self.env, user=user, timeout=timeout)

    def query(self, what: str, user: int | None = None):
        r = self.ctl(what, "--json", user=user)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def rss(self) -> int:
        """The daemon's resident memory, in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def logtext(self) -> str:
        self._logf.flush()
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=60)
        self._logf.close()
        self.notify.close()
        return self.proc.returncode


def as_user(uid: int):
    """preexec_fn: become ``uid`` (group too) for good."""

    def become() -> None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    return become


def _cmd(module: str, args: tuple[str, ...], user: int | None) -> list[str]:
    if user is None:
        return [sys.executable, "-m", module, *args]
    # another uid cannot run the venv's interpreter (it lives under /root)
    # nor read the checkout: the system one, with a readable copy first
    boot = (f"import sys, runpy; sys.path.insert(0, {readable_copy()!r}); sys.argv[0] = {module!r}; "
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")
    return [OTHER_PY, "-c", boot, *args]


def python_for(user: int | None) -> list[str]:
    """How to run a Python script as ``user`` (or as us)."""
    if user is None:
        return [sys.executable, "-u"]
    return [OTHER_PY, "-u", "-c",
            f"import sys, runpy; sys.path.insert(0, {readable_copy()!r}); sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')"]


def run_ctl(*args: str, env: dict | None = None, user: int | None = None, timeout: float = 30,
            input: str | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.pop("BROKERD_SOCKET", None)
    e.update(env or {})
    return subprocess.run(_cmd("brokerd.cli.main", args, user), capture_output=True, text=True, env=e,
                          timeout=timeout, input=input, preexec_fn=as_user(user) if user is not None else None,
                          cwd="/")


def popen_ctl(*args: str, env: dict | None = None, user: int | None = None, **kw) -> subprocess.Popen:
    e = dict(os.environ)
    e.pop("BROKERD_SOCKET", None)
    e.update(env or {})
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(_cmd("brokerd.cli.main", args, user), text=True, env=e,
                            preexec_fn=as_user(user) if user is not None else None, cwd="/", **kw)


class Served:
    """``brokerctl serve --once ...`` registered with a daemon."""

    def __init__(self, daemon: Daemon, name: str, command: str, *opts: str, user: int | None = None) -> None:
        self.daemon = daemon
        self.name = name
        before = {a["id"] for a in daemon.query("authorizers")}
        self.proc = popen_ctl("serve", "--once", "--name", name, *opts, "--", command, env=daemon.env, user=user,
                              start_new_session=True, stdout=subprocess.DEVNULL)

        def registered():
            if self.proc.poll() is not None:
                raise AssertionError(f"serve {name} exited: {read_rest(self.proc.stderr)}")
            return [a for a in daemon.query("authorizers") if a["name"] == name and a["id"] not in before]

        self.id = wait_for(registered, what=f"authorizer {name} to register")[0]["id"]

    def kill(self) -> None:
        """SIGKILL serve and every instance it started (its process group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.proc.stderr.close()


def shared_dir(tmp_path: Path) -> Path:
    """A directory other uids can reach (pytest's tmp_path is private to root)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="brokerd-test-", dir="/tmp"))
    d.chmod(0o755)
    (tmp_path / "shared").symlink_to(d)
    return d


def connect_as(uid: int | None, path: str, n: int, timeout: float = 5.0) -> list[socket.socket | None]:
    """``n`` connections to ``path`` made by a child process running as
    ``uid`` (the daemon's SO_PEERCRED is the connecting process's), handed
    back to us over SCM_RIGHTS; None for a connection that failed."""
    mine, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            mine.close()
            if uid is not None:
                as_user(uid)()
            for _ in range(n):
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.setblocking(False)
                end = time.monotonic() + timeout
                while True:
                    try:
                        c.connect(path)
                        ok = True
                    except BlockingIOError:  # the listen backlog is full: the daemon is behind
                        if time.monotonic() < end:
                            time.sleep(0.005)
                            continue
                        ok = False
                    except OSError:
                        ok = False
                    break
                if ok:
                    c.setblocking(True)
                    socket.send_fds(theirs, [b"+"], [c.fileno()])
                else:
                    theirs.sendall(b"-")
                c.close()
        finally:
            os._exit(0)
    theirs.close()
    out: list[socket.socket | None] = []
    with mine:
        for _ in range(n):
            msg, fds, _flags, _addr = socket.recv_fds(mine, 1, 1)
            if not msg:
                break
            out.append(socket.socket(fileno=fds[0]) if fds else None)
    os.waitpid(pid, 0)
    return out


def read_lines(sock: socket.socket, k: int = 1, timeout: float = 10.0) -> list[bytes]:
    """The next ``k`` lines the daemon sends on ``sock`` (fewer if it closes
    first or ``timeout`` passes)."""
    sock.settimeout(timeout)
    buf = b""
    while buf.count(b"\n") < k:
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        except ConnectionResetError:
            data = b""
        if not data:
            break
        buf += data
    return [line + b"\n" for line in buf.split(b"\n")[:-1]][:k] or ([buf] if buf else [])


def tracer_session(sock: socket.socket, argv: str = "prog") -> bytes:
    """Greet as a shim and ask for a session: the daemon's answer line
    (``ok ...`` or ``error ...``; b"" if it closed)."""
    sock.sendall(b"hello 1 role=tracer pid=1\nsession mode=run argv=" + argv.encode() + b"\n")
    got = read_lines(sock, 2)
    if got and not got[0].startswith(b"hello "):
        return got[0]
    return got[1] if len(got) > 1 else b""


def raise_nofile() -> None:
    """Let this test process hold a few hundred connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
