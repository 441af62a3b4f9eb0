"""The one way a test waits for something: poll a probe until its value
will do, with a deadline.

Tests share a loaded machine with other test runs, so they never sleep a
fixed time hoping the thing has happened by then; and a deadline that
passes says what was awaited and the last value seen (a file's tail, a
screen, a process state), which is usually why."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: seconds between two probes: probes are cheap, and a test goes on promptly
INTERVAL = 0.02
#: how much of the last value a timeout shows (the end of a long text)
SHOWN = 2000
#: seconds a wait lasts unless the test says: generous, for a loaded machine
#: (a wait that succeeds costs no more for it)
TIMEOUT = 30.0


def wait_for(probe: Callable[[], T], timeout: float = TIMEOUT, what: str = "condition", *,
             until: Callable[[T], object] = bool, interval: float = INTERVAL) -> T:
    """Call ``probe()`` until ``until(value)`` holds (by default: the value is
    true) and return that value.  After ``timeout`` seconds fail with an
    AssertionError naming ``what`` and the last value; an exception from the
    probe (e.g. "the service died") ends the wait at once."""
    end = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last seen: {_shown(value)}")
        time.sleep(interval)


def text_of(path: Path | str) -> str:
    """The text of ``path``, "" while it does not exist (yet, or any more: a
    /proc file of a process gone): a probe for what a program under test
    writes or is."""
    try:
        return Path(path).read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def wait_for_text(path: Path | str, pattern: str, timeout: float = 60) -> str:
    """The text of ``path`` once ``pattern`` (multi-line: ^ is a line's
    start) matches in it."""
    return wait_for(lambda: text_of(path), timeout, f"{pattern!r} in {path}",
                    until=lambda text: re.search(pattern, text, re.M))


def _shown(value: object) -> str:
    if isinstance(value, str) and "\n" in value:
        return "\n" + value[-SHOWN:]
    text = repr(value)
    return text if len(text) <= SHOWN else "..." + text[-SHOWN:]
