/* Small syscall exerciser: each argument names one action and prints its result. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REPORT_VALUE
#include "report.h"

static void on_alarm(int sig) { (void)sig; }

static void *thread_exec(void *arg) {
    char *const av[] = {"echo", (char *)arg, NULL};
    execv("/bin/echo", av);
    return NULL;
}

static void *thread_open(void *arg) {
    int fd = open((const char *)arg, O_RDONLY);
    report("thread-open", fd < 0 ? -1 : 0);
    if (fd >= 0) close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "getppid")) report("getppid", getppid());
        else if (!strcmp(a, "getpid")) report("getpid", getpid());
        else if (!strcmp(a, "memfd")) report("memfd", syscall(SYS_memfd_create, "mine", 0, 0, 0));
        else if (!strncmp(a, "write:", 6)) report("write", write(1, a + 6, strlen(a + 6)));
        else if (!strncmp(a, "exit:", 5)) exit(atoi(a + 5));
        else if (!strncmp(a, "kill:", 5)) raise(atoi(a + 5));
        else if (!strcmp(a, "gettimeofday")) {
            struct timeval tv;
            long r = gettimeofday(&tv, NULL);  /* through the vDSO: no syscall */
            long r2 = syscall(SYS_gettimeofday, &tv, NULL);
            (void)r;
            printf("gettimeofday %ld %ld\n", r2, (long)tv.tv_sec);
        } else if (!strncmp(a, "threads:", 8)) {
            int n = atoi(a + 8);
            pthread_t th[64];
            for (int k = 0; k < n; k++) pthread_create(&th[k], NULL, thread_open, "/etc/hostname");
            for (int k = 0; k < n; k++) pthread_join(th[k], NULL);
        } else if (!strncmp(a, "fork:", 5)) {
            int n = atoi(a + 5);
            for (int k = 0; k < n; k++) {
                pid_t p = fork();
                if (p == 0) {
                    int fd = open("/etc/hostname", O_RDONLY);
                    report("child-open", fd < 0 ? -1 : 0);
                    _exit(fd < 0 ? 1 : 0);
                }
                int st;
                waitpid(p, &st, 0);
                printf("child exit %d\n", WEXITSTATUS(st));
            }
        } else if (!strcmp(a, "vfork")) {
            pid_t p = vfork();
            if (p == 0) {
                execl("/bin/true", "true", (char *)NULL);
                _exit(127);
            }
            int st;
            waitpid(p, &st, 0);
            printf("vfork child exit %d\n", WEXITSTATUS(st));
        } else if (!strcmp(a, "clone3")) {
            struct { unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; } ca;
            memset(&ca, 0, sizeof ca);
            ca.exit_signal = SIGCHLD;
            long p = syscall(SYS_clone3, &ca, sizeof ca);
            if (p == 0) {
                int fd = open("/etc/hostname", O_RDONLY);
                report("clone3-child-open", fd < 0 ? -1 : 0);
                _exit(0);
            }
            int st;
            waitpid(p, &st, 0);
            printf("clone3 child exit %d\n", WEXITSTATUS(st));
        } else if (!strcmp(a, "untraced")) {
            /* clone(CLONE_UNTRACED): a child no tracer would follow */
            long p = syscall(SYS_clone, 0x00800000L | SIGCHLD, 0L, 0L, 0L, 0L);
            if (p == 0) {
                int fd = open("/etc/hostname", O_RDONLY);
                report("untraced-child-open", fd < 0 ? -1 : 0);
                _exit(0);
            }
            int st;
            waitpid(p, &st, 0);
        } else if (!strcmp(a, "clone3-untraced")) {
            struct { unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; } ca;
            memset(&ca, 0, sizeof ca);
            ca.flags = 0x00800000ULL;
            ca.exit_signal = SIGCHLD;
            long p = syscall(SYS_clone3, &ca, sizeof ca);
            if (p == 0) _exit(0);
            if (p > 0) waitpid(p, NULL, 0);
            report("clone3-untraced", p);
        } else if (!strcmp(a, "io_uring")) {
            char params[120];
            memset(params, 0, sizeof params);
            long fd = syscall(425 /* io_uring_setup */, 4, params);
            report("io_uring_setup", fd < 0 ? -1 : 0);
        } else if (!strncmp(a, "thread-exec:", 12)) {
            pthread_t th;
            pthread_create(&th, NULL, thread_exec, (void *)(a + 12));
            pthread_join(th, NULL);
            printf("not reached\n");
        } else if (!strcmp(a, "eintr")) {
            /* a blocking read interrupted by a signal whose handler has no SA_RESTART */
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_alarm;
            sigaction(SIGALRM, &sa, NULL);
            int p[2];
            if (pipe(p)) return 3;
            struct itimerval it = {{0, 0}, {0, 100000}};
            setitimer(ITIMER_REAL, &it, NULL);
            char c;
            report("read", read(p[0], &c, 1));
        } else if (!strcmp(a, "restart")) {
            /* with SA_RESTART the read resumes after the handler and gets the byte a child writes later */
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_alarm;
            sa.sa_flags = SA_RESTART;
            sigaction(SIGALRM, &sa, NULL);
            int p[2];
            if (pipe(p)) return 3;
            if (fork() == 0) { usleep(300000); if (write(p[1], "x", 1) != 1) _exit(1); _exit(0); }
            struct itimerval it = {{0, 0}, {0, 100000}};
            setitimer(ITIMER_REAL, &it, NULL);
            char c;
            report("read", read(p[0], &c, 1));
            wait(NULL);
        } else if (!strncmp(a, "sleep:", 6)) {
            struct timespec ts = {0, atol(a + 6) * 1000000L};
            report("nanosleep", nanosleep(&ts, NULL));
        } else {
            fprintf(stderr, "unknown action %s\n", a);
            return 2;
        }
    }
    return 0;
}
