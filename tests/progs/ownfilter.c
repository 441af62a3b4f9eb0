/* A traced program with seccomp filters of its own (issue #16, escape 4).
 *
 *   ownfilter listener PATH   a SECCOMP_RET_USER_NOTIF filter for openat and a supervisor
 *                             thread that continues every notified open, then open PATH:
 *                             "listener ok|fail ERR", then "open ok|fail ERR"
 *   ownfilter trace PATH      a SECCOMP_RET_TRACE filter (data 0x1234) for getppid and openat;
 *                             natively (no tracer) both fail with ENOSYS:
 *                             "getppid ...", then "open ..."
 *   ownfilter noopenat2 PATH [prctl]
 *                             a filter failing openat2 (only) with ENOSYS, installed with
 *                             seccomp() or prctl(PR_SET_SECCOMP), then open PATH with openat
 *                             in this process and in a forked child: natively both work
 *                             (the broker must not pin them into openat2): "open ...", "child-open ..."
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "report.h"

static long install(unsigned int action, int nr2, unsigned int flags) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static long no_openat2(int use_prctl) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (use_prctl)
        return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static int listener = -1;

static void *supervisor(void *arg) {
    (void)arg;
    static struct seccomp_notif req;
    static struct seccomp_notif_resp resp;
    for (;;) {
        memset(&req, 0, sizeof req);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
            return NULL;
        memset(&resp, 0, sizeof resp);
        resp.id = req.id;
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    }
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    if (!strcmp(argv[1], "listener")) {
        long fd = install(SECCOMP_RET_USER_NOTIF, __NR_openat, SECCOMP_FILTER_FLAG_NEW_LISTENER);
        report("listener", fd);
        if (fd >= 0) {
            listener = (int)fd;
            pthread_t t;
            pthread_create(&t, NULL, supervisor, NULL);
        }
        report("open", open(argv[2], O_RDONLY));
        return 0;
    }
    if (!strcmp(argv[1], "trace")) {
        if (install(SECCOMP_RET_TRACE | 0x1234, __NR_getppid, 0) < 0) {
            report("install", -1);
            return 1;
        }
        report("getppid", syscall(SYS_getppid));
        report("open", open(argv[2], O_RDONLY));
        return 0;
    }
    if (!strcmp(argv[1], "noopenat2")) {
        if (no_openat2(argc > 3 && !strcmp(argv[3], "prctl")) < 0) {
            report("install", -1);
            return 1;
        }
        report("open", openat(AT_FDCWD, argv[2], O_RDONLY));
        pid_t pid = fork();
        if (pid == 0) {
            report("child-open", openat(AT_FDCWD, argv[2], O_RDONLY));
            _exit(0);
        }
        waitpid(pid, NULL, 0);
        return 0;
    }
    return 2;
}
