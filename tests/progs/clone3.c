/* clone3 called directly (not through libc's fallback): each argument is one action. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define UNTRACED 0x00800000ULL
struct args { unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; };
extern char **environ;

#define REPORT_VALUE
#include "report.h"

/* clone3 with ``flags``; the child opens /etc/hostname and exits with its errno (0: opened) */
static long fork3(struct args *ca, unsigned long long flags) {
    memset(ca, 0, sizeof *ca);
    ca->flags = flags;
    ca->exit_signal = SIGCHLD;
    long p = syscall(SYS_clone3, ca, sizeof *ca);
    if (p == 0) {
        int fd = open("/etc/hostname", O_RDONLY);
        _exit(fd < 0 ? errno : 0);
    }
    return p;
}

static const char *open_result(int st) {
    return st == 0 ? "ok" : st > 0 && st < 128 ? strerrorname_np(st) : "died";
}

static int child_status(long p) {
    int st;
    if (p < 0 || waitpid(p, &st, 0) != p) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static struct args shared;
static atomic_int stop;

static void *flipper(void *arg) {
    (void)arg;
    volatile unsigned long long *f = &shared.flags;
    while (!atomic_load(&stop)) *f ^= UNTRACED;
    return NULL;
}

static void *thread_open(void *arg) {
    (void)arg;
    int fd = open("/etc/hostname", O_RDONLY);
    report("thread-open", fd < 0 ? -1 : 0);
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        struct args ca;
        if (!strcmp(a, "newuser")) {
            /* a namespace flag, which only a look at the struct can see */
            long p = fork3(&ca, CLONE_NEWUSER);
            printf("%s: clone3 %s\n", a, p > 0 ? "ok" : strerrorname_np(errno));
            if (p > 0) child_status(p);
        } else if (!strcmp(a, "plain") || !strcmp(a, "untraced")) {
            long p = fork3(&ca, a[0] == 'u' ? UNTRACED : 0);
            const char *how = p > 0 ? "ok" : strerrorname_np(errno);
            printf("%s: clone3 %s, child open %s\n", a, how, open_result(child_status(p)));
        } else if (!strncmp(a, "flip:", 5)) {
            /* a second thread flips CLONE_UNTRACED in the struct while clone3 runs */
            int n = atoi(a + 5), opened = 0, made = 0, judged = 0;
            pthread_t th;
            pthread_create(&th, NULL, flipper, NULL);
            for (int k = 0; k < n; k++) {
                shared.exit_signal = SIGCHLD;
                long p = syscall(SYS_clone3, &shared, sizeof shared);
                if (p == 0) {
                    int fd = open("/etc/hostname", O_RDONLY);
                    _exit(fd < 0 ? errno : 0);
                }
                if (p > 0) made++;
                int st = child_status(p);
                opened += st == 0;
                judged += st == EACCES;
            }
            atomic_store(&stop, 1);
            pthread_join(th, NULL);
            /* an untraced child's traced calls fail ENOSYS (no tracer): neither opened nor judged */
            printf("flip: %d of %d children made, %d opened, %d denied by the policy\n", made, n, opened, judged);
        } else if (!strcmp(a, "badsize")) {
            memset(&ca, 0, sizeof ca);
            report("size-8", syscall(SYS_clone3, &ca, 8));
            report("size-8192", syscall(SYS_clone3, &ca, 8192));
            report("null", syscall(SYS_clone3, NULL, sizeof ca));
        } else if (!strcmp(a, "spawn")) {
            /* glibc tries clone3 first for both */
            pid_t pid;
            char *av[] = {"echo", "spawned", NULL};
            int e = posix_spawn(&pid, "/bin/echo", NULL, NULL, av, environ);
            printf("posix_spawn %s, exit %d\n", e ? strerrorname_np(e) : "ok", e ? -1 : child_status(pid));
            pthread_t th;
            pthread_create(&th, NULL, thread_open, NULL);
            pthread_join(th, NULL);
        }
    }
    return 0;
}
