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
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
        else {
            fprintf(stderr, "unknown op %s\n", op);
            return 2;
        }
        report(op, rc);
    }
    return 0;
}
