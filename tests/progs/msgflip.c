/* sendmsg's destination changed by another thread after the broker judged
 * it: argv[1] one-byte sendmsg calls on an unconnected UDP socket to
 * 127.0.0.1:PORT while the port in msg_name flips between argv[2] (allowed)
 * and argv[3] (denied) ("port"); with argv[4] "repoint", msg_name itself
 * flips between NULL (no address: the peer) and the sockaddr; with "mmsg",
 * the port flips under sendmmsg calls of three messages, each of whose
 * msg_len must then say 1 (a sent message's "badlen" otherwise).  The
 * receivers (the test's) count what arrived where.  Prints "sent N denied N
 * badlen N" (sent and badlen count messages, denied calls). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in addr;
static struct msghdr m;
static unsigned short good, bad;
static int repoint, mmsg;
static volatile int stop;

static void *flipper(void *arg) {
    (void)arg;
    volatile unsigned short *p = &addr.sin_port;
    void *volatile *name = &m.msg_name;
    while (!stop) {
        if (repoint) { *name = NULL; *name = &addr; }
        else { *p = htons(good); *p = htons(bad); }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4)
        return 2;
    long n = atol(argv[1]);
    good = atoi(argv[2]);
    bad = atoi(argv[3]);
    repoint = argc > 4 && strcmp(argv[4], "repoint") == 0;
    mmsg = argc > 4 && strcmp(argv[4], "mmsg") == 0;
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(repoint ? bad : good);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (repoint) { /* the peer is the allowed port: a send naming no address goes there */
        struct sockaddr_in peer = addr;
        peer.sin_port = htons(good);
        connect(s, (struct sockaddr *)&peer, sizeof peer);
    }
    char byte = 'x';
    struct iovec iov = {&byte, 1};
    m.msg_name = repoint ? NULL : &addr;
    m.msg_namelen = sizeof addr;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    struct mmsghdr mm[3];
    for (int i = 0; i < 3; i++)
        mm[i] = (struct mmsghdr){m, 0};
    pthread_t th;
    pthread_create(&th, NULL, flipper, NULL);
    long sent = 0, denied = 0, badlen = 0;
    for (long i = 0; i < n; i++) {
        if (!mmsg) {
            if (sendmsg(s, &m, 0) < 0) denied++; else sent++;
            continue;
        }
        int r = sendmmsg(s, mm, 3, 0);
        if (r < 0) { denied++; continue; }
        sent += r;
        for (int k = 0; k < r; k++) {
            if (mm[k].msg_len != 1) badlen++;
            mm[k].msg_len = 0;
        }
    }
    stop = 1;
    pthread_join(th, NULL);
    printf("sent %ld denied %ld badlen %ld\n", sent, denied, badlen);
    return 0;
}
