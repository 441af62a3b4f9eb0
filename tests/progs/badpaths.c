/* badpaths: openat with the path arguments a hostile program can give the
 * broker's path read (brokerd/tracer/accel's compiled one, or the Python
 * one), each printed as "NAME errno" (0 when the open worked):
 *   null       a NULL pointer
 *   unmapped   a pointer into an inaccessible page
 *   nonul      4096 bytes with no NUL, the inaccessible page right after
 *   crossing   a valid path that crosses a page boundary
 *   long       a path longer than PATH_MAX (ENAMETOOLONG natively)
 *   top        the last bytes of the address space
 * argv[1]: an existing file (for "crossing", put just before the page end). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static void try(const char *name, const char *path)
{
    long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    printf("%s %d\n", name, fd < 0 ? errno : 0);
    if (fd >= 0)
        close((int)fd);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    long page = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || mprotect(m + 2 * page, page, PROT_NONE))
        return 3;
    try("null", NULL);
    try("unmapped", m + 2 * page);
    memset(m + page, 'a', page);
    try("nonul", m + page);
    size_t n = strlen(argv[1]) + 1;
    char *cross = m + page - n / 2;
    memcpy(cross, argv[1], n);
    try("crossing", cross);
    char *lng = malloc(5000);
    memset(lng, 'b', 4999);
    lng[0] = '/';
    lng[4999] = 0;
    try("long", lng);
    try("top", (const char *)-3L);
    return 0;
}
