/* A hostile program acting while the broker injects calls into one of its
 * threads (the scratch region's memfd_create/mmap/close, docs/shim.md).
 *     injectsig DIR TRIES MODE        MODE: signal | patch | nonce
 *
 * Each try is a fresh exec of this program (a fresh process has no region),
 * whose first judged path call, mkdir(DIR/trigger), makes the broker inject
 * the region set-up.  The authorizer denies mkdir(DIR/escaped) and (nonce)
 * memfd_create.  A second thread, made with a raw clone() (pthread's clone3
 * would make the region first), then:
 *   signal: sends SIGUSR1 to the main thread while it is stopped in that
 *           mkdir; its handler calls mkdir(DIR/escaped): a handler run
 *           between two injected calls (a flood of signals before the
 *           mkdir would keep the thread in its handler);
 *   patch:  rewrites the code of the main thread's stopped mkdir, so that
 *           the thread, sent back onto that instruction for the next
 *           injected call, runs mkdir(DIR/escaped) instead;
 *   nonce:  reads the injected calls' nonce from /proc/self/task/TID/syscall
 *           and makes memfd_create with it (a static deny).
 * Prints "escaped after N tries" and exits 3 if DIR/escaped exists (or the
 * forged memfd_create succeeded), else "held" (exit 0). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char escaped[4096], trigger[4096], task_syscall[128];
static volatile int running = 1, helper_started, helper_done, forged;
static pid_t main_tid, tgid;
static unsigned char *page;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The main thread's /proc syscall line: "NR ARG1 ... ARG6 SP PC", "running" or "-1 ...". */
static int main_syscall(unsigned long *f) {
    char buf[256];
    int fd = (int)syscall(SYS_open, task_syscall, O_RDONLY);
    if (fd < 0) return 0;
    long n = syscall(SYS_read, fd, buf, sizeof buf - 1);
    syscall(SYS_close, fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    return sscanf(buf, "%lu %lx %lx %lx %lx %lx %lx", &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6]) == 7;
}

static void handler(int sig) {
    (void)sig;
    syscall(SYS_mkdir, escaped, 0755);
}

static void patch(void) {
    unsigned char code[] = {
        0x48, 0xbf, 0, 0, 0, 0, 0, 0, 0, 0,  /* movabs rdi, escaped */
        0xbe, 0xed, 0x01, 0, 0,              /* mov esi, 0755 */
        0xb8, SYS_mkdir, 0, 0, 0,            /* mov eax, SYS_mkdir */
        0x0f, 0x05,                          /* syscall */
        0xb8, SYS_exit, 0, 0, 0,             /* mov eax, SYS_exit */
        0x31, 0xff,                          /* xor edi, edi */
        0x0f, 0x05,                          /* syscall */
    };
    uint64_t where = (uint64_t)(uintptr_t)escaped;
    memcpy(code + 2, &where, 8);
    memcpy(page, code, sizeof code);
}

static int helper(void *arg) {
    const char *mode = arg;
    helper_started = 1;
    unsigned long f[7];
    while (running) {
        if (mode[0] == 's') {  /* once, while it waits for its verdict: pending when the injection runs */
            if (main_syscall(f) && f[0] == SYS_mkdir) {
                syscall(SYS_tgkill, tgid, main_tid, SIGUSR1);
                break;
            }
        } else if (mode[0] == 'p') {
            if (main_syscall(f) && f[0] == SYS_mkdir) {
                patch();
                break;
            }
        } else if (main_syscall(f) && (f[0] == SYS_memfd_create || f[0] == SYS_close) && f[4]) {
            long fd = syscall(SYS_memfd_create, "forged", 0, 0, f[4]);
            if (fd >= 0) forged = 1;
            break;
        }
    }
    helper_done = 1;
    syscall(SYS_exit, 0);
    return 0;
}

/* mkdir(path, 0755) made by the syscall instruction in ``page`` */
static long page_mkdir(const char *path) {
    long ret;
    register long rdi asm("rdi") = (long)path;
    register long rsi asm("rsi") = 0755;
    asm volatile("call *%1" : "=a"(ret) : "r"(page), "0"((long)SYS_mkdir), "r"(rdi), "r"(rsi)
                 : "rcx", "r11", "memory");
    return ret;
}

static int victim(const char *mode) {
    static char stack[1 << 16];
    tgid = getpid();
    main_tid = (pid_t)syscall(SYS_gettid);
    snprintf(task_syscall, sizeof task_syscall, "/proc/self/task/%d/syscall", main_tid);
    page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return 1;
    page[0] = 0x0f, page[1] = 0x05, page[2] = 0xc3;  /* syscall; ret */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    if (clone(helper, stack + sizeof stack, CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD
              | CLONE_SYSVSEM, (void *)mode) < 0)
        return 1;
    while (!helper_started) {}
    page_mkdir(trigger);  /* the region is injected here */
    running = 0;
    double end = now() + 2;
    while (!helper_done && now() < end && mode[0] == 'n') {}
    return forged ? 3 : 0;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    snprintf(escaped, sizeof escaped, "%s/escaped", argv[1]);
    snprintf(trigger, sizeof trigger, "%s/trigger", argv[1]);
    if (strncmp(argv[2], "victim", 6) == 0) return victim(argv[3]);
    int tries = atoi(argv[2]);
    for (int i = 0; i < tries; i++) {
        pid_t p = fork();
        if (p == 0) {
            execl("/proc/self/exe", argv[0], argv[1], "victim", argv[3], (char *)NULL);
            _exit(127);
        }
        int st = 0;
        waitpid(p, &st, 0);
        rmdir(trigger);
        struct stat sb;
        if (stat(escaped, &sb) == 0 || (WIFEXITED(st) && WEXITSTATUS(st) == 3)) {
            printf("escaped after %d tries\n", i + 1);
            return 3;
        }
    }
    printf("held\n");
    return 0;
}
