"""The generated syscall tables against the machine's kernel headers, the
running kernel's symbol table and python-ptrace's prototypes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from brokerd.protocol import args
from brokerd.protocol.abi import (
    ABIS,
    AUDIT_ARCH_I386,
    AUDIT_ARCH_X86_64,
    SyscallSpec,
    abi_from_audit,
)
from ptrace.syscall.prototypes import SYSCALL_PROTOTYPES

REPO = Path(__file__).resolve().parent.parent
ASM = Path("/usr/include/x86_64-linux-gnu/asm")
HEADERS = {"x86_64": "unistd_64.h", "i386": "unistd_32.h", "x32": "unistd_x32.h"}
_DEFINE = re.compile(r"^#define\s+__NR_(\w+)\s+(?:\(__X32_SYSCALL_BIT\s*\+\s*)?(\d+)\)?\s*$", re.M)

#: Syscalls added after 6.1 (Debian 12's headers) up to 6.18: name -> (x86_64, i386) numbers.
ADDED_6_2_TO_6_18 = {
    "cachestat": (451, 451), "fchmodat2": (452, 452), "map_shadow_stack": (453, 453),
    "futex_wake": (454, 454), "futex_wait": (455, 455), "futex_requeue": (456, 456),
    "statmount": (457, 457), "listmount": (458, 458), "lsm_get_self_attr": (459, 459),
    "lsm_set_self_attr": (460, 460), "lsm_list_modules": (461, 461), "mseal": (462, 462),
    "uretprobe": (335, None), "setxattrat": (463, 463), "getxattrat": (464, 464),
    "listxattrat": (465, 465), "removexattrat": (466, 466), "open_tree_attr": (467, 467),
    "uprobe": (336, None), "file_getattr": (468, 468), "file_setattr": (469, 469),
}


def header_numbers(abi: str) -> dict[str, int]:
    text = (ASM / HEADERS[abi]).read_text()
    return {m.group(1): int(m.group(2)) for m in _DEFINE.finditer(text)}


@pytest.mark.parametrize("abi", ["x86_64", "i386", "x32"])
def test_every_header_syscall_has_its_number(abi: str) -> None:
    table = ABIS[abi]
    nrs = header_numbers(abi)
    assert len(nrs) > 300
    bit = table.nr_bit
    for name, nr in nrs.items():
        assert name in table.by_name, f"{abi}: {name} missing"
        assert table.by_name[name].nr == nr | bit, f"{abi}: {name}"
        assert table.by_nr[nr | bit].name == name


def test_known_numbers() -> None:
    x, i, x32 = ABIS["x86_64"], ABIS["i386"], ABIS["x32"]
    assert x.by_name["openat"].nr == 257
    assert x.by_name["openat2"].nr == 437
    assert x.by_name["clone3"].nr == 435
    assert x.by_name["getppid"].nr == 110
    assert x.by_nr[0].name == "read"
    assert i.by_name["open"].nr == 5
    assert i.by_name["socketcall"].nr == 102
    assert i.by_nr[90].name == "mmap" and i.by_nr[192].name == "mmap2"
    assert x32.by_name["read"].nr == 0x40000000 | 0
    assert x32.by_name["rt_sigaction"].nr == 0x40000000 | 512
    assert x32.by_nr[0x40000000 | 257].name == "openat"


def test_complete_to_6_18() -> None:
    for name, (nr64, nr32) in ADDED_6_2_TO_6_18.items():
        assert ABIS["x86_64"].by_name[name].nr == nr64
        assert ABIS["x32"].by_name[name].nr == nr64 | 0x40000000
        if nr32 is None:
            assert name not in ABIS["i386"].by_name
        else:
            assert ABIS["i386"].by_name[name].nr == nr32
    # 6.18 adds nothing above 469 (listns, 470, is 6.19)
    assert max(ABIS["x86_64"].by_nr) == 469
    assert max(ABIS["i386"].by_nr) == 469
    assert max(n & ~0x40000000 for n in ABIS["x32"].by_nr) == 547


# Kernel-internal names of SYSCALL_DEFINE stubs that are not table names.
_KSYM_ALIASES = {"newstat": "stat", "newlstat": "lstat", "newfstat": "fstat", "newuname": "uname",
                 "mmap_pgoff": "mmap2", "llseek": "_llseek", "old_getrlimit": "getrlimit",
                 "old_readdir": "readdir", "oldumount": "umount", "old_mmap": "mmap",
                 "old_select": "select", "uname": "olduname", "olduname": "oldolduname"}
# Stubs with no x86 syscall number (socketcall sub-calls, other arches' calls).
# (old_*ctl and semtimedop_time32 are reached through i386's ipc(2) multiplexer.)
_KSYM_NO_NUMBER = {"ni_syscall", "gethostname", "recv", "send", "sync_file_range2",
                   "old_msgctl", "old_semctl", "old_shmctl", "semtimedop_time32"}


def _normalise(sym: str) -> str:
    if sym in _KSYM_ALIASES:
        return _KSYM_ALIASES[sym]
    sym = sym.removeprefix("ia32_")
    for suffix in ("_time32", "32", "16"):
        if sym.endswith(suffix) and sym.removesuffix(suffix) in ABIS["i386"].by_name:
            return sym.removesuffix(suffix)
    return sym


def test_running_kernel_has_no_syscall_we_lack() -> None:
    """Every syscall entry point of the running kernel (its ``__x64_sys_*``
    symbols, which include the i386 ones under IA32 emulation) is in a table;
    so a kernel newer than the tables fails here, naming what is new."""
    syms = set()
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            name = parts[2]
            # T: the defined entry points (W are weak ENOSYS stubs of other
            # arches' calls; .cold are compiler-split fragments)
            if parts[1] == "T" and name.startswith("__x64_sys_"):
                syms.add(name.removeprefix("__x64_sys_"))
    assert len(syms) > 300, "no syscall symbols in /proc/kallsyms"
    known = set(ABIS["x86_64"].by_name) | set(ABIS["i386"].by_name)
    missing = sorted(s for s in syms - _KSYM_NO_NUMBER if _normalise(s) not in known
                     and s not in known)
    assert not missing, f"kernel syscalls missing from the tables: {missing}"
    # and the recent ones are really there on this kernel
    import platform
    major, minor = (int(x) for x in platform.release().split(".")[:2])
    if (major, minor) >= (6, 17):
        assert {"file_getattr", "file_setattr", "open_tree_attr", "setxattrat"} <= syms


# python-ptrace describes the native 64-bit prototypes (and is older than
# membarrier's third argument, cpu_id, added in 5.10).
_PTRACE_DIFFERS_X86_64 = {"membarrier"}
# On i386, 64-bit values take two registers and some calls are the old ones.
_PTRACE_DIFFERS_I386 = {
    "membarrier", "break", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark",
    "ftruncate64", "truncate64", "lookup_dcookie", "mmap", "pread64", "pwrite64",
    "readahead", "select", "sync_file_range", "umount",
}


@pytest.mark.parametrize("abi,differs", [("x86_64", _PTRACE_DIFFERS_X86_64),
                                         ("i386", _PTRACE_DIFFERS_I386)])
def test_arg_counts_match_python_ptrace(abi: str, differs: set[str]) -> None:
    compared = 0
    for name, spec in ABIS[abi].by_name.items():
        if name in SYSCALL_PROTOTYPES and name not in differs:
            assert len(spec.args) == len(SYSCALL_PROTOTYPES[name][1]), name
            compared += 1
    assert compared > 250
    for name in differs:
        assert len(ABIS[abi].by_name[name].args) != len(SYSCALL_PROTOTYPES[name][1]), name


def test_sample_prototypes() -> None:
    x, i = ABIS["x86_64"], ABIS["i386"]
    assert x.by_name["openat"].args == ("dirfd", "path", "open_flags", "mode")
    assert x.by_name["openat"].ret == "fd"
    assert x.by_name["openat2"].args == ("dirfd", "path", "open_how:3", "ulong")
    assert x.by_name["clone3"].args == ("clone_args:1", "ulong")
    assert x.by_name["getppid"].args == () and x.by_name["getppid"].ret == "pid"
    assert x.by_name["mmap"].ret == "ptr"
    assert x.by_name["connect"].args == ("fd", "sockaddr:2", "int")
    assert i.by_name["clone"].args[3] == "hex"  # CLONE_BACKWARDS: tls before child_tid
    assert i.by_name["pread64"].args == ("fd", "outbuf:2", "ulong", "ulong", "ulong")
    assert ABIS["x32"].by_name["execve"].args == ("path", "argv", "envp")


@pytest.mark.parametrize("abi", ["x86_64", "i386", "x32"])
def test_kinds_are_valid(abi: str) -> None:
    for spec in ABIS[abi].by_nr.values():
        assert len(spec.args) <= 6
        assert spec.abi == abi
        assert spec.ret in ("int", "long", "fd", "pid", "uid", "ptr"), spec
        for kind in spec.args:
            args.check_kind(kind, len(spec.args))
            base, _, n = kind.partition(":")
            if n:  # the length/count argument is an integer
                assert spec.args[int(n)] in ("int", "uint", "long", "ulong", "ptr"), spec


def test_every_spec_compiles_to_decoders() -> None:
    """Specs are compiled on first use (not at import, for start-up): a kind
    no decoder knows must fail here, not in the middle of a session."""
    args._prebuild()


def test_abi_from_audit_and_unknown_numbers() -> None:
    assert abi_from_audit(AUDIT_ARCH_X86_64, 257) is ABIS["x86_64"]
    assert abi_from_audit(AUDIT_ARCH_X86_64, 0x40000000 | 257) is ABIS["x32"]
    assert abi_from_audit(AUDIT_ARCH_I386, 5) is ABIS["i386"]
    assert abi_from_audit(0xC00000B7, 56) is None  # aarch64
    assert ABIS["x86_64"].audit_arch == 0xC000003E and ABIS["i386"].audit_arch == 0x40000003
    assert ABIS["x32"].audit_arch == 0xC000003E and ABIS["x32"].nr_bit == 0x40000000
    unk = ABIS["x86_64"].spec(1000)
    assert unk == SyscallSpec("syscall_1000", 1000, ("ptr",) * 6)
    assert ABIS["x86_64"].spec(1000) is unk
    assert ABIS["x32"].spec(0).name == "read" and ABIS["x32"].spec(0x40000000).name == "read"
    assert ABIS["i386"].spec(5).name == "open"


def test_generated_tables_are_up_to_date() -> None:
    """Regenerating from this machine's headers gives the committed rows."""
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_syscalls.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


