/* Ordinary but awkward program behaviour for the fuzz test, driven by a seed:
 * threads that open and exit at once, fork+exec storms, children killed
 * with SIGKILL mid-call, a symlink that keeps vanishing while it is opened,
 * and an ending by exit_group or execve from a non-main thread while other
 * threads are mid-call.   chaos SEED DIR ROUNDS */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
            if (p == 0) { for (;;) opener(link_path); }
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
        pthread_create(&t, &det, ender, NULL);
        break;
    default:
        pthread_create(&t, &det, spinner, NULL);
        pthread_create(&t, &det, ender, (void *)1);
    }
    for (;;) pause();
}
