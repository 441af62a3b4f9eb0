/* procs P SECONDS: P processes each loop openat+close on /dev/null for
 * SECONDS (released together through a pipe); prints "counts ..." and "elapsed_ns NS". */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long np = arg_long(argc, argv, 1, 100);
    double secs = argc > 2 ? atof(argv[2]) : 3.0;
    volatile uint64_t *shared = mmap(NULL, sizeof(uint64_t) * (np + 1), PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) { perror("mmap"); return 1; }
    int go[2];
    if (pipe(go)) { perror("pipe"); return 1; }
    for (long i = 0; i < np; i++) {
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid == 0) {
            char b;
            close(go[1]);
            if (read(go[0], &b, 1) < 0) _exit(1); /* EOF when the parent closes: go */
            uint64_t deadline = shared[np];
            long c = 0;
            while (now_ns() < deadline) {
                int fd = openat(AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC);
                if (fd >= 0) close(fd);
                c++;
            }
            shared[i] = (uint64_t)c;
            _exit(0);
        }
    }
    uint64_t t0 = now_ns();
    shared[np] = t0 + (uint64_t)(secs * 1e9);
    close(go[0]);
    close(go[1]);
    while (wait(NULL) > 0) {}
    uint64_t t1 = now_ns();
    printf("counts");
    for (long i = 0; i < np; i++) printf(" %llu", (unsigned long long)shared[i]);
    printf("\nelapsed_ns %llu\n", (unsigned long long)(t1 - t0));
    return 0;
}
