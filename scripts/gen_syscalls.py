#!/usr/bin/env python3
"""Generate brokerd's syscall tables (``protocol/_tables/{x86_64,i386,x32}.py``).

Why a generator and committed output: the shim must know, for every syscall
number of every x86 ABI, the name and the *kind* of each argument (a path, an
fd, open flags...), the way strace's tables do.  Numbers come from the kernel's
uapi headers (``asm/unistd_{64,32,x32}.h``); the argument kinds come from the
curated prototype table below, shared by name between the ABIs (with i386
overrides where the 32-bit calling convention differs: split 64-bit offsets,
old_mmap, old_select, clone's argument order...).  The generated modules are
committed, so nothing here is needed at run time.

Header sources, in order:

1. ``--headers DIR`` (default ``/usr/include/x86_64-linux-gnu``), the
   directory holding ``asm/unistd_*.h``.  Debian 12's linux-libc-dev is 6.1
   (numbers up to 450).  Newer headers can be unpacked without installing
   them (installing 6.12 headers system-wide clashes with glibc 2.36's
   <sys/mount.h>)::

       echo 'deb http://deb.debian.org/debian bookworm-backports main' \\
           > /etc/apt/sources.list.d/backports.list && apt-get update
       cd /tmp && apt-get download linux-libc-dev/bookworm-backports
       dpkg-deb -x linux-libc-dev_*.deb hdr
       scripts/gen_syscalls.py --headers /tmp/hdr/usr/include/x86_64-linux-gnu

   (the committed tables were generated from 6.12.95-1~bpo12+1).
2. ``CURATED_ADDITIONS`` below: every syscall added in 6.2 .. 6.18 with its
   number per ABI and the kernel version that added it, so the generator
   gives the same tables from the 6.1 headers.  A header that disagrees with
   the curated list is an error.

Run ``scripts/gen_syscalls.py --check`` to verify the committed tables are
up to date (exit 1 if regenerating would change them).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "protocol" / "_tables"
X32_BIT = 0x40000000

#: The kernel the tables are meant to be complete for.
TARGET_KERNEL = "6.18"

# ---------------------------------------------------------------------------
# Numbers the 6.1 headers lack: (name, x86_64, i386, x32 (without the x32 bit),
# kernel version that added it).  None = not on that ABI.
# Source: arch/x86/entry/syscalls/syscall_{32,64}.tbl of each release.
# ---------------------------------------------------------------------------
CURATED_ADDITIONS: tuple[tuple[str, int | None, int | None, int | None, str], ...] = (
    ("cachestat", 451, 451, 451, "6.5"),
    ("fchmodat2", 452, 452, 452, "6.6"),
    ("map_shadow_stack", 453, 453, 453, "6.6"),
    ("futex_wake", 454, 454, 454, "6.7"),
    ("futex_wait", 455, 455, 455, "6.7"),
    ("futex_requeue", 456, 456, 456, "6.7"),
    ("statmount", 457, 457, 457, "6.8"),
    ("listmount", 458, 458, 458, "6.8"),
    ("lsm_get_self_attr", 459, 459, 459, "6.8"),
    ("lsm_set_self_attr", 460, 460, 460, "6.8"),
    ("lsm_list_modules", 461, 461, 461, "6.8"),
    ("mseal", 462, 462, 462, "6.10"),
    ("uretprobe", 335, None, 335, "6.11"),
    ("setxattrat", 463, 463, 463, "6.13"),
    ("getxattrat", 464, 464, 464, "6.13"),
    ("listxattrat", 465, 465, 465, "6.13"),
    ("removexattrat", 466, 466, 466, "6.13"),
    ("open_tree_attr", 467, 467, 467, "6.15"),
    ("uprobe", 336, None, 336, "6.16"),
    ("file_getattr", 468, 468, 468, "6.17"),
    ("file_setattr", 469, 469, 469, "6.17"),
)

# ---------------------------------------------------------------------------
# Prototypes: ``name: kind, kind, ... [-> ret]``.  The kinds are the
# vocabulary of brokerd.protocol.args (see its module docstring); ``:N``
# names the argument (0-based) holding a length/count.  Default ret: int.
# Removed calls keep their historical arguments; never-implemented reserved
# slots (afs_syscall, getpmsg...) take none.
# ---------------------------------------------------------------------------
COMMON = """
read: fd, outbuf:2, ulong -> long
write: fd, inbuf:2, ulong -> long
open: path, open_flags, mode -> fd
close: fd
stat: path, ptr
fstat: fd, ptr
lstat: path, ptr
poll: ptr, uint, int
lseek: fd, long, whence -> long
mmap: hex, ulong, prot, mmap_flags, fd, hex -> ptr
mprotect: hex, ulong, prot
munmap: hex, ulong
brk: hex -> ptr
rt_sigaction: signo, ptr, ptr, ulong
rt_sigprocmask: sigprocmask_how, ptr, ptr, ulong
rt_sigreturn:
ioctl: fd, ioctl_req, hex
pread64: fd, outbuf:2, ulong, long -> long
pwrite64: fd, inbuf:2, ulong, long -> long
readv: fd, ptr, int -> long
writev: fd, iovec:2, int -> long
access: path, access_mode
pipe: pipefd
select: int, ptr, ptr, ptr, timeval
sched_yield:
mremap: hex, ulong, ulong, mremap_flags, hex -> ptr
msync: hex, ulong, msync_flags
mincore: hex, ulong, ptr
madvise: hex, ulong, madvise_advice
shmget: hex, ulong, int
shmat: int, hex, int -> ptr
shmctl: int, int, ptr
dup: fd -> fd
dup2: fd, fd -> fd
pause:
nanosleep: timespec, out_timespec
getitimer: itimer_which, ptr
alarm: uint
setitimer: itimer_which, ptr, ptr
getpid: -> pid
sendfile: fd, fd, ptr, ulong -> long
socket: af, socktype, int -> fd
connect: fd, sockaddr:2, int
accept: fd, out_sockaddr:2, ptr -> fd
sendto: fd, inbuf:2, ulong, msg_flags, sockaddr:5, int -> long
recvfrom: fd, outbuf:2, ulong, msg_flags, out_sockaddr:5, ptr -> long
sendmsg: fd, ptr, msg_flags -> long
recvmsg: fd, ptr, msg_flags -> long
shutdown: fd, shutdown_how
bind: fd, sockaddr:2, int
listen: fd, int
getsockname: fd, out_sockaddr:2, ptr
getpeername: fd, out_sockaddr:2, ptr
socketpair: af, socktype, int, pipefd
setsockopt: fd, sock_level, int, inbuf:4, int
getsockopt: fd, sock_level, int, ptr, ptr
clone: clone_flags, hex, ptr, ptr, hex -> pid
fork: -> pid
vfork: -> pid
execve: path, argv, envp
exit: int
wait4: pid, ptr, wait_options, ptr -> pid
kill: pid, signo
uname: ptr
semget: hex, int, int
semop: int, ptr, uint
semctl: int, int, int, hex
shmdt: hex
msgget: hex, int
msgsnd: int, ptr, ulong, int
msgrcv: int, ptr, ulong, long, int -> long
msgctl: int, int, ptr
fcntl: fd, fcntl_cmd, hex
flock: fd, flock_op
fsync: fd
fdatasync: fd
truncate: path, long
ftruncate: fd, long
getdents: fd, ptr, uint -> long
getcwd: outbuf:1, ulong
chdir: path
fchdir: fd
rename: path, path
mkdir: path, mode
rmdir: path
creat: path, mode -> fd
link: path, path
unlink: path
symlink: path, path
readlink: path, outbuf:2, int -> long
chmod: path, mode
fchmod: fd, mode
chown: path, uid, uid
fchown: fd, uid, uid
lchown: path, uid, uid
umask: mode
gettimeofday: out_timeval, ptr
getrlimit: rlimit_resource, ptr
getrusage: int, ptr
sysinfo: ptr
times: ptr -> long
ptrace: ptrace_request, pid, hex, hex -> long
getuid: -> uid
syslog: int, ptr, int
getgid: -> uid
setuid: uid
setgid: uid
geteuid: -> uid
getegid: -> uid
setpgid: pid, pid
getppid: -> pid
getpgrp: -> pid
setsid: -> pid
setreuid: uid, uid
setregid: uid, uid
getgroups: int, ptr
setgroups: int, ptr
setresuid: uid, uid, uid
getresuid: ptr, ptr, ptr
setresgid: uid, uid, uid
getresgid: ptr, ptr, ptr
getpgid: pid -> pid
setfsuid: uid -> uid
setfsgid: uid -> uid
getsid: pid -> pid
capget: ptr, ptr
capset: ptr, ptr
rt_sigpending: ptr, ulong
rt_sigtimedwait: ptr, ptr, timespec, ulong
rt_sigqueueinfo: pid, signo, ptr
rt_sigsuspend: ptr, ulong
sigaltstack: ptr, ptr
utime: path, ptr
mknod: path, mode, hex
uselib: path
personality: hex
ustat: hex, ptr
statfs: path, ptr
fstatfs: fd, ptr
sysfs: int, hex, hex
getpriority: priority_which, int
setpriority: priority_which, int, int
sched_setparam: pid, ptr
sched_getparam: pid, ptr
sched_setscheduler: pid, int, ptr
sched_getscheduler: pid
sched_get_priority_max: int
sched_get_priority_min: int
sched_rr_get_interval: pid, out_timespec
mlock: hex, ulong
munlock: hex, ulong
mlockall: mlockall_flags
munlockall:
vhangup:
modify_ldt: int, ptr, ulong
pivot_root: path, path
_sysctl: ptr
prctl: prctl_option, hex, hex, hex, hex
arch_prctl: arch_prctl_code, hex
adjtimex: ptr
setrlimit: rlimit_resource, ptr
chroot: path
sync:
acct: path
settimeofday: timeval, ptr
mount: path, path, str, mount_flags, ptr
umount2: path, umount_flags
swapon: path, hex
swapoff: path
reboot: hex, hex, hex, ptr
sethostname: inbuf:1, int
setdomainname: inbuf:1, int
iopl: int
ioperm: ulong, ulong, int
create_module: str, ulong -> ptr
init_module: ptr, ulong, str
delete_module: str, hex
get_kernel_syms: ptr
query_module: str, int, ptr, ulong, ptr
quotactl: hex, path, int, ptr
nfsservctl: int, ptr, ptr
getpmsg:
putpmsg:
afs_syscall:
tuxcall:
security:
gettid: -> pid
readahead: fd, long, ulong
setxattr: path, str, inbuf:3, ulong, xattr_flags
lsetxattr: path, str, inbuf:3, ulong, xattr_flags
fsetxattr: fd, str, inbuf:3, ulong, xattr_flags
getxattr: path, str, outbuf:3, ulong -> long
lgetxattr: path, str, outbuf:3, ulong -> long
fgetxattr: fd, str, outbuf:3, ulong -> long
listxattr: path, outbuf:2, ulong -> long
llistxattr: path, outbuf:2, ulong -> long
flistxattr: fd, outbuf:2, ulong -> long
removexattr: path, str
lremovexattr: path, str
fremovexattr: fd, str
tkill: pid, signo
time: ptr -> long
futex: ptr, futex_op, uint, ptr, ptr, uint -> long
sched_setaffinity: pid, uint, ptr
sched_getaffinity: pid, uint, ptr
set_thread_area: ptr
io_setup: uint, ptr
io_destroy: hex
io_getevents: hex, long, long, ptr, timespec
io_submit: hex, long, ptr
io_cancel: hex, ptr, ptr
get_thread_area: ptr
lookup_dcookie: hex, ptr, ulong
epoll_create: int -> fd
epoll_ctl_old: fd, int, fd, ptr
epoll_wait_old: fd, ptr, int, int
remap_file_pages: hex, ulong, prot, ulong, hex
getdents64: fd, ptr, uint -> long
set_tid_address: ptr -> pid
restart_syscall:
semtimedop: int, ptr, uint, timespec
fadvise64: fd, long, ulong, fadvise_advice
timer_create: clockid, ptr, ptr
timer_settime: hex, timer_flags, ptr, ptr
timer_gettime: hex, ptr
timer_getoverrun: hex
timer_delete: hex
clock_settime: clockid, timespec
clock_gettime: clockid, out_timespec
clock_getres: clockid, out_timespec
clock_nanosleep: clockid, timer_flags, timespec, out_timespec
exit_group: int
epoll_wait: fd, ptr, int, int
epoll_ctl: fd, epoll_op, fd, ptr
tgkill: pid, pid, signo
utimes: path, ptr
vserver:
mbind: hex, ulong, int, ptr, ulong, hex
set_mempolicy: int, ptr, ulong
get_mempolicy: ptr, ptr, ulong, hex, hex
mq_open: str, open_flags, mode, ptr -> fd
mq_unlink: str
mq_timedsend: fd, inbuf:2, ulong, uint, timespec
mq_timedreceive: fd, outbuf:2, ulong, ptr, timespec -> long
mq_notify: fd, ptr
mq_getsetattr: fd, ptr, ptr
kexec_load: hex, ulong, ptr, hex
waitid: waitid_which, pid, ptr, wait_options, ptr
add_key: str, str, inbuf:3, ulong, int
request_key: str, str, str, int
keyctl: int, hex, hex, hex, hex -> long
ioprio_set: int, int, int
ioprio_get: int, int
inotify_init: -> fd
inotify_add_watch: fd, path, inotify_mask
inotify_rm_watch: fd, int
migrate_pages: pid, ulong, ptr, ptr -> long
openat: dirfd, path, open_flags, mode -> fd
mkdirat: dirfd, path, mode
mknodat: dirfd, path, mode, hex
fchownat: dirfd, path, uid, uid, at_flags
futimesat: dirfd, path, ptr
newfstatat: dirfd, path, ptr, at_flags
unlinkat: dirfd, path, unlink_flags
renameat: dirfd, path, dirfd, path
linkat: dirfd, path, dirfd, path, at_flags
symlinkat: path, dirfd, path
readlinkat: dirfd, path, outbuf:3, int -> long
fchmodat: dirfd, path, mode
faccessat: dirfd, path, access_mode
pselect6: int, ptr, ptr, ptr, timespec, ptr
ppoll: ptr, uint, timespec, ptr, ulong
unshare: unshare_flags
set_robust_list: ptr, ulong
get_robust_list: pid, ptr, ptr
splice: fd, ptr, fd, ptr, ulong, splice_flags -> long
tee: fd, fd, ulong, splice_flags -> long
sync_file_range: fd, long, long, hex
vmsplice: fd, ptr, ulong, splice_flags -> long
move_pages: pid, ulong, ptr, ptr, ptr, int
utimensat: dirfd, path, ptr, at_flags
epoll_pwait: fd, ptr, int, int, ptr, ulong
signalfd: fd, ptr, ulong -> fd
timerfd_create: clockid, fd_flags -> fd
eventfd: uint -> fd
fallocate: fd, fallocate_mode, long, long
timerfd_settime: fd, timerfd_flags, ptr, ptr
timerfd_gettime: fd, ptr
accept4: fd, out_sockaddr:2, ptr, sock_flags -> fd
signalfd4: fd, ptr, ulong, fd_flags -> fd
eventfd2: uint, eventfd_flags -> fd
epoll_create1: fd_flags -> fd
dup3: fd, fd, fd_flags -> fd
pipe2: pipefd, fd_flags
inotify_init1: fd_flags -> fd
preadv: fd, ptr, int, ulong, ulong -> long
pwritev: fd, iovec:2, int, ulong, ulong -> long
rt_tgsigqueueinfo: pid, pid, signo, ptr
perf_event_open: ptr, pid, int, fd, hex -> fd
recvmmsg: fd, ptr, uint, msg_flags, timespec
fanotify_init: hex, open_flags -> fd
fanotify_mark: fd, hex, hex, dirfd, path
prlimit64: pid, rlimit_resource, ptr, ptr
name_to_handle_at: dirfd, path, ptr, ptr, at_flags
open_by_handle_at: fd, ptr, open_flags -> fd
clock_adjtime: clockid, ptr
syncfs: fd
sendmmsg: fd, ptr, uint, msg_flags
setns: fd, unshare_flags
getcpu: ptr, ptr, ptr
process_vm_readv: pid, ptr, ulong, ptr, ulong, hex -> long
process_vm_writev: pid, ptr, ulong, ptr, ulong, hex -> long
kcmp: pid, pid, int, ulong, ulong
finit_module: fd, str, hex
sched_setattr: pid, ptr, hex
sched_getattr: pid, ptr, uint, hex
renameat2: dirfd, path, dirfd, path, rename_flags
seccomp: seccomp_op, seccomp_flags, ptr
getrandom: outbuf:1, ulong, getrandom_flags -> long
memfd_create: str, memfd_flags -> fd
kexec_file_load: fd, fd, ulong, str, hex
bpf: int, ptr, uint
execveat: dirfd, path, argv, envp, at_flags
userfaultfd: fd_flags -> fd
membarrier: int, hex, int
mlock2: hex, ulong, hex
copy_file_range: fd, ptr, fd, ptr, ulong, hex -> long
preadv2: fd, ptr, int, ulong, ulong, hex -> long
pwritev2: fd, iovec:2, int, ulong, ulong, hex -> long
pkey_mprotect: hex, ulong, prot, int
pkey_alloc: hex, hex
pkey_free: int
statx: dirfd, path, at_flags, statx_mask, ptr
io_pgetevents: hex, long, long, ptr, timespec, ptr
rseq: ptr, uint, hex, hex
uretprobe:
uprobe:
pidfd_send_signal: fd, signo, ptr, hex
io_uring_setup: uint, ptr -> fd
io_uring_enter: fd, uint, uint, hex, ptr, ulong
io_uring_register: fd, uint, ptr, uint
open_tree: dirfd, path, hex -> fd
move_mount: dirfd, path, dirfd, path, hex
fsopen: str, hex -> fd
fsconfig: fd, uint, str, ptr, int
fsmount: fd, hex, hex -> fd
fspick: dirfd, path, hex -> fd
pidfd_open: pid, hex -> fd
clone3: clone_args:1, ulong -> pid
close_range: uint, uint, close_range_flags
openat2: dirfd, path, open_how:3, ulong -> fd
pidfd_getfd: fd, int, hex -> fd
faccessat2: dirfd, path, access_mode, at_flags
process_madvise: fd, ptr, ulong, madvise_advice, hex -> long
epoll_pwait2: fd, ptr, int, timespec64, ptr, ulong
mount_setattr: dirfd, path, at_flags, ptr, ulong
quotactl_fd: fd, hex, int, ptr
landlock_create_ruleset: ptr, ulong, hex -> fd
landlock_add_rule: fd, int, ptr, hex
landlock_restrict_self: fd, hex
memfd_secret: hex -> fd
process_mrelease: fd, hex
futex_waitv: ptr, uint, hex, timespec64, clockid
set_mempolicy_home_node: hex, ulong, ulong, hex
cachestat: fd, ptr, ptr, hex
fchmodat2: dirfd, path, mode, at_flags
map_shadow_stack: hex, ulong, hex -> ptr
futex_wake: ptr, hex, int, hex
futex_wait: ptr, hex, hex, hex, timespec64, clockid
futex_requeue: ptr, hex, int, int
statmount: ptr, ptr, ulong, hex
listmount: ptr, ptr, ulong, hex -> long
lsm_get_self_attr: uint, ptr, ptr, hex
lsm_set_self_attr: uint, ptr, uint, hex
lsm_list_modules: ptr, ptr, hex
mseal: hex, ulong, hex
setxattrat: dirfd, path, at_flags, str, ptr, ulong
getxattrat: dirfd, path, at_flags, str, ptr, ulong -> long
listxattrat: dirfd, path, at_flags, outbuf:4, ulong -> long
removexattrat: dirfd, path, at_flags, str
open_tree_attr: dirfd, path, hex, ptr, ulong -> fd
file_getattr: dirfd, path, ptr, ulong, at_flags
file_setattr: dirfd, path, ptr, ulong, at_flags
"""

#: Calls only the i386 ABI has (legacy, 16/32-bit uid, *64, time64 ...).
I386_ONLY = """
waitpid: pid, ptr, wait_options -> pid
break:
oldstat: path, ptr
umount: path
stime: ptr
oldfstat: fd, ptr
stty:
gtty:
ftime:
nice: int
prof:
signal: signo, hex -> ptr
lock:
mpx:
ulimit:
oldolduname: ptr
sigaction: signo, ptr, ptr
sgetmask:
ssetmask: hex
sigsuspend: int, int, hex
sigpending: ptr
oldlstat: path, ptr
readdir: fd, ptr, uint
profil:
socketcall: socketcall_call, ptr
olduname: ptr
idle:
vm86old: ptr
sigreturn:
ipc: ipc_call, int, hex, hex, ptr, long
sigprocmask: sigprocmask_how, ptr, ptr
bdflush: int, hex
_llseek: fd, ulong, ulong, ptr, whence
_newselect: int, ptr, ptr, ptr, timeval
vm86: hex, ptr
ugetrlimit: rlimit_resource, ptr
mmap2: hex, ulong, prot, mmap_flags, fd, hex -> ptr
truncate64: path, ulong, ulong
ftruncate64: fd, ulong, ulong
stat64: path, ptr
lstat64: path, ptr
fstat64: fd, ptr
lchown32: path, uid, uid
getuid32: -> uid
getgid32: -> uid
geteuid32: -> uid
getegid32: -> uid
setreuid32: uid, uid
setregid32: uid, uid
getgroups32: int, ptr
setgroups32: int, ptr
fchown32: fd, uid, uid
setresuid32: uid, uid, uid
getresuid32: ptr, ptr, ptr
setresgid32: uid, uid, uid
getresgid32: ptr, ptr, ptr
chown32: path, uid, uid
setuid32: uid
setgid32: uid
setfsuid32: uid -> uid
setfsgid32: uid -> uid
fcntl64: fd, fcntl_cmd, hex
sendfile64: fd, fd, ptr, ulong -> long
statfs64: path, ulong, ptr
fstatfs64: fd, ulong, ptr
fadvise64_64: fd, ulong, ulong, ulong, ulong, fadvise_advice
fstatat64: dirfd, path, ptr, at_flags
clock_gettime64: clockid, out_timespec64
clock_settime64: clockid, timespec64
clock_adjtime64: clockid, ptr
clock_getres_time64: clockid, out_timespec64
clock_nanosleep_time64: clockid, timer_flags, timespec64, out_timespec64
timer_gettime64: hex, ptr
timer_settime64: hex, timer_flags, ptr, ptr
timerfd_gettime64: fd, ptr
timerfd_settime64: fd, timerfd_flags, ptr, ptr
utimensat_time64: dirfd, path, ptr, at_flags
pselect6_time64: int, ptr, ptr, ptr, timespec64, ptr
ppoll_time64: ptr, uint, timespec64, ptr, ulong
io_pgetevents_time64: hex, long, long, ptr, timespec64, ptr
recvmmsg_time64: fd, ptr, uint, msg_flags, timespec64
mq_timedsend_time64: fd, inbuf:2, ulong, uint, timespec64
mq_timedreceive_time64: fd, outbuf:2, ulong, ptr, timespec64 -> long
semtimedop_time64: int, ptr, uint, timespec64
rt_sigtimedwait_time64: ptr, ptr, timespec64, ulong
futex_time64: ptr, futex_op, uint, ptr, ptr, uint -> long
sched_rr_get_interval_time64: pid, out_timespec64
"""

#: Same name as a common call, different arguments on i386: 64-bit values
#: split over two registers (lo, hi), the old single-pointer mmap/select, and
#: CONFIG_CLONE_BACKWARDS (tls before child_tid).
I386_OVERRIDES = """
clone: clone_flags, hex, ptr, hex, ptr -> pid
mmap: ptr -> ptr
select: ptr
pread64: fd, outbuf:2, ulong, ulong, ulong -> long
pwrite64: fd, inbuf:2, ulong, ulong, ulong -> long
readahead: fd, ulong, ulong, ulong
fadvise64: fd, ulong, ulong, ulong, fadvise_advice
fallocate: fd, fallocate_mode, ulong, ulong, ulong, ulong
sync_file_range: fd, ulong, ulong, ulong, ulong, hex
lookup_dcookie: ulong, ulong, ptr, ulong
fanotify_mark: fd, hex, ulong, ulong, dirfd, path
"""

# ---------------------------------------------------------------------------
# Classes: strace's (``-e trace=%file`` ..., strace(1)) and brokerd's own,
# which policies, the guard and the region check select calls by.  Where
# strace defines a class by its arguments ("takes a file name", "a file
# descriptor") it is derived from the argument kinds above; the others are
# listed.  Names a class lists must exist on at least one ABI.
# ---------------------------------------------------------------------------
_TIME64 = "clock_gettime64 clock_settime64 clock_adjtime64 clock_getres_time64"

LISTED_CLASSES: dict[str, str] = {
    # -- strace's classes --------------------------------------------------
    "network": """socket connect accept accept4 sendto recvfrom sendmsg recvmsg sendmmsg recvmmsg
        recvmmsg_time64 shutdown bind listen getsockname getpeername socketpair setsockopt
        getsockopt sendfile sendfile64 getpmsg putpmsg socketcall""",
    "process": """clone clone3 fork vfork execve execveat exit exit_group wait4 waitpid waitid kill
        tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo pidfd_send_signal""",
    "signal": """rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigtimedwait
        rt_sigtimedwait_time64 rt_sigqueueinfo rt_tgsigqueueinfo rt_sigsuspend sigaltstack pause
        kill tkill tgkill signalfd signalfd4 pidfd_send_signal signal sigaction sgetmask ssetmask
        sigsuspend sigpending sigreturn sigprocmask""",
    "ipc": """shmget shmat shmctl shmdt semget semop semctl semtimedop semtimedop_time64 msgget
        msgsnd msgrcv msgctl ipc""",
    "memory": """mmap mmap2 mprotect pkey_mprotect munmap brk mremap msync mincore madvise
        process_madvise shmat shmdt mlock mlock2 munlock mlockall munlockall io_setup io_destroy
        remap_file_pages mbind set_mempolicy get_mempolicy set_mempolicy_home_node migrate_pages
        move_pages memfd_secret map_shadow_stack mseal""",
    "creds": """getuid getgid geteuid getegid setuid setgid setreuid setregid setresuid setresgid
        getresuid getresgid setfsuid setfsgid getgroups setgroups capget capset prctl getuid32
        getgid32 geteuid32 getegid32 setuid32 setgid32 setreuid32 setregid32 setresuid32
        setresgid32 getresuid32 getresgid32 setfsuid32 setfsgid32 getgroups32 setgroups32""",
    "clock": f"""gettimeofday settimeofday time stime adjtimex clock_gettime clock_settime
        clock_getres clock_adjtime {_TIME64}""",
    "stat": "stat stat64 oldstat",
    "lstat": "lstat lstat64 oldlstat",
    "fstat": "fstat fstat64 oldfstat newfstatat fstatat64",
    "statfs": "statfs statfs64",
    "fstatfs": "fstatfs fstatfs64",
    "pure": """getpid getppid getpgrp gettid getuid getgid geteuid getegid getuid32 getgid32
        geteuid32 getegid32 sgetmask""",
    # -- brokerd's classes (policies, the guard, the region check) ----------
    # open a file by name (creat too: it is open(O_CREAT|O_WRONLY|O_TRUNC))
    "open": "open openat openat2 creat",
    # look at the file system by name and change nothing in it (exec: reads)
    "fs-read": """stat lstat stat64 lstat64 oldstat oldlstat newfstatat fstatat64 statx access
        faccessat faccessat2 readlink readlinkat getxattr lgetxattr listxattr llistxattr
        getxattrat listxattrat statfs statfs64 chdir execve execveat inotify_add_watch
        file_getattr""",
    # change the file system at a name (open's writes are judged by its flags)
    "fs-write": """creat mkdir mkdirat mknod mknodat rmdir unlink unlinkat rename renameat renameat2
        link linkat symlink symlinkat chmod fchmodat fchmodat2 chown chown32 lchown lchown32
        fchownat truncate truncate64 utime utimes futimesat utimensat utimensat_time64 setxattr
        lsetxattr removexattr lremovexattr setxattrat removexattrat file_setattr""",
    # change the file behind an open descriptor (mode, owner, size, attributes)
    "fd-write": """fchmod fchown fchown32 ftruncate ftruncate64 fallocate fsetxattr
        fremovexattr""",
    # make a new name for an existing file (or a symlink to anything)
    "link": "link linkat symlink symlinkat",
    # create a file system node of any type, devices included
    "mknod": "mknod mknodat",
    # send a signal to a process or thread named by pid (or pidfd)
    "signal-send": """kill tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo pidfd_send_signal""",
    # a pid <= 0 means a process group or every process
    "signal-group": "kill",
    # reach into another process by pid or pidfd: signal, trace, read or
    # write its memory, take its descriptors, compare or reap its resources
    "process-access": """kill tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo pidfd_send_signal
        ptrace process_vm_readv process_vm_writev pidfd_open pidfd_getfd process_madvise
        process_mrelease kcmp""",
    # may unmap, move or replace existing mappings (the scratch region's)
    "remap": "munmap mremap mmap mmap2 shmat remap_file_pages",
}

#: strace's %desc counts select/poll (descriptor sets in memory) and the
#: socket calls that copy between descriptors; not other network calls.
DESC_EXTRA = "select _newselect pselect6 pselect6_time64 poll ppoll ppoll_time64 sendfile sendfile64"
#: argument kinds that are (or hold) file descriptors
FD_KINDS = ("fd", "dirfd", "pipefd")


def classes_of(name: str, args: tuple[str, ...], ret: str,
               listed: dict[str, frozenset[str]]) -> tuple[str, ...]:
    """The sorted classes of one call: listed ones, then file/desc derived
    from its argument kinds the way strace(1) defines them."""
    out = {cls for cls, names in listed.items() if name in names}
    if "path" in args or name == "getcwd":
        out.add("file")
    fd_like = ret == "fd" or any(a.partition(":")[0] in FD_KINDS for a in args)
    if (fd_like and "network" not in out) or name in DESC_EXTRA.split():
        out.add("desc")
    return tuple(sorted(out))


ABI_HEADERS = {"x86_64": "unistd_64.h", "i386": "unistd_32.h", "x32": "unistd_x32.h"}
_LINE = re.compile(r"^([A-Za-z_0-9]+):\s*(.*?)\s*(?:->\s*(\w+))?$")
_DEFINE = re.compile(r"^#define\s+__NR_(\w+)\s+(?:\(__X32_SYSCALL_BIT\s*\+\s*)?(\d+)\)?\s*$")


def parse_protos(text: str) -> dict[str, tuple[tuple[str, ...], str]]:
    """Parse the ``name: kinds -> ret`` lines into {name: (kinds, ret)}."""
    out: dict[str, tuple[tuple[str, ...], str]] = {}
    for raw in text.strip().splitlines():
        m = _LINE.match(raw.strip())
        if not m:
            raise SystemExit(f"bad prototype line: {raw!r}")
        name, kinds, ret = m.group(1), m.group(2), m.group(3) or "int"
        if name in out:
            raise SystemExit(f"duplicate prototype: {name}")
        args = tuple(k.strip() for k in kinds.split(",")) if kinds else ()
        if len(args) > 6:
            raise SystemExit(f"{name}: more than 6 arguments")
        out[name] = (args, ret)
    return out


def read_header(path: Path) -> dict[str, int]:
    """{name: number} from an asm/unistd_*.h (x32 numbers without the bit)."""
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        m = _DEFINE.match(line.strip())
        if m:
            out[m.group(1)] = int(m.group(2))
    if not out:
        raise SystemExit(f"no __NR_ definitions in {path}")
    return out


def numbers(headers: Path) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """Merge header numbers with CURATED_ADDITIONS; returns ({abi: {name: nr}}, {abi: source})."""
    tables: dict[str, dict[str, int]] = {}
    sources: dict[str, str] = {}
    for abi, fname in ABI_HEADERS.items():
        nrs = read_header(headers / "asm" / fname)
        added = []
        col = {"x86_64": 1, "i386": 2, "x32": 3}[abi]
        for entry in CURATED_ADDITIONS:
            name, nr = entry[0], entry[col]
            if nr is None:
                continue
            if name in nrs:
                if nrs[name] != nr:
                    raise SystemExit(f"{abi} {name}: header says {nrs[name]}, curated list {nr}")
            else:
                nrs[name] = nr
                added.append(name)
        by_nr: dict[int, str] = {}
        for name, nr in nrs.items():
            if nr in by_nr:
                raise SystemExit(f"{abi}: number {nr} is both {by_nr[nr]} and {name}")
            by_nr[nr] = name
        tables[abi] = nrs
        sources[abi] = f"asm/{fname}" + (
            f" + curated {', '.join(added)}" if added else "")
    return tables, sources


def header_version(headers: Path) -> str:
    """Best-effort LINUX_VERSION_CODE of the header tree, for the table docstring."""
    try:
        text = (headers.parent / "linux" / "version.h").read_text()
    except OSError:
        try:
            text = (Path("/usr/include/linux/version.h")).read_text()
        except OSError:
            return "unknown"
    m = re.search(r"LINUX_VERSION_MAJOR\s+(\d+).*?LINUX_VERSION_PATCHLEVEL\s+(\d+).*?LINUX_VERSION_SUBLEVEL\s+(\d+)",
                  text, re.S)
    return ".".join(m.groups()) if m else "unknown"


#: Per-ABI facts: the AUDIT_ARCH seccomp and PTRACE_GET_SYSCALL_INFO report,
#: the bit x32 numbers carry, register width, pointer and time_t sizes in
#: tracee memory (x32: 64-bit registers, 32-bit pointers, 64-bit time_t);
#: the six argument registers as a 64-bit tracer's user_regs_struct names
#: them (the shim reads and rewrites calls there), and the mmap that takes
#: its flags and offset in registers (the shim injects it; i386's old mmap
#: takes a struct in memory).
_REGS_64 = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
ABI_FACTS: dict[str, dict[str, int | str | tuple[str, ...]]] = {
    "x86_64": {"AUDIT_ARCH": 0xC000003E, "NR_BIT": 0, "REG_BITS": 64, "PTR_BYTES": 8, "TIME_BYTES": 8,
               "ARG_REGS": _REGS_64, "MMAP_CALL": "mmap"},
    "i386": {"AUDIT_ARCH": 0x40000003, "NR_BIT": 0, "REG_BITS": 32, "PTR_BYTES": 4, "TIME_BYTES": 4,
             "ARG_REGS": ("rbx", "rcx", "rdx", "rsi", "rdi", "rbp"), "MMAP_CALL": "mmap2"},
    "x32": {"AUDIT_ARCH": 0xC000003E, "NR_BIT": X32_BIT, "REG_BITS": 64, "PTR_BYTES": 4, "TIME_BYTES": 8,
            "ARG_REGS": _REGS_64, "MMAP_CALL": "mmap"},
}


def render(abi: str, nrs: dict[str, int], protos: dict[str, tuple[tuple[str, ...], str]],
           source: str, version: str, listed: dict[str, frozenset[str]]) -> str:
    """The text of one generated table module."""
    bit = ABI_FACTS[abi]["NR_BIT"]
    rows = []
    for name, nr in sorted(nrs.items(), key=lambda kv: kv[1]):
        if name not in protos:
            raise SystemExit(f"{abi}: no prototype for {name} ({nr})")
        args, ret = protos[name]
        classes = classes_of(name, args, ret, listed)
        number = f"{(nr | bit):#x}" if bit else str(nr)
        rows.append(f"    ({number}, {name!r}, {args!r}, {ret!r}, {classes!r}),\n")
    facts = "".join(f"{k} = {v:#x}\n" if k in ("AUDIT_ARCH", "NR_BIT") else f"{k} = {v!r}\n"
                    for k, v in ABI_FACTS[abi].items())
    return (
        f'"""{abi} syscall table: GENERATED by scripts/gen_syscalls.py, do not edit.\n\n'
        f"Numbers: {source} (headers {version}), complete for Linux {TARGET_KERNEL}.\n"
        f"Rows: (number, name, argument kinds, return kind, classes).\n"
        '"""\n\n'
        f"ABI = {abi!r}\n"
        f"KERNEL = {TARGET_KERNEL!r}\n"
        + facts + "\n"
        "# fmt: off\n"
        "SYSCALLS: tuple[tuple[int, str, tuple[str, ...], str, tuple[str, ...]], ...] = (\n"
        + "".join(rows) + ")\n"
    )


