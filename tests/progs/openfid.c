/* openfid DIR: the opens whose outcome must not change when the broker pins
 * them (openat2 of the judged real path, following no symlink) or keeps the
 * check at exit.  One line per case: "NAME fd N flags F mode M type T" or
 * "NAME fail ERRNAME"; the test compares the lines with a native run.
 * DIR must hold: file (a regular file), dir/, link -> file, loop -> loop,
 * dangling -> DIR/made-by-link.  The program makes and removes its own new files. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/openat2.h>
#include <unistd.h>

static char base[2048];

static const char *at(const char *rel) {
    static char buf[4][4096];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", base, rel);
    return buf[i];
}

static void show(const char *name, long fd) {
    if (fd < 0) {
        printf("%s fail %s\n", name, strerrorname_np(errno));
        fflush(stdout);
        return;
    }
    struct stat st;
    fstatat((int)fd, "", &st, AT_EMPTY_PATH);
    int fl = fcntl((int)fd, F_GETFL);
    printf("%s fd %ld flags %o mode %o type %o\n", name, fd, fl, st.st_mode & 07777, st.st_mode & S_IFMT);
    fflush(stdout);
    close((int)fd);
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    snprintf(base, sizeof base, "%s", argv[1]);
    umask(022);
    show("rdonly", openat(AT_FDCWD, at("file"), O_RDONLY));
    show("rdwr-cloexec", openat(AT_FDCWD, at("file"), O_RDWR | O_CLOEXEC));
    show("devnull", openat(AT_FDCWD, "/dev/null", O_WRONLY | O_APPEND | O_NONBLOCK));
    show("dir-rdonly", openat(AT_FDCWD, at("dir"), O_RDONLY | O_DIRECTORY));
    show("absent", openat(AT_FDCWD, at("absent"), O_RDONLY));
    show("absent-dir", openat(AT_FDCWD, at("absent/x"), O_RDONLY));
    show("notdir", openat(AT_FDCWD, at("file/x"), O_RDONLY));
    show("isdir", openat(AT_FDCWD, at("dir"), O_WRONLY));
    show("trailing-slash", openat(AT_FDCWD, at("file/"), O_RDONLY));
    show("double-slash", openat(AT_FDCWD, at("dir//../file"), O_RDONLY));
    show("dotdot", openat(AT_FDCWD, at("dir/../file"), O_RDONLY));
    show("symlink", openat(AT_FDCWD, at("link"), O_RDONLY));
    show("loop", openat(AT_FDCWD, at("loop"), O_RDONLY));
    show("nofollow", openat(AT_FDCWD, at("link"), O_RDONLY | O_NOFOLLOW));
    show("nofollow-path", openat(AT_FDCWD, at("link"), O_PATH | O_NOFOLLOW));
    show("path-extra-flags", openat(AT_FDCWD, at("file"), O_PATH | O_RDWR | O_TRUNC | O_APPEND, 0777));
    show("unknown-bits", openat(AT_FDCWD, at("file"), O_RDONLY | 0x40000000 | 070));
    show("mode-without-creat", openat(AT_FDCWD, at("file"), O_RDONLY, 0777));
    show("creat-excl", openat(AT_FDCWD, at("new1"), O_CREAT | O_EXCL | O_WRONLY, 0640));
    show("creat-excl-again", openat(AT_FDCWD, at("new1"), O_CREAT | O_EXCL | O_WRONLY, 0640));
    show("creat-excl-on-link", openat(AT_FDCWD, at("link"), O_CREAT | O_EXCL | O_WRONLY, 0640));
    /* O_PATH drops O_CREAT and O_EXCL: the link is followed (the broker once judged the link itself, ELOOP) */
    show("path-creat-excl-on-link", openat(AT_FDCWD, at("link"), O_PATH | O_CREAT | O_EXCL, 0640));
    show("path-creat-excl-dangling", openat(AT_FDCWD, at("dangling"), O_PATH | O_CREAT | O_EXCL, 0640));
    show("creat-mode-high-bits", openat(AT_FDCWD, at("new2"), O_CREAT | O_WRONLY, 0177777));
    show("creat-through-dangling", openat(AT_FDCWD, at("dangling"), O_CREAT | O_WRONLY, 0600));
    show("creat-directory", openat(AT_FDCWD, at("new3"), O_CREAT | O_DIRECTORY | O_RDWR, 0600));
    show("tmpfile", openat(AT_FDCWD, at("dir"), O_TMPFILE | O_RDWR, 0600));
    show("tmpfile-rdonly", openat(AT_FDCWD, at("dir"), O_TMPFILE | O_RDONLY, 0600));
    show("sys-open", syscall(SYS_open, at("file"), O_RDONLY));
    show("sys-creat", syscall(SYS_creat, at("new4"), 0604));
    show("trunc", openat(AT_FDCWD, at("new4"), O_WRONLY | O_TRUNC));
    int d = open(at("dir"), O_RDONLY | O_DIRECTORY);
    show("dirfd-relative", openat(d, "../file", O_RDONLY));
    close(d);
    if (chdir(base) == 0) {
        show("cwd-relative", openat(AT_FDCWD, "file", O_RDONLY));
        show("cwd-relative-dir", openat(AT_FDCWD, "dir/../link", O_RDONLY));
    }
    show("proc-self", openat(AT_FDCWD, "/proc/self/status", O_RDONLY));
    show("root", openat(AT_FDCWD, "/", O_RDONLY | O_DIRECTORY));
    show("largefile-flag", openat(AT_FDCWD, at("file"), O_RDONLY | O_LARGEFILE));
    show("noatime", openat(AT_FDCWD, at("file"), O_RDONLY | O_NOATIME));
    /* the program's own openat2: its resolve flags mean what they say (never pinned) */
    struct open_how how = {.flags = O_RDONLY, .resolve = RESOLVE_BENEATH};
    int b = open(at("dir"), O_RDONLY | O_DIRECTORY);
    show("openat2-beneath-escape", syscall(SYS_openat2, b, "../file", &how, sizeof how));
    show("openat2-beneath-absolute", syscall(SYS_openat2, b, at("file"), &how, sizeof how));
    close(b);
    how.resolve = 0;
    show("openat2-plain", syscall(SYS_openat2, AT_FDCWD, at("file"), &how, sizeof how));
    how.resolve = RESOLVE_NO_SYMLINKS;
    show("openat2-no-symlinks", syscall(SYS_openat2, AT_FDCWD, at("link"), &how, sizeof how));
    if (getuid() == 0) {  /* another user's permissions are checked as natively */
        pid_t pid = fork();
        if (pid == 0) {
            if (setgid(65534) == 0 && setuid(65534) == 0) {
                show("nobody-private", openat(AT_FDCWD, at("private/file"), O_RDONLY));
                show("nobody-devnull", openat(AT_FDCWD, "/dev/null", O_RDONLY));
            }
            _exit(0);
        }
        waitpid(pid, NULL, 0);
    }
    unlink(at("new1"));
    unlink(at("new2"));
    unlink(at("new3"));
    unlink(at("new4"));
    unlink(at("made-by-link"));
    return 0;
}
