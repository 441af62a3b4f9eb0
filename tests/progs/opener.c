/* Opens each path given and reports what the kernel said: "PATH ok" or "PATH ERRNO". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        int fd = open(argv[i], O_RDONLY);
        if (fd < 0) {
            printf("%s %s\n", argv[i], strerrorname_np(errno));
        } else {
            char buf[64] = {0};
            ssize_t n = read(fd, buf, sizeof buf - 1);
            if (n > 0 && buf[n - 1] == '\n') buf[n - 1] = 0;
            printf("%s ok %s\n", argv[i], buf);
            close(fd);
        }
    }
    return 0;
}
