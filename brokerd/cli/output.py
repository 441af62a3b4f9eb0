"""Writing to a terminal or pipe that may go away (``brokerctl ... | head``).

When the reader is gone, the descriptor is pointed at /dev/null: later
writes (and the interpreter's final flush, which would otherwise turn the
exit status into 120) succeed silently, and the caller learns it once.
"""

from __future__ import annotations

import os
from typing import TextIO


def say(stream: TextIO, text: str, end: str = "\n") -> bool:
    """Write ``text`` and flush; False when the reader is gone (EPIPE)."""
    try:
        stream.write(text + end)
        stream.flush()
        return True
    except BrokenPipeError:
        silence(stream)
        return False
    except (OSError, ValueError):  # closed, or another I/O error: nothing more to say there
        return False


def silence(stream: TextIO) -> None:
    """Point ``stream``'s descriptor at /dev/null (its reader is gone)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
