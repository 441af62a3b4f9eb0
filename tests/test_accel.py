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
from hypothesis import given, settings
from hypothesis import strategies as st

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
    assert summary["accel"]["reaped"] >= 41, summary  # and the loop itself is the compiled one


@needs_accel
def test_BROKERD_CLOOP_0_keeps_the_python_loop(tmp_path):
    """BROKERD_CLOOP=0: the compiled calls, made one by one from the Python
    loop (the compiled loop, accel.reap, off): the same session."""
    _, summary = _session(tmp_path, {"BROKERD_CLOOP": "0"})
    assert summary["stops"].get("openat", 0) >= 41, summary
    assert summary["accel"]["stops"] >= 41 and summary["accel"]["reaped"] == 0, summary


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


def test_an_object_built_from_an_older_source_falls_back_to_python(tmp_path):
    """An object built before a compiled call was added (a checkout updated
    without scripts/setup) is not used: the session runs on the pure-Python
    path and --version names what it lacks; never an AttributeError in the
    middle of a session."""
    block = ("import sys, types; old = types.ModuleType('_accel'); sys.modules['brokerd.tracer.accel._accel'] = old; "
             "sys.argv[0] = 'brokerctl'; from brokerd.cli.main import console; console()")
    launcher = [sys.executable, "-c", block]
    _, summary = _session(tmp_path, {"BROKERD_ACCEL": ""}, launcher)
    assert summary["accel"] is None, summary
    r = subprocess.run([*launcher, "--version"], capture_output=True, text=True, timeout=60)
    assert "stop-loop accelerator: off (built from an older _accel.c (no seccomp_info" in r.stdout, r.stdout + r.stderr
    assert "pin_open" in r.stdout, r.stdout


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


def _pin_tree(tmp_path) -> bytes:
    """A directory with a file, a symlink to the directory and a final
    symlink to the file: its path."""
    (tmp_path / "d").mkdir(exist_ok=True)
    (tmp_path / "d" / "f").write_text("x")
    for link, target in (("l", tmp_path / "d"), ("d/lf", tmp_path / "d" / "f")):
        if not (tmp_path / link).is_symlink():
            (tmp_path / link).symlink_to(target)
    return os.fsencode(tmp_path)


def _pins_alike(root: int, path: bytes, flags: int, mode: int) -> object:
    """What accel.pin_plain gives, after checking the pure-Python plain_pin gives the same."""
    from brokerd.tracer.shim.pin import _plain_pin_py

    got = accel.pin_plain(root, path, flags, mode)
    assert got == _plain_pin_py(root, path, flags, mode), (path, oct(flags), oct(mode), got)
    return got


@needs_accel
def test_compiled_pin_is_the_python_one(tmp_path):
    """accel.pin_plain (a judged open's pin worked out in one call) gives the
    slot bytes and the expectation the Python steps give, and None where
    they do: paths that are not their own real path (relative, ``.``,
    ``..``, doubled or trailing slashes, a symlink on the way, a final
    symlink followed), /proc, a NUL inside, PATH_MAX, O_TMPFILE, unknown
    flag bits; O_PATH's flags and the mode masked as the kernel's
    build_open_how masks them, flags above 32 bits ignored but by the
    follow test, as the Python's."""
    from brokerd.tracer.shim.pin import HOW_ROOM, OPEN_HOW, PIN_RESOLVE

    base = _pin_tree(tmp_path)
    f = base + b"/d/f"
    root = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        st = os.stat(f)
        rd, cx = os.O_RDONLY, os.O_CLOEXEC
        pin, expect = _pins_alike(root, f, rd | cx, 0o644)
        assert expect == ("inode", st.st_dev, st.st_ino)
        assert pin == OPEN_HOW.pack(rd | cx, 0, PIN_RESOLVE).ljust(HOW_ROOM, b"\0") + f + b"\0"
        assert _pins_alike(root, b"/", os.O_DIRECTORY, 0) is not None
        creat = _pins_alike(root, f, os.O_CREAT | os.O_WRONLY, 0o170755)
        assert creat is not None and OPEN_HOW.unpack(creat[0][:24])[1] == 0o755  # S_IALLUGO
        path_flags = os.O_PATH | os.O_NOFOLLOW | os.O_RDWR | os.O_APPEND
        got = _pins_alike(root, f, path_flags, 0o777)
        assert got is not None and OPEN_HOW.unpack(got[0][:24])[:2] == (os.O_PATH | os.O_NOFOLLOW, 0)
        high = _pins_alike(root, f, (1 << 40) | rd, 0)
        assert high is not None and OPEN_HOW.unpack(high[0][:24])[0] == rd
        lf = base + b"/d/lf"
        assert _pins_alike(root, lf, rd, 0) is None  # a final symlink, followed
        assert _pins_alike(root, lf, rd | os.O_NOFOLLOW, 0) is not None  # (the link itself: O_NOFOLLOW)
        assert _pins_alike(root, lf, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600) is not None
        assert _pins_alike(root, lf, os.O_PATH | os.O_CREAT | os.O_EXCL, 0o600) is None  # (O_PATH: followed)
        nope = [base + b"/l/f", base + b"/d/absent", b"d/f", b"", b"//etc/passwd", base + b"//d/f",
                base + b"/./d/f", base + b"/d/../d/f", base + b"/d/.", base + b"/d/..", base + b"/d/",
                b"/proc", b"/proc/self/fd/0", b"/proc/", base + b"/d\0/f", f + b"\0",
                b"/" + b"a" * 4095]
        for path in nope:
            assert _pins_alike(root, path, rd, 0) is None, path
        for flags in (os.O_TMPFILE | os.O_RDWR, 1 << 30, 1 << 31):
            assert _pins_alike(root, f, flags, 0o600) is None, oct(flags)
        odd = base + b"/.d..x"  # dots that are no . or .. component
        os.mkdir(odd)
        for path in (odd, odd + b"/..."):
            if path != odd:
                os.mkdir(path)
            assert _pins_alike(root, path, os.O_DIRECTORY, 0) is not None, path
        assert accel.pin_plain(root, b"/" + b"a" * 4094, rd, 0) is None  # (absent: the check's ENOENT)
        for bad in ((root, "/etc", rd, 0), (-1, f, rd, 0), (root, f, "x", 0), (root, f, rd)):
            with pytest.raises((TypeError, ValueError)):
                accel.pin_plain(*bad)
    finally:
        os.close(root)


