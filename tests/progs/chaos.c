/* Ordinary but awkward program behaviour for the fuzz test, driven by a seed:
 * threads that open and exit at once, fork+exec storms, children killed
 * with SIGKILL mid-call, a symlink that keeps vanishing while it is opened,
 * and an ending by exit_group or execve from a non-main thread while other
 * threads are mid-call.   chaos SEED DIR ROUNDS
 *
 * It must end whatever the authorizers answer (the fuzz test's authorizers
 * deny calls at random): nothing here waits for a call that may be denied to
 * succeed.  A denied kill() leaves the child to end on its own (a deadline
 * read from the vDSO clock, which makes no system call), and a thread that
 * cannot be created (clone3/mmap denied) ends the program at once instead of
 * leaving main in pause() for ever. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* how long a child meant to be SIGKILLed makes calls if the kill is denied */
#define KILLED_CHILD_SECONDS 1.0

static char dir[3000], link_path[3100], tmp_path[3100];
static volatile int stop;

static void *opener(void *arg) {
    int fd = open(arg ? (char *)arg : "/etc/hostname", O_RDONLY);
    if (fd >= 0) close(fd);
    return NULL;
}

static void *flipper(void *arg) {
    (void)arg;
    while (!stop) {
        unlink(tmp_path);
        if (symlink("/etc/hostname", tmp_path) == 0) rename(tmp_path, link_path);
        unlink(link_path);
    }
    return NULL;
}

static void *spinner(void *arg) {
    (void)arg;
    for (;;) opener(link_path);
    return NULL;
}

/* The child of case 2: opens until its parent's SIGKILL, or until the
 * deadline if that kill was denied (or the clock cannot be read). */
static void killed_child(void) {
    struct timespec t0, now;
    if (clock_gettime(CLOCK_MONOTONIC, &t0) != 0) _exit(0);
    for (;;) {
        opener(link_path);
        if (clock_gettime(CLOCK_MONOTONIC, &now) != 0) _exit(0);
        if ((now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9 > KILLED_CHILD_SECONDS) _exit(0);
    }
}

/* The end comes from a thread; if it cannot be created, end now. */
static void start(void *(*fn)(void *), void *arg, pthread_attr_t *det) {
    pthread_t t;
    if (pthread_create(&t, det, fn, arg) != 0) _exit(7);
}

static void *ender(void *arg) {
    if (arg) execl("/bin/true", "true", (char *)NULL);
    _exit(7);
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    srand(atoi(argv[1]));
    snprintf(dir, sizeof dir, "%s", argv[2]);
    snprintf(link_path, sizeof link_path, "%s/l", dir);
    snprintf(tmp_path, sizeof tmp_path, "%s/t", dir);
    int rounds = atoi(argv[3]);
    pthread_t t;
    pthread_attr_t det;
    pthread_attr_init(&det);
    pthread_attr_setdetachstate(&det, PTHREAD_CREATE_DETACHED);
    pthread_create(&t, &det, flipper, NULL);
    for (int i = 0; i < rounds; i++) {
        switch (rand() % 5) {
        case 0:  /* a thread that opens and exits, never joined */
            pthread_create(&t, &det, opener, rand() % 2 ? link_path : NULL);
            break;
        case 1: {  /* fork + exec */
            pid_t p = fork();
            if (p == 0) { execl("/bin/true", "true", (char *)NULL); _exit(127); }
            if (p > 0 && rand() % 2) waitpid(p, NULL, 0);
            break;
        }
        case 2: {  /* a child killed while it makes calls */
            pid_t p = fork();
            if (p == 0) killed_child();
            if (p > 0) { if (rand() % 2) usleep(rand() % 2000); kill(p, SIGKILL); waitpid(p, NULL, 0); }
            break;
        }
        case 3:
            opener(link_path);
            break;
        default:
            opener(NULL);
        }
    }
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
    switch (rand() % 3) {  /* the end: with other threads mid-call */
    case 0:
        stop = 1;
        return 0;
    case 1:
        pthread_create(&t, &det, spinner, NULL);
        start(ender, NULL, &det);
        break;
    default:
        pthread_create(&t, &det, spinner, NULL);
        start(ender, (void *)1, &det);
    }
    for (;;) pause();
}
