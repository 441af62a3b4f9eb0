/* A symlink swapped between the broker's check and the kernel's exec: a
 * thread keeps pointing DIR/link at argv[3] then argv[4]; the main thread
 * forks argv[2] children that exec DIR/link and tallies their exit statuses
 * (0: argv[3] ran, 1: argv[4] ran, other: refused or killed). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static char link_path[4096], tmp_path[4096];
static const char *good, *bad;

static void *swapper(void *arg) {
    (void)arg;
    for (;;) {
        unlink(tmp_path);
        if (symlink(good, tmp_path) == 0) rename(tmp_path, link_path);
        unlink(tmp_path);
        if (symlink(bad, tmp_path) == 0) rename(tmp_path, link_path);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    snprintf(link_path, sizeof link_path, "%s/link", argv[1]);
    snprintf(tmp_path, sizeof tmp_path, "%s/tmp", argv[1]);
    good = argv[3];
    bad = argv[4];
    symlink(good, link_path);
    pthread_t th;
    pthread_create(&th, NULL, swapper, NULL);
    long n = atol(argv[2]), g = 0, b = 0, other = 0;
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) { execl(link_path, "x", (char *)NULL); _exit(127); }
        int st;
        waitpid(p, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) g++;
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 1) b++;
        else other++;
    }
    printf("good %ld bad %ld denied %ld\n", g, b, other);
    return 0;
}
