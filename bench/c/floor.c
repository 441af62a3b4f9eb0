/* floor MODE PROG [ARGS...]: the cheapest possible tracer of PROG's openat
 * calls, in C, for the bench's "where the time goes" rows: a seccomp filter
 * makes openat stop (RET_TRACE), everything else runs; each stop is resumed
 * with PTRACE_CONT.  MODE "cont" does nothing else at a stop (the kernel's
 * own price of one seccomp stop and one tracer wake-up); MODE "read" also
 * does what any decision must: PTRACE_GET_SYSCALL_INFO and reading the path
 * argument with process_vm_readv.  Exits with PROG's status. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void child(char **argv)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    ptrace(PTRACE_TRACEME, 0, 0, 0);
    raise(SIGSTOP);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
        perror("floor: seccomp");
        _exit(126);
    }
    execvp(argv[0], argv);
    perror("floor: exec");
    _exit(127);
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "cont") && strcmp(argv[1], "read"))) {
        fprintf(stderr, "usage: floor cont|read PROG [ARGS...]\n");
        return 2;
    }
    int read_args = argv[1][0] == 'r';
    pid_t pid = fork();
    if (pid == 0)
        child(argv + 2);
    int st;
    waitpid(pid, &st, 0);
    ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL);
    ptrace(PTRACE_CONT, pid, 0, 0);
    struct __ptrace_syscall_info info;
    char path[4096];
    for (;;) {
        pid_t tid = waitpid(-1, &st, __WALL);
        if (tid < 0)
            return 1;
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            if (tid == pid)
                return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            continue;
        }
        int sig = 0;
        if (st >> 8 == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8))) {
            if (read_args && ptrace(PTRACE_GET_SYSCALL_INFO, tid, sizeof info, &info) > 0) {
                struct iovec local = {path, sizeof path}, remote = {(void *)info.seccomp.args[1], sizeof path};
                if (process_vm_readv(tid, &local, 1, &remote, 1, 0) < 0)
                    path[0] = 0;
            }
        } else if (WIFSTOPPED(st) && WSTOPSIG(st) != SIGTRAP) {
            sig = WSTOPSIG(st);
        }
        ptrace(PTRACE_CONT, tid, 0, sig);
    }
}
