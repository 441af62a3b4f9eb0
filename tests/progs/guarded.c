/* guarded: calls a policy may deny by their register arguments; prints one
 * "NAME ok N" or "NAME fail ERRNO" line each.  stdin should be no terminal. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static void report(const char *what, long r) {
    if (r < 0) printf("%s fail %s\n", what, strerrorname_np(errno));
    else printf("%s ok\n", what);
    fflush(stdout);
}

static void child_clone(const char *what, unsigned long flags) {
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    report(what, pid);
}

int main(void) {
    char c = 'x';
    struct termios tio;
    report("tiocsti", syscall(SYS_ioctl, 0, TIOCSTI, &c));
    /* the kernel reads the command as an int: high bits do not make it another command */
    report("tiocsti-high", syscall(SYS_ioctl, 0, TIOCSTI | (1UL << 32), &c));
    report("tcgets", syscall(SYS_ioctl, 0, TCGETS, &tio));
    child_clone("clone-newuser", CLONE_NEWUSER);
    child_clone("clone-newns-high", CLONE_NEWNS | (1UL << 40));
    child_clone("clone", 0);
    return 0;
}
