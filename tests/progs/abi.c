/* i386 system calls from a 64-bit process (int $0x80) must be read with the
 * i386 table: eax=20 is getpid there (39 on x86_64), eax=5 is open (fstat
 * on x86_64). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static long int80(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return ret;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* a path below 4 GiB so the 32-bit call can reach it */
    char *low = mmap((void *)0x10000000, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    strcpy(low, argc > 1 ? argv[1] : "/etc/hostname");
    printf("i386-getpid %s\n", int80(20, 0, 0, 0) == getpid() ? "same" : "differs");
    long fd = int80(5, (long)low, 0, 0);
    printf("i386-open %ld\n", fd < 0 ? fd : 0L);
    printf("x86_64-getpid %s\n", getpid() > 0 ? "ok" : "bad");
    return 0;
}
