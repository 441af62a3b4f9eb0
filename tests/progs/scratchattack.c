/* Tries every way to change the broker's read-only scratch region (found in
 * /proc/self/maps) and prints what the kernel answered to each. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static void say(const char *what, long r) {
    printf("%s %s\n", what, r < 0 ? strerrorname_np(errno) : "ok");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int fd0 = open("/etc/hostname", O_RDONLY);  /* a judged path: the broker sets its region up */
    if (fd0 >= 0) close(fd0);
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512], range[64] = "";
    unsigned long lo = 0, hi = 0;
    while (fgets(line, sizeof line, maps))
        if (strstr(line, "brokerd-scratch")) {
            sscanf(line, "%lx-%lx", &lo, &hi);
            sscanf(line, "%63s", range);
        }
    fclose(maps);
    if (!lo) { printf("no region\n"); return 0; }
    void *a = (void *)lo;
    say("mprotect", mprotect(a, 4096, PROT_READ | PROT_WRITE));
    int mem = open("/proc/self/mem", O_RDWR);
    say("procmem", mem < 0 ? -1 : pwrite(mem, "x", 1, (off_t)lo));
    char mf[128];
    snprintf(mf, sizeof mf, "/proc/self/map_files/%s", range);
    int f = open(mf, O_RDWR);
    say("mapfile-write", f < 0 ? -1 : write(f, "x", 1));
    say("mapfile-mmap", f < 0 ? -1 : (long)(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0) == MAP_FAILED ? -1 : 0));
    say("munmap", munmap(a, 4096));
    say("mmap-fixed", mmap(a, 4096, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED ? -1 : 0);
    void *other = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    say("mremap-over", mremap(other, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, a) == MAP_FAILED ? -1 : 0);
    say("mremap-away", mremap(a, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, other) == MAP_FAILED ? -1 : 0);
#ifdef __i386__
    /* i386's old mmap (90) takes its arguments in a struct in memory, not registers */
    unsigned long om[6] = {lo, 4096, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
                           (unsigned long)-1, 0};
    say("oldmmap-fixed", syscall(90, om) == -1 ? -1 : 0);
#endif
    say("madvise", madvise(a, 4096, MADV_DONTNEED));
    int fd = open("/etc/hostname", O_RDONLY);  /* the region still works */
    say("open-after", fd);
    return 0;
}
