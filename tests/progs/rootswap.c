/* rootswap: opens of one absolute path by processes whose root changes
 * (the shim keeps tracees' root descriptors: resolve.RootFds).  Each open
 * prints "WHAT CONTENT" (the file's first line) or "WHAT fail ERRNAME".
 *
 * rootswap chroot JAIL PATH: open PATH, chroot(JAIL), open PATH again.
 * rootswap reuse JAIL DIR PATH: a child opens PATH and exits; then a child
 *   with the same pid (ns_last_pid, root) in a mount namespace of its own
 *   (clone(CLONE_NEWNS): no unshare, no chroot) bind-mounts JAIL on DIR and
 *   opens PATH.  Prints "noreuse" if the pid could not be had again.
 * rootswap many N PATH: "start", waits for a line on stdin, then N children
 *   one after another each open PATH and exit; "done", waits for a line. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void show(const char *what, const char *path) {
    char buf[256] = "";
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("%s fail %s\n", what, strerrorname_np(errno));
    } else {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        buf[strcspn(buf, "\n")] = 0;
        printf("%s %s\n", what, buf);
        close(fd);
    }
    fflush(stdout);
}

static void wait_line(void) {
    char line[16];
    if (!fgets(line, sizeof line, stdin)) exit(2);
}

static int reap(pid_t pid) {
    int st;
    if (waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int reuse(const char *jail, const char *dir, const char *path) {
    pid_t a = fork();
    if (a == 0) {
        show("first", path);
        _exit(0);
    }
    reap(a);
    for (int i = 0; i < 500; i++) {
        FILE *f = fopen("/proc/sys/kernel/ns_last_pid", "w");
        if (!f) { perror("ns_last_pid"); return 1; }
        fprintf(f, "%d", a - 1);
        fclose(f);
        pid_t b = syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
        if (b == 0) {
            if (getpid() != a) _exit(3);
            if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) || mount(jail, dir, NULL, MS_BIND, NULL)) {
                perror("mount");
                _exit(1);
            }
            show("second", path);
            _exit(0);
        }
        if (b < 0) { perror("clone"); return 1; }
        int st = reap(b);
        if (st != 3) return st;
    }
    printf("noreuse\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "chroot")) {
        show("before", argv[3]);
        if (chroot(argv[2]) || chdir("/")) { perror("chroot"); return 1; }
        show("after", argv[3]);
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "reuse"))
        return reuse(argv[2], argv[3], argv[4]);
    if (argc == 4 && !strcmp(argv[1], "many")) {
        printf("start\n");
        fflush(stdout);
        wait_line();
        for (int i = atoi(argv[2]); i > 0; i--) {
            pid_t c = fork();
            if (c == 0) {
                int fd = open(argv[3], O_RDONLY);
                _exit(fd < 0);
            }
            if (reap(c) != 0) { printf("child failed\n"); return 1; }
        }
        printf("done\n");
        fflush(stdout);
        wait_line();
        return 0;
    }
    fprintf(stderr, "usage: rootswap chroot JAIL PATH | reuse JAIL DIR PATH | many N PATH\n");
    return 2;
}
