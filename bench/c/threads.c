/* threads T SECONDS: T threads each loop openat+close on /dev/null for
 * SECONDS (all start together); prints "counts C1 C2 ..." and "elapsed_ns NS". */
#include "common.h"
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

static pthread_barrier_t start;
static uint64_t deadline;
static long *counts;

static void *worker(void *arg)
{
    long i = (long)arg, c = 0;
    pthread_barrier_wait(&start);
    while (now_ns() < deadline) {
        int fd = openat(AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) close(fd);
        c++;
    }
    counts[i] = c;
    return NULL;
}

int main(int argc, char **argv)
{
    long nt = arg_long(argc, argv, 1, 64);
    double secs = argc > 2 ? atof(argv[2]) : 3.0;
    pthread_t *tid = calloc(nt, sizeof *tid);
    counts = calloc(nt, sizeof *counts);
    pthread_barrier_init(&start, NULL, (unsigned)nt + 1);
    for (long i = 0; i < nt; i++)
        if (pthread_create(&tid[i], NULL, worker, (void *)i)) { perror("pthread_create"); return 1; }
    uint64_t t0 = now_ns();
    deadline = t0 + (uint64_t)(secs * 1e9);
    pthread_barrier_wait(&start);
    for (long i = 0; i < nt; i++) pthread_join(tid[i], NULL);
    uint64_t t1 = now_ns();
    printf("counts");
    for (long i = 0; i < nt; i++) printf(" %ld", counts[i]);
    printf("\nelapsed_ns %llu\n", (unsigned long long)(t1 - t0));
    return 0;
}
