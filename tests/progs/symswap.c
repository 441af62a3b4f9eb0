/* A symlink swapped on disk between the broker's check and the kernel's open:
 * one thread keeps replacing DIR/link (-> good, then -> bad) while the main
 * thread opens DIR/link argv[2] times and counts what it really got (by the
 * first byte of the content).  With a fifth argument "absent", DIR/link is
 * mostly absent: the swapper renames a link to bad into place and removes it
 * again, so the broker usually resolves a path that does not exist yet.
 * With "trunc", the opens are O_WRONLY|O_TRUNC and what is counted is how
 * often bad was found emptied after one ("bad", refilled each time), even
 * when the open itself then failed ("good": the opens that succeeded). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char link_path[4096], tmp_path[4096];
static const char *good, *bad;
static int absent, trunc;

static void *swapper(void *arg) {
    (void)arg;
    for (;;) {
        if (absent) {  /* present and absent for a while each: about one decision's time */
            unlink(tmp_path);
            if (symlink(bad, tmp_path) == 0) rename(tmp_path, link_path);
            for (volatile int k = 0; k < 20000; k++) {}
            unlink(link_path);
            for (volatile int k = 0; k < 20000; k++) {}
            continue;
        }
        unlink(tmp_path);
        if (symlink(good, tmp_path) == 0) rename(tmp_path, link_path);
        unlink(tmp_path);
        if (symlink(bad, tmp_path) == 0) rename(tmp_path, link_path);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) return 2;
    absent = argc == 6 && strcmp(argv[5], "absent") == 0;
    trunc = argc == 6 && strcmp(argv[5], "trunc") == 0;
    snprintf(link_path, sizeof link_path, "%s/link", argv[1]);
    snprintf(tmp_path, sizeof tmp_path, "%s/tmp", argv[1]);
    good = argv[3];
    bad = argv[4];
    if (!absent) symlink(good, link_path);
    long n = atol(argv[2]);
    pthread_t th;
    pthread_create(&th, NULL, swapper, NULL);
    long g = 0, b = 0, denied = 0;
    for (long i = 0; i < n; i++) {
        if (trunc) {
            int fd = open(link_path, O_WRONLY | O_TRUNC);
            if (fd < 0) denied++; else { g++; close(fd); }
            struct stat st;
            if (stat(bad, &st) == 0 && st.st_size == 0) {  /* emptied: count it, fill it again */
                b++;
                int w = open(bad, O_WRONLY);
                if (w >= 0) { if (write(w, "bad\n", 4) != 4) b += 1000000; close(w); }
            }
            continue;
        }
        int fd = open(link_path, O_RDONLY);
        if (fd < 0) { denied++; continue; }
        char c = 0;
        if (read(fd, &c, 1) == 1) { if (c == 'g') g++; else if (c == 'b') b++; }
        close(fd);
    }
    printf("good %ld bad %ld denied %ld\n", g, b, denied);
    return 0;
}
