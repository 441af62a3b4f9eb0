/* openloop N FILE: N threads each loop openat+close on /dev/null for ever;
 * once they have made 5000 calls together, FILE is created (the test waits
 * on it: by then every thread stops again and again). */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static long calls;
static const char *mark;

static void *worker(void *arg)
{
    for (;;) {
        close(openat(AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC));
        if (__atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED) == 5000 && mark)
            close(open(mark, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    }
    return arg;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 8;
    mark = argc > 2 ? argv[2] : NULL;
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, NULL) != 0)
            return 1;
    }
    pause();
    return 0;
}
