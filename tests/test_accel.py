"""The optional compiled stop-loop calls (brokerd/tracer/accel): used where
scripts/setup built them, the pure-Python path where not (BROKERD_ACCEL=0, or
the object missing), and the same answers as the Python they replace, also
for a hostile tracee's addresses (unmapped memory, the end of the address
space, strings that do not end)."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import BROKERCTL, brokerctl

from brokerd.tracer import accel as accel_pkg
from brokerd.tracer.resolve import plain_path
from brokerd.tracer.shim.thread import read_cstr_py

accel = accel_pkg.accel
needs_accel = pytest.mark.skipif(accel is None, reason=f"accelerator not in use here: {accel_pkg.why_not}")

#: judged opens of a file, then the file printed (the program's own output)
OPENS = "import sys\nfor i in range(40): open(sys.argv[1]).read()\nprint(open(sys.argv[1]).read(), end='')"
POLICY = "from brokerd.clients.authorizer import Authorizer, cont\naz = Authorizer('t')\naz.on('openat')(lambda c: cont())\n"


def _session(tmp_path, env: dict[str, str], launcher: list[str] | None = None) -> tuple[subprocess.CompletedProcess,
                                                                                          dict]:
    """40 judged opens decided by an in-process policy; (the run, the BROKERD_STOP_COUNTS summary)."""
    (tmp_path / "accpol.py").write_text(POLICY)
    f = tmp_path / "f"
    f.write_text("content\n")
    counts = tmp_path / "stops.jsonl"
    env = dict(os.environ, BROKERD_STOP_COUNTS=str(counts), PYTHONPATH=str(tmp_path), **env)
    r = subprocess.run([*(launcher or BROKERCTL), "run", "-e", "trace=openat", "-a", "py:accpol:az", "--",
                        "/usr/bin/python3", "-S", "-c", OPENS, str(f)],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "content\n", r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = counts.read_text().splitlines()
    assert len(lines) == 1, lines
    return r, json.loads(lines[0])


def test_setup_built_the_accelerator():
    """Where gcc and Python.h are there (scripts/setup installs both), the
    accelerator is built and in use: a failed build must not pass unnoticed."""
    if os.environ.get(accel_pkg.ENV) == "0":
        pytest.skip("BROKERD_ACCEL=0 in the test's environment")
    import sysconfig

    if not shutil.which("gcc") or not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        pytest.skip("no gcc or Python.h here: the pure-Python stop loop is the expected one")
    assert accel is not None, accel_pkg.why_not
    r = brokerctl("--version")
    assert "stop-loop accelerator: on" in r.stdout, r.stdout


@needs_accel
def test_the_accelerator_decides_the_stops(tmp_path):
    """A session's seccomp stops go through the compiled calls: the
    BROKERD_STOP_COUNTS summary counts them (at least the 41 judged opens)."""
    _, summary = _session(tmp_path, {})
    assert summary["stops"].get("openat", 0) >= 41, summary
    assert summary["accel"] is not None and summary["accel"]["stops"] >= 41, summary


def test_BROKERD_ACCEL_0_is_the_pure_python_stop_loop(tmp_path):
    """BROKERD_ACCEL=0: the same session, nothing through the compiled calls;
    --version says why."""
    _, summary = _session(tmp_path, {"BROKERD_ACCEL": "0"})
    assert summary["stops"].get("openat", 0) >= 41, summary
    assert summary["accel"] is None, summary
    r = brokerctl("--version", env={"BROKERD_ACCEL": "0"})
    assert "stop-loop accelerator: off (BROKERD_ACCEL=0)" in r.stdout, r.stdout


def test_a_missing_object_falls_back_to_python(tmp_path):
    """The compiled object missing (never built, or deleted): the session runs
    on the pure-Python path, and --version says it is not built; never a crash."""
    block = ("import sys; sys.modules['brokerd.tracer.accel._accel'] = None; "
             "sys.argv[0] = 'brokerctl'; from brokerd.cli.main import console; console()")
    launcher = [sys.executable, "-c", block]
    _, summary = _session(tmp_path, {"BROKERD_ACCEL": ""}, launcher)
    assert summary["accel"] is None, summary
    r = subprocess.run([*launcher, "--version"], capture_output=True, text=True, timeout=60)
    assert "stop-loop accelerator: off (not built" in r.stdout, r.stdout + r.stderr


@pytest.fixture
def guarded():
    """Two pages of this process's memory, the second one inaccessible: (the
    address of the first page, a writable view of it)."""
    m = mmap.mmap(-1, 2 * mmap.PAGESIZE)
    view = ctypes.c_char.from_buffer(m)
    base = ctypes.addressof(view)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mprotect(ctypes.c_void_p(base + mmap.PAGESIZE), mmap.PAGESIZE, 0) == 0
    yield base, m
    assert libc.mprotect(ctypes.c_void_p(base + mmap.PAGESIZE), mmap.PAGESIZE, 3) == 0
    del view
    m.close()


def _both(addr: int, limit: int) -> tuple[object, object]:
    """What the compiled and the Python string read give (or the errno they raise)."""
    out = []
    for fn in (accel.read_cstr, read_cstr_py):
        try:
            out.append(fn(os.getpid(), addr, limit))
        except OSError as e:
            out.append(e.errno)
    return out[0], out[1]


@needs_accel
def test_compiled_string_reads_are_the_python_ones(guarded):
    """Strings that end, strings cut by the limit, strings that run into an
    unmapped page, a page boundary, NULL and the top of the address space:
    accel.read_cstr answers exactly as the Python loop it replaces (errors
    included), never reading past what it was asked."""
    base, m = guarded
    page = mmap.PAGESIZE
    m[:page] = b"x" * page
    m[page - 6:page] = b"abcde\0"
    cases = [
        (base + page - 6, 100),  # a string ending at the end of the page
        (base + page - 6, 3),  # longer than the limit
        (base + page - 6, 5),  # exactly the limit
        (base + page - 6, 4),
        (base, page - 6),  # a long one, cut at the limit
        (base, 2 * page),  # runs to its NUL at the page's end
        (0, 10),  # NULL
        (2**64 - 3, 10),  # the end of the address space
        (base + page, 10),  # the inaccessible page
    ]
    m[page - 1:page] = b"\0"
    for addr, limit in cases:
        c, p = _both(addr, limit)
        assert c == p, (hex(addr - base) if addr >= base else addr, limit, c, p)
    m[page - 1:page] = b"y"  # no NUL before the inaccessible page
    for addr, limit in [(base + page - 6, 100), (base + page - 6, 6), (base + page - 6, 5), (base, page + 50)]:
        c, p = _both(addr, limit)
        assert c == p, (hex(addr - base), limit, c, p)
    assert _both(base + page - 6, 100)[0] == 14  # EFAULT: the string does not end before unmapped memory


@needs_accel
def test_compiled_plain_check_is_plain_path(tmp_path):
    """accel.plain_stat gives plain_path's object (a path with no symlink),
    and None where plain_path does (a symlink on the way, a final symlink
    followed, an absent component, a NUL in the path)."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "l").symlink_to(tmp_path / "d")
    (tmp_path / "d" / "lf").symlink_to(tmp_path / "d" / "f")
    root = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        for path, follow in [(tmp_path / "d" / "f", True), (tmp_path / "l" / "f", True),
                             (tmp_path / "d" / "lf", True), (tmp_path / "d" / "lf", False),
                             (tmp_path / "d" / "absent", True)]:
            raw = os.fsencode(path)
            st = plain_path(root, raw, follow)
            want = None if st is None else (st.st_dev, st.st_ino)
            assert accel.plain_stat(root, raw, follow) == want, (path, follow)
        assert accel.plain_stat(root, os.fsencode(tmp_path / "d") + b"\0/f", True) is None
    finally:
        os.close(root)


