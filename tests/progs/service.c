/* A tiny "service": every 20 ms it opens each file of the comma-separated
 * list argv[1] and prints one status line per file with a counter, for
 * argv[2] rounds (default forever).  It runs two threads so attach must
 * seize more than one. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void *spin(void *arg) {
    (void)arg;
    for (;;) { struct timespec ts = {0, 5000000}; nanosleep(&ts, NULL); }
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    long limit = argc > 2 ? atol(argv[2]) : -1;
    pthread_t th;
    pthread_create(&th, NULL, spin, NULL);
    char *paths[16];
    int n = 0;
    for (char *p = strtok(strdup(argv[1]), ","); p && n < 16; p = strtok(NULL, ",")) paths[n++] = p;
    for (long i = 0; limit < 0 || i < limit; i++) {
        for (int k = 0; k < n; k++) {
            int fd = open(paths[k], O_RDONLY);
            if (n == 1) printf("%ld %s\n", i, fd < 0 ? strerrorname_np(errno) : "ok");
            else printf("%ld %s %s\n", i, paths[k], fd < 0 ? strerrorname_np(errno) : "ok");
            if (fd >= 0) close(fd);
        }
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}
