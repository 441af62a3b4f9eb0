"""Small readers of /proc/PID files the tracer needs (no caching: a pid's
facts change with exec, setuid and exit)."""

from __future__ import annotations


def status_field(pid: int, key: bytes) -> list[bytes] | None:
    """The words after ``key:`` in /proc/PID/status, or None."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(key + b":"):
                    return line.split()[1:]
    except OSError:
        pass
    return None


def tgid_of(tid: int) -> int:
    """The thread group (process) a thread belongs to; ``tid`` if unknown."""
    words = status_field(tid, b"Tgid")
    return int(words[0]) if words else tid


def uids_of(pid: int) -> tuple[int, ...]:
    """(real, effective, saved, fs) uids, or () if the process is gone."""
    words = status_field(pid, b"Uid")
    return tuple(int(w) for w in words) if words else ()


def pgrp_and_ppid(pid: int) -> tuple[int, int] | None:
    """(process group, parent pid) from /proc/PID/stat; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            rest = f.read().rsplit(b") ", 1)[1].split()
        return int(rest[2]), int(rest[1])
    except (OSError, IndexError, ValueError):
        return None
