/* Run a command the way a container runtime would: under a seccomp filter
 * (no_new_privs) that answers some system calls with EPERM, as the default
 * profiles of systemd-nspawn 252 and Docker answer pidfd_getfd, kcmp and
 * process_madvise.
 *
 *   confine [-n NR]... [-l] -- CMD ARGS
 *     deny pidfd_getfd, kcmp, process_madvise (and each NR) with EPERM;
 *     -l: also supervise getcpu through a seccomp listener held by this
 *     process (CMD runs in a child), as runtimes that emulate calls in user
 *     space do (a second listener cannot be made below it: EBUSY)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

static int supervise(int listener, pid_t child) {
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    int status;
    for (;;) {
        struct pollfd p = {listener, POLLIN, 0};
        if (poll(&p, 1, 50) > 0 && (p.revents & POLLIN)) {
            memset(&req, 0, sizeof req);
            if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) == 0) {
                memset(&resp, 0, sizeof resp);
                resp.id = req.id;
                resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
                ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
            }
        }
        if (waitpid(child, &status, WNOHANG) == child)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
}

int main(int argc, char **argv) {
    int nrs[32] = {__NR_pidfd_getfd, __NR_kcmp, __NR_process_madvise};
    int n = 3, i = 1, listen = 0;
    for (; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc && n < 32)
            nrs[n++] = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-l"))
            listen = 1;
    }
    if (i + 1 >= argc) {
        fprintf(stderr, "usage: confine [-n NR]... [-l] -- CMD ARGS\n");
        return 2;
    }
    struct sock_filter f[80];
    int k = 0;
    f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    if (listen) {
        f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getcpu, 0, 1);
        f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
    }
    for (int j = 0; j < n; j++) {
        f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nrs[j], 0, 1);
        f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
    }
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = {k, f};
    long fd;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
        (fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, listen ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0,
                      &prog)) < 0) {
        perror("confine: seccomp");
        return 1;
    }
    if (listen) {
        pid_t child = fork();
        if (child < 0)
            return 1;
        if (child > 0)
            return supervise((int)fd, child);
        close((int)fd);
    }
    execvp(argv[i + 1], argv + i + 1);
    perror("confine: exec");
    return 127;
}
