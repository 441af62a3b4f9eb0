/* A sockaddr flipped by another thread after the broker judged it: connects a
 * UDP socket argv[1] times to 127.0.0.1:PORT while the port in the shared
 * sockaddr flips between argv[2] (allowed) and argv[3] (denied), and counts
 * where each connect really went (getpeername). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in addr;
static unsigned short good, bad;

static void *flipper(void *arg) {
    (void)arg;
    volatile unsigned short *p = &addr.sin_port;
    for (;;) { *p = htons(good); *p = htons(bad); }
    return NULL;
}

int main(int argc, char **argv) {
    long n = atol(argv[1]);
    good = atoi(argv[2]);
    bad = atoi(argv[3]);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(good);
    pthread_t th;
    pthread_create(&th, NULL, flipper, NULL);
    long g = 0, b = 0, denied = 0;
    for (long i = 0; i < n; i++) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) { denied++; close(s); continue; }
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        getpeername(s, (struct sockaddr *)&peer, &len);
        if (ntohs(peer.sin_port) == good) g++; else if (ntohs(peer.sin_port) == bad) b++;
        close(s);
    }
    printf("good %ld bad %ld denied %ld\n", g, b, denied);
    return 0;
}
