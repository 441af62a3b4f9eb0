"""What the kernel settles never stops: counted with BROKERD_STOP_COUNTS
(brokerd/tracer/stopcount.py), the shim's per-syscall stop counter."""

from __future__ import annotations

import json

from conftest import brokerctl

CONT = "while read -r l; do echo cont; done"


def _stops(tmp_path, *args: str) -> tuple[dict, object]:
    out = tmp_path / "stops.jsonl"
    r = brokerctl("run", *args, env={"BROKERD_STOP_COUNTS": str(out)})
    lines = out.read_text().splitlines() if out.exists() else []
    assert len(lines) == 1, (r.stdout, r.stderr)
    return json.loads(lines[0]), r


def test_stop_counts_name_the_calls_that_stopped(tmp_path):
    rep, r = _stops(tmp_path, "-e", "trace=openat", "-a", CONT, "--", "cat", "/dev/null")
    assert r.returncode == 0, r.stderr
    assert rep["stops"]["openat"] >= 1  # cat's own opens stopped: the authorizer subscribed to them
    assert "read" not in rep["stops"]  # nobody asked about read: it never stopped
    assert rep["total"] == sum(rep["stops"].values())
    assert rep["broker_cpu_s"] > 0


def test_scratch_region_calls_do_not_stop(tmp_path, cprog):
    # the region is sealed in the tracee (mseal): munmap, mremap and
    # mmap(MAP_FIXED) run without a stop, and still cannot touch the region
    # (test_toctou.py::test_scratch_region_cannot_be_changed)
    rep, r = _stops(tmp_path, "-e", "trace=openat", "-a", CONT, "--", str(cprog("maploop")), "300")
    assert r.stdout.strip() == "ok 300", r.stderr
    assert rep["stops"].get("openat", 0) >= 1  # the judged open made the region
    for name in ("mmap", "munmap", "mremap"):
        assert name not in rep["stops"], rep