#: an in-process policy that writes what it saw of each openat's path (its protocol value) to $SEEN
SEEN_POLICY = """import os
from brokerd.clients.authorizer import Authorizer, cont
az = Authorizer('seen')
@az.on('openat')
def openat(c):
    with open(os.environ['SEEN'], 'a') as f:
        f.write(repr(c.event.call.args[1])[:200] + '\\n')
    return cont()
"""


def test_hostile_path_pointers_read_as_in_python(cprog, tmp_path):
    """openat with a NULL path, an unmapped one, 4096 bytes with no NUL
    before unmapped memory, a path across a page boundary, one over PATH_MAX
    and the top of the address space: with the compiled stop loop and with
    the pure-Python one the program gets the native results, and the policy
    is shown the same values (a pointer where nothing is readable, a
    truncated string where no NUL came)."""
    (tmp_path / "seenpol.py").write_text(SEEN_POLICY)
    target = tmp_path / "f"
    target.write_text("x")
    prog = str(cprog("badpaths"))
    native = subprocess.run([prog, str(target)], capture_output=True, text=True, timeout=30)
    assert native.returncode == 0, native.stderr
    seen = {}
    for mode in ("1", "0"):
        log = tmp_path / f"seen{mode}"
        env = dict(os.environ, BROKERD_ACCEL=mode, SEEN=str(log), PYTHONPATH=str(tmp_path))
        r = subprocess.run([*BROKERCTL, "run", "-e", "trace=openat", "-a", "py:seenpol:az", "--", prog, str(target)],
                           capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
        assert r.returncode == 0 and r.stdout == native.stdout, (mode, r.stdout, native.stdout, r.stderr[-2000:])
        assert "Traceback" not in r.stderr, r.stderr[-2000:]
        # (addresses differ from run to run: ASLR)
        seen[mode] = [re.sub(r"Ptr\(value=[1-9]\d*\)", "Ptr(ADDR)", ln) for ln in log.read_text().splitlines()]
    assert seen["1"] == seen["0"], seen
    assert seen["1"].count("Ptr(ADDR)") >= 3 and "Ptr(value=0)" in seen["1"], seen["1"]  # unmapped, no NUL before unmapped memory, the top; NULL
    assert any(os.fsencode(target) in ln.encode() for ln in seen["1"]), seen["1"]  # the crossing path, read whole
