/* getppid N: N getppid() system calls; prints "loop_ns CALLS NS". */
#include "common.h"
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
    long n = arg_long(argc, argv, 1, 200000);
    long sink = 0;
    for (int i = 0; i < 100; i++) sink += syscall(SYS_getppid); /* warm-up */
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) sink += syscall(SYS_getppid);
    uint64_t t1 = now_ns();
    printf("loop_ns %ld %llu\n", n, (unsigned long long)(t1 - t0));
    return sink == 0; /* keep the loop */
}
