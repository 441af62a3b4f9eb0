"""systemd integration without libsystemd: sd_notify, socket activation and
the journal's native protocol, each a few lines of plain sockets.

* ``notify("READY=1", "STATUS=...")``: one datagram to ``$NOTIFY_SOCKET``
  (a path, or ``@name`` for the abstract namespace).  Never blocks; a no-op
  when the variable is unset.
* ``listen_fds()``: the descriptors systemd passed (``LISTEN_FDS``, starting
  at fd 3) if ``LISTEN_PID`` is this process.
* ``watchdog_interval()``: half of ``WATCHDOG_USEC`` (when ``WATCHDOG_PID`` is
  unset or is us), the period at which to send ``WATCHDOG=1``.
* ``journal_send(fields)``: one entry to the journal socket, ``KEY=value``
  lines (the binary form for values with newlines).
"""

from __future__ import annotations

import os
import socket
import struct

LISTEN_FDS_START = 3
JOURNAL_SOCKET = "/run/systemd/journal/socket"


def _address(path: str) -> str | bytes:
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


def notify(*lines: str, env: os._Environ | dict | None = None) -> bool:
    """Send ``lines`` (``KEY=VALUE``) to the service manager; True if sent."""
    env = os.environ if env is None else env
    path = env.get("NOTIFY_SOCKET")
    if not path or path[0] not in "/@":
        return False
    msg = "\n".join(lines).encode("utf-8", "replace")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.sendto(msg, socket.MSG_DONTWAIT, _address(path))
        except OSError:
            return False
    return True


def listen_fds(unset: bool = True) -> list[int]:
    """Descriptors passed by socket activation (empty if none are for us).

    The variables are removed (``unset``) so children do not mistake them
    for theirs, as sd_listen_fds(1) does."""
    try:
        pid = int(os.environ.get("LISTEN_PID", ""))
        n = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    if unset:
        for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(k, None)
    if pid != os.getpid() or n <= 0:
        return []
    fds = list(range(LISTEN_FDS_START, LISTEN_FDS_START + n))
    for fd in fds:
        os.set_inheritable(fd, False)
    return fds


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half the timeout), or None."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    wpid = os.environ.get("WATCHDOG_PID")
    if usec <= 0 or (wpid and wpid != str(os.getpid())):
        return None
    return usec / 2e6


def _journal_field(key: str, value: object) -> bytes:
    k = key.upper().encode("ascii")
    v = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
    if b"\n" in v:
        return k + b"\n" + struct.pack("<Q", len(v)) + v + b"\n"
    return k + b"=" + v + b"\n"


def journal_message(fields: dict[str, object]) -> bytes:
    return b"".join(_journal_field(k, v) for k, v in fields.items() if v is not None)


class Journal:
    """A datagram socket to the journal; ``send`` never blocks (a full
    journal queue drops the entry and counts it)."""

    def __init__(self, path: str = JOURNAL_SOCKET) -> None:
        self.path = path
        self.dropped = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @staticmethod
    def available(path: str = JOURNAL_SOCKET) -> bool:
        try:
            import stat

            return stat.S_ISSOCK(os.stat(path).st_mode)
        except OSError:
            return False

    def send(self, fields: dict[str, object]) -> bool:
        try:
            self._sock.sendto(journal_message(fields), socket.MSG_DONTWAIT, self.path)
        except OSError:
            self.dropped += 1
            return False
        return True

    def close(self) -> None:
        self._sock.close()
