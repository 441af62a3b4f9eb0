"""The seccomp mask compiler: a balanced search, checked against its rules
by the BPF interpreter and by the kernel itself."""

from __future__ import annotations

import errno
import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from brokerd.tracer import seccomp as sc

ACTIONS = st.sampled_from([sc.RET_TRACE, sc.RET_ALLOW, sc.RET_KILL_PROCESS, sc.ret_errno(1), sc.ret_errno(13)])


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(0, 470), ACTIONS, max_size=300), ACTIONS)
def test_filter_matches_rules_for_every_number(actions, default):
    insns = sc.compile_filter(sc.AbiRules(actions, default))
    for nr in range(0, 480):
        assert sc.run(insns, nr, sc.AUDIT_ARCH_X86_64) == actions.get(nr, default)


def test_unexpected_arch_and_x32_are_killed_i386_has_its_own_rules():
    insns = sc.compile_filter(sc.AbiRules({257: sc.RET_TRACE}), sc.AbiRules({5: sc.RET_TRACE}))
    assert sc.run(insns, 257, 0xB7) == sc.RET_KILL_PROCESS  # AUDIT_ARCH_AARCH64
    assert sc.run(insns, 5, sc.AUDIT_ARCH_I386) == sc.RET_TRACE
    assert sc.run(insns, 257, sc.AUDIT_ARCH_I386) == sc.RET_ALLOW
    assert sc.run(insns, 5, sc.AUDIT_ARCH_X86_64) == sc.RET_ALLOW
    assert sc.run(insns, sc.X32_SYSCALL_BIT | 257, sc.AUDIT_ARCH_X86_64) == sc.RET_KILL_PROCESS
    assert sc.run(insns, 0xFFFFFFFF, sc.AUDIT_ARCH_X86_64) == sc.RET_ALLOW  # syscall(-1) stays ENOSYS


def test_search_is_logarithmic_not_linear():
    # 60 subscribed calls: the longest path is a handful of comparisons, not 60
    rng = random.Random(7)
    actions = {n: sc.RET_TRACE for n in rng.sample(range(450), 60)}
    insns = sc.compile_filter(sc.AbiRules(actions))
    longest = max(_path_length(insns, nr) for nr in range(460))
    assert longest <= 16, longest


def _path_length(insns, nr):
    data_nr, pc, steps, acc = nr, 0, 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        steps += 1
        if code == 0x20:
            acc = sc.AUDIT_ARCH_X86_64 if k == 4 else data_nr
            pc += 1
        elif code == 0x05:
            pc += 1 + k
        elif code in (0x15, 0x35):
            ok = acc == k if code == 0x15 else acc >= k
            pc += 1 + (jt if ok else jf)
        else:
            return steps


def test_kernel_enforces_compiled_errno_rule():
    # a real filter in a real child: getppid (110) fails with EACCES, getpid works
    insns = sc.compile_filter(sc.AbiRules({110: sc.ret_errno(errno.EACCES)}))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            sc.install(insns, no_new_privs=True)
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            ret = libc.syscall(110)
            os.write(w, f"{ret} {ctypes.get_errno()} {os.getpid() > 0}".encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 100).decode()
    os.waitpid(pid, 0)
    assert out == f"-1 {errno.EACCES} True"


def test_flag_test_leaf_checks_an_argument_in_the_kernel():
    # mmap (9) fails with EPERM only when it asks for MAP_FIXED (0x10)
    ft = sc.FlagTest(3, 0x10, sc.ret_errno(errno.EPERM), sc.RET_ALLOW)
    insns = sc.compile_filter(sc.AbiRules({9: ft}))
    assert sc.run(insns, 9, sc.AUDIT_ARCH_X86_64, (0, 4096, 3, 0x22)) == sc.RET_ALLOW
    assert sc.run(insns, 9, sc.AUDIT_ARCH_X86_64, (0, 4096, 3, 0x32)) == sc.ret_errno(errno.EPERM)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            import mmap

            sc.install(insns, no_new_privs=True)
            m = mmap.mmap(-1, 4096)  # no MAP_FIXED: allowed
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_long)
            fixed = libc.mmap(0x200000000, 4096, 3, 0x32, -1, 0)
            os.write(w, f"{len(m)} {fixed == ctypes.c_void_p(-1).value} {ctypes.get_errno()}".encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 100).decode()
    os.waitpid(pid, 0)
    assert out == f"4096 True {errno.EPERM}"
