/* floor MODE PROG [ARGS...]: the cheapest possible tracer of PROG's openat
 * calls, in C, for the bench's "where the time goes" rows: a seccomp filter
 * makes openat stop (RET_TRACE), everything else runs; each stop is resumed
 * with PTRACE_CONT.  MODE "cont" does nothing else at a stop (the kernel's
 * own price of one seccomp stop and one tracer wake-up); MODE "read" also
 * does what any decision must: PTRACE_GET_SYSCALL_INFO and reading the path
 * argument with process_vm_readv; MODE "pin" also does the kernel's share
 * of brokerd's pinned open (docs/shim.md): the plain-path check (openat2
 * O_PATH with RESOLVE_NO_SYMLINKS|RESOLVE_IN_ROOT from "/", fstat, close)
 * and PTRACE_SET_SYSCALL_INFO of the call (here with its own arguments:
 * the same request; the pinned call's openat2 costs the tracee what its
 * openat does).  So "pin" is what any tracer pays, in system calls, for
 * the guarantees brokerd gives a judged open.  MODE "ask" is "read" plus
 * one question to the least a Python authorizer can be: a python3 process
 * ($FLOOR_PYTHON, default python3) that reads what lines wait and answers
 * "cont" to each, over a socketpair; the line is the call and its path.  So
 * "ask" is what any external Python decision costs, whatever the broker.
 * Exits with PROG's status. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define PTRACE_SET_SYSCALL_INFO_ 0x4212 /* Linux 6.16+ */

/* what PTRACE_SET_SYSCALL_INFO reads (brokerd/tracer/accel/_accel.c's struct set_info) */
struct set_info {
    uint8_t op;
    uint8_t reserved[3];
    uint32_t flags;
    uint64_t ip, sp;
    uint64_t nr;
    uint64_t args[6];
    uint32_t ret_data;
    uint32_t pad;
};

/* brokerd's per-decision kernel work of a pinned open, after the path was read */
static void pin(pid_t tid, const struct __ptrace_syscall_info *info, const char *path, int rootfd)
{
    struct open_how how = {O_PATH | O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS | RESOLVE_IN_ROOT};
    long fd = syscall(SYS_openat2, rootfd, path, &how, sizeof how);
    if (fd >= 0) {
        struct stat st;
        fstat((int)fd, &st);
        close((int)fd);
    }
    struct set_info si;
    memset(&si, 0, sizeof si);
    si.op = PTRACE_SYSCALL_INFO_SECCOMP;
    si.nr = info->seccomp.nr;
    memcpy(si.args, info->seccomp.args, sizeof si.args);
    ptrace(PTRACE_SET_SYSCALL_INFO_, tid, (void *)sizeof si, &si);
}

/* the least Python authorizer: every line that waits gets "cont" */
static const char ECHO_PY[] =
    "import os\n"
    "while True:\n"
    "    d = os.read(0, 65536)\n"
    "    if not d:\n"
    "        break\n"
    "    os.write(0, b'cont\\n' * d.count(b'\\n'))\n";

/* the authorizer process; returns our end of its socketpair */
static int start_authorizer(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("floor: socketpair");
        exit(1);
    }
    if (fork() == 0) {
        dup2(sv[1], 0);
        const char *py = getenv("FLOOR_PYTHON");
        execlp(py ? py : "python3", "python3", "-S", "-c", ECHO_PY, (char *)NULL);
        perror("floor: python3");
        _exit(127);
    }
    close(sv[1]);
    return sv[0];
}

/* one question and its answer: "openat PATH\n" out, a line back */
static void ask(int sock, const char *path)
{
    char line[4200], reply[64];
    int n = snprintf(line, sizeof line, "openat %.4096s\n", path);
    if (write(sock, line, (size_t)n) != n) {
        perror("floor: write");
        exit(1);
    }
    for (size_t got = 0; got == 0 || reply[got - 1] != '\n';) {
        ssize_t r = read(sock, reply + got, sizeof reply - got);
        if (r <= 0) {
            perror("floor: read");
            exit(1);
        }
        got += (size_t)r;
    }
}

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
    if (argc < 3 || (strcmp(argv[1], "cont") && strcmp(argv[1], "read") && strcmp(argv[1], "pin") &&
                      strcmp(argv[1], "ask"))) {
        fprintf(stderr, "usage: floor cont|read|pin|ask PROG [ARGS...]\n");
        return 2;
    }
    int read_args = argv[1][0] != 'c', pinning = argv[1][0] == 'p';
    int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    int sock = argv[1][0] == 'a' ? start_authorizer() : -1;
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
                path[sizeof path - 1] = 0;
                if (pinning)
                    pin(tid, &info, path, rootfd);
                if (sock >= 0)
                    ask(sock, path);
            }
        } else if (WIFSTOPPED(st) && WSTOPSIG(st) != SIGTRAP) {
            sig = WSTOPSIG(st);
        }
        ptrace(PTRACE_CONT, tid, 0, sig);
    }
}
