"""Default verdicts: the answer a question gets when its authorizer cannot
give one (late, garbage, dead).  One table for every place that turns the
words ``deny``/``allow``/``kill`` into verdicts: the handshake's ``default=``,
brokerctl's ``--default``, the daemon's session offers."""

from __future__ import annotations

import errno

from brokerd.protocol.types import (
    Cont,
    Deliver,
    Kill,
    Reply,
    SignalEvent,
    SkipFail,
    SyscallEvent,
    Verdict,
)

#: The words, and what a syscall entry gets for each (deny, the default, is EPERM).
DEFAULT_VERDICTS: dict[str, Verdict] = {"deny": SkipFail(errno.EPERM), "kill": Kill(), "allow": Cont()}
DENY = DEFAULT_VERDICTS["deny"]

#: Calls a default verdict never denies: refusing them cannot protect
#: anything and leaves the program unable to end (it would crash instead).
NEVER_DENIED = frozenset({"exit", "exit_group", "rt_sigreturn", "sigreturn", "restart_syscall"})


def default_verdict(word: str | None) -> Verdict:
    """The verdict a default word stands for; anything else is deny (fail closed)."""
    return DEFAULT_VERDICTS.get(word or "deny", DENY)


def default_reply(kind: type, name: str, verdict: Verdict) -> Reply:
    """The safe answer to an event of ``kind`` (about syscall ``name``) when
    its authorizer cannot give one: the authorizer's default verdict for a
    call, keep the result for a sysret, deliver a signal as the kernel would."""
    if kind is SyscallEvent:
        return Reply(Cont() if name in NEVER_DENIED else verdict)
    if kind is SignalEvent:
        return Reply(Deliver())
    return Reply(Cont())
