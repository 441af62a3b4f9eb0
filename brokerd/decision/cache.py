"""The verdict cache: an answer an authorizer marked ``; cache`` settles the
same call again without a round trip (sans-IO).

"The same call" is the same stack position, ABI, call (name and every
argument as the authorizer saw it, after earlier rewrites) and the same
resolved ``pathN`` notes: a relative path spelled alike in two directories
is two calls.  Other notes (``caller``, ``realN``...) do not count, so that
a policy's answer about one file holds for that file.
"""

from __future__ import annotations

from brokerd.protocol.types import Reply, SyscallEvent

#: Bounded; when full it starts over (cheap, and an evicted entry only costs
#: one more round trip).
VERDICT_CACHE_SIZE = 4096


def cache_key(pos: int, event: SyscallEvent) -> tuple:
    """What a cached verdict of the authorizer at ``pos`` depends on."""
    notes = event.notes
    paths = tuple(n for n in notes if n[0].startswith("path")) if notes else ()
    return (pos, event.abi, event.call, paths)


class VerdictCache:
    """Replies marked ``; cache``, by :func:`cache_key`."""

    __slots__ = ("replies", "size")

    def __init__(self, size: int = VERDICT_CACHE_SIZE) -> None:
        #: (read directly by Stack.known_answer, once per question)
        self.replies: dict[tuple, Reply] = {}
        self.size = size

    def __len__(self) -> int:
        return len(self.replies)

    def get(self, pos: int, event: SyscallEvent) -> Reply | None:
        if not self.replies:  # the common case: nobody caches
            return None
        return self.replies.get(cache_key(pos, event))

    def put(self, pos: int, event: SyscallEvent, reply: Reply) -> None:
        """Keep ``reply`` (the answer of ``pos`` to ``event`` as it saw it)."""
        if len(self.replies) >= self.size:
            self.replies.clear()
        self.replies[cache_key(pos, event)] = reply
