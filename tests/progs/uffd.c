/* A path inside a userfaultfd-registered page that nobody ever fills: any
 * kernel-mode read of it (the broker's process_vm_readv included) waits for
 * the fault to be resolved, for ever.
 *   uffd kernel: userfaultfd(0) (handles kernel faults too; needs privilege)
 *   uffd user:   userfaultfd(UFFD_USER_MODE_ONLY): kernel reads get EFAULT
 * Prints "userfaultfd ERRNO" if it cannot create one, else "open ERRNO|ok". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int flags = O_CLOEXEC | (argc > 1 && !strcmp(argv[1], "user") ? UFFD_USER_MODE_ONLY : 0);
    long uffd = syscall(SYS_userfaultfd, flags);
    if (uffd < 0) {
        printf("userfaultfd %s\n", strerrorname_np(errno));
        return 0;
    }
    struct uffdio_api api = {.api = UFFD_API};
    if (ioctl(uffd, UFFDIO_API, &api)) { perror("UFFDIO_API"); return 2; }
    char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct uffdio_register reg = {.range = {(unsigned long)page, 4096}, .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(uffd, UFFDIO_REGISTER, &reg)) { perror("UFFDIO_REGISTER"); return 2; }
    int fd = open(page, O_RDONLY);  /* the page is never populated */
    printf("open %s\n", fd >= 0 ? "ok" : strerrorname_np(errno));
    return 0;
}
