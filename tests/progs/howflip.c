/* openat2's flags flipped by another thread after the broker judged them:
 * argv[2] openat2 calls of argv[1] while how.flags flips between O_RDONLY and
 * O_WRONLY|O_APPEND; counts the descriptors really opened for writing
 * (F_GETFL), for reading, and the opens refused.  Prints
 * "write N read N denied N". */
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static struct open_how how;
static volatile int stop;

static void *flipper(void *arg) {
    (void)arg;
    volatile unsigned long long *p = &how.flags;
    while (!stop) { *p = O_RDONLY; *p = O_WRONLY | O_APPEND; }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    long n = atol(argv[2]), w = 0, r = 0, denied = 0;
    pthread_t th;
    pthread_create(&th, NULL, flipper, NULL);
    for (long i = 0; i < n; i++) {
        int fd = syscall(SYS_openat2, AT_FDCWD, argv[1], &how, sizeof how);
        if (fd < 0) { denied++; continue; }
        if ((fcntl(fd, F_GETFL) & O_ACCMODE) == O_WRONLY) w++; else r++;
        close(fd);
    }
    stop = 1;
    pthread_join(th, NULL);
    printf("write %ld read %ld denied %ld\n", w, r, denied);
    return 0;
}
