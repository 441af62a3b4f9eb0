/* What a program inside the sandbox policy tries against files and processes
 * outside its reach.  Each argument is one operation; prints "OP ok" or
 * "OP ERRNO-NAME" per operation:
 *   mknod-chr:PATH        a character device node (1,11 = /dev/kmsg)
 *   mknod-blk:PATH        a block device node (8,0 = a raw disk)
 *   mknodat-chr:PATH      the same through mknodat(AT_FDCWD)
 *   mkfifo:PATH           a fifo (harmless)
 *   fchmod:PATH           open PATH read-only, fchmod(fd, 0777)
 *   fchown:PATH           open PATH read-only, fchown(fd, 65534, 65534)
 *   fchownat-empty:PATH   open PATH read-only, fchownat(fd, "", ..., AT_EMPTY_PATH)
 *   fchmodat:PATH         fchmodat(AT_FDCWD, PATH, 0777)
 *   kill:PID              kill(PID, SIGTERM)
 *   tgkill:PID            tgkill(PID, PID, SIGTERM)
 *   kill-child            fork a child that pauses, SIGTERM it, reap it
 * Calls that change or read another process; PID "0" is the caller, "child"
 * a child forked for the call (pausing, killed and reaped after it):
 *   prlimit:PID           prlimit64(PID, RLIMIT_NOFILE) soft limit to 77
 *   affinity:PID          sched_setaffinity(PID) to CPU 0 only
 *   nice:PID              setpriority(PRIO_PROCESS, PID, 19)
 *   nice-pgrp:PGRP        setpriority(PRIO_PGRP, PGRP, 19)
 *   sched:PID             sched_setscheduler(PID, SCHED_IDLE)
 *   param:PID             sched_setparam(PID, priority 0)
 *   ioprio:PID            ioprio_set(IOPRIO_WHO_PROCESS, PID, idle class)
 *   robust:PID            get_robust_list(PID)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *op, long rc) {
    if (rc < 0)
        printf("%s %s\n", op, strerrorname_np(errno));
    else
        printf("%s ok\n", op);
    fflush(stdout);
}

static long on_ro_fd(const char *path, int what) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    long rc;
    if (what == 0)
        rc = fchmod(fd, 0777);
    else if (what == 1)
        rc = fchown(fd, 65534, 65534);
    else
        rc = syscall(SYS_fchownat, fd, "", 65534, 65534, AT_EMPTY_PATH);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

static long kill_child(void) {
    pid_t c = fork();
    if (c == 0) {
        pause();
        _exit(0);
    }
    long rc = kill(c, SIGTERM);
    int e = errno, st;
    waitpid(c, &st, 0);
    errno = e;
    return rc;
}

static pid_t target_of(const char *arg) {
    if (strcmp(arg, "child"))
        return atoi(arg);
    pid_t c = fork();
    if (c == 0) {
        pause();
        _exit(0);
    }
    return c;
}

static void reap(const char *arg, pid_t pid) {
    if (!strcmp(arg, "child")) {
        int st;
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
}

static int is_process_op(const char *op) {
    static const char *ops[] = {"prlimit", "affinity", "nice", "nice-pgrp", "sched", "param", "ioprio", "robust"};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        if (!strcmp(op, ops[i]))
            return 1;
    return 0;
}

/* one call that changes (or reads) process PID; -1 with errno on failure */
static long on_process(const char *op, pid_t pid) {
    if (!strcmp(op, "prlimit")) {
        struct rlimit old, lim;
        if (syscall(SYS_prlimit64, pid, RLIMIT_NOFILE, NULL, &old) < 0)
            return -1;
        lim.rlim_cur = 77;
        lim.rlim_max = old.rlim_max;
        return syscall(SYS_prlimit64, pid, RLIMIT_NOFILE, &lim, NULL);
    }
    if (!strcmp(op, "affinity")) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        return sched_setaffinity(pid, sizeof set, &set);
    }
    if (!strcmp(op, "nice"))
        return setpriority(PRIO_PROCESS, pid, 19);
    if (!strcmp(op, "nice-pgrp"))
        return setpriority(PRIO_PGRP, pid, 19);
    struct sched_param sp = {0};
    if (!strcmp(op, "sched"))
        return sched_setscheduler(pid, SCHED_IDLE, &sp);
    if (!strcmp(op, "param"))
        return sched_setparam(pid, &sp);
    if (!strcmp(op, "ioprio"))
        return syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, pid, 3 << 13 /* IOPRIO_CLASS_IDLE */);
    if (!strcmp(op, "robust")) {
        void *head;
        size_t len;
        return syscall(SYS_get_robust_list, pid, &head, &len);
    }
    errno = EINVAL;
    return -1;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        char op[64];
        const char *arg = strchr(argv[i], ':');
        size_t n = arg ? (size_t)(arg - argv[i]) : strlen(argv[i]);
        snprintf(op, sizeof op, "%.*s", (int)n, argv[i]);
        arg = arg ? arg + 1 : "";
        long rc;
        if (!strcmp(op, "mknod-chr"))
            rc = mknod(arg, S_IFCHR | 0600, makedev(1, 11));
        else if (!strcmp(op, "mknod-blk"))
            rc = mknod(arg, S_IFBLK | 0600, makedev(8, 0));
        else if (!strcmp(op, "mknodat-chr"))
            rc = mknodat(AT_FDCWD, arg, S_IFCHR | 0600, makedev(1, 11));
        else if (!strcmp(op, "mkfifo"))
            rc = mknod(arg, S_IFIFO | 0600, 0);
        else if (!strcmp(op, "fchmod"))
            rc = on_ro_fd(arg, 0);
        else if (!strcmp(op, "fchown"))
            rc = on_ro_fd(arg, 1);
        else if (!strcmp(op, "fchownat-empty"))
            rc = on_ro_fd(arg, 2);
        else if (!strcmp(op, "fchmodat"))
            rc = fchmodat(AT_FDCWD, arg, 0777, 0);
        else if (!strcmp(op, "kill"))
            rc = kill(atoi(arg), SIGTERM);
        else if (!strcmp(op, "tgkill"))
            rc = syscall(SYS_tgkill, atoi(arg), atoi(arg), SIGTERM);
        else if (!strcmp(op, "kill-child"))
            rc = kill_child();
        else if (is_process_op(op)) {
            pid_t pid = target_of(arg);
            rc = on_process(op, pid);
            int e = errno;
            reap(arg, pid);
            errno = e;
        } else {
            fprintf(stderr, "unknown op %s\n", op);
            return 2;
        }
        report(op, rc);
    }
    return 0;
}
