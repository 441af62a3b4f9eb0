"""The one way a test waits for something: poll a probe until its value
will do, with a deadline.

Tests share a loaded machine with other test runs, so they never sleep a
fixed time hoping the thing has happened by then; and a deadline that
passes says what was awaited and the last value seen (a file's tail, a
screen, a process state), which is usually why."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, AnyStr, TypeVar

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


def read_line(stream: IO[AnyStr], timeout: float = TIMEOUT, what: str = "a line") -> AnyStr:
    """``stream.readline()`` (a child's pipe) with a deadline: a program that
    hangs without writing its line fails the test instead of blocking it
    until pytest-timeout stops the whole run."""
    return _within(stream.readline, timeout, what)


def read_rest(stream: IO[AnyStr], timeout: float = TIMEOUT) -> AnyStr | str:
    """``stream.read()`` (to the end of a child's pipe) with a deadline; for
    failure messages and finished processes: on timeout a note instead of
    the text (a grandchild may hold the pipe open)."""
    try:
        return _within(stream.read, timeout, "the end of the output")
    except AssertionError as e:
        return f"<{e}>"


def _within(call: Callable[[], T], timeout: float, what: str) -> T:
    """``call()`` in a thread, waited for at most ``timeout`` seconds (a
    blocked read cannot be interrupted; the thread ends when the test's
    teardown kills the writer)."""
    box: list = []

    def run() -> None:
        try:
            box.append((True, call()))
        except BaseException as e:  # handed to the caller
            box.append((False, e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if not box:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _shown(value: object) -> str:
    if isinstance(value, str) and "\n" in value:
        return "\n" + value[-SHOWN:]
    text = repr(value)
    return text if len(text) <= SHOWN else "..." + text[-SHOWN:]
