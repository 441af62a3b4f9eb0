"""``brokerd``: the daemon (control plane) for the whole machine or for one user.

    brokerd [--socket PATH] [--config FILE] [--audit-log FILE] [--audit-journal]
            [--group NAME] [--on-failure kill|deny|allow] [--deadline SECONDS]

Run by root (normally as the systemd service ``brokerd.service``) it listens
on /run/brokerd/brokerd.sock; run by a user, on $XDG_RUNTIME_DIR/brokerd.sock.
With socket activation (LISTEN_FDS/LISTEN_PID) it uses fd 3 instead.  It
speaks sd_notify (READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1),
reloads its configuration on SIGHUP without dropping sessions, and stops on
SIGTERM or SIGINT.  See docs/daemon.md.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import os
import resource
import signal
import socket
import stat
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import replace

import trio

from . import sdnotify, wire
from .server import Config, Server

PROG = "brokerd"
SYSTEM_CONFIG = "/etc/brokerd/brokerd.toml"
DEFAULT_GROUP = "brokerd"
CONFIG_KEYS = {
    "socket_group": str, "socket_mode": (str, int), "audit_log": str, "audit_journal": bool,
    "journal_socket": str, "default_failure": str, "authorizer_deadline": (int, float),
    "max_connections_per_uid": int, "max_sessions_per_uid": int, "max_partial_bytes_per_uid": int,
    "audit_queue_per_uid": int, "audit_bytes_per_uid": int, "limit_root": bool,
}


class StartError(Exception):
    pass


def _level_prefix(level: int) -> str:
    # stderr is the journal under systemd: a <N> prefix sets the priority
    return f"<{level}>" if os.environ.get("JOURNAL_STREAM") else ""


def log(msg: str, level: int = 6) -> None:
    print(f"{_level_prefix(level)}{PROG}: {msg}", file=sys.stderr, flush=True)


def default_config_path(system: bool) -> str | None:
    if system:
        return SYSTEM_CONFIG
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "brokerd", "brokerd.toml")


def load_config(path: str | None, explicit: bool, overrides: dict) -> Config:
    """The configuration file (TOML) with the command line's options on top.
    A missing default file is no error; a bad file always is."""
    data: dict = {}
    if path:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            if explicit:
                raise StartError(f"config file {path} does not exist") from None
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise StartError(f"config file {path}: {e}") from None
    cfg = Config()
    for key, value in data.items():
        kind = CONFIG_KEYS.get(key)
        if kind is None:
            raise StartError(f"config file {path}: unknown key {key!r} (known: {', '.join(CONFIG_KEYS)})")
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise StartError(f"config file {path}: {key} has the wrong type")
        if key == "socket_mode":
            try:
                value = int(value, 8) if isinstance(value, str) else int(value)
            except ValueError:
                raise StartError(f"config file {path}: socket_mode must be octal like \"0660\"") from None
        if key in ("audit_log", "socket_group") and value == "":
            value = None
        setattr(cfg, key, value)
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    try:
        cfg.check()
    except ValueError as e:
        raise StartError(f"config: {e}") from None
    return cfg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="The brokerd daemon: registry of authorizers, sessions, "
                                "access control and audit for the brokerd syscall broker.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--system", dest="system", action="store_true", default=None,
                      help="the machine's daemon: every user may connect (default when run as root)")
    mode.add_argument("--user", dest="system", action="store_false",
                      help="a user's own daemon: only its uid (and root) may connect (default for non-root)")
    p.add_argument("--socket", metavar="PATH",
                   help=f"listen here (default: {wire.SYSTEM_SOCKET} for root, $XDG_RUNTIME_DIR/brokerd.sock for a"
                        " user; ignored under socket activation)")
    p.add_argument("--config", metavar="FILE",
                   help=f"configuration file (default {SYSTEM_CONFIG} for root, ~/.config/brokerd/brokerd.toml)")
    p.add_argument("--audit-log", metavar="FILE", help="append one JSON line per decision to FILE")
    p.add_argument("--audit-journal", action="store_true", default=None,
                   help="send one journal entry per decision (structured BROKERD_* fields)")
    p.add_argument("--journal-socket", metavar="PATH", help=argparse.SUPPRESS)
    p.add_argument("--group", metavar="NAME",
                   help=f"group that may connect (socket mode 0660; default {DEFAULT_GROUP!r} if it exists)")
    p.add_argument("--on-failure", dest="default_failure", choices=wire.FAILURE_MODES,
                   help="failure mode of sessions that do not choose one (default kill)")
    p.add_argument("--deadline", dest="authorizer_deadline", type=float, metavar="SECONDS",
                   help="deadline of a registered authorizer's answer, unless it sets its own (default 5)")
    return p


def _socket_access(cfg: Config, system: bool) -> tuple[int, int | None, str]:
    """(mode, gid or None, description) for the listening socket."""
    if not system:
        return (cfg.socket_mode if cfg.socket_mode is not None else 0o600), None, "owner only"
    name = cfg.socket_group if cfg.socket_group is not None else DEFAULT_GROUP
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        if cfg.socket_group is not None:
            log(f"socket group {name!r} does not exist; the socket is open to every user", 4)
        return (cfg.socket_mode if cfg.socket_mode is not None else 0o666), None, "every user"
    return (cfg.socket_mode if cfg.socket_mode is not None else 0o660), gid, f"group {name}"


def apply_socket_access(path: str, cfg: Config, system: bool) -> str:
    mode, gid, what = _socket_access(cfg, system)
    if gid is not None:
        os.chown(path, -1, gid)
    os.chmod(path, mode)
    return f"{path} mode {mode:04o} ({what})"


def bind_socket(path: str, cfg: Config) -> socket.socket:
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise StartError(f"{path} exists and is not a socket; not touching it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: nobody listens
        else:
            raise StartError(f"another brokerd is already listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)  # never reachable by others before the chmod
    try:
        sock.bind(path)
    except OSError as e:
        sock.close()
        raise StartError(f"cannot listen on {path}: {e.strerror}") from None
    finally:
        os.umask(old)
    sock.listen(socket.SOMAXCONN)
    return sock


class Daemon:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.system = args.system if args.system is not None else os.geteuid() == 0
        self.config_path = args.config or default_config_path(self.system)
        self.config = self._load()
        self.socket_path: str | None = None
        self.activated = False
        self.listener = self._listen()

    def _overrides(self) -> dict:
        a = self.args
        return {"audit_log": a.audit_log, "audit_journal": a.audit_journal, "socket_group": a.group,
                "journal_socket": a.journal_socket, "default_failure": a.default_failure,
                "authorizer_deadline": a.authorizer_deadline}

    def _load(self) -> Config:
        return load_config(self.config_path, bool(self.args.config), self._overrides())

    def _listen(self) -> socket.socket:
        fds = sdnotify.listen_fds()
        if fds:
            self.activated = True
            for extra in fds[1:]:
                os.close(extra)
            sock = socket.socket(fileno=fds[0])
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise StartError("the activation socket (fd 3) must be a Unix stream socket")
            self.socket_path = sock.getsockname() or None
            log(f"socket activation: listening on {self.socket_path or 'fd 3'}")
            return sock
        path = self.args.socket or (wire.SYSTEM_SOCKET if self.system else wire.user_socket())
        if not path:
            raise StartError("XDG_RUNTIME_DIR is not set: pass --socket PATH")
        sock = bind_socket(path, self.config)
        self.socket_path = path
        self._inode = os.stat(path).st_ino
        log(f"listening on {apply_socket_access(path, self.config, self.system)}")
        return sock

    def cleanup(self) -> None:
        self.listener.close()
        if not self.activated and self.socket_path:
            with contextlib.suppress(OSError):
                if os.stat(self.socket_path).st_ino == self._inode:
                    os.unlink(self.socket_path)

    def reload(self, server: Server) -> None:
        sdnotify.notify("RELOADING=1", "STATUS=reloading configuration")
        try:
            cfg = self._load()
        except StartError as e:
            log(f"reload failed, keeping the old configuration: {e}", 3)
        else:
            self.config = cfg
            server.apply_config(cfg)
            if not self.activated and self.socket_path:
                try:
                    apply_socket_access(self.socket_path, cfg, self.system)
                except OSError as e:
                    log(f"cannot change the socket's access: {e.strerror}", 4)
            log(f"configuration reloaded from {self.config_path}")
        sdnotify.notify("READY=1", f"STATUS={server.status()}")

    async def main(self) -> None:
        with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
            server = Server(self.config, self.listener, log=log,
                            on_change=lambda: sdnotify.notify(f"STATUS={server.status()}"),
                            only_uid=None if self.system else os.geteuid())
            async with trio.open_nursery() as nursery:
                await nursery.start(server.run)
                sdnotify.notify("READY=1", f"STATUS={server.status()}", f"MAINPID={os.getpid()}")
                interval = sdnotify.watchdog_interval()
                if interval:
                    nursery.start_soon(self._watchdog, interval)
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        self.reload(server)
                    else:
                        log(f"{signal.Signals(signum).name}: stopping; "
                            f"{len(server.registry.sessions)} session(s) lose their daemon")
                        sdnotify.notify("STOPPING=1", "STATUS=stopping")
                        break
                nursery.cancel_scope.cancel()

    @staticmethod
    async def _watchdog(interval: float) -> None:
        while True:
            sdnotify.notify("WATCHDOG=1")
            await trio.sleep(interval)


def raise_nofile() -> None:
    """Use the hard limit of descriptors (the unit's LimitNOFILE): every
    connection holds one, and running out only pauses accept()."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    raise_nofile()
    try:
        daemon = Daemon(args)
    except StartError as e:
        log(str(e), 3)
        return 1
    except OSError as e:
        log(f"{e.strerror or e}", 3)
        return 1
    try:
        trio.run(daemon.main)
    except KeyboardInterrupt:
        pass
    finally:
        daemon.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
