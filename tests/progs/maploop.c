/* maploop N: open a file once (a judged call: the broker makes its scratch
 * region), then N times mmap(MAP_FIXED) over a page of its own, mremap it
 * and munmap it: what ld.so and malloc do all day.  Prints "ok N". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100, done = 0;
    int fd = open("/dev/null", O_RDONLY);
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < n; i++) {
        char *p = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            break;
        if (mmap(p, 4096, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != p)
            break;
        p = mremap(p, 8192, 4096, 0);
        if (p == MAP_FAILED || munmap(p, 4096) != 0)
            break;
        done++;
    }
    printf("ok %d\n", done);
    return done == n ? 0 : 1;
}
