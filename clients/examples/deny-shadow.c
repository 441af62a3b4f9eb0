/* A complete brokerd authorizer in C (plain mode: one line in, one line out).
 * Deny opening /etc/shadow with EACCES; allow everything else.
 *
 *   gcc -O2 -o deny-shadow clients/examples/deny-shadow.c
 *   brokerctl run -a ./deny-shadow -- cat /etc/hostname /etc/shadow
 *
 * Lines are at most 65536 bytes (the protocol's limit); fflush after every
 * answer, since stdout to a pipe is fully buffered. */
#include <stdio.h>
#include <string.h>

static char line[65537 + 1];

static int opens_shadow(const char *l) {
    /* "syscall ID PID TID ABI NAME ARGS": skip five fields to reach NAME */
    const char *p = l;
    for (int field = 0; field < 5; field++) {
        p = strchr(p, ' ');
        if (!p) return 0;
        p++;
    }
    if (strncmp(p, "openat ", 7) != 0 && strncmp(p, "open ", 5) != 0) return 0;
    return strstr(p, "\"/etc/shadow\",") != NULL;
}

int main(void) {
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "syscall ", 8) == 0 && opens_shadow(line))
            fputs("skip-fail EACCES\n", stdout);
        else
            fputs("cont\n", stdout);
        fflush(stdout);
    }
    return 0;
}