STRACE_CLASSES = ("file", "desc", "network", "process", "signal", "ipc", "memory", "creds", "clock",
                  "stat", "lstat", "fstat", "statfs", "fstatfs", "pure")


def test_classes_as_strace_defines_them() -> None:
    """strace(1)'s classes exist and hold what strace puts in them: %file is
    every call taking a file name, %desc every call on a descriptor (not the
    socket calls, which are %network), and the listed ones."""
    from brokerd.protocol.abi import CLASSES, names_in

    assert set(STRACE_CLASSES) <= set(CLASSES)
    x = ABIS["x86_64"]
    for spec in x.by_nr.values():
        assert ("file" in spec.classes) == ("path" in spec.args or spec.name == "getcwd"), spec
    assert {"open", "openat", "openat2", "execve", "stat", "chdir", "mknodat", "getcwd"} <= names_in("file")
    assert {"read", "write", "close", "openat", "dup3", "mmap", "poll", "select", "epoll_wait",
            "fstat"} <= names_in("desc")
    assert not {"connect", "socket", "stat", "getpid"} & names_in("desc")
    assert {"socket", "connect", "accept4", "sendmsg", "socketcall"} <= names_in("network")
    assert {"clone", "clone3", "fork", "execve", "exit_group", "wait4", "kill"} <= names_in("process")
    assert {"rt_sigaction", "kill", "tgkill", "sigreturn", "signalfd4"} <= names_in("signal")
    assert {"shmget", "semop", "msgrcv", "ipc"} <= names_in("ipc")
    assert {"mmap", "mmap2", "brk", "mprotect", "munmap"} <= names_in("memory")
    assert {"setuid", "getresgid32", "capset"} <= names_in("creds")
    assert {"clock_gettime", "gettimeofday", "clock_gettime64"} <= names_in("clock")
    assert names_in("stat") == {"stat", "stat64", "oldstat"}
    assert names_in("lstat") == {"lstat", "lstat64", "oldlstat"}
    assert {"fstat", "newfstatat"} <= names_in("fstat")
    assert names_in("statfs") == {"statfs", "statfs64"}
    assert {"getpid", "gettid", "getuid"} <= names_in("pure")
    # per ABI: i386's socket calls go through socketcall, x86_64 has no socketcall
    assert "socketcall" in ABIS["i386"].names_in("network")
    assert "socketcall" not in x.names_in("network")
    with pytest.raises(KeyError, match="no syscall class"):
        names_in("fiel")


