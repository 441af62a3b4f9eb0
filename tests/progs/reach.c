/* A hostile traced program reaching for processes outside its session
 * (issue #16, escapes 1-3).  Prints one line per attempt: "WHAT ok" or
 * "WHAT fail ERRNAME".
 *
 *   reach mem PID              open /proc/PID/mem read-write (and write a byte back)
 *   reach inject PID PATH      open /proc/PID/fd/1 for writing; a thread writes "cont" lines into it
 *                              while the main thread tries to open PATH 20 times ("open ok" if once)
 *   reach pidfd PID            pidfd_send_signal(SIGCONT) through a /proc/PID directory descriptor
 *   reach setown PID PATH      F_SETOWN(PID) + O_ASYNC on a pipe, make it readable (SIGIO to PID),
 *                              then open PATH (a judged call: the authorizer has seen its SIGIO by then)
 *   reach via LINK             open LINK (e.g. a symlink to /proc/PID/mem) read-write
 *   reach setown-ex PID PATH   the same with F_SETOWN_EX (F_OWNER_PID)
 *   reach fiosetown PID PATH   the same on a socket with ioctl(FIOSETOWN)
 *   reach siocspgrp PID PATH   the same on a socket with ioctl(SIOCSPGRP), high bits set in the command
 *   reach ownrace PID [N]      a thread flips the owner in memory between the caller and PID while
 *                              F_SETOWN_EX and ioctl(FIOSETOWN) name it N (2000) times each; prints
 *                              "ownrace WHAT won N" (times PID became the owner) or "ownrace WHAT never"
 *   reach pidfdrace PID        a thread flips descriptor 100 between a /proc/CHILD directory (a child
 *                              of ours, SIGIO ignored) and /proc/PID while the main thread sends SIGIO
 *                              through descriptor 100 2000 times (pidfd_send_signal); prints
 *                              "pidfdrace sent N refused M" (PID's own SIGIO handler tells who got it)
 *   reach peek PID             get_robust_list, move_pages (status only), migrate_pages (node 0 to
 *                              node 0) and perf_event_open (a software clock) on PID: one line each
 *   reach perfcg DIR           perf_event_open of the cgroup DIR on CPU 0 (PERF_FLAG_PID_CGROUP: the
 *                              pid argument is DIR's descriptor)
 *   reach perfall              perf_event_open of every process on CPU 0 (pid -1)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "report.h"

static int inject_fd = -1;

static void *injector(void *arg) {
    (void)arg;
    for (int i = 0; i < 400; i++) {
        if (write(inject_fd, "cont\n", 5) < 0)
            break;
        usleep(500);
    }
    return NULL;
}

/* SIGIO to PID through fd's owner, set by MODE; then a judged open of PATH */
static int sigio_to(const char *mode, int pid, const char *path) {
    int p[2];
    int sock = strcmp(mode, "setown") && strcmp(mode, "setown-ex");
    if ((sock ? socketpair(AF_UNIX, SOCK_STREAM, 0, p) : pipe(p)) < 0)
        return 1;
    long r;
    if (!strcmp(mode, "setown")) {
        r = fcntl(p[0], F_SETOWN, pid);
    } else if (!strcmp(mode, "setown-ex")) {
        struct f_owner_ex ex = {F_OWNER_PID, pid};
        r = fcntl(p[0], F_SETOWN_EX, &ex);
    } else {
        /* siocspgrp: garbage in the register's high half, which the kernel ignores (cmd is 32-bit) */
        unsigned long cmd = !strcmp(mode, "fiosetown") ? FIOSETOWN : 0xdead00000000UL | SIOCSPGRP;
        r = syscall(SYS_ioctl, p[0], cmd, &pid);
    }
    report(mode, r);
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_ASYNC);
    if (write(p[1], "x", 1) != 1) /* readable: SIGIO to the owner */
        return 1;
    report("open", open(path, O_RDONLY));
    return 0;
}

static volatile int race_stop;
static volatile struct f_owner_ex race_ex;
static volatile int race_pid;
static int race_target, race_self;

static void *flipper(void *arg) {
    (void)arg;
    while (!race_stop) {
        race_ex.pid = race_target;
        race_pid = race_target;
        race_ex.pid = race_self;
        race_pid = race_self;
    }
    return NULL;
}

/* how many of n owner commands on fd made `target` the owner */
static int owner_race(int fd, int ioctl_form, int target, int n) {
    int won = 0;
    for (int i = 0; i < n; i++) {
        if (ioctl_form)
            ioctl(fd, FIOSETOWN, (int *)&race_pid);
        else
            fcntl(fd, F_SETOWN_EX, (struct f_owner_ex *)&race_ex);
        struct f_owner_ex now;
        if (fcntl(fd, F_GETOWN_EX, &now) == 0 && now.pid == target)
            won++;
        fcntl(fd, F_SETOWN, race_self); /* back to the caller */
    }
    return won;
}

static volatile int flip_stop;
static int flip_a, flip_b;
#define FLIP_FD 100

static void *fd_flipper(void *arg) {
    (void)arg;
    while (!flip_stop) {
        dup2(flip_b, FLIP_FD);
        dup2(flip_a, FLIP_FD);
    }
    return NULL;
}

