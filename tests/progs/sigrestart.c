/* sigrestart FIFO OTHER: an open interrupted by a signal whose handler
 * (SA_RESTART) opens another file; the kernel then runs the interrupted open
 * again.  The main thread opens FIFO for reading (it blocks: no writer yet);
 * a child waits until the parent is blocked in that open (its wchan), sends
 * SIGUSR1, waits until the handler has run, then opens FIFO for writing
 * (non-blocking, retried for up to 10 s: it fails with ENXIO while no reader
 * has it open).  Prints "parent fifo|other|fail ERR" and "writer ok|ENXIO".
 * Natively: "parent fifo", "writer ok". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *other;
static int done[2];

static void on_usr1(int s) {
    (void)s;
    int fd = open(other, O_RDONLY);  /* a judged call of its own, inside the handler */
    if (fd >= 0) close(fd);
    (void)!write(done[1], "x", 1);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int blocked_in_open(pid_t pid) {
    char path[64], buf[64] = "";
    snprintf(path, sizeof path, "/proc/%d/wchan", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    (void)!fgets(buf, sizeof buf, f);
    fclose(f);
    return strstr(buf, "wait_for_partner") != NULL || strstr(buf, "fifo_open") != NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    const char *fifo = argv[1];
    other = argv[2];
    unlink(fifo);
    if (mkfifo(fifo, 0600) != 0 || pipe(done) != 0) return 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    pid_t parent = getpid(), pid = fork();
    if (pid == 0) {
        double end = now() + 30;
        while (!blocked_in_open(parent) && now() < end) usleep(1000);
        kill(parent, SIGUSR1);
        char c;
        (void)!read(done[0], &c, 1);  /* the handler ran (the parent's open is being restarted) */
        int w = -1;
        end = now() + 10;
        while ((w = open(fifo, O_WRONLY | O_NONBLOCK)) < 0 && errno == ENXIO && now() < end) usleep(1000);
        printf("writer %s\n", w >= 0 ? "ok" : strerrorname_np(errno));
        fflush(stdout);
        _exit(0);
    }
    int fd = open(fifo, O_RDONLY);
    struct stat st;
    if (fd < 0)
        printf("parent fail %s\n", strerrorname_np(errno));
    else
        printf("parent %s\n", fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) ? "fifo" : "other");
    fflush(stdout);
    waitpid(pid, NULL, 0);
    return 0;
}
