/* threadburst N: start N threads one after another, each exiting at once
 * (what git's and make's helpers do).  A thread may stop, run and exit
 * before the tracer sees its parent's clone event.  Prints "ok N". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void *nothing(void *arg) { return arg; }

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100, done = 0;
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, nothing, NULL) != 0 || pthread_join(t, NULL) != 0)
            break;
        done++;
    }
    printf("ok %d\n", done);
    return done == n ? 0 : 1;
}
