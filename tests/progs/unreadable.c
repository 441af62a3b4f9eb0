/* An argument the broker cannot read when it judges the call, readable again
 * when the kernel runs it: another thread toggles the page it is on between
 * PROT_NONE and PROT_READ|PROT_WRITE while this one makes the call argv[2]
 * times.  argv[1]: "connect PORT" connects a UDP socket to 127.0.0.1:PORT
 * (counts the connects that got there: "went"); "open PATH" opens PATH for
 * reading (counts the opens that succeeded).  Prints
 * "went N denied N efault N". */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static char *page;
static volatile int stop;

static void *toggler(void *arg) {
    (void)arg;
    while (!stop) {
        mprotect(page, 4096, PROT_NONE);
        mprotect(page, 4096, PROT_READ | PROT_WRITE);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4)
        return 2;
    int connecting = strcmp(argv[1], "connect") == 0;
    long n = atol(argv[2]);
    unsigned short port = (unsigned short)atoi(argv[3]);
    page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct sockaddr_in *addr = (struct sockaddr_in *)page;
    if (connecting) {
        addr->sin_family = AF_INET;
        addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr->sin_port = htons(port);
    } else {
        snprintf(page, 4096, "%s", argv[3]);
    }
    pthread_t th;
    pthread_create(&th, NULL, toggler, NULL);
    long went = 0, denied = 0, efault = 0;
    for (long i = 0; i < n; i++) {
        int fd = connecting ? socket(AF_INET, SOCK_DGRAM, 0) : -1;
        int r = connecting ? connect(fd, (struct sockaddr *)addr, sizeof *addr) : (fd = open(page, O_RDONLY));
        if (r < 0) {
            if (errno == EFAULT) efault++; else denied++;
        } else if (connecting) {
            struct sockaddr_in peer;
            socklen_t len = sizeof peer;
            if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0 && ntohs(peer.sin_port) == port)
                went++;
        } else {
            went++;
        }
        if (fd >= 0)
            close(fd);
    }
    stop = 1;
    pthread_join(th, NULL);
    printf("went %ld denied %ld efault %ld\n", went, denied, efault);
    return 0;
}
