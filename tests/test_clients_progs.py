"""C test programs for the client/policy tests (built once per session with
gcc), and a native baseline run of each: what they print without the broker."""

from __future__ import annotations

import shutil
import subprocess

import pytest

FSOPS_C = r'''
/* Each argument is one action; prints "ACTION ok [detail]" or "ACTION ERRNAME". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void report(const char *what, long r) {
    if (r < 0) printf("%s %s\n", what, strerrorname_np(errno));
    else printf("%s ok\n", what);
    fflush(stdout);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        char a[4096];
        snprintf(a, sizeof a, "%s", argv[i]);
        char *arg = strchr(a, ':');
        char *arg2 = NULL;
        if (arg) { *arg++ = 0; arg2 = strchr(arg, ':'); if (arg2) *arg2++ = 0; }
        if (!strcmp(a, "open")) {
            int fd = open(arg, O_RDONLY);
            report("open", fd);
            if (fd >= 0) close(fd);
        } else if (!strcmp(a, "write")) {
            int fd = open(arg, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) { (void)!write(fd, "x\n", 2); close(fd); }
            report("write", fd);
        } else if (!strcmp(a, "openat")) {
            int dfd = open(arg, O_RDONLY | O_DIRECTORY);
            int fd = dfd < 0 ? dfd : openat(dfd, arg2, O_RDONLY);
            report("openat", fd);
            if (fd >= 0) close(fd);
            if (dfd >= 0) close(dfd);
        } else if (!strcmp(a, "chdir")) report("chdir", chdir(arg));
        else if (!strcmp(a, "symlink")) report("symlink", symlink(arg, arg2));
        else if (!strcmp(a, "link")) report("link", link(arg, arg2));
        else if (!strcmp(a, "unlink")) report("unlink", unlink(arg));
        else if (!strcmp(a, "mkdir")) report("mkdir", mkdir(arg, 0755));
        else if (!strcmp(a, "rename")) report("rename", rename(arg, arg2));
        else if (!strcmp(a, "chmod")) report("chmod", chmod(arg, 0600));
        else if (!strcmp(a, "getcpu")) { unsigned c, n; report("getcpu", syscall(SYS_getcpu, &c, &n, NULL)); }
        else if (!strcmp(a, "clock")) {
            struct timespec ts, mono; struct timeval tv; time_t t2 = 0;
            syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
            syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &mono);
            syscall(SYS_gettimeofday, &tv, NULL);
            long t = syscall(SYS_time, &t2);
            printf("clock_gettime %lld %ld\ngettimeofday %lld\ntime %ld %lld\nmonotonic %lld\n",
                   (long long)ts.tv_sec, ts.tv_nsec, (long long)tv.tv_sec, t, (long long)t2,
                   (long long)mono.tv_sec);
        } else if (!strcmp(a, "ids")) {
            uid_t r, e, s; gid_t gr, ge, gs;
            getresuid(&r, &e, &s); getresgid(&gr, &ge, &gs);
            printf("uid %d euid %d gid %d egid %d res %d %d %d resg %d %d %d\n", (int)getuid(),
                   (int)geteuid(), (int)getgid(), (int)getegid(), (int)r, (int)e, (int)s,
                   (int)gr, (int)ge, (int)gs);
        } else if (!strcmp(a, "strict")) {
            long r = prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT);
            char msg[64];
            int n = snprintf(msg, sizeof msg, "armed %ld\n", r);
            (void)!write(1, msg, n);
            char buf[16];
            long k = read(0, buf, sizeof buf);
            n = snprintf(msg, sizeof msg, "read %ld\n", k);
            (void)!write(1, msg, n);
        } else if (!strcmp(a, "exit")) exit(atoi(arg));
        else { fprintf(stderr, "unknown action %s\n", a); return 2; }
    }
    return 0;
}
'''

# No libc at all: the only calls are the ones written here (for strict --now).
TINY_C = r'''
static long sys3(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
void _start(void) {
    sys3(1, 1, (long)"jailed\n", 7);        /* write */
    sys3(2, (long)"/etc/hostname", 0, 0);   /* open: not allowed in strict mode */
    sys3(1, 1, (long)"escaped\n", 8);
    sys3(60, 0, 0, 0);                      /* exit */
    for (;;) {}
}
'''


def build_c(directory, name: str, source: str, *flags: str):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.fail("gcc is required to build the test programs")
    src = directory / f"{name}.c"
    src.write_text(source)
    out = directory / name
    subprocess.run([cc, "-O1", "-Wall", "-o", str(out), str(src), *flags], check=True, timeout=120)
    return str(out)


@pytest.fixture(scope="session")
def progs(tmp_path_factory):
    """{"fsops": path, "tiny": path}: the C programs above, built once."""
    d = tmp_path_factory.mktemp("progs")
    return {
        "fsops": build_c(d, "fsops", FSOPS_C),
        "tiny": build_c(d, "tiny", TINY_C, "-static", "-nostdlib", "-fno-stack-protector", "-no-pie"),
    }


def test_fsops_native(progs, tmp_path):
    r = subprocess.run([progs["fsops"], "open:/etc/hostname", f"write:{tmp_path}/f", "open:/nonexistent",
                        f"symlink:/etc:{tmp_path}/l", "getcpu"], capture_output=True, text=True, timeout=120)
    assert r.stdout.splitlines() == ["open ok", "write ok", "open ENOENT", "symlink ok", "getcpu ok"]


def test_tiny_native(progs):
    r = subprocess.run([progs["tiny"]], capture_output=True, text=True, timeout=120)
    assert r.stdout == "jailed\nescaped\n"
    assert r.returncode == 0
