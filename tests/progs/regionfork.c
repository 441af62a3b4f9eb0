/* A child handed a scratch region it does not map (the state a fork racing
 * the region's injection leaves): the parent marks the sealed region
 * MADV_DONTFORK (mseal does not refuse it), so its child lacks the mapping;
 * the child maps writable memory of its own at the same address, lays out
 * in every scratch slot what a pinned open puts there (a zeroed open_how,
 * then the path at HOW_ROOM, pin.py) with the path BAD, and opens GOOD.  A broker that believed
 * the child had the region would point the kernel at that memory: it would
 * open BAD, after GOOD was judged.  Prints "child <first line read>". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLOT (16 << 10)
#define HOW_ROOM 32

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int fd = open(argv[1], O_RDONLY);  /* judged: the broker sets the region up */
    if (fd >= 0) close(fd);
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    unsigned long lo = 0, hi = 0;
    while (fgets(line, sizeof line, maps))
        if (strstr(line, "brokerd-scratch")) sscanf(line, "%lx-%lx", &lo, &hi);
    fclose(maps);
    if (!lo) { printf("no region\n"); return 0; }
    printf("dontfork %s\n", madvise((void *)lo, hi - lo, MADV_DONTFORK) ? strerrorname_np(errno) : "ok");
    pid_t pid = fork();
    if (pid == 0) {
        char *own = mmap((void *)lo, hi - lo, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        printf("child-map %s\n", own == MAP_FAILED ? strerrorname_np(errno) : "ok");
        if (own != MAP_FAILED)
            for (unsigned long off = 0; off < hi - lo; off += SLOT) strcpy(own + off + HOW_ROOM, argv[2]);
        char buf[64] = "";
        int f = open(argv[1], O_RDONLY);
        if (f < 0) { printf("child %s\n", strerrorname_np(errno)); _exit(0); }
        ssize_t n = read(f, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        buf[strcspn(buf, "\n")] = 0;
        printf("child %s\n", buf);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    return 0;
}
