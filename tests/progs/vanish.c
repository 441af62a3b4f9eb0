/* Tracee behaviour that makes things disappear under the broker.
 *   vanish exitgroup SLOW FLAG: a thread opens SLOW (its question is out);
 *       once FLAG exists (the authorizer saw the open) the main thread calls
 *       exit_group(3), killing the waiting thread.
 *   vanish execve SLOW FLAG: the same, but the main thread execs /bin/true.
 *   vanish threads N PATH: N threads each open PATH, then all wait for each
 *       other (a barrier), so N threads live at once after a judged call.
 *   vanish burst N PATH: N threads started at once, each opens PATH and ends.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *slow;
static pthread_barrier_t barrier;
static const char *path;

static void *opener(void *arg) {
    (void)arg;
    open(slow, O_RDONLY);
    return NULL;
}

static void *member(void *arg) {
    (void)arg;
    int fd = open(path, O_RDONLY);
    if (fd < 0) { perror("open"); exit(2); }
    close(fd);
    pthread_barrier_wait(&barrier);
    return NULL;
}

static void *burst_member(void *arg) {
    (void)arg;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return NULL;
    close(fd);
    return (void *)1;
}

int main(int argc, char **argv) {
    if (argc == 4 && (!strcmp(argv[1], "exitgroup") || !strcmp(argv[1], "execve"))) {
        pthread_t t;
        slow = argv[2];
        pthread_create(&t, NULL, opener, NULL);
        while (access(argv[3], F_OK) != 0)
            usleep(1000);
        if (!strcmp(argv[1], "execve")) {
            execl("/bin/true", "true", (char *)NULL);
            return 4;
        }
        _exit(3);
    }
    if (argc == 4 && !strcmp(argv[1], "burst")) {
        int n = atoi(argv[2]), ok = 0;
        path = argv[3];
        pthread_t *ts = calloc(n, sizeof *ts);
        for (int i = 0; i < n; i++)
            if (pthread_create(&ts[i], NULL, burst_member, NULL)) { perror("pthread_create"); return 2; }
        for (int i = 0; i < n; i++) {
            void *r;
            pthread_join(ts[i], &r);
            ok += r != NULL;
        }
        printf("opened %d\n", ok);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "threads")) {
        int n = atoi(argv[2]);
        path = argv[3];
        pthread_t *ts = calloc(n, sizeof *ts);
        pthread_barrier_init(&barrier, NULL, n);
        for (int i = 0; i < n; i++)
            if (pthread_create(&ts[i], NULL, member, NULL)) { perror("pthread_create"); return 2; }
        for (int i = 0; i < n; i++)
            pthread_join(ts[i], NULL);
        puts("all joined");
        return 0;
    }
    fprintf(stderr, "usage: vanish exitgroup|execve SLOW FLAG | threads N PATH\n");
    return 2;
}
