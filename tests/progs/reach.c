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
 *   reach peek PID             get_robust_list, move_pages (status only), migrate_pages (node 0 to
 *                              node 0) and perf_event_open (a software clock) on PID: one line each
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
#include <sys/syscall.h>
#include <unistd.h>

static const char *ename(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EIO: return "EIO";
    case EBUSY: return "EBUSY";
    case ENOSYS: return "ENOSYS";
    case ENXIO: return "ENXIO";
    default: return "E?";
    }
}

static void report(const char *what, long r) {
    if (r < 0)
        printf("%s fail %s\n", what, ename(errno));
    else
        printf("%s ok\n", what);
    fflush(stdout);
}

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

int main(int argc, char **argv) {
    char path[64];
    if (argc < 3)
        return 2;
    const char *mode = argv[1];
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
    if (!strcmp(mode, "setown") && argc > 3) {
        int p[2];
        if (pipe(p) < 0)
            return 1;
        long r = fcntl(p[0], F_SETOWN, pid);
        report("setown", r);
        fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_ASYNC);
        if (write(p[1], "x", 1) != 1) /* readable: SIGIO to the owner */
            return 1;
        report("open", open(argv[3], O_RDONLY));
        return 0;
    }
    return 2;
}
