/* The line a test program prints per attempt, as the tests read it:
 * "WHAT ok" ("WHAT ok VALUE" where REPORT_VALUE is defined before the
 * include) or "WHAT fail ERRNAME" (errno's name).  Shared by the programs
 * of tests/progs (the cprog fixture rebuilds them when this changes). */
#ifndef BROKERD_TEST_REPORT_H
#define BROKERD_TEST_REPORT_H
#include <errno.h>
#include <stdio.h>
#include <string.h>

static void report(const char *what, long r) {
    if (r < 0)
        printf("%s fail %s\n", what, strerrorname_np(errno));
#ifdef REPORT_VALUE
    else
        printf("%s ok %ld\n", what, r);
#else
    else
        printf("%s ok\n", what);
#endif
    fflush(stdout);
}
#endif
