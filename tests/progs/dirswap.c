/* A directory component swapped for a symlink between the broker's decision
 * and the kernel's open: DIR/sub is a real directory holding "f" (content
 * "good"); one thread keeps moving it aside and putting a symlink to OUTSIDE
 * (whose "f" says "bad") in its place, and back, while the main thread opens
 * the absolute path DIR/sub/f N times and counts what it really got (by the
 * first byte of the content).  A pinned open (openat2 of the judged real
 * path, following no symlink) must never reach OUTSIDE/f.
 *
 *   dirswap DIR OUTSIDE N   ->  "good G bad B denied D"            */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char sub[4096], aside[4096], tmp[4096];
static const char *outside;

static void *swapper(void *arg) {
    (void)arg;
    for (;;) {
        rename(sub, aside);  /* the directory leaves ... */
        unlink(tmp);
        if (symlink(outside, tmp) == 0) rename(tmp, sub);  /* ... a symlink takes its place ... */
        for (volatile int k = 0; k < 2000; k++) {}
        unlink(sub);
        rename(aside, sub);  /* ... and the directory comes back */
        for (volatile int k = 0; k < 2000; k++) {}
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    char path[4096];
    snprintf(sub, sizeof sub, "%s/sub", argv[1]);
    snprintf(aside, sizeof aside, "%s/aside", argv[1]);
    snprintf(tmp, sizeof tmp, "%s/tmp", argv[1]);
    snprintf(path, sizeof path, "%s/sub/f", argv[1]);
    outside = argv[2];
    long n = atol(argv[3]);
    pthread_t th;
    pthread_create(&th, NULL, swapper, NULL);
    long g = 0, b = 0, denied = 0;
    for (long i = 0; i < n; i++) {
        int fd = openat(AT_FDCWD, path, O_RDONLY);
        if (fd < 0) { denied++; continue; }
        char c = 0;
        if (read(fd, &c, 1) == 1) { if (c == 'g') g++; else if (c == 'b') b++; }
        close(fd);
    }
    printf("good %ld bad %ld denied %ld\n", g, b, denied);
    return 0;
}
