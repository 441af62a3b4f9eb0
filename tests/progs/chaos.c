/* Ordinary but awkward program behaviour for the fuzz test, driven by a seed:
 * threads that open and exit at once, fork+exec storms, children killed
 * with SIGKILL mid-call, a symlink that keeps vanishing while it is opened,
 * and an ending by exit_group or execve from a non-main thread while other
 * threads are mid-call.   chaos SEED DIR ROUNDS  (environment: CHAOS_SECONDS)
 *
 * It must end whatever the authorizers answer (the fuzz test's authorizers
 * deny calls and forge results at random), so that a hang the fuzz test
 * sees is always the broker's: nothing here waits for a call that may be
 * denied to succeed, and every loop ends at a deadline (CHAOS_SECONDS
 * after the start, default 20; exit status 9) read from the vDSO clock, which makes
 * no system call.  Found by the fuzz test: a denied kill() left the child
 * opening for ever and its parent in waitpid(); a clone3 whose result was
 * forged to 0 ran a looping thread's body in the main thread.  A child
 * meant to be SIGKILLed gives up after a second; a thread that cannot be
 * created ends the program. */
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
/* initialized, so in .data, below .bss: a `set` verdict's bytes written over
 * the path buffers above run upwards, away from it */
static double deadline = -1.0;

/* Seconds on the monotonic clock; a clock that cannot be read ends the program. */
static double now(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) _exit(9);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void check_deadline(void) {
    if (now() > deadline) _exit(9);
}

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
        check_deadline();
    }
    return NULL;
}

static void *spinner(void *arg) {
    (void)arg;
    for (;;) {
        opener(link_path);
        check_deadline();
    }
    return NULL;
}

/* The child of case 2: opens until its parent's SIGKILL, or for a second if
 * that kill was denied. */
static void killed_child(void) {
    double end = now() + KILLED_CHILD_SECONDS;
    for (;;) {
        opener(link_path);
        if (now() > end) _exit(0);
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
    const char *seconds = getenv("CHAOS_SECONDS");
    deadline = now() + (seconds ? atof(seconds) : 20.0);
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
        check_deadline();
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
    for (;;) {  /* the ender ends the program; a denied usleep only makes this spin */
        usleep(100000);
        check_deadline();
    }
}