def test_brokerd_classes_cover_the_policies_old_lists() -> None:
    """The write calls readonly and sandbox listed by hand (before the
    classes) are all in fs-write/fd-write; classes hold only real names."""
    from brokerd.protocol.abi import all_names, names_in

    old_path_writes = set((
        "creat mkdir mkdirat mknod mknodat rmdir unlink unlinkat rename renameat renameat2 link linkat "
        "symlink symlinkat chmod fchmodat fchmodat2 chown chown32 lchown lchown32 fchownat truncate "
        "truncate64 utime utimes futimesat utimensat utimensat_time64 setxattr lsetxattr removexattr "
        "lremovexattr setxattrat removexattrat").split())
    assert old_path_writes <= names_in("fs-write")
    assert {"fchmod", "fchown", "fchown32", "ftruncate", "ftruncate64", "fallocate", "fsetxattr",
            "fremovexattr"} == names_in("fd-write")
    assert names_in("link") == {"link", "linkat", "symlink", "symlinkat"}
    assert names_in("open") == {"open", "openat", "openat2", "creat"}
    assert "file_setattr" in names_in("fs-write")  # 6.17: missed by both hand lists
    assert not names_in("fs-write") & names_in("fs-read")
    for cls in ("fs-read", "fs-write", "fd-write", "remap", "process-access", "signal-send"):
        assert names_in(cls) <= all_names()


