"""Starting brokerctl's ``-a``/``--policy`` authorizers, and refusing to go on
when one of them cannot start.

An authorizer that is missing, exits or never answers the greeting would
otherwise leave a session whose every call gets a default verdict, reported
once per call.  brokerctl instead reads each authorizer's stderr through a
pipe while it starts, and if one failed, says so in ONE line (with the
authorizer's own last complaint, e.g. ``sh: 1: /nonexistent: not found``) and
never starts the program.  Once every authorizer is up, their stderr is
relayed to brokerctl's, line by line, as if they wrote it themselves.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from brokerd.decision.authorizer import Authorizer

#: how long to wait for a dead authorizer's exit status (it closed its output)
REAP_WAIT = 2.0
#: the longest part of an authorizer's own message quoted in the one line
QUOTE_MAX = 160
#: programs known to block-buffer their output when it is a pipe
BUFFERING = ("awk", "mawk", "gawk", "sed", "grep", "perl", "python", "python3", "ruby", "tr", "cut")


class StartError(Exception):
    """An authorizer could not start (or brokerctl was told to stop before
    the program started): one line, the program does not run; ``status`` is
    brokerctl's exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class Started:
    """One spawned authorizer and its stderr pipe."""

    command: str
    authorizer: Authorizer
    errfd: int
    held: bytearray

    def __init__(self, command: str, authorizer: Authorizer, errfd: int,
                 held: bytearray | None = None) -> None:
        self.command = command
        self.authorizer = authorizer
        self.errfd = errfd
        self.held = bytearray() if held is None else held


class Starter:
    """Spawns the authorizers, holds their stderr (and their log lines) while
    they start, then either raises :class:`StartError` or lets both through."""

    def __init__(self, out=None) -> None:
        self.out = out or sys.stderr
        self.started: list[Started] = []
        self.live = False
        self._held_log: list[str] = []
        self._unwatch: Callable[[int], None] = lambda fd: None

    def log(self, message: str) -> None:
        """The authorizers' log: held while starting (a failure says it all)."""
        if self.live:
            print(f"brokerd: {message}", file=self.out, flush=True)
        else:
            self._held_log.append(message)

    def spawn(self, command: str, **kw) -> Authorizer:
        from brokerd.decision.authorizer import spawn  # not needed by --help & co.

        r, w = os.pipe()
        try:
            a = spawn(command, stderr=w, log=self.log, **kw)
        finally:
            os.close(w)
        os.set_blocking(r, False)
        self.started.append(Started(command, a, r))
        return a

    def watch(self, add_reader: Callable[[int, Callable[[], None]], None],
              remove_reader: Callable[[int], None]) -> None:
        """Have the broker's loop read each authorizer's stderr."""
        self._unwatch = remove_reader
        for s in self.started:
            add_reader(s.errfd, partial(self._drain, s))

    def _drain(self, s: Started) -> None:
        while s.errfd >= 0:
            try:
                data = os.read(s.errfd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # it (and every child holding its stderr) is gone
                self._unwatch(s.errfd)
                os.close(s.errfd)
                s.errfd = -1
                return
            s.held += data
            if self.live:
                self._flush(s)

    def _flush(self, s: Started) -> None:
        if s.held:
            try:
                self.out.write(s.held.decode(errors="replace"))
                self.out.flush()
            except (OSError, ValueError):
                pass  # our stderr is gone: theirs has nowhere to go either
            s.held.clear()

    def check(self, timeout: float) -> None:
        """After the greeting: raise StartError naming the first authorizer
        that failed (killing the others), or go live."""
        for s in self.started:
            a = s.authorizer
            if a.mode != "dead":
                continue
            self._drain(s)
            why = self._why(s, timeout)
            for other in self.started:
                other.authorizer.kill("another authorizer failed to start")
            raise StartError(f"authorizer {s.command!r} {why}{_relative_hint(s.command)}; "
                             "the program was not started")
        self.live = True
        for message in self._held_log:
            self.log(message)
        for s in self.started:
            self._flush(s)

    def _why(self, s: Started, timeout: float) -> str:
        a = s.authorizer
        if a.dead_reason == "did not answer the greeting":
            return f"did not answer the greeting within {timeout:g}s{_buffering_hint(s.command)}"
        if not a.dead_reason.startswith(("closed its output", "read failed", "write failed")):
            return a.dead_reason  # the broker refused it, e.g. "sent a bad handshake: ..."
        status = _exit_status(a.pid) if a.pid else None
        said = _last_line(bytes(s.held))
        if status is None or (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM):
            # alive when it closed its output (we then sent it SIGTERM)
            what = f"stopped talking ({a.dead_reason})"
        elif os.WIFEXITED(status):
            what = f"exited with status {os.WEXITSTATUS(status)} before answering the greeting"
        else:
            what = f"was killed by {signal.Signals(os.WTERMSIG(status)).name} before answering the greeting"
        return f"{what} ({said})" if said else what

    def close(self) -> None:
        """The session ended: pass on what is left, stop reading."""
        for s in self.started:
            self._drain(s)
            self._flush(s)
            if s.errfd >= 0:
                self._unwatch(s.errfd)
                os.close(s.errfd)
                s.errfd = -1


def _exit_status(pid: int) -> int | None:
    end = time.monotonic() + REAP_WAIT
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return status
        if time.monotonic() > end:
            return None
        time.sleep(0.01)


def _last_line(text: bytes) -> str:
    lines = [ln.strip() for ln in text.decode(errors="replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= QUOTE_MAX else line[:QUOTE_MAX] + "..."


def _relative_hint(command: str) -> str:
    """A relative script path that does not exist here: say where it was looked for."""
    for word in command.split():
        if "/" in word and not word.startswith(("/", "-", "~")) and not os.path.exists(word):
            return f" ({word} is relative to the current directory, {os.getcwd()})"
    return ""


def _buffering_hint(command: str) -> str:
    words = command.split()
    prog = os.path.basename(words[0]) if words else ""
    if prog in ("mawk", "awk") and "interactive" not in command:
        return "; mawk buffers its output in a pipe: run it with -W interactive (or use fflush())"
    if prog in BUFFERING:
        return (f"; {prog} probably buffers its output in a pipe: make it flush each answer"
                " (e.g. stdbuf -oL, python -u, fflush())")
    return "; is its output buffered? An authorizer must flush each answer line"


__all__ = ["StartError", "Starter"]
