"""The libc calls Python's os module lacks (prctl, signalfd), through ctypes."""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Sequence


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _signalfd(signals: Sequence[int]) -> int:
    """A non-blocking signalfd for ``signals`` (which the caller has blocked)."""
    mask = 0
    for s in signals:
        mask |= 1 << (s - 1)
    sigset = ctypes.create_string_buffer(struct.pack("=Q", mask) + bytes(120))
    fd = _libc().signalfd(-1, sigset, os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "signalfd")
    return fd
