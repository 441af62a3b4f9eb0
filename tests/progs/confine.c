/* Run a command the way a container runtime would: under a seccomp filter
 * (no_new_privs) that answers some system calls with EPERM, as the default
 * profiles of systemd-nspawn 252 and Docker answer pidfd_getfd, kcmp and
 * process_madvise.
 *
 *   confine [-n NR]... -- CMD ARGS   deny pidfd_getfd, kcmp, process_madvise (and each NR) with EPERM
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int nrs[32] = {__NR_pidfd_getfd, __NR_kcmp, __NR_process_madvise};
    int n = 3, i = 1;
    for (; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "-n") && i + 1 < argc && n < 32)
            nrs[n++] = atoi(argv[++i]);
    if (i + 1 >= argc) {
        fprintf(stderr, "usage: confine [-n NR]... -- CMD ARGS\n");
        return 2;
    }
    struct sock_filter f[80];
    int k = 0;
    f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (int j = 0; j < n; j++) {
        f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nrs[j], 0, 1);
        f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
    }
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = {k, f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) {
        perror("confine: seccomp");
        return 1;
    }
    execvp(argv[i + 1], argv + i + 1);
    perror("confine: exec");
    return 127;
}