@needs_accel
@settings(max_examples=300, deadline=None)
@given(tail=st.lists(st.sampled_from([b"/", b".", b"..", b"d", b"f", b"l", b"lf", b"x", b"\0"]), max_size=8),
       flags=st.sampled_from([0, os.O_NOFOLLOW, os.O_CREAT | os.O_EXCL, os.O_DIRECTORY, os.O_PATH, os.O_TMPFILE,
                              1 << 30, os.O_CREAT | os.O_WRONLY, os.O_PATH | os.O_CREAT | os.O_EXCL]),
       mode=st.integers(min_value=0, max_value=2**64 - 1))
def test_compiled_pin_is_the_python_one_for_any_path(tmp_path_factory, tail, flags, mode):
    """Paths made of slashes, dots, names, symlinks and NULs under a real
    tree, any flags of a few kinds and any mode: the compiled pin and the
    Python one agree, always."""
    base = _pin_tree(tmp_path_factory.getbasetemp())
    root = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        _pins_alike(root, base + b"".join(tail), flags, mode)
    finally:
        os.close(root)


@needs_accel
def test_compiled_pin_open_refuses_what_is_not_a_slot():
    """accel.pin_open (a pinned open's write, SET_SYSCALL_INFO and CONT)
    writes nothing outside the shim's mapping and makes no request on bad
    input: an offset before, across or past the end of the region, a pin
    that is not bytes, the stop's arguments not a tuple of six, a tid or
    an address out of range; on a thread that is no tracee of ours the
    request fails with ESRCH (an OSError, as from the Python path)."""
    view = mmap.mmap(-1, 4096)
    pin = b"p" * 100
    own = (1, 2, 3, 4, 5, 6)
    bad = [
        ((1, view, -1, 0x1000, pin, own), ValueError),
        ((1, view, 4000, 0x1000, pin, own), ValueError),
        ((1, view, 4096, 0x1000, pin, own), ValueError),
        ((1, view, 2**62, 0x1000, pin, own), ValueError),
        ((1, view, 0, 0x1000, "p", own), TypeError),
        ((1, view, 0, 0x1000, pin, list(own)), TypeError),
        ((1, view, 0, 0x1000, pin, own[:5]), TypeError),
        ((1, view, 0, 0x1000, pin, (*own[:5], "x")), TypeError),
        ((0, view, 0, 0x1000, pin, own), ValueError),
        ((2**40, view, 0, 0x1000, pin, own), (ValueError, OverflowError)),
        ((1, view, 0, 2**64 - 8, pin, own), ValueError),
        ((1, view, 0, -1, pin, own), OverflowError),
        ((1, b"read-only" * 500, 0, 0x1000, pin, own), BufferError),
        ((1, view, 0, 0x1000, pin), TypeError),
    ]
    for args, err in bad:
        with pytest.raises(err):
            accel.pin_open(*args)
        assert view[:] == bytes(4096), args  # nothing written
    with pytest.raises(OSError) as e:
        accel.pin_open(os.getpid(), view, 4096 - 100, 0x1000, pin, own)  # (no tracee of ours)
    assert e.value.errno == 3 and view[-100:] == pin


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