def listed_classes(protos: dict[str, tuple[tuple[str, ...], str]]) -> dict[str, frozenset[str]]:
    """LISTED_CLASSES as sets; a listed name no ABI has is a typo: an error."""
    out = {cls: frozenset(text.split()) for cls, text in LISTED_CLASSES.items()}
    for cls, names in out.items():
        unknown = sorted(names - protos.keys())
        if unknown:
            raise SystemExit(f"class {cls}: unknown syscalls {', '.join(unknown)}")
    return out


def validate_kinds(protos: dict[str, tuple[tuple[str, ...], str]]) -> None:
    """Every kind must be one brokerd.protocol.args knows (catches typos)."""
    sys.path.insert(0, str(REPO))
    try:
        from brokerd.protocol.args import check_kind
    except Exception as e:  # pragma: no cover - outside the venv, or tables broken
        print(f"warning: brokerd.protocol.args not importable ({e}), kinds not validated",
              file=sys.stderr)
        return
    for name, (args, _ret) in protos.items():
        for i, kind in enumerate(args):
            try:
                check_kind(kind, len(args))
            except ValueError as e:
                raise SystemExit(f"{name} arg {i}: {e}") from None


def _body(text: str) -> str:
    """A table module without its docstring."""
    return text.split('"""', 2)[-1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--headers", type=Path, default=Path("/usr/include/x86_64-linux-gnu"),
                    help="directory holding asm/unistd_{64,32,x32}.h")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--check", action="store_true", help="exit 1 if the tables would change")
    ns = ap.parse_args(argv)

    common = parse_protos(COMMON)
    i386_only = parse_protos(I386_ONLY)
    overrides = parse_protos(I386_OVERRIDES)
    for name in i386_only:
        if name in common:
            raise SystemExit(f"{name} is both common and i386-only")
    for name in overrides:
        if name not in common:
            raise SystemExit(f"i386 override of unknown {name}")
    validate_kinds(common | i386_only | overrides)
    per_abi = {
        "x86_64": common,
        "x32": common,
        "i386": common | i386_only | overrides,
    }
    listed = listed_classes(common | i386_only)
    tables, sources = numbers(ns.headers)
    version = header_version(ns.headers)
    changed = False
    for abi, nrs in tables.items():
        text = render(abi, nrs, per_abi[abi], sources[abi], version, listed)
        path = ns.out / f"{abi}.py"
        old = path.read_text() if path.exists() else ""
        # --check skips the docstring: it names the header version used.
        if (_body(old) if ns.check else old) != (_body(text) if ns.check else text):
            changed = True
            if ns.check:
                print(f"{path} is out of date", file=sys.stderr)
            else:
                path.write_text(text)
                print(f"wrote {path} ({len(nrs)} syscalls)")
    init = ns.out / "__init__.py"
    if not init.exists() and not ns.check:
        init.write_text('"""Generated syscall tables (see scripts/gen_syscalls.py)."""\n')
    return 1 if (ns.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
