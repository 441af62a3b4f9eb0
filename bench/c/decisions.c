/* decisions N: the memory test's tracee.  100 warm-up getppid calls, then
 * "start" on stdout and a pause (the bench samples RSS), N getppid calls,
 * "end" and another pause.  Prints "loop_ns N NS" last. */
#include "common.h"
#include <unistd.h>
#include <sys/syscall.h>

static void mark(const char *what)
{
    printf("%s\n", what);
    fflush(stdout);
    struct timespec ts = {0, 400 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    long n = arg_long(argc, argv, 1, 1000000);
    long sink = 0;
    for (int i = 0; i < 1000; i++) sink += syscall(SYS_getppid);
    mark("start");
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) sink += syscall(SYS_getppid);
    uint64_t t1 = now_ns();
    mark("end");
    printf("loop_ns %ld %llu\n", n, (unsigned long long)(t1 - t0));
    return sink == 0;
}
