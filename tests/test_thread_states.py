"""Thread states: one Enum and one table of moves (brokerd/tracer/states.py),
which the shim's record enforces; a move outside the table is reported,
never raised (the loop must not die with tracees under it)."""

from __future__ import annotations

import pytest
from conftest import brokerctl

from brokerd.tracer import states
from brokerd.tracer.states import MOVES, RUN, State, move


def test_every_state_has_its_row_and_is_reachable_from_run():
    assert set(MOVES) == set(State)
    seen, todo = {RUN}, [RUN]
    while todo:
        for nxt in MOVES[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(State)  # no state the shim could never be in


def test_a_move_outside_the_table_is_counted_not_raised():
    states.STRAYS.clear()
    try:
        assert move(State.RET, "step") is State.STEP  # not in the table: still made
        assert move(State.ASK, "step") is State.STEP and move(State.RET, "run") is RUN
        assert states.STRAYS == {("ret", "step"): 1}
        assert states.strays_text() == "ret -> step (1x)"
    finally:
        states.STRAYS.clear()


def test_no_such_state_is_a_bug_in_the_shim():
    with pytest.raises(KeyError):
        move(RUN, "runing")


def test_state_compares_as_its_name():
    assert State.ASK == "ask" and State.STOPPED in ("stopped", "run")


def test_a_session_that_steps_rewrites_and_checks_stays_in_the_table(cprog, rules, tmp_path):
    """Entry, step and exit walks, stable arguments (scratch injection, then the
    interrupted call replayed with its decision) and the check at exit, in one
    launched session: no move outside the table."""
    other = tmp_path / "other"
    other.write_text("o\n")
    authz = rules("syscall * getppid* => step", "sysret * getppid ok * => ok 7",
                  f'*openat *"/etc/hostname"* => openat AT_FDCWD, "{other}", O_RDONLY',
                  'syscall *openat* => step')  # stepped opens with stable paths, the first one replayed
    r = brokerctl("run", "-e", "trace=getppid,openat", "-a", authz, "--", "sh", "-c",
                  f"{cprog('calls')} getppid; {cprog('opener')} /etc/hostname /etc/os-release")
    assert "getppid ok 7" in r.stdout and "/etc/hostname ok o" in r.stdout, r.stdout + r.stderr
    assert "/etc/os-release ok" in r.stdout
    assert "outside the table" not in r.stderr, r.stderr


def test_docs_quote_the_table_as_it_is():
    from pathlib import Path

    src = Path(states.__file__).read_text()
    table = src[src.index("MOVES: Mapping"):src.index("}\n", src.index("MOVES: Mapping")) + 1]
    enum = src[src.index("class State(StrEnum):"):src.index("\n\n\nRUN, ASK")]
    docs = (Path(__file__).parent.parent / "docs" / "shim.md").read_text()
    assert table in docs and enum in docs, "docs/shim.md: quote brokerd/tracer/states.py again"