#: accel.reap (the compiled stop loop) driven in a fresh interpreter over children that only
#: exit (its waitpid(-1) would take the test process's own children's statuses): prints JSON
REAP_SCRIPT = r'''
import errno, json, os, sys, time
from brokerd.tracer.accel import accel
from brokerd.spin import Spin

out = {}
seen = []


def on_status(tid, status, info):
    seen.append((tid, os.WEXITSTATUS(status), info))
    code = os.WEXITSTATUS(status)
    if code == 7:
        raise OSError(errno.ESRCH, "gone")
    if code == 8:
        raise RuntimeError("a bug in a handler")


def on_seccomp(*a):
    raise AssertionError("no seccomp stop here")


failed = []
no_paths = bytes(512)


def exited(n, first=1):
    """n children that exited (zombies, not reaped): their pids"""
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(first + i)
        pids.append(pid)
    for pid in pids:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    return pids


def reap(spin, batch=64, busy=lambda now: False):
    return accel.reap(no_paths, on_seccomp, on_status, lambda tid, e: failed.append((tid, str(e))), spin, busy,
                      batch)


# no child at all: nothing handled, no error
out["none"] = reap(object())
# three exited children, a batch of two: two handled, more waiting; the third next time
pids = exited(3)
out["batch2"] = reap(Spin(budget_ns=1000, max_skip=8, yields=True), 2)
out["rest"] = reap(Spin(budget_ns=1000, max_skip=8, yields=True))
out["seen"] = sorted(code for _, code, info in seen if info is None)
# a child that stays: the wait after a stop spins, misses, backs off as Spin.until does
r, w = os.pipe()
stay = os.fork()
if stay == 0:
    os.read(r, 1)
    os._exit(0)
sp = Spin(budget_ns=200_000, max_skip=8, yields=True)
exited(1, 3)
out["miss"] = (reap(sp), sp._skip, sp._backoff)
exited(1, 4)
out["skip"] = (reap(sp), sp._skip, sp._backoff)  # one wait polls once only
exited(1, 5)
out["miss2"] = (reap(sp), sp._skip, sp._backoff)
import brokerd.spin
brokerd.spin.machine_busy = lambda now: False  # (as the busy test given to reap above: a loaded machine)
py = Spin(budget_ns=200_000, max_skip=8, yields=True)
py.until(lambda: None); a = (py._skip, py._backoff)
py.until(lambda: None); b = (py._skip, py._backoff)
py.until(lambda: None); c = (py._skip, py._backoff)
out["python"] = [a, b, c]
# the machine busy: no spinning, no back-off
sp2 = Spin(budget_ns=10_000_000_000, max_skip=8, yields=False)
exited(1, 6)
t0 = time.monotonic()
out["busy"] = (reap(sp2, busy=lambda now: True), sp2._skip, sp2._backoff, time.monotonic() - t0 < 5)
# a busy test that fails, a Spin without its fields: the error comes out, the stop was handled
exited(1, 6)
try:
    reap(sp2, busy=lambda now: 1 / 0)
except ZeroDivisionError:
    out["busy_error"] = "ZeroDivisionError"
exited(1, 6)
try:
    reap(object())
except AttributeError:
    out["no_fields"] = "AttributeError"
# a handler's OSError goes to on_failed; anything else ends the loop with the error
exited(1, 7)
out["oserror"] = reap(Spin(budget_ns=0))
out["failed"] = [e for _, e in failed]
exited(1, 8)
try:
    reap(Spin(budget_ns=0))
except RuntimeError as e:
    out["bug"] = str(e)
# wrong arguments: TypeError, nothing waited for
for bad in ((None, on_seccomp, on_status, on_status, sp, on_status, 1), (no_paths,), (no_paths, 1, 2, 3, 4, 5, "x")):
    try:
        accel.reap(*bad)
    except TypeError:
        out.setdefault("typeerrors", 0)
        out["typeerrors"] += 1
os.write(w, b"x")
os.waitpid(stay, 0)
out["counts"] = accel.counts()["reaped"]
print(json.dumps(out))
'''


@needs_accel
def test_compiled_loop_waits_and_backs_off_as_the_python_one(tmp_path):
    """accel.reap, Stops._reap's loop in C, on hostile and odd input: no
    child at all, a batch bound that leaves stops waiting, a wait that
    misses (its back-off written back to the Spin exactly as Spin.until
    would set it, and a wait that backs off polls once only), a busy
    machine (no spinning at all), a handler's OSError (to on_failed, the
    loop goes on), any other error, a busy test that raises, a Spin
    without its fields, arguments of the wrong type: an exception or the
    documented answer, never a crash and never an endless wait."""
    r = subprocess.run([sys.executable, "-c", REAP_SCRIPT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["none"] == [0, 0]
    assert out["batch2"] == [2, 1] and out["rest"] == [1, 0] and out["seen"][:3] == [1, 2, 3], out
    assert out["miss"] == [[1, 0], 1, 1], out
    assert out["skip"] == [[1, 0], 0, 1], out
    assert out["miss2"] == [[1, 0], 2, 2], out
    assert out["python"] == [[1, 1], [0, 1], [2, 2]], out  # the same steps in Spin.until
    assert out["busy"] == [[1, 0], 0, 0, True], out
    assert out["busy_error"] == "ZeroDivisionError" and out["no_fields"] == "AttributeError", out
    assert out["oserror"] == [1, 0] and out["failed"] == ["[Errno 3] gone"], out
    assert out["bug"] == "a bug in a handler", out
    assert out["typeerrors"] == 3, out
    assert out["counts"] >= 9, out