def test_abi_facts_come_from_the_tables() -> None:
    x, i, x32 = ABIS["x86_64"], ABIS["i386"], ABIS["x32"]
    assert (x.reg_bits, x.ptr_bytes, x.time_bytes) == (64, 8, 8)
    assert (i.reg_bits, i.ptr_bytes, i.time_bytes) == (32, 4, 4)
    assert (x32.reg_bits, x32.ptr_bytes, x32.time_bytes) == (64, 4, 8)
    assert i.reg_mask == 0xFFFFFFFF
    assert x32.nr("close") == 0x40000003 and i.nr("mmap2") == 192


def test_the_shims_per_abi_facts_come_from_the_tables():
    """The shim reads and rewrites calls in these registers and injects this
    mmap (issue #14: no ``abi.name == "i386"`` branches in the shim): a wrong
    register would rewrite another argument than the one judged."""
    assert ABIS["x86_64"].arg_regs == ("rdi", "rsi", "rdx", "r10", "r8", "r9")
    assert ABIS["x32"].arg_regs == ABIS["x86_64"].arg_regs
    assert ABIS["i386"].arg_regs == ("rbx", "rcx", "rdx", "rsi", "rdi", "rbp")
    assert (ABIS["x86_64"].mmap_call, ABIS["i386"].mmap_call) == ("mmap", "mmap2")
    # the injected mmap takes flags and offset in registers on every ABI
    for abi in ABIS.values():
        assert abi.by_name[abi.mmap_call].args[3] == "mmap_flags"


def test_the_checked_opens_derive_from_the_tables():
    """Which calls get the check at exit (opened object == judged path), with
    their path and flags arguments, as the shim's former hand-written table said."""
    from brokerd.tracer.shim.consts import OPEN_CALLS

    assert OPEN_CALLS == {"open": (0, 1), "openat": (1, 2), "openat2": (1, None), "creat": (0, None),
                          "execve": (0, -1), "execveat": (1, -1)}


def test_every_remap_call_has_its_region_test():
    """A call added to the ``remap`` class (may unmap, move or replace
    mappings) must say how it could reach the scratch region, or the shim
    would let it replace the region unchecked."""
    from brokerd.tracer.shim.consts import REGION_CALLS
    from brokerd.tracer.shim.stable import REGION_HITS

    assert set(REGION_HITS) == REGION_CALLS
