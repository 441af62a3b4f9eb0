"""brokerd.spin on one CPU: a wait gives the CPU up once (sched_yield) so
the other side, which shares that CPU, can answer within the wait instead of
after the loop's epoll_wait (``brokerctl --cpu N``)."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys

import pytest

from brokerd import spin

#: the other side: echoes each byte it reads (b"q" or EOF ends it)
ECHO = "import os\nwhile (c := os.read(0, 1)) not in (b'', b'q'):\n    os.write(1, c)\n"


@contextlib.contextmanager
def _pinned(cpu: int):
    """This process on CPU ``cpu`` only while the block runs."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


def _round_trips(s: spin.Spin, n: int) -> int:
    """Send a byte to an echoing process on this process's CPU ``n`` times,
    waiting for each echo with ``s``; how many echoes the wait took."""
    cpu = min(os.sched_getaffinity(0))
    p = subprocess.Popen([sys.executable, "-c", ECHO], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert p.stdin is not None and p.stdout is not None
    out, into = p.stdout.fileno(), p.stdin.fileno()
    os.set_blocking(out, False)

    def echoed() -> bytes | None:
        try:
            return os.read(out, 1) or None
        except BlockingIOError:
            return None

    def wait_echo() -> None:
        assert select.select([out], [], [], 30)[0], "the echoing process did not answer"
        os.read(out, 1)

    hits = 0
    try:
        os.sched_setaffinity(p.pid, {cpu})
        with _pinned(cpu):
            os.write(into, b"x")
            wait_echo()  # it runs
            for _ in range(n):
                os.write(into, b"x")
                if s.until(echoed) is not None:
                    hits += 1
                else:
                    wait_echo()
    finally:
        with contextlib.suppress(OSError):
            os.write(into, b"q")
        p.wait(timeout=30)
    return hits


def test_on_one_cpu_a_wait_yields_and_takes_the_answer_of_a_process_on_that_cpu():
    """The other side shares the waiter's only CPU: a wait whose spin is far
    too short to see it (1 ns, no back-off) still takes nearly every answer,
    because it gives the CPU up once first.  (Without the yield the same wait
    took 0 of 200 in runs with two busy loops on that CPU.)"""
    hits = _round_trips(spin.Spin(budget_ns=1, max_skip=0, yields=True), 200)
    assert hits >= 150, f"the wait took {hits} of 200 answers"


def test_spin_yields_only_on_one_cpu_and_never_with_spinning_off(monkeypatch):
    """Spin() yields where the process may run on one CPU only (its affinity,
    as ``brokerctl --cpu N`` sets it); not with more CPUs, where the other
    side runs beside it and the spin sees it; never with BROKERD_SPIN_US=0."""
    monkeypatch.delenv("BROKERD_SPIN_US", raising=False)
    cpus = os.sched_getaffinity(0)
    with _pinned(min(cpus)):
        assert spin.one_cpu()
        assert spin.Spin().yields
        monkeypatch.setenv("BROKERD_SPIN_US", "0")
        assert not spin.Spin().yields
    if len(cpus) < 2:
        pytest.skip("the two-CPU half needs 2 CPUs in this process's affinity")
    monkeypatch.delenv("BROKERD_SPIN_US")
    assert not spin.one_cpu()
    assert not spin.Spin().yields
