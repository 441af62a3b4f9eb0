"""Where a client finds the daemon's socket, with nothing but ``os``.

Apart from :mod:`brokerd.daemon.wire` so that ``brokerctl run`` can tell,
before it imports the daemon client (and ``socket``, the codec...), that no
daemon can be listening: a plain run with no daemon then pays nothing for it.
"""

from __future__ import annotations

import os

SYSTEM_SOCKET = "/run/brokerd/brokerd.sock"
SOCKET_NAME = "brokerd.sock"


def user_socket() -> str | None:
    """A user's own daemon socket: ``$XDG_RUNTIME_DIR/brokerd.sock``."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, SOCKET_NAME) if xdg else None


def candidate_sockets() -> tuple[list[str], bool]:
    """Where a client looks for the daemon, and whether the user said so.

    ``BROKERD_SOCKET`` set: just that path (empty or ``none``: no daemon at
    all), explicitly.  Otherwise the user's own daemon (non-root), then the
    system one."""
    env = os.environ.get("BROKERD_SOCKET")
    if env is not None:
        return ([] if env in ("", "none") else [env]), True
    paths = []
    if os.geteuid() != 0:
        u = user_socket()
        if u:
            paths.append(u)
    paths.append(SYSTEM_SOCKET)
    return paths, False


def maybe_listening() -> bool:
    """False when connecting could only find no daemon: ``BROKERD_SOCKET=none``,
    or no candidate path exists (``connect`` would fail with ENOENT, EACCES or
    ENOTDIR, which the client takes as "no daemon" for paths it was not
    told).  A socket named explicitly counts even when missing: the client
    must say that it cannot reach it."""
    paths, explicit = candidate_sockets()
    if explicit:
        return bool(paths)
    return any(os.path.exists(p) for p in paths)
