"""Decisions the kernel honours: the path an authorizer judged is the path the
kernel opens, even while another thread or another process sharing the page
flips it in a tight loop (the seed's TOCTOU attack); and the read-only
scratch memory that makes this so cannot be changed by the program."""

from __future__ import annotations

import pytest
from conftest import brokerctl

POLICY = 'while read -r l; do case "$l" in *bk-bad*) echo "skip-fail EACCES";; *) echo cont;; esac; done'


@pytest.fixture
def files(tmp_path):
    good, bad = tmp_path / "bk-good", tmp_path / "bk-bad0"  # same length: the flip is one memcpy
    good.write_text("good\n")
    bad.write_text("bad\n")
    return str(good), str(bad)


def _run(cprog, mode, files, *opts):
    r = brokerctl("run", *opts, "-e", "trace=openat", "-a", POLICY, "--", str(cprog("toctou")), mode, "3000", *files)
    assert r.returncode == 0, r.stderr
    words = r.stdout.split()
    return dict(zip(words[::2], map(int, words[1::2]), strict=True))


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_flipped_path_never_wins(cprog, files, mode):
    c = _run(cprog, mode, files)
    assert c["bad"] == 0, c  # not once in 3000 opens did the kernel open the denied file
    assert c["good"] > 0 and c["denied"] > 0  # both spellings were judged (the flipping ran)


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_the_attack_wins_without_stable_arguments(cprog, files, mode):
    # the same run with the copy switched off: proves the test above can fail
    c = _run(cprog, mode, files, "--no-stable-args")
    assert c["bad"] > 0, c


def test_scratch_region_cannot_be_changed(cprog):
    r = brokerctl("run", "-e", "trace=openat", "-a", POLICY, "--", str(cprog("scratchattack")))
    got = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert got.pop("madvise") == "ok"  # harmless: the pages come back from the sealed memfd
    assert got.pop("open-after") == "ok"
    assert got == {
        "mprotect": "EACCES",  # the seal: no writable mapping of it, ever
        "procmem": "EIO",  # /proc/self/mem cannot force a write through a shared read-only mapping
        "mapfile-write": "EPERM",  # reopening it for writing: the seal refuses write()
        "mapfile-mmap": "EPERM",
        "munmap": "EPERM",  # the broker's guard
        "mmap-fixed": "EPERM",
        "mremap-over": "EPERM",
        "mremap-away": "EPERM",
    }, r.stdout + r.stderr


def test_path_longer_than_path_max_fails_as_natively(cprog):
    # only a prefix of it could be judged, so it never reaches the kernel from tracee memory
    long = "/" + "x" * 5000
    r = brokerctl("run", "-e", "trace=openat", "-a", POLICY, "--", str(cprog("opener")), long)
    assert r.stdout.split()[-1] == "ENAMETOOLONG", r.stdout[-200:] + r.stderr
