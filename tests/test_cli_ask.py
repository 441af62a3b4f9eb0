"""attach --ask: a bare Enter at the prompt must not allow the call (a
security prompt has no default answer); it says so and asks again."""

from __future__ import annotations

import errno
import io
import os

from brokerd.protocol.types import Call, Int, Reply, SkipFail, Step, Str, Sym, SyscallEvent

from brokerd.cli.operator import Operator


def _event() -> SyscallEvent:
    call = Call("openat", (Sym(("AT_FDCWD",)), Str(b"/etc/shadow"), Sym(("O_RDONLY",)), Int(0)))
    return SyscallEvent(1, os.getpid(), os.getpid(), "x86_64", call)


def test_bare_enter_is_not_an_answer():
    r, w = os.pipe()
    os.set_blocking(r, False)
    out = io.StringIO()
    op = Operator(frozenset({"openat"}), out=out, ask=True, tty=r)
    answers: list[Reply] = []
    op.ask(_event(), lambda reply, reason: answers.append(reply), 0.0)
    os.write(w, b"\n")
    op.on_readable(0.0)
    assert answers == []  # still waiting
    assert "Enter alone decides nothing" in out.getvalue()
    assert out.getvalue().count("[a]llow") == 2  # asked again
    os.write(w, b"d EACCES\n")
    op.on_readable(0.0)
    assert answers == [Reply(SkipFail(errno.EACCES))]
    os.write(w, b"a\n")  # nothing is waiting any more: ignored
    op.on_readable(0.0)
    assert len(answers) == 1
    assert Reply(Step()) not in answers