/* SIGIO through a descriptor number another thread re-points between our child and `pid` */
static int pidfd_race(int pid) {
    char path[64];
    signal(SIGIO, SIG_IGN); /* inherited: the child ignores it from its first instruction */
    pid_t child = fork();
    if (child == 0) {
        for (;;)
            pause();
    }
    snprintf(path, sizeof path, "/proc/%d", child);
    flip_a = open(path, O_RDONLY | O_DIRECTORY);
    snprintf(path, sizeof path, "/proc/%d", pid);
    flip_b = open(path, O_RDONLY | O_DIRECTORY);
    if (child < 0 || flip_a < 0 || flip_b < 0 || dup2(flip_a, FLIP_FD) < 0)
        return 1;
    pthread_t t;
    pthread_create(&t, NULL, fd_flipper, NULL);
    int sent = 0, refused = 0;
    for (int i = 0; i < 2000; i++) {
        if (syscall(SYS_pidfd_send_signal, FLIP_FD, SIGIO, NULL, 0) == 0)
            sent++;
        else
            refused++;
    }
    flip_stop = 1;
    pthread_join(t, NULL);
    kill(child, SIGKILL);
    printf("pidfdrace sent %d refused %d\n", sent, refused);
    return 0;
}

/* a software clock event on CPU 0 of `pid` (flags: how pid reads) */
static long perf_on_cpu0(int pid, unsigned long flags) {
    struct perf_event_attr attr = {.type = PERF_TYPE_SOFTWARE, .size = sizeof attr,
                                   .config = PERF_COUNT_SW_CPU_CLOCK, .disabled = 1};
    return syscall(SYS_perf_event_open, &attr, pid, 0, -1, flags);
}

int main(int argc, char **argv) {
    char path[64];
    if (argc == 2 && !strcmp(argv[1], "perfall")) {
        report("perfall", perf_on_cpu0(-1, 0));
        return 0;
    }
    if (argc < 3)
        return 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "perfcg")) {
        int dfd = open(argv[2], O_RDONLY | O_DIRECTORY);
        report("perfcg", dfd < 0 ? dfd : perf_on_cpu0(dfd, PERF_FLAG_PID_CGROUP));
        return 0;
    }
    if (!strcmp(mode, "via")) {
        report("via", open(argv[2], O_RDWR));
        return 0;
    }
    int pid = atoi(argv[2]);
    if (!strcmp(mode, "mem")) {
        snprintf(path, sizeof path, "/proc/%d/mem", pid);
        int fd = open(path, O_RDWR);
        report("mem", fd);
        return 0;
    }
    if (!strcmp(mode, "inject") && argc > 3) {
        snprintf(path, sizeof path, "/proc/%d/fd/1", pid);
        inject_fd = open(path, O_WRONLY);
        report("inject", inject_fd);
        pthread_t t;
        if (inject_fd >= 0)
            pthread_create(&t, NULL, injector, NULL);
        int got = -1, err = 0;
        for (int i = 0; i < 20 && got < 0; i++) {
            got = open(argv[3], O_RDONLY);
            err = errno;
            usleep(2000);
        }
        errno = err;
        report("open", got);
        if (inject_fd >= 0)
            pthread_join(t, NULL);
        return 0;
    }
    if (!strcmp(mode, "pidfd")) {
        snprintf(path, sizeof path, "/proc/%d", pid);
        int dfd = open(path, O_RDONLY | O_DIRECTORY);
        if (dfd < 0) {
            report("pidfd", dfd);
            return 0;
        }
        report("pidfd", syscall(SYS_pidfd_send_signal, dfd, SIGCONT, NULL, 0));
        return 0;
    }
    if (!strcmp(mode, "pidfdrace"))
        return pidfd_race(pid);
    if (!strcmp(mode, "peek")) {
        /* calls that need ptrace-mode access to PID (a Landlock domain refuses them outside) */
        void *head;
        size_t len;
        report("robust", syscall(SYS_get_robust_list, pid, &head, &len));
        report("move_pages", syscall(SYS_move_pages, pid, 0UL, NULL, NULL, NULL, 0));
        unsigned long nodes = 1;
        report("migrate_pages", syscall(SYS_migrate_pages, pid, 8 * sizeof nodes, &nodes, &nodes));
        struct perf_event_attr attr = {.type = PERF_TYPE_SOFTWARE, .size = sizeof attr,
                                       .config = PERF_COUNT_SW_CPU_CLOCK, .disabled = 1,
                                       .exclude_kernel = 1, .exclude_hv = 1};
        report("perf", syscall(SYS_perf_event_open, &attr, pid, -1, -1, 0UL));
        return 0;
    }
    if ((!strcmp(mode, "setown") || !strcmp(mode, "setown-ex") || !strcmp(mode, "fiosetown")
         || !strcmp(mode, "siocspgrp")) && argc > 3)
        return sigio_to(mode, pid, argv[3]);
    if (!strcmp(mode, "ownrace")) {
        int p[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, p) < 0)
            return 1;
        race_target = pid;
        race_self = getpid();
        race_ex.type = F_OWNER_PID;
        race_ex.pid = race_self;
        race_pid = race_self;
        pthread_t t;
        pthread_create(&t, NULL, flipper, NULL);
        int n = argc > 3 ? atoi(argv[3]) : 2000;
        int won_ex = owner_race(p[0], 0, pid, n), won_ioctl = owner_race(p[0], 1, pid, n);
        race_stop = 1;
        pthread_join(t, NULL);
        const char *what[] = {"F_SETOWN_EX", "FIOSETOWN"};
        int won[] = {won_ex, won_ioctl};
        for (int i = 0; i < 2; i++) {
            if (won[i])
                printf("ownrace %s won %d\n", what[i], won[i]);
            else
                printf("ownrace %s never\n", what[i]);
        }
        return 0;
    }
    return 2;
}
