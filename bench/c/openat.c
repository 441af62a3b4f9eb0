/* openat N [PATH]: N x (openat + close); prints "loop_ns CALLS NS" (CALLS = N). */
#include "common.h"
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = arg_long(argc, argv, 1, 20000);
    const char *path = argc > 2 ? argv[2] : "/dev/null";
    for (int i = 0; i < 10; i++) close(openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC));
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        int fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) { perror("openat"); return 1; }
        close(fd);
    }
    uint64_t t1 = now_ns();
    printf("loop_ns %ld %llu\n", n, (unsigned long long)(t1 - t0));
    return 0;
}
