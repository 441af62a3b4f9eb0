"""Named constants of the protocol: errno and signal names (x86_64 Linux values).

The codec writes ``fail EIO`` and ``SIGINT`` by name and accepts names or
numbers.  Other flag sets (open flags, AT_*, socket families...) live beside
this in :mod:`brokerd.protocol.args`.
"""

from __future__ import annotations

import errno as _errno
import signal as _signal

#: errno name -> number, for every errno Linux defines (aliases included).
ERRNO: dict[str, int] = {name: getattr(_errno, name) for name in dir(_errno) if name.startswith("E")
                         and isinstance(getattr(_errno, name), int)}
#: number -> canonical name (the one Python's errno.errorcode gives).
ERRNO_NAMES: dict[int, str] = dict(_errno.errorcode)

#: signal name -> number, including SIGRTMIN+N style real-time names.
SIGNALS: dict[str, int] = {s.name: int(s) for s in _signal.Signals}
SIGNAL_NAMES: dict[int, str] = {int(s): s.name for s in _signal.Signals}
for _n in range(_signal.SIGRTMIN + 1, _signal.SIGRTMAX):
    SIGNALS[f"SIGRTMIN+{_n - _signal.SIGRTMIN}"] = _n
    SIGNAL_NAMES.setdefault(_n, f"SIGRTMIN+{_n - _signal.SIGRTMIN}")

#: The largest errno value the kernel can return (-4095..-1 are errors).
MAX_ERRNO = 4095


def errno_name(n: int) -> str:
    """``5`` -> ``"EIO"``; unknown numbers come back as decimal text."""
    return ERRNO_NAMES.get(n, str(n))


def errno_number(token: str) -> int:
    """``"EIO"`` or ``"5"`` -> 5; raises ValueError for an unknown name or out-of-range number."""
    if token.isdigit():
        n = int(token)
    elif token in ERRNO:
        n = ERRNO[token]
    else:
        raise ValueError(f"unknown errno {token!r}")
    if not 1 <= n <= MAX_ERRNO:
        raise ValueError(f"errno {n} out of range 1..{MAX_ERRNO}")
    return n


def signal_name(n: int) -> str:
    """``2`` -> ``"SIGINT"``; unknown numbers come back as decimal text."""
    return SIGNAL_NAMES.get(n, str(n))


def signal_number(token: str) -> int:
    """``"SIGINT"``, ``"INT"`` or ``"2"`` -> 2; raises ValueError otherwise."""
    if token.isdigit():
        n = int(token)
    else:
        name = token if token.startswith("SIG") else "SIG" + token
        if name not in SIGNALS:
            raise ValueError(f"unknown signal {token!r}")
        n = SIGNALS[name]
    if not 1 <= n <= 64:
        raise ValueError(f"signal {n} out of range 1..64")
    return n
