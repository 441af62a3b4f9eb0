/* brokerd's optional stop-loop accelerator (brokerd/tracer/accel/__init__.py).
 *
 * The shim's common stop, a seccomp stop of a judged open, costs about a dozen
 * system calls; made through ctypes each one is a Python-level wrapper, an
 * argument conversion and an errno dance (about a microsecond each, more than
 * the call itself).  These functions make the same calls, with the same
 * results and errors, in one C call each, and fuse the ones that always come
 * together (the stop's GET_SYSCALL_INFO, the unpack of its six arguments and
 * the read of its path); ``reap`` runs the stop loop itself (wait, spin,
 * fetch) and calls Python once per stop.  Nothing here decides anything:
 * every verdict, every check of what was read, stays in the Python that
 * calls them.
 *
 * The tracee is hostile: every address it gives is read with
 * process_vm_readv (bounded, page by page, never past 2^64), every result is
 * checked, and a failure is an OSError with the errno, as from the ctypes
 * path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdint.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PTRACE_GET_SYSCALL_INFO
#define PTRACE_GET_SYSCALL_INFO 0x420e
#endif
#define PTRACE_SET_SYSCALL_INFO_ 0x4212 /* Linux 6.16+ */
#define INFO_SECCOMP 3
#ifndef __WALL
#define __WALL 0x40000000
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#define RESOLVE_NO_SYMLINKS_ 0x04
#define RESOLVE_IN_ROOT_ 0x10
#define PAGE 4096
/* the wait status of a PTRACE_EVENT_SECCOMP stop (stops.py's SECCOMP_STOP) */
#define SECCOMP_STOP_STATUS ((((7 /* PTRACE_EVENT_SECCOMP */ << 8) | SIGTRAP) << 8) | 0x7f)
/* the longest C string read at once: the decoder asks for at most a path and one */
#define CSTR_MAX (1 << 20)

/* struct ptrace_syscall_info (linux/ptrace.h), laid out as the kernel's */
struct info {
    uint8_t op;
    uint8_t pad[3];
    uint32_t arch;
    uint64_t ip;
    uint64_t sp;
    union {
        struct { uint64_t nr; uint64_t args[6]; } entry;
        struct { int64_t rval; uint8_t is_error; } exit;
        struct { uint64_t nr; uint64_t args[6]; uint32_t ret_data; } seccomp;
    } u;
};

/* what PTRACE_SET_SYSCALL_INFO reads (ptrace.py's _SET_INFO) */
struct set_info {
    uint8_t op;
    uint8_t reserved[3];
    uint32_t flags;
    uint64_t ip, sp;
    uint64_t nr;
    uint64_t args[6];
    uint32_t ret_data;
    uint32_t pad;
};

struct open_how_ {
    uint64_t flags, mode, resolve;
};

static unsigned long long counter_stops; /* seccomp stops fetched here */
static unsigned long long counter_reaped; /* stops the compiled loop (reap) handed to Python */
static unsigned long long counter_fused; /* judged opens the fused stop worked here (its section, below) */

static PyObject *os_error(int err, const char *what, long pid)
{
    PyObject *msg = PyUnicode_FromFormat("%s%ld): %s", what, pid, strerror(err));
    if (msg == NULL)
        return NULL;
    PyObject *args = Py_BuildValue("(iO)", err, msg);
    Py_DECREF(msg);
    if (args == NULL)
        return NULL;
    PyErr_SetObject(PyExc_OSError, args);
    Py_DECREF(args);
    return NULL;
}

static PyObject *args_tuple(const uint64_t *a)
{
    PyObject *t = PyTuple_New(6);
    if (t == NULL)
        return NULL;
    for (int i = 0; i < 6; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(a[i]);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

/* Read a NUL-terminated string of at most ``limit`` bytes (the NUL not
 * counted) at ``addr`` of ``pid`` into ``out`` (room for limit bytes), page
 * by page, as _Mem.read_cstr: 1 and the length when a NUL came, 0 and the
 * length read when none did within limit (or memory ended exactly at a page
 * boundary with nothing more), -1 and errno set when a read failed. */
static int read_cstr(pid_t pid, uint64_t addr, size_t limit, char *out, size_t *len)
{
    size_t got = 0;
    while (got <= limit) {
        uint64_t at = addr + got;
        if (at < addr) { /* past the end of the address space */
            errno = EFAULT;
            return -1;
        }
        size_t chunk = PAGE - (size_t)(at & (PAGE - 1));
        size_t want = limit + 1 - got;
        if (want > chunk)
            want = chunk;
        char buf[PAGE];
        struct iovec local = {buf, want}, remote = {(void *)(uintptr_t)at, want};
        ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if (n < 0)
            return -1;
        char *nul = memchr(buf, 0, (size_t)n);
        if (nul != NULL) {
            size_t k = (size_t)(nul - buf);
            if (got + k > limit) /* cannot happen: got + n <= limit + 1 and the NUL is not counted */
                k = limit - got;
            memcpy(out + got, buf, k);
            *len = got + k;
            return 1;
        }
        size_t keep = (size_t)n;
        if (got + keep > limit)
            keep = limit - got; /* the byte past the limit: read only to know there is one */
        memcpy(out + got, buf, keep);
        got += (size_t)n;
        if (n == 0)
            break;
    }
    *len = got > limit ? limit : got;
    return 0;
}

static PyObject *cstr_result(pid_t pid, uint64_t addr, Py_ssize_t limit)
{
    if (limit < 0 || limit > CSTR_MAX) {
        PyErr_SetString(PyExc_ValueError, "string limit out of range");
        return NULL;
    }
    char small[PAGE + 2];
    char *out = (size_t)limit + 1 <= sizeof small ? small : PyMem_Malloc((size_t)limit + 1);
    if (out == NULL)
        return PyErr_NoMemory();
    size_t len = 0;
    int r = read_cstr(pid, addr, (size_t)limit, out, &len);
    PyObject *res = NULL;
    if (r < 0)
        os_error(errno, "process_vm_readv(", pid);
    else
        res = Py_BuildValue("(y#O)", out, (Py_ssize_t)len, r ? Py_True : Py_False);
    if (out != small)
        PyMem_Free(out);
    return res;
}

PyDoc_STRVAR(read_cstr_doc, "read_cstr(pid, addr, limit) -> (bytes, complete): _Mem.read_cstr in one call.");

static PyObject *py_read_cstr(PyObject *self, PyObject *args)
{
    int pid;
    unsigned long long addr;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "iKn", &pid, &addr, &limit))
        return NULL;
    return cstr_result(pid, addr, limit);
}

PyDoc_STRVAR(seccomp_info_doc,
             "seccomp_info(tid, paths) -> None | (arch, nr, args, ip, ret_data, path)\n\n"
             "PTRACE_GET_SYSCALL_INFO at a seccomp stop (None: the stop is not one),\n"
             "its six arguments as ints, and, when ``paths`` (bytes indexed by the x86_64\n"
             "call number: 0 none, else 1 + the path argument's index) names one for\n"
             "this call, that argument's string read as read_cstr(tid, arg, 4097) would\n"
             "((bytes, complete); an int errno when unreadable; None when not read).");

/* seccomp_info's answer for tid (see its doc), NULL with an exception set */
static PyObject *seccomp_fetch(int tid, const unsigned char *paths, Py_ssize_t npaths)
{
    struct info info;
    memset(&info, 0, sizeof info);
    if (ptrace(PTRACE_GET_SYSCALL_INFO, tid, (void *)sizeof info, &info) == -1)
        return os_error(errno, "ptrace(0x420e, ", tid);
    if (info.op != INFO_SECCOMP)
        Py_RETURN_NONE;
    counter_stops++;
    PyObject *path;
    uint64_t nr = info.u.seccomp.nr;
    unsigned char slot = 0;
    if (info.arch == 0xC000003E /* AUDIT_ARCH_X86_64 */ && nr < (uint64_t)npaths)
        slot = paths[nr];
    uint64_t addr = slot >= 1 && slot <= 6 ? info.u.seccomp.args[slot - 1] : 0;
    if (addr == 0) { /* nothing to read (or NULL: the decoder says so itself) */
        path = Py_None;
        Py_INCREF(path);
    } else {
        path = cstr_result(tid, addr, 4097);
        if (path == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_OSError))
                return NULL;
            PyErr_Clear();
            path = PyLong_FromLong(EFAULT);
            if (path == NULL)
                return NULL;
        }
    }
    PyObject *a = args_tuple(info.u.seccomp.args);
    if (a == NULL) {
        Py_DECREF(path);
        return NULL;
    }
    /* (arch, nr, args, ip, ret_data, path) made item by item: Py_BuildValue parses its format every stop */
    PyObject *r = PyTuple_New(6);
    PyObject *items[6] = {PyLong_FromUnsignedLong(info.arch), PyLong_FromUnsignedLongLong(nr), a,
                          PyLong_FromUnsignedLongLong(info.ip), PyLong_FromUnsignedLong(info.u.seccomp.ret_data), path};
    int bad = r == NULL;
    for (int i = 0; i < 6; i++) {
        if (items[i] == NULL)
            bad = 1;
        if (r != NULL && items[i] != NULL)
            PyTuple_SET_ITEM(r, i, items[i]);
        else
            Py_XDECREF(items[i]);
    }
    if (bad) {
        Py_XDECREF(r);
        return NULL;
    }
    return r;
}

static PyObject *py_seccomp_info(PyObject *self, PyObject *args)
{
    int tid;
    Py_buffer paths = {0};
    if (!PyArg_ParseTuple(args, "iy*", &tid, &paths))
        return NULL;
    PyObject *r = seccomp_fetch(tid, paths.buf, paths.len);
    PyBuffer_Release(&paths);
    return r;
}

/* one waitpid(-1, WNOHANG|__WALL): the tid (0: nothing waiting), -1 with an
 * exception set (ChildProcessError for ECHILD, as os.waitpid) */
static pid_t wait_one(int *status)
{
    for (;;) {
        pid_t p = waitpid(-1, status, WNOHANG | __WALL);
        if (p >= 0)
            return p;
        if (errno == EINTR) {
            if (PyErr_CheckSignals() < 0)
                return -1;
            continue;
        }
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
}

PyDoc_STRVAR(next_stop_doc,
             "next_stop(paths) -> None | (tid, status, info)\n\n"
             "wait_any() and, for a seccomp stop, seccomp_info(tid, paths) with it (info:\n"
             "its answer; None when the stop is another kind, or the fetch failed: the\n"
             "caller fetches again and meets the error where it handles the tracee).");

static PyObject *py_next_stop(PyObject *self, PyObject *args)
{
    Py_buffer paths = {0};
    if (!PyArg_ParseTuple(args, "y*", &paths))
        return NULL;
    int status = 0;
    pid_t p = wait_one(&status);
    if (p < 0) {
        PyBuffer_Release(&paths);
        return NULL; /* ECHILD: ChildProcessError */
    }
    if (p == 0) {
        PyBuffer_Release(&paths);
        Py_RETURN_NONE;
    }
    PyObject *info = NULL;
    if (status == SECCOMP_STOP_STATUS) {
        info = seccomp_fetch(p, paths.buf, paths.len);
        if (info == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_OSError)) {
                PyBuffer_Release(&paths);
                return NULL;
            }
            PyErr_Clear();
        }
    }
    PyBuffer_Release(&paths);
    if (info == NULL) {
        info = Py_None;
        Py_INCREF(info);
    }
    return Py_BuildValue("(iiN)", (int)p, status, info);
}

PyDoc_STRVAR(plain_stat_doc,
             "plain_stat(rootfd, path, follow) -> None | (st_dev, st_ino)\n\n"
             "resolve.plain_path in one call: openat2(rootfd, path, O_PATH|O_CLOEXEC\n"
             "[|O_NOFOLLOW], RESOLVE_NO_SYMLINKS|RESOLVE_IN_ROOT), fstat, close.");

static PyObject *py_plain_stat(PyObject *self, PyObject *args)
{
    int rootfd, follow;
    const char *path;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "iy#p", &rootfd, &path, &len, &follow))
        return NULL;
    if ((Py_ssize_t)strlen(path) != len)
        Py_RETURN_NONE; /* a NUL inside: no such path */
    struct open_how_ how = {O_PATH | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW), 0,
                            RESOLVE_NO_SYMLINKS_ | RESOLVE_IN_ROOT_};
    long fd = syscall(SYS_openat2, rootfd, path, &how, sizeof how);
    if (fd < 0)
        Py_RETURN_NONE;
    struct stat st;
    int r = fstat((int)fd, &st);
    close((int)fd);
    if (r < 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(KK)", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
}

/* the pin's constants (pin.py's tables), given once by pin_setup: nothing of
 * the open flags' meaning is written twice */
static struct {
    int ready;
    uint64_t valid, o_path, o_path_keep, o_creat, o_tmpfile, o_excl, o_nofollow, resolve;
    Py_ssize_t room, path_max;
} pin_conf;
static PyObject *str_inode; /* "inode": the first item of the expectation pin_plain returns */

PyDoc_STRVAR(pin_setup_doc,
             "pin_setup(valid, o_path, o_path_keep, o_creat, o_tmpfile, o_excl, o_nofollow, resolve, room,\n"
             "path_max): pin.py's constants for pin_plain (VALID_OPEN_FLAGS, O_PATH, the flags O_PATH\n"
             "keeps, O_CREAT, O_TMPFILE less O_DIRECTORY, O_EXCL, O_NOFOLLOW, the pin's resolve flags,\n"
             "HOW_ROOM, PATH_MAX).");

static PyObject *py_pin_setup(PyObject *self, PyObject *args)
{
    unsigned long long v[8];
    Py_ssize_t room, path_max;
    if (!PyArg_ParseTuple(args, "KKKKKKKKnn", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &room,
                          &path_max))
        return NULL;
    if (room < (Py_ssize_t)sizeof(struct open_how_) || room > 4096 || path_max < 2 || path_max > (1 << 20)) {
        PyErr_SetString(PyExc_ValueError, "pin_setup: sizes out of range");
        return NULL;
    }
    pin_conf.valid = v[0], pin_conf.o_path = v[1], pin_conf.o_path_keep = v[2], pin_conf.o_creat = v[3];
    pin_conf.o_tmpfile = v[4], pin_conf.o_excl = v[5], pin_conf.o_nofollow = v[6], pin_conf.resolve = v[7];
    pin_conf.room = room, pin_conf.path_max = path_max;
    pin_conf.ready = 1;
    Py_RETURN_NONE;
}

/* pin.canonical: absolute, no "." or ".." component, no doubled or trailing slash ("/" itself is) */
static int canonical_path(const char *p, Py_ssize_t n)
{
    if (n < 1 || p[0] != '/')
        return 0;
    if (n == 1)
        return 1;
    if (p[n - 1] == '/')
        return 0;
    for (Py_ssize_t i = 0; i < n - 1; i++) {
        if (p[i] != '/')
            continue; /* a component starts at i + 1 (< n: the path does not end with "/") */
        if (p[i + 1] == '/')
            return 0;
        if (p[i + 1] == '.') {
            if (i + 2 == n || p[i + 2] == '/')
                return 0;
            if (p[i + 2] == '.' && (i + 3 == n || p[i + 3] == '/'))
                return 0;
        }
    }
    return 1;
}

/* pin_plain's tests and check for an open with ``flags`` and ``mode`` of ``path``
 * (``len`` bytes) under kept root ``rootfd``: 1 with ``how`` (the pinned
 * call's struct open_how) and ``st`` (what the path names) set, 0 where the
 * open is not pinned this way (see pin_plain's doc).  Shared by pin_plain and
 * ask_open (the compiled external question). */
static int plain_check(int rootfd, const char *path, Py_ssize_t len, uint64_t flags, uint64_t mode,
                       struct open_how_ *how, struct stat *st)
{
    if ((flags & pin_conf.o_tmpfile) == pin_conf.o_tmpfile || len >= pin_conf.path_max
        || memchr(path, 0, (size_t)len) != NULL || !canonical_path(path, len))
        return 0;
    if (len >= 5 && memcmp(path, "/proc", 5) == 0 && (len == 5 || path[5] == '/'))
        return 0; /* magic links and per-process files: their own rules (security.md) */
    /* the follow test sees the call's own flags (pin.follows: O_PATH drops O_CREAT|O_EXCL), the how its 32 bits */
    int follow = !(flags & pin_conf.o_nofollow)
                 && ((flags & pin_conf.o_path)
                     || (flags & (pin_conf.o_creat | pin_conf.o_excl)) != (pin_conf.o_creat | pin_conf.o_excl));
    uint64_t hflags = flags & 0xFFFFFFFFu;
    if (hflags & ~pin_conf.valid)
        return 0;
    if (hflags & pin_conf.o_path)
        hflags &= pin_conf.o_path_keep;
    mode &= 07777;
    if (!(hflags & (pin_conf.o_creat | pin_conf.o_tmpfile)))
        mode = 0;
    struct open_how_ check = {O_PATH | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW), 0,
                              RESOLVE_NO_SYMLINKS_ | RESOLVE_IN_ROOT_};
    long fd = syscall(SYS_openat2, rootfd, path, &check, sizeof check);
    if (fd < 0)
        return 0;
    int r = fstat((int)fd, st);
    close((int)fd);
    if (r < 0)
        return 0;
    how->flags = hflags, how->mode = mode, how->resolve = pin_conf.resolve;
    return 1;
}

PyDoc_STRVAR(pin_plain_doc,
             "pin_plain(rootfd, path, flags, mode) -> None | (pinned, (\"inode\", st_dev, st_ino))\n\n"
             "pin.plain_pin in one call: for an open with ``flags`` and ``mode`` of canonical absolute\n"
             "``path`` (not /proc, shorter than PATH_MAX, no O_TMPFILE, only known flag bits), the\n"
             "pin's slot bytes (struct open_how as pin.open_how makes it, padded to HOW_ROOM, then\n"
             "the path and its NUL) and the object the path names under kept root ``rootfd`` when\n"
             "no component is a symlink (plain_stat's check, final symlink followed unless the open\n"
             "does not follow it).  None where the open is not pinned this way.");

static PyObject *py_pin_plain(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "pin_plain: four arguments");
        return NULL;
    }
    if (!pin_conf.ready) {
        PyErr_SetString(PyExc_RuntimeError, "pin_plain before pin_setup");
        return NULL;
    }
    if (!PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "pin_plain: path must be bytes");
        return NULL;
    }
    long rootfd = PyLong_AsLong(args[0]);
    if (rootfd == -1 && PyErr_Occurred())
        return NULL;
    if (rootfd < 0 || rootfd > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "pin_plain: not a descriptor");
        return NULL;
    }
    uint64_t flags = PyLong_AsUnsignedLongLongMask(args[2]);
    if (flags == (uint64_t)-1 && PyErr_Occurred())
        return NULL;
    uint64_t mode = PyLong_AsUnsignedLongLongMask(args[3]);
    if (mode == (uint64_t)-1 && PyErr_Occurred())
        return NULL;
    const char *path = PyBytes_AS_STRING(args[1]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[1]);
    struct open_how_ how;
    struct stat st;
    if (!plain_check((int)rootfd, path, len, flags, mode, &how, &st))
        Py_RETURN_NONE;
    PyObject *pin = PyBytes_FromStringAndSize(NULL, pin_conf.room + len + 1);
    if (pin == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(pin);
    memset(out, 0, (size_t)pin_conf.room);
    memcpy(out, &how, sizeof how);
    memcpy(out + pin_conf.room, path, (size_t)len);
    out[pin_conf.room + len] = 0;
    PyObject *dev = PyLong_FromUnsignedLongLong((unsigned long long)st.st_dev);
    PyObject *ino = PyLong_FromUnsignedLongLong((unsigned long long)st.st_ino);
    PyObject *expect = dev != NULL && ino != NULL ? PyTuple_Pack(3, str_inode, dev, ino) : NULL;
    Py_XDECREF(dev);
    Py_XDECREF(ino);
    PyObject *got = expect != NULL ? PyTuple_Pack(2, pin, expect) : NULL;
    Py_DECREF(pin);
    Py_XDECREF(expect);
    return got; /* (pin, ("inode", st_dev, st_ino)), made without Py_BuildValue's parse of a format */
}

PyDoc_STRVAR(set_info_doc,
             "set_info(tid, op, nr, args) -> bool: PTRACE_SET_SYSCALL_INFO (ptrace.set_syscall_info's\n"
             "request): False when the kernel refuses it as unknown (EIO, EINVAL), OSError otherwise.");

/* PTRACE_SET_SYSCALL_INFO of op, nr and six arguments: 1 done, 0 refused as
 * unknown (EIO, EINVAL), -1 with an exception set */
static int set_info_args(int tid, int op, unsigned long long nr, const uint64_t *args)
{
    struct set_info si;
    memset(&si, 0, sizeof si);
    si.op = (uint8_t)op;
    si.nr = nr;
    memcpy(si.args, args, sizeof si.args);
    if (ptrace(PTRACE_SET_SYSCALL_INFO_, tid, (void *)sizeof si, &si) == -1) {
        int err = errno;
        if (err == EIO || err == EINVAL)
            return 0;
        os_error(err, "ptrace(0x4212, ", tid);
        return -1;
    }
    return 1;
}

/* the six ints of ``seq`` into ``out``: 0, or -1 with an exception set */
static int six_args(PyObject *seq, uint64_t *out)
{
    PyObject *fast = PySequence_Fast(seq, "set_info: args must be a sequence");
    if (fast == NULL)
        return -1;
    if (PySequence_Fast_GET_SIZE(fast) != 6) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "set_info: six arguments");
        return -1;
    }
    for (int i = 0; i < 6; i++) {
        unsigned long long v = PyLong_AsUnsignedLongLongMask(PySequence_Fast_GET_ITEM(fast, i));
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        out[i] = v;
    }
    Py_DECREF(fast);
    return 0;
}

/* PTRACE_SET_SYSCALL_INFO of op, nr and the six ints of ``seq``: as set_info_args */
static int set_info_c(int tid, int op, unsigned long long nr, PyObject *seq)
{
    uint64_t args[6];
    if (six_args(seq, args) < 0)
        return -1;
    return set_info_args(tid, op, nr, args);
}

static PyObject *py_set_info(PyObject *self, PyObject *args)
{
    int tid, op;
    unsigned long long nr;
    PyObject *seq;
    if (!PyArg_ParseTuple(args, "iiKO", &tid, &op, &nr, &seq))
        return NULL;
    int r = set_info_c(tid, op, nr, seq);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

PyDoc_STRVAR(pin_open_doc,
             "pin_open(tid, view, off, addr, pin, own) -> None | (AT_FDCWD, addr + HOW_ROOM, addr, 24)\n\n"
             "A pinned open's last steps in one call: ``pin`` (pin_plain's slot bytes)\n"
             "written at ``off`` of ``view`` (the shim's mapping of the sealed region; ``addr``: the\n"
             "same place in the tracee), the call made openat2(AT_FDCWD, addr + HOW_ROOM, addr,\n"
             "sizeof struct open_how) with ``own``'s (the stop's six arguments) last two, PTRACE_CONT.\n"
             "The four arguments set (as unsigned registers), or None, nothing resumed, where the\n"
             "kernel refuses PTRACE_SET_SYSCALL_INFO as unknown.  OSError when a request fails.");

static PyObject *py_pin_open(PyObject *self, PyObject *const *argv, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "pin_open: six arguments");
        return NULL;
    }
    if (!pin_conf.ready) {
        PyErr_SetString(PyExc_RuntimeError, "pin_open before pin_setup");
        return NULL;
    }
    long tid = PyLong_AsLong(argv[0]);
    if (tid == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t off = PyLong_AsSsize_t(argv[2]);
    if (off == -1 && PyErr_Occurred())
        return NULL;
    uint64_t addr = PyLong_AsUnsignedLongLong(argv[3]);
    if (addr == (uint64_t)-1 && PyErr_Occurred())
        return NULL;
    if (!PyBytes_Check(argv[4]) || !PyTuple_Check(argv[5]) || PyTuple_GET_SIZE(argv[5]) != 6) {
        PyErr_SetString(PyExc_TypeError, "pin_open: pin must be bytes, own a tuple of six");
        return NULL;
    }
    if (tid <= 0 || tid > INT32_MAX || addr > UINT64_MAX - (uint64_t)pin_conf.room) {
        PyErr_SetString(PyExc_ValueError, "pin_open: tid or address out of range");
        return NULL;
    }
    uint64_t args[6] = {(uint64_t)(int64_t)AT_FDCWD, addr + (uint64_t)pin_conf.room, addr,
                        sizeof(struct open_how_), 0, 0};
    for (int i = 4; i < 6; i++) {
        args[i] = PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(argv[5], i));
        if (args[i] == (uint64_t)-1 && PyErr_Occurred())
            return NULL;
    }
    Py_buffer dst = {0};
    if (PyObject_GetBuffer(argv[1], &dst, PyBUF_WRITABLE) < 0)
        return NULL;
    Py_ssize_t len = PyBytes_GET_SIZE(argv[4]);
    int bad = off < 0 || len > dst.len || off > dst.len - len;
    if (!bad)
        memcpy((char *)dst.buf + off, PyBytes_AS_STRING(argv[4]), (size_t)len);
    PyBuffer_Release(&dst);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "pin_open: outside the scratch region");
        return NULL;
    }
    int r = set_info_args((int)tid, INFO_SECCOMP, SYS_openat2, args);
    if (r <= 0) {
        if (r < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (ptrace(PTRACE_CONT, (int)tid, NULL, NULL) == -1)
        return os_error(errno, "ptrace(0x7, ", (int)tid);
    /* the four arguments depend on the slot's address only: the last tuple made is kept (immutable) */
    static PyObject *last_set;
    static uint64_t last_addr;
    if (last_set == NULL || last_addr != addr) {
        PyObject *made_set = Py_BuildValue("(KKKK)", (unsigned long long)args[0], (unsigned long long)args[1],
                                           (unsigned long long)args[2], (unsigned long long)args[3]);
        if (made_set == NULL)
            return NULL;
        Py_XSETREF(last_set, made_set);
        last_addr = addr;
    }
    Py_INCREF(last_set);
    return last_set;
}

PyDoc_STRVAR(cont_doc, "cont(tid, sig=0): PTRACE_CONT, OSError on failure.");

static PyObject *py_cont(PyObject *self, PyObject *args)
{
    int tid, sig = 0;
    if (!PyArg_ParseTuple(args, "i|i", &tid, &sig))
        return NULL;
    if (ptrace(PTRACE_CONT, tid, NULL, (void *)(long)sig) == -1)
        return os_error(errno, "ptrace(0x7, ", tid);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(wait_any_doc,
             "wait_any() -> None | (tid, status): one waitpid(-1, WNOHANG|__WALL);\n"
             "ChildProcessError when there is no child, as os.waitpid.");

static PyObject *py_wait_any(PyObject *self, PyObject *noargs)
{
    for (;;) {
        int status = 0;
        pid_t p = waitpid(-1, &status, WNOHANG | __WALL);
        if (p > 0)
            return Py_BuildValue("(ii)", (int)p, status);
        if (p == 0)
            Py_RETURN_NONE;
        if (errno == EINTR) {
            if (PyErr_CheckSignals() < 0)
                return NULL;
            continue;
        }
        return PyErr_SetFromErrno(PyExc_OSError); /* ECHILD: ChildProcessError */
    }
}


static long long monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* brokerd.spin.Spin's fields, read when the loop first waits and written back */
struct spin {
    PyObject *obj;
    int loaded, yields;
    long long budget_ns, max_skip, skip, backoff;
};

static int spin_field(PyObject *obj, const char *name, long long *out)
{
    PyObject *v = PyObject_GetAttrString(obj, name);
    if (v == NULL)
        return -1;
    *out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int spin_load(struct spin *sp)
{
    if (sp->loaded)
        return 0;
    long long yields;
    if (spin_field(sp->obj, "budget_ns", &sp->budget_ns) < 0 || spin_field(sp->obj, "max_skip", &sp->max_skip) < 0
        || spin_field(sp->obj, "yields", &yields) < 0 || spin_field(sp->obj, "_skip", &sp->skip) < 0
        || spin_field(sp->obj, "_backoff", &sp->backoff) < 0)
        return -1;
    sp->yields = yields != 0;
    sp->loaded = 1;
    return 0;
}

static int spin_store(struct spin *sp)
{
    if (!sp->loaded)
        return 0;
    PyObject *skip = PyLong_FromLongLong(sp->skip), *backoff = PyLong_FromLongLong(sp->backoff);
    int r = -1;
    if (skip != NULL && backoff != NULL && PyObject_SetAttrString(sp->obj, "_skip", skip) == 0
        && PyObject_SetAttrString(sp->obj, "_backoff", backoff) == 0)
        r = 0;
    Py_XDECREF(skip);
    Py_XDECREF(backoff);
    return r;
}

/* Spin.until(wait_one) after a first poll that saw nothing, with its state in
 * ``sp``: the tid (0: none came), -1 with an exception set.  The same steps:
 * a wait that backs off polls once only; on one CPU give the CPU up once and
 * poll again; no spinning while ``busy(now)`` says the machine is busy; else
 * poll for up to budget_ns, and a miss doubles the back-off. */
static pid_t spin_wait(struct spin *sp, PyObject *busy, int *status)
{
    if (spin_load(sp) < 0)
        return -1;
    if (sp->skip) {
        sp->skip--;
        return 0;
    }
    pid_t p;
    if (sp->yields) {
        sched_yield();
        p = wait_one(status);
        if (p != 0)
            return p;
    }
    long long now = monotonic_ns();
    PyObject *b = PyObject_CallFunction(busy, "L", now);
    if (b == NULL)
        return -1;
    int is_busy = PyObject_IsTrue(b);
    Py_DECREF(b);
    if (is_busy < 0)
        return -1;
    if (is_busy)
        return 0;
    long long end = now + sp->budget_ns;
    while (monotonic_ns() < end) {
        p = wait_one(status);
        if (p != 0)
            return p;
    }
    long long next = sp->backoff ? 2 * sp->backoff : 1;
    sp->backoff = next < sp->max_skip ? next : sp->max_skip;
    sp->skip = sp->backoff;
    return 0;
}

/* Hand stop (tid, status) to Python: a seccomp stop fetched whole to
 * on_seccomp(tid, arch, nr, args, ip, ret_data, path), anything else (or a
 * fetch that failed) to on_status(tid, status, None); an OSError, ValueError
 * or OverflowError from either to on_failed(tid, error) (Stops._tracee_failed).
 * 0, or -1 with any other exception set. */
static int dispatch(pid_t tid, int status, const unsigned char *paths, Py_ssize_t npaths, PyObject *on_seccomp,
                    PyObject *on_status, PyObject *on_failed)
{
    PyObject *r = NULL;
    PyObject *info = status == SECCOMP_STOP_STATUS ? seccomp_fetch(tid, paths, npaths) : Py_None;
    if (info == Py_None)
        Py_INCREF(info);
    if (info == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_OSError))
            return -1;
        PyErr_Clear(); /* the handler fetches again and meets the error where it handles the tracee */
        info = Py_None;
        Py_INCREF(info);
    }
    counter_reaped++;
    if (info != Py_None) {
        PyObject *tidobj = PyLong_FromLong((long)tid);
        if (tidobj != NULL) {
            PyObject *argv[7] = {tidobj};
            for (int i = 0; i < 6; i++)
                argv[i + 1] = PyTuple_GET_ITEM(info, i);
            r = PyObject_Vectorcall(on_seccomp, argv, 7, NULL);
            Py_DECREF(tidobj);
        }
    } else {
        r = PyObject_CallFunction(on_status, "iiO", (int)tid, status, info);
    }
    Py_DECREF(info);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_OSError) && !PyErr_ExceptionMatches(PyExc_ValueError)
        && !PyErr_ExceptionMatches(PyExc_OverflowError))
        return -1;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    r = PyObject_CallFunction(on_failed, "iO", (int)tid, value != NULL ? value : Py_None);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

PyDoc_STRVAR(reap_doc,
             "reap(paths, on_seccomp, on_status, on_failed, spin, busy, batch) -> (handled, more)\n\n"
             "Stops._reap's loop in one call: up to ``batch`` stops, each waited for\n"
             "(after the first) as ``spin.until`` waits (its back-off state read from\n"
             "and written back to the brokerd.spin.Spin ``spin``; ``busy(now_ns)``:\n"
             "spin.machine_busy), a seccomp stop fetched as next_stop fetches it and\n"
             "handed to on_seccomp(tid, arch, nr, args, ip, ret_data, path), any other\n"
             "to on_status(tid, status, None); a handler's OSError, ValueError or\n"
             "OverflowError goes to on_failed(tid, error).  ``more``: the batch ended\n"
             "with stops maybe still waiting; no children at all ends it quietly.");

static PyObject *py_reap(PyObject *self, PyObject *args)
{
    Py_buffer paths = {0};
    PyObject *on_seccomp, *on_status, *on_failed, *busy;
    struct spin sp = {0};
    int batch;
    if (!PyArg_ParseTuple(args, "y*OOOOOi", &paths, &on_seccomp, &on_status, &on_failed, &sp.obj, &busy, &batch))
        return NULL;
    long handled = 0;
    int more = 0, failed = 0;
    for (int n = 0; n < batch; n++) {
        int status = 0;
        pid_t p = wait_one(&status);
        if (p == 0 && n > 0)
            p = spin_wait(&sp, busy, &status);
        if (p > 0 && n > 0) { /* a hit of Spin.until: no back-off after it */
            if (spin_load(&sp) < 0) {
                failed = 1;
                break;
            }
            sp.backoff = 0;
        }
        if (p < 0) {
            if (PyErr_ExceptionMatches(PyExc_ChildProcessError))
                PyErr_Clear(); /* no tracee left: the loop ends */
            else
                failed = 1;
            break;
        }
        if (p == 0)
            break;
        handled++;
        if (dispatch(p, status, paths.buf, paths.len, on_seccomp, on_status, on_failed) < 0) {
            failed = 1;
            break;
        }
        if (n == batch - 1)
            more = 1;
    }
    PyBuffer_Release(&paths);
    if (failed) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        spin_store(&sp);
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    if (spin_store(&sp) < 0)
        return NULL;
    return Py_BuildValue("(li)", handled, more);
}

PyDoc_STRVAR(counts_doc, "counts() -> {'stops': N, 'reaped': M, 'fused': F}: seccomp stops fetched by this\n"
             "module, stops its loop (reap) handed to Python, judged opens the fused stop worked itself.");

static PyObject *py_counts(PyObject *self, PyObject *noargs)
{
    return Py_BuildValue("{sKsKsK}", "stops", counter_stops, "reaped", counter_reaped, "fused", counter_fused);
}

static PyMethodDef methods[] = {
    {"seccomp_info", py_seccomp_info, METH_VARARGS, seccomp_info_doc},
    {"read_cstr", py_read_cstr, METH_VARARGS, read_cstr_doc},
    {"plain_stat", py_plain_stat, METH_VARARGS, plain_stat_doc},
    {"set_info", py_set_info, METH_VARARGS, set_info_doc},
    {"cont", py_cont, METH_VARARGS, cont_doc},
    {"pin_setup", py_pin_setup, METH_VARARGS, pin_setup_doc},
    {"pin_plain", (PyCFunction)(void (*)(void))py_pin_plain, METH_FASTCALL, pin_plain_doc},
    {"pin_open", (PyCFunction)(void (*)(void))py_pin_open, METH_FASTCALL, pin_open_doc},
    {"wait_any", py_wait_any, METH_NOARGS, wait_any_doc},
    {"next_stop", py_next_stop, METH_VARARGS, next_stop_doc},
    {"reap", py_reap, METH_VARARGS, reap_doc},
    {"counts", py_counts, METH_NOARGS, counts_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_accel", "brokerd's compiled stop-loop calls (see brokerd/tracer/accel).", -1,
    methods, NULL, NULL, NULL, NULL,
};

static int add_fast_methods(PyObject *m); /* (at the end of the file) */
static int add_ask_methods(PyObject *m); /* (the external question's section, at the end) */

PyMODINIT_FUNC PyInit__accel(void)
{
    str_inode = PyUnicode_InternFromString("inode");
    if (str_inode == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (add_fast_methods(m) < 0 || add_ask_methods(m) < 0))
        Py_CLEAR(m);
    return m;
}

#include <structmember.h> /* PyMemberDef, T_OBJECT_EX (Python 3.11) */

/* ---- Objects made without their __init__'s Python frame (issue #13) ----------
 * maker(cls, names, fixed=()) -> f(*values): makes an instance of cls (a
 * class of slots only: a protocol Record, the shim's Decision) with slot
 * names[i] set to values[i] and each (name, value) of ``fixed`` set as given:
 * what cls(*values) does when cls's __init__ only stores its arguments (and
 * those constants), without the Python frame (a few hundred nanoseconds of
 * every judged call each).  Every slot of cls must be named in one or the
 * other (an unset slot would raise AttributeError when read): the Python
 * side makes makers from cls.__slots__ and tests that what they make equals
 * cls(*values) (tests/test_fused.py).  Decides nothing. */

static PyObject *made(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* self: (cls, offsets as bytes of Py_ssize_t: the values' then the fixed ones', fixed values) */
    PyTypeObject *cls = (PyTypeObject *)PyTuple_GET_ITEM(self, 0);
    PyObject *offsets = PyTuple_GET_ITEM(self, 1);
    PyObject *fixed = PyTuple_GET_ITEM(self, 2);
    Py_ssize_t k = PyTuple_GET_SIZE(fixed);
    Py_ssize_t n = PyBytes_GET_SIZE(offsets) / (Py_ssize_t)sizeof(Py_ssize_t) - k;
    if (nargs != n) {
        PyErr_Format(PyExc_TypeError, "making %s takes %zd arguments (%zd given)", cls->tp_name, n, nargs);
        return NULL;
    }
    PyObject *obj = cls->tp_alloc(cls, 0);
    if (obj == NULL)
        return NULL;
    const Py_ssize_t *at = (const Py_ssize_t *)PyBytes_AS_STRING(offsets);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(args[i]);
        *(PyObject **)((char *)obj + at[i]) = args[i];
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *v = PyTuple_GET_ITEM(fixed, i);
        Py_INCREF(v);
        *(PyObject **)((char *)obj + at[n + i]) = v;
    }
    return obj;
}

static PyMethodDef made_def = {"made", (PyCFunction)(void (*)(void))made, METH_FASTCALL,
                               "An instance of the maker's class with its slots set, in order."};

/* the offset of cls's writable object slot ``name``, or -1 with TypeError (or AttributeError) set */
static Py_ssize_t slot_offset(PyTypeObject *tp, PyObject *name)
{
    PyObject *d = PyObject_GetAttr((PyObject *)tp, name);
    if (d == NULL)
        return -1;
    Py_ssize_t off = -1;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type) && PyType_IsSubtype(tp, PyDescr_TYPE(d))) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type == T_OBJECT_EX && !(m->flags & READONLY) && m->offset > 0
            && m->offset + (Py_ssize_t)sizeof(PyObject *) <= tp->tp_basicsize)
            off = m->offset;
    }
    Py_DECREF(d);
    if (off < 0)
        PyErr_Format(PyExc_TypeError, "maker: %R is not an object slot of %s", name, tp->tp_name);
    return off;
}

PyDoc_STRVAR(maker_doc,
             "maker(cls, names, fixed=()) -> f(*values): makes cls's instances with slot names[i]\n"
             "set to values[i] and each (name, value) of fixed set so, as cls(*values) does when its\n"
             "__init__ only stores them (no Python frame).  TypeError unless every name is a writable\n"
             "object slot of cls, a class of slots only.");

static PyObject *py_maker(PyObject *self, PyObject *args)
{
    PyObject *cls, *names, *fixed = NULL;
    if (!PyArg_ParseTuple(args, "O!O!|O!", &PyType_Type, &cls, &PyTuple_Type, &names, &PyTuple_Type, &fixed))
        return NULL;
    PyTypeObject *tp = (PyTypeObject *)cls;
    if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE) || tp->tp_itemsize != 0 || tp->tp_dictoffset != 0) {
        PyErr_Format(PyExc_TypeError, "maker: %s is not a class of slots only", tp->tp_name);
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(names), k = fixed != NULL ? PyTuple_GET_SIZE(fixed) : 0;
    PyObject *values = PyTuple_New(k);
    PyObject *offsets = PyBytes_FromStringAndSize(NULL, (n + k) * (Py_ssize_t)sizeof(Py_ssize_t));
    if (values == NULL || offsets == NULL)
        goto fail;
    Py_ssize_t *at = (Py_ssize_t *)PyBytes_AS_STRING(offsets);
    for (Py_ssize_t i = 0; i < n + k; i++) {
        PyObject *name = i < n ? PyTuple_GET_ITEM(names, i) : NULL;
        if (i >= n) {
            PyObject *pair = PyTuple_GET_ITEM(fixed, i - n);
            if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
                PyErr_SetString(PyExc_TypeError, "maker: fixed holds (name, value) pairs");
                goto fail;
            }
            name = PyTuple_GET_ITEM(pair, 0);
            Py_INCREF(PyTuple_GET_ITEM(pair, 1));
            PyTuple_SET_ITEM(values, i - n, PyTuple_GET_ITEM(pair, 1));
        }
        if ((at[i] = slot_offset(tp, name)) < 0)
            goto fail;
    }
    PyObject *state = PyTuple_Pack(3, cls, offsets, values);
    Py_DECREF(offsets);
    Py_DECREF(values);
    if (state == NULL)
        return NULL;
    PyObject *f = PyCFunction_New(&made_def, state);
    Py_DECREF(state);
    return f;
fail:
    Py_XDECREF(values);
    Py_XDECREF(offsets);
    return NULL;
}

static PyObject *py_fused_stop(PyObject *self, PyObject *args); /* (the fused stop's section, below) */
PyDoc_STRVAR(fused_stop_doc,
             "fused_stop(state) -> f(tid, arch, nr, args, ip, ret_data, path): reap's seccomp handler\n"
             "that works the common judged open itself and hands every other stop to state's fallback\n"
             "(Stops._on_seccomp_stop).  ``state``: the tuple Entry._make_fused builds (the fused\n"
             "stop's section, at the end of this file).");

static PyMethodDef fast_methods[] = {
    {"maker", py_maker, METH_VARARGS, maker_doc},
    {"fused_stop", py_fused_stop, METH_VARARGS, fused_stop_doc},
    {NULL, NULL, 0, NULL},
};

static int add_fast_methods(PyObject *m)
{
    return PyModule_AddFunctions(m, fast_methods);
}

/* ---- The common external question in C (issue #13, session 9 "ext2") ------------
 * ask_open(...): one external authorizer asked about a judged open that is
 * pinned (pin.py), the whole road in one call: pin_plain's check, the event's
 * line (the Python formatter's constant parts around the quoted path, made once
 * per plan and registers by brokerd.tracer.shim.ext, byte for byte what
 * codec.format_event writes: tests/test_ext_open.py), its write, the wait for the
 * reply as brokerd.spin.Spin.until waits (its state read from and written to the
 * Spin object), the reply's read, and when it is exactly the plain ``cont`` line,
 * pin_open's steps (the slot written, SET_SYSCALL_INFO, PTRACE_CONT).  Anything
 * else is handed back as it happened (ASK_* below) and the Python goes on from
 * there (Authorizer.ask_cont): this decides nothing, it only makes the same
 * system calls in one C call. */

/* what happened to a question ask_open asked without getting a plain cont
 * (brokerd/decision/authorizer.py's ASK_* names, the same numbers) */
enum { ASK_NOTHING = 0, ASK_DATA = 1, ASK_WRITE_FAILED = 2, ASK_PARTIAL = 3, ASK_READ_FAILED = 4,
       ASK_CONT_UNPINNED = 5 };
#define ASK_READ_SIZE 65536 /* authorizer.READ_SIZE */
#define ASK_MAX_LINE 65536 /* codec.MAX_LINE */

static unsigned long long counter_asked; /* questions ask_open answered with a plain cont and pinned */
/* where ask_open's waits took their reply: the read right after the write, the one after giving the
 * CPU up, the spin; and the waits that took none (docs/performance.md: who runs when on one CPU) */
static unsigned long long counter_first, counter_yield, counter_spin, counter_none;
static PyObject *s_skip, *s_backoff, *s_yields, *s_budget_ns, *s_max_skip; /* Spin's fields */

/* the length of codec.quote(p): '"', then each byte as itself (0x20..0x7e but '"' and
 * '\\'), \" \\ \n \r \t, or \xHH, then '"' */
static Py_ssize_t quoted_len(const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t k = 2;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t')
            k += 2;
        else if (c >= 0x20 && c <= 0x7e)
            k += 1;
        else
            k += 4;
    }
    return k;
}

static char *put_quoted(char *o, const unsigned char *p, Py_ssize_t n)
{
    static const char hex[] = "0123456789abcdef";
    *o++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        switch (c) {
        case '"': *o++ = '\\'; *o++ = '"'; break;
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        default:
            if (c >= 0x20 && c <= 0x7e) {
                *o++ = (char)c;
            } else {
                *o++ = '\\'; *o++ = 'x'; *o++ = hex[c >> 4]; *o++ = hex[c & 15];
            }
        }
    }
    *o++ = '"';
    return o;
}

/* The event's line into a new buffer (PyMem_Malloc'd, *len set): "syscall ID PID TID"
 * then parts[0], the quoted path, parts[1], ... the quoted path, parts[k]; NULL
 * without an exception when it would be longer than codec.MAX_LINE, NULL with
 * one on a bad argument or no memory. */
static char *event_line(unsigned long long id, int pid, int tid, PyObject *parts, const unsigned char *path,
                        Py_ssize_t plen, Py_ssize_t *len)
{
    if (!PyTuple_Check(parts) || PyTuple_GET_SIZE(parts) < 1) {
        PyErr_SetString(PyExc_TypeError, "ask_open: parts must be a tuple of bytes");
        return NULL;
    }
    Py_ssize_t k = PyTuple_GET_SIZE(parts), q = quoted_len(path, plen), total = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *b = PyTuple_GET_ITEM(parts, i);
        if (!PyBytes_Check(b)) {
            PyErr_SetString(PyExc_TypeError, "ask_open: parts must be a tuple of bytes");
            return NULL;
        }
        total += PyBytes_GET_SIZE(b);
    }
    char head[96];
    int h = snprintf(head, sizeof head, "syscall %llu %d %d", id, pid, tid);
    if (h < 0 || (size_t)h >= sizeof head) {
        PyErr_SetString(PyExc_ValueError, "ask_open: bad event header");
        return NULL;
    }
    total += h + (k - 1) * q;
    *len = total;
    if (total > ASK_MAX_LINE)
        return NULL; /* codec: line-too-long; the Python road says so */
    char *line = PyMem_Malloc((size_t)total);
    if (line == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    char *o = line;
    memcpy(o, head, (size_t)h);
    o += h;
    for (Py_ssize_t i = 0; i < k; i++) {
        if (i > 0)
            o = put_quoted(o, path, plen);
        PyObject *b = PyTuple_GET_ITEM(parts, i);
        memcpy(o, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
        o += PyBytes_GET_SIZE(b);
    }
    return line;
}

PyDoc_STRVAR(event_line_doc,
             "event_line(id, pid, tid, parts, path) -> bytes | None: the line ask_open writes (None:\n"
             "longer than codec.MAX_LINE).  For tests: byte for byte codec.format_event's.");

static PyObject *py_event_line(PyObject *self, PyObject *args)
{
    unsigned long long id;
    int pid, tid;
    PyObject *parts;
    Py_buffer path = {0};
    if (!PyArg_ParseTuple(args, "KiiO!y*", &id, &pid, &tid, &PyTuple_Type, &parts, &path))
        return NULL;
    Py_ssize_t len = 0;
    char *line = event_line(id, pid, tid, parts, path.buf, path.len, &len);
    PyBuffer_Release(&path);
    if (line == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *r = PyBytes_FromStringAndSize(line, len);
    PyMem_Free(line);
    return r;
}

static int spin_attr(PyObject *spin, PyObject *name, long long *out)
{
    PyObject *v = PyObject_GetAttr(spin, name);
    if (v == NULL)
        return -1;
    *out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int spin_set_attr(PyObject *spin, PyObject *name, long long value)
{
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL)
        return -1;
    int r = PyObject_SetAttr(spin, name, v);
    Py_DECREF(v);
    return r;
}

/* one non-blocking read (authorizer._read_now): the bytes read (0: the end), -1
 * nothing there yet, -2 a read error (errno set), -3 an exception (a signal
 * handler's, at EINTR, as os.read) */
static ssize_t read_reply(int fd, char *buf)
{
    for (;;) {
        ssize_t r = read(fd, buf, ASK_READ_SIZE);
        if (r >= 0)
            return r;
        if (errno == EINTR) {
            if (PyErr_CheckSignals() < 0)
                return -3;
            continue;
        }
        return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
    }
}

/* a read that got something (or failed) after a wait: Spin.until's hit (back-off 0) */
static ssize_t reply_hit(PyObject *spin, ssize_t r)
{
    long long backoff;
    if (r < 0)
        return r; /* (an error: Spin.until raises it from poll(), its state untouched) */
    if (spin_attr(spin, s_backoff, &backoff) < 0 || (backoff && spin_set_attr(spin, s_backoff, 0) < 0))
        return -3;
    return r;
}

/* Spin.until(self._read_now) with ``spin``'s state, ``busy``: spin.machine_busy.  The
 * same steps and results as read_reply's, -1 when nothing came within the wait. */
static ssize_t wait_reply(int fd, char *buf, PyObject *spin, PyObject *busy)
{
    ssize_t r = read_reply(fd, buf);
    if (r != -1) {
        counter_first++;
        return reply_hit(spin, r);
    }
    counter_none++; /* (until a later read takes it) */
    long long skip, yields, budget, max_skip, backoff;
    if (spin_attr(spin, s_skip, &skip) < 0)
        return -3;
    if (skip)
        return spin_set_attr(spin, s_skip, skip - 1) < 0 ? -3 : -1;
    if (spin_attr(spin, s_yields, &yields) < 0)
        return -3;
    if (yields) { /* one CPU: the authorizer runs only if this process lets it */
        sched_yield();
        r = read_reply(fd, buf);
        if (r != -1) {
            counter_none--, counter_yield++;
            return reply_hit(spin, r);
        }
    }
    long long now = monotonic_ns();
    PyObject *b = PyObject_CallFunction(busy, "L", now);
    if (b == NULL)
        return -3;
    int is_busy = PyObject_IsTrue(b);
    Py_DECREF(b);
    if (is_busy < 0)
        return -3;
    if (is_busy)
        return -1;
    if (spin_attr(spin, s_budget_ns, &budget) < 0)
        return -3;
    long long end = now + budget;
    while (monotonic_ns() < end) {
        r = read_reply(fd, buf);
        if (r != -1) {
            counter_none--, counter_spin++;
            return reply_hit(spin, r);
        }
    }
    if (spin_attr(spin, s_backoff, &backoff) < 0 || spin_attr(spin, s_max_skip, &max_skip) < 0)
        return -3;
    backoff = backoff ? 2 * backoff : 1;
    if (backoff > max_skip)
        backoff = max_skip;
    if (spin_set_attr(spin, s_backoff, backoff) < 0 || spin_set_attr(spin, s_skip, backoff) < 0)
        return -3;
    return -1;
}

/* the pinned open's last steps (pin_open's): the slot (struct open_how padded to
 * HOW_ROOM, the path, its NUL) at ``off`` of ``view``, the call made openat2 of
 * it, PTRACE_CONT; 1 done (``set`` holds the four arguments set), 0 not (nothing
 * resumed; the Python road does it again and meets what failed) */
static int pin_resume(int tid, PyObject *view, Py_ssize_t off, uint64_t addr, const struct open_how_ *how,
                      const char *path, Py_ssize_t len, const uint64_t *own, uint64_t *set)
{
    Py_buffer dst = {0};
    if (PyObject_GetBuffer(view, &dst, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t need = pin_conf.room + len + 1;
    int ok = off >= 0 && need <= dst.len && off <= dst.len - need && addr <= UINT64_MAX - (uint64_t)pin_conf.room;
    if (ok) {
        char *out = (char *)dst.buf + off;
        memset(out, 0, (size_t)pin_conf.room);
        memcpy(out, how, sizeof *how);
        memcpy(out + pin_conf.room, path, (size_t)len);
        out[pin_conf.room + len] = 0;
    }
    PyBuffer_Release(&dst);
    if (!ok)
        return 0;
    uint64_t args[6] = {(uint64_t)(int64_t)AT_FDCWD, addr + (uint64_t)pin_conf.room, addr,
                        sizeof(struct open_how_), own[4], own[5]};
    int r = set_info_args(tid, INFO_SECCOMP, SYS_openat2, args);
    if (r < 0)
        PyErr_Clear();
    if (r <= 0 || ptrace(PTRACE_CONT, tid, NULL, NULL) == -1)
        return 0;
    memcpy(set, args, 4 * sizeof *set);
    return 1;
}

/* (what, value): what became of a question asked without a plain cont back */
static PyObject *asked(int what, PyObject *value)
{
    if (value == NULL)
        return NULL;
    return Py_BuildValue("(iN)", what, value);
}

PyDoc_STRVAR(ask_open_doc,
             "ask_open(wfd, rfd, spin, busy, hello, id, pid, tid, parts, path, rootfd, flags, mode, view, off,\n"
             "addr, own) -> None | (what, value) | (AT_FDCWD, addr + HOW_ROOM, addr, 24)\n\n"
             "One external authorizer (its descriptors, its brokerd.spin.Spin ``spin``, ``busy``:\n"
             "spin.machine_busy; ``hello``: handshake mode, whose reply is \"ID cont\") asked about a\n"
             "judged open of ``path`` with ``flags`` and ``mode`` by thread ``tid`` of process ``pid``:\n"
             "None, nothing asked, where pin_plain(rootfd, path, flags, mode) would give None or the\n"
             "line (event_line(id, pid, tid, parts, path)) would be too long; else the line written,\n"
             "the reply waited for and read as Authorizer.ask_cont does, and when it is exactly\n"
             "the plain cont the open pinned as pin_open(tid, view, off, addr, slot, own) pins it:\n"
             "its four arguments.  Otherwise (what, value): ASK_NOTHING (None: no reply yet),\n"
             "ASK_DATA (the bytes read), ASK_WRITE_FAILED / ASK_READ_FAILED (errno), ASK_PARTIAL\n"
             "(the part of the line not written), ASK_CONT_UNPINNED (None: a plain cont, the pin\n"
             "not made).");

static PyObject *py_ask_open(PyObject *self, PyObject *const *argv, Py_ssize_t nargs)
{
    if (nargs != 17) {
        PyErr_SetString(PyExc_TypeError, "ask_open: seventeen arguments");
        return NULL;
    }
    if (!pin_conf.ready) {
        PyErr_SetString(PyExc_RuntimeError, "ask_open before pin_setup");
        return NULL;
    }
    if (!PyBytes_Check(argv[9]) || !PyTuple_Check(argv[16]) || PyTuple_GET_SIZE(argv[16]) != 6) {
        PyErr_SetString(PyExc_TypeError, "ask_open: path must be bytes, own a tuple of six");
        return NULL;
    }
    int wfd = PyLong_AsLong(argv[0]), rfd = PyLong_AsLong(argv[1]), hello = PyObject_IsTrue(argv[4]);
    unsigned long long id = PyLong_AsUnsignedLongLong(argv[5]);
    long pid = PyLong_AsLong(argv[6]), tid = PyLong_AsLong(argv[7]), rootfd = PyLong_AsLong(argv[10]);
    uint64_t flags = PyLong_AsUnsignedLongLongMask(argv[11]), mode = PyLong_AsUnsignedLongLongMask(argv[12]);
    Py_ssize_t off = PyLong_AsSsize_t(argv[14]);
    uint64_t addr = PyLong_AsUnsignedLongLong(argv[15]), own[6];
    for (int i = 0; i < 6; i++)
        own[i] = PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(argv[16], i));
    if (PyErr_Occurred())
        return NULL;
    if (pid <= 0 || pid > INT32_MAX || tid <= 0 || tid > INT32_MAX || rootfd < 0 || rootfd > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "ask_open: pid, tid or descriptor out of range");
        return NULL;
    }
    const char *path = PyBytes_AS_STRING(argv[9]);
    Py_ssize_t plen = PyBytes_GET_SIZE(argv[9]);
    struct open_how_ how;
    struct stat st;
    if (!plain_check((int)rootfd, path, plen, flags, mode, &how, &st))
        Py_RETURN_NONE; /* not plain: the Python road (nothing asked) */
    Py_ssize_t len = 0;
    char *line = event_line(id, (int)pid, (int)tid, argv[8], (const unsigned char *)path, plen, &len);
    if (line == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    ssize_t n;
    for (;;) {
        n = write(wfd, line, (size_t)len);
        if (n >= 0 || errno != EINTR)
            break;
        if (PyErr_CheckSignals() < 0) {
            PyMem_Free(line);
            return NULL;
        }
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        PyMem_Free(line);
        return asked(ASK_WRITE_FAILED, PyLong_FromLong(errno));
    }
    if (n < len) { /* (a full pipe: the rest waits in the output buffer) */
        PyObject *rest = PyBytes_FromStringAndSize(line + (n > 0 ? n : 0), len - (n > 0 ? n : 0));
        PyMem_Free(line);
        return asked(ASK_PARTIAL, rest);
    }
    PyMem_Free(line);
    char buf[ASK_READ_SIZE];
    ssize_t r = wait_reply(rfd, buf, argv[2], argv[3]);
    if (r == -3)
        return NULL;
    if (r == -2)
        return asked(ASK_READ_FAILED, PyLong_FromLong(errno));
    if (r == -1) {
        Py_INCREF(Py_None);
        return asked(ASK_NOTHING, Py_None);
    }
    char expect[48];
    int e = hello ? snprintf(expect, sizeof expect, "%llu cont\n", id) : snprintf(expect, sizeof expect, "cont\n");
    if (r != e || memcmp(buf, expect, (size_t)e) != 0)
        return asked(ASK_DATA, PyBytes_FromStringAndSize(buf, r));
    uint64_t set[4];
    if (!pin_resume((int)tid, argv[13], off, addr, &how, path, plen, own, set)) {
        Py_INCREF(Py_None);
        return asked(ASK_CONT_UNPINNED, Py_None);
    }
    counter_asked++;
    return Py_BuildValue("(KKKK)", (unsigned long long)set[0], (unsigned long long)set[1],
                         (unsigned long long)set[2], (unsigned long long)set[3]);
}

PyDoc_STRVAR(ask_counts_doc,
             "ask_counts() -> {'asked': N, 'first': F, 'yield': Y, 'spin': S, 'none': M}: questions ask_open\n"
             "answered with a plain cont and pinned; its waits' replies read right after the write, after\n"
             "giving the CPU up, in the spin; waits that read none.");

static PyObject *py_ask_counts(PyObject *self, PyObject *noargs)
{
    return Py_BuildValue("{sKsKsKsKsK}", "asked", counter_asked, "first", counter_first, "yield", counter_yield,
                         "spin", counter_spin, "none", counter_none);
}

static PyMethodDef ask_methods[] = {
    {"ask_open", (PyCFunction)(void (*)(void))py_ask_open, METH_FASTCALL, ask_open_doc},
    {"event_line", py_event_line, METH_VARARGS, event_line_doc},
    {"ask_counts", py_ask_counts, METH_NOARGS, ask_counts_doc},
    {NULL, NULL, 0, NULL},
};

static int add_ask_methods(PyObject *m)
{
    if ((s_skip = PyUnicode_InternFromString("_skip")) == NULL
        || (s_backoff = PyUnicode_InternFromString("_backoff")) == NULL
        || (s_yields = PyUnicode_InternFromString("yields")) == NULL
        || (s_budget_ns = PyUnicode_InternFromString("budget_ns")) == NULL
        || (s_max_skip = PyUnicode_InternFromString("max_skip")) == NULL)
        return -1;
    return PyModule_AddFunctions(m, ask_methods);
}
/* ---- end of the common external question in C ---------------------------------- */

/* ---- The fused stop in C (issue #13, session 9 "cin") ------------------------
 * fused_stop(state) -> f(tid, arch, nr, args, ip, ret_data, path): what the
 * compiled loop (reap) hands a seccomp stop to in place of
 * Stops._on_seccomp_stop.  The common judged open (a running thread, a plan
 * with a "fast" tuple: fused, x86_64, pinnable, every member an in-process
 * policy asked synchronously; no audit, symbolizer, stop counts, cached
 * replies or fail("deny") about; a path read whole, plain under the thread's
 * kept root) is worked here: its event made, each member's handler called
 * under its deadline, the plain cont recognised, the open pinned and resumed.
 * Before anything is changed, any other stop goes to the Python handler as
 * it was (``fallback``, with False as an eighth argument when only the path
 * was not plain: its check is not made twice); after, anything but a plain
 * cont goes to the same Python code the Python road runs from that point
 * (InProcess._fused_answer, Entry._walk_from, Entry._pin_and_go).  Only the
 * policies' own functions (and what they call) run as Python.  The Python
 * road does the same (tests/test_fused_c.py runs both). */

/* state: the tuple Entry._make_fused builds, in this order */
enum {
    FS_SHIM, FS_FALLBACK, FS_THREADS, FS_PLANS, FS_OWN_FILTERS, FS_STATS, FS_ROOT_FDS, FS_MEM, FS_STOPS, FS_REPLIES,
    FS_REGIONS, FS_PT, FS_MK_STR, FS_MK_CALL, FS_MK_EVENT, FS_MK_DECISION, FS_ASK, FS_RUN, FS_CONT_TYPE,
    FS_TRACE_MARK, FS_ACCMODE, FS_O_PATH, FS_PATHSIZE, FS_PLAN_TYPE, FS_THREAD_TYPE, FS_OPENAT2, FS_N
};
/* the state's constants as C values, and _Plan.fast's offset (fused_stop sets them; one layout per process) */
static uint64_t fs_accmode, fs_o_path;
static Py_ssize_t fs_pathsize, fs_fast_offset, fs_mem_pid;
static PyObject *fs_empty; /* () */
/* a plan's ``fast`` tuple (Entry._fast_plan), in this order */
enum {
    FP_SPEC_NAME, FP_ABI_NAME, FP_ABI, FP_SPEC, FP_DECODE, FP_PATH_NOTE, FP_REAL_NOTE, FP_FLAGS_AT, FP_CREAT_FLAGS,
    FP_MODE_AT, FP_ARG_REGS, FP_OWN_NR, FP_MEMBERS, FP_QUIET, FP_N
};
/* one member of it (InProcess.fused_parts, after its position and itself) */
enum { FM_POS, FM_MEMBER, FM_SESSION, FM_ENTRY, FM_RESULT, FM_ALARM, FM_CONT, FM_STATS, FM_NEW_CALL, FM_TIMED,
       FM_TIMEOUT, FM_N };

static struct {
    PyObject *fast, *saved_mask, *detaching, *state_, *replay, *forced, *on, *cache, *replies, *audit, *audit_tee,
        *symbolizer, *pin_ok, *main_pid, *tgid, *announced, *running, *guard_exit, *pid, *strsize, *next_id,
        *verify, *pin, *repointed, *abi, *spec, *raw, *event_id, *mode, *stats, *events, *new_call, *timed, *timeout,
        *due, *armed, *ticking, *start, *ask_entry, *fused_answer, *walk_from, *verdict, *sets, *decisions, *decision,
        *slots, *addr, *view, *set_info_works, *resume_count, *resumed, *pin_and_go, *star, *dead, *new_, *cont,
        *empty, *add;
} fs_names;
static PyObject *fs_one, *fs_zero; /* 1 and 0 (small ints, kept) */

static int fs_intern(void)
{
    if (fs_names.fast != NULL)
        return 0;
#define FS_NAME(field, text) \
    if ((fs_names.field = PyUnicode_InternFromString(text)) == NULL) \
        return -1;
    FS_NAME(saved_mask, "saved_mask") FS_NAME(detaching, "_detaching") FS_NAME(state_, "_state")
    FS_NAME(replay, "replay") FS_NAME(forced, "forced") FS_NAME(on, "on") FS_NAME(cache, "cache")
    FS_NAME(replies, "replies") FS_NAME(audit, "audit") FS_NAME(audit_tee, "_audit_tee")
    FS_NAME(symbolizer, "_symbolizer") FS_NAME(pin_ok, "_pin_ok") FS_NAME(main_pid, "main_pid")
    FS_NAME(tgid, "tgid") FS_NAME(announced, "announced") FS_NAME(running, "running")
    FS_NAME(guard_exit, "guard_exit") FS_NAME(pid, "pid") FS_NAME(strsize, "strsize") FS_NAME(next_id, "_next_id")
    FS_NAME(verify, "verify") FS_NAME(pin, "pin") FS_NAME(repointed, "repointed") FS_NAME(abi, "abi")
    FS_NAME(spec, "spec") FS_NAME(raw, "raw") FS_NAME(event_id, "event_id") FS_NAME(mode, "mode")
    FS_NAME(stats, "stats") FS_NAME(events, "events") FS_NAME(new_call, "new_call") FS_NAME(timed, "_timed")
    FS_NAME(timeout, "timeout") FS_NAME(due, "due") FS_NAME(armed, "armed") FS_NAME(ticking, "ticking")
    FS_NAME(start, "start") FS_NAME(ask_entry, "ask_entry") FS_NAME(fused_answer, "_fused_answer")
    FS_NAME(walk_from, "_walk_from") FS_NAME(verdict, "verdict") FS_NAME(sets, "sets")
    FS_NAME(decisions, "decisions") FS_NAME(decision, "decision") FS_NAME(slots, "slots") FS_NAME(addr, "addr")
    FS_NAME(view, "view") FS_NAME(set_info_works, "SET_INFO_WORKS") FS_NAME(resume_count, "_resume_count")
    FS_NAME(resumed, "resumed") FS_NAME(pin_and_go, "_pin_and_go") FS_NAME(star, "*") FS_NAME(dead, "dead")
    FS_NAME(new_, "new") FS_NAME(cont, "cont") FS_NAME(empty, "") FS_NAME(add, "add")
#undef FS_NAME
    if ((fs_one = PyLong_FromLong(1)) == NULL || (fs_zero = PyLong_FromLong(0)) == NULL)
        return -1;
    if ((fs_names.fast = PyUnicode_InternFromString("fast")) == NULL)
        return -1;
    return 0;
}

/* The shim's attributes are read and written in its __dict__
 * (Entry._make_fused checks that no class of its makes any of these names a
 * descriptor): a generic getattr was most of this road's cost.
 * fs_dget: the value (borrowed), ``dflt`` (the class's default, which
 * Entry._make_fused checks too) when the dict has none, NULL on an error. */
static PyObject *fs_dget(PyObject *dict, PyObject *name, PyObject *dflt)
{
    PyObject *v = PyDict_GetItemWithError(dict, name);
    if (v == NULL && !PyErr_Occurred()) {
        if (dflt == NULL)
            PyErr_SetObject(PyExc_AttributeError, name);
        return dflt;
    }
    return v;
}

/* ``o.name = v`` in __dict__ ``dict``, with ``v`` a new reference stolen (NULL: the error of making it) */
static int fs_dset_new(PyObject *dict, PyObject *name, PyObject *v)
{
    if (v == NULL)
        return -1;
    int r = PyDict_SetItem(dict, name, v);
    Py_DECREF(v);
    return r;
}

/* _Thread's fields are slots (thread._slotted): read and written at their
 * offsets, worked out by fused_stop (a thread's record is never anything else) */
enum {
    FT_SAVED_MASK, FT_STATE, FT_REPLAY, FT_TGID, FT_RUNNING, FT_GUARD_EXIT, FT_VERIFY, FT_PIN, FT_REPOINTED, FT_ABI,
    FT_SPEC, FT_RAW, FT_EVENT_ID, FT_DECISION, FT_RESUMED, FT_ANNOUNCED, FT_N
};
static Py_ssize_t fs_toff[FT_N];

/* field ``f`` of thread ``t`` (borrowed), NULL with AttributeError when unset */
static PyObject *fs_tget(PyObject *t, int f)
{
    PyObject *v = *(PyObject **)((char *)t + fs_toff[f]);
    if (v == NULL)
        PyErr_SetString(PyExc_AttributeError, "fused_stop: a thread's field is not set");
    return v;
}

/* field ``f`` of thread ``t`` set to ``v`` (borrowed) */
static void fs_tset(PyObject *t, int f, PyObject *v)
{
    PyObject **at = (PyObject **)((char *)t + fs_toff[f]), *old = *at;
    Py_INCREF(v);
    *at = v;
    Py_XDECREF(old);
}

/* _Alarm's slots (due, armed, ticking) by offset, worked out for its class once */
static struct {
    PyTypeObject *type;
    Py_ssize_t due, armed, ticking;
} fs_alarm;

static Py_ssize_t slot_offset(PyTypeObject *tp, PyObject *name); /* (the makers' section) */

static int fs_alarm_slots(PyObject *alarm)
{
    PyTypeObject *tp = Py_TYPE(alarm);
    if (fs_alarm.type == tp)
        return 0;
    Py_ssize_t due = slot_offset(tp, fs_names.due), armed = due < 0 ? -1 : slot_offset(tp, fs_names.armed);
    Py_ssize_t ticking = armed < 0 ? -1 : slot_offset(tp, fs_names.ticking);
    if (ticking < 0)
        return -1;
    fs_alarm.due = due, fs_alarm.armed = armed, fs_alarm.ticking = ticking;
    Py_INCREF(tp);
    Py_XDECREF(fs_alarm.type);
    fs_alarm.type = tp;
    return 0;
}

/* slot ``off`` of ``o`` set to ``v`` (a new reference stolen; NULL: the error of making it) */
static int fs_slot_set_new(PyObject *o, Py_ssize_t off, PyObject *v)
{
    if (v == NULL)
        return -1;
    PyObject **at = (PyObject **)((char *)o + off), *old = *at;
    *at = v;
    Py_XDECREF(old);
    return 0;
}

/* attribute ``name`` of ``o`` is true: 1, false: 0, -1 with an exception set */
static int fs_truth(PyObject *o, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        return -1;
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

/* attribute ``name`` of ``o`` is ``what`` (identity): 1, 0, -1 */
static int fs_is(PyObject *o, PyObject *name, PyObject *what)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        return -1;
    int r = v == what;
    Py_DECREF(v);
    return r;
}

/* ``d[key] += 1`` (a counter dict): 0, -1 */
static int fs_count(PyObject *d, PyObject *key)
{
    PyObject *v = PyObject_GetItem(d, key);
    if (v == NULL)
        return -1;
    PyObject *n = PyNumber_Add(v, fs_one);
    Py_DECREF(v);
    if (n == NULL)
        return -1;
    int r = PyObject_SetItem(d, key, n);
    Py_DECREF(n);
    return r;
}

/* an answer (reply, reason) that lets the walk go on at once, as Entry._ask_entry tests it: 1, 0, -1 */
static int fs_plain(PyObject *reply, PyObject *reason, PyObject *cont_type)
{
    int r = PyObject_IsTrue(reason);
    if (r != 0)
        return r < 0 ? -1 : 0;
    PyObject *verdict = PyObject_GetAttr(reply, fs_names.verdict);
    if (verdict == NULL)
        return -1;
    int cont = (PyObject *)Py_TYPE(verdict) == cont_type;
    Py_DECREF(verdict);
    if (!cont)
        return 0;
    if ((r = fs_truth(reply, fs_names.sets)) != 0)
        return r < 0 ? -1 : 0;
    if ((r = fs_truth(reply, fs_names.cache)) != 0)
        return r < 0 ? -1 : 0;
    return 1;
}

/* One member's answer to ``ev`` as (reply, reason), a new reference (NULL: an exception):
 * InProcess.ask_entry's and Session.decide_entry's common case here, the
 * handler called under the member's deadline; anything else is theirs. */
static PyObject *fs_ask(PyObject *const *mem, PyObject *ev, PyObject *name)
{
    PyObject *m = mem[FM_MEMBER], *session = mem[FM_SESSION], *alarm = mem[FM_ALARM];
    int r = fs_is(m, fs_names.mode, fs_names.dead);
    if (r == 0) {
        PyObject *smode = PyObject_GetAttr(session, fs_names.mode);
        if (smode == NULL)
            return NULL;
        r = PyUnicode_Check(smode) && PyUnicode_Compare(smode, fs_names.new_) == 0;
        Py_DECREF(smode);
    }
    if (r < 0)
        return NULL;
    PyObject *fn = NULL;
    if (r == 0) { /* entry.get(name) or entry.get("*") */
        fn = PyDict_GetItemWithError(mem[FM_ENTRY], name);
        if (fn == NULL && PyErr_Occurred())
            return NULL;
        int truth = fn != NULL ? PyObject_IsTrue(fn) : 0;
        if (truth < 0)
            return NULL;
        if (!truth) {
            fn = PyDict_GetItemWithError(mem[FM_ENTRY], fs_names.star);
            if (fn == NULL && PyErr_Occurred())
                return NULL;
        }
        if (fn == Py_None)
            fn = NULL;
    }
    if (fn == NULL) /* a dead member, a first question, no handler: its own Python */
        return PyObject_CallMethodOneArg(m, fs_names.ask_entry, ev);
    Py_INCREF(fn);
    PyObject *call = NULL, *res = NULL, *out = NULL;
    if (fs_count(mem[FM_STATS], fs_names.events) < 0)
        goto done;
    PyObject *cargs[2] = {ev, session};
    call = PyObject_Vectorcall(mem[FM_NEW_CALL], cargs, 2, NULL);
    if (call == NULL)
        goto done;
    int timed = mem[FM_TIMED] == Py_True, started = 1;
    if (timed) { /* alarm.due = monotonic() + timeout; armed; the timer started unless it runs */
        if (fs_alarm_slots(alarm) < 0)
            goto done;
        double now_s = (double)monotonic_ns() / 1e9; /* time.monotonic() */
        PyObject *due, *now = NULL;
        if (PyFloat_CheckExact(mem[FM_TIMEOUT])) /* (a float's sum: no object for now) */
            due = PyFloat_FromDouble(now_s + PyFloat_AS_DOUBLE(mem[FM_TIMEOUT]));
        else
            due = (now = PyFloat_FromDouble(now_s)) != NULL ? PyNumber_Add(now, mem[FM_TIMEOUT]) : NULL;
        Py_XDECREF(now);
        if (due == NULL)
            goto done;
        fs_slot_set_new(alarm, fs_alarm.due, due);
        Py_INCREF(Py_True);
        fs_slot_set_new(alarm, fs_alarm.armed, Py_True);
        PyObject *ticking = *(PyObject **)((char *)alarm + fs_alarm.ticking);
        int on = ticking != NULL ? PyObject_IsTrue(ticking) : 0;
        if (on < 0)
            goto done;
        if (!on) { /* (what start raises, e.g. the deadline met in it: as the handler's, ask_entry's try) */
            PyObject *s = PyObject_CallMethodOneArg(alarm, fs_names.start, mem[FM_TIMEOUT]);
            started = s != NULL;
            Py_XDECREF(s);
        }
    }
    res = started ? PyObject_CallOneArg(fn, call) : NULL;
    if (res != NULL && res == mem[FM_CONT]) {
        int wants = PyDict_Contains(mem[FM_RESULT], name);
        if (wants < 0)
            goto done;
        if (!wants) { /* the plain cont(): (it, "") kept, made once */
            if (timed) {
                Py_INCREF(Py_False);
                fs_slot_set_new(alarm, fs_alarm.armed, Py_False);
            }
            static PyObject *plain;
            if (plain == NULL || PyTuple_GET_ITEM(plain, 0) != res) {
                PyObject *made_plain = PyTuple_Pack(2, res, fs_names.empty);
                if (made_plain == NULL)
                    goto done;
                Py_XSETREF(plain, made_plain);
            }
            out = Py_NewRef(plain);
            goto done;
        }
    }
    PyObject *error = NULL;
    if (res == NULL) {
        PyObject *type, *tb;
        PyErr_Fetch(&type, &error, &tb);
        PyErr_NormalizeException(&type, &error, &tb);
        if (tb != NULL && error != NULL)
            PyException_SetTraceback(error, tb);
        Py_XDECREF(type);
        Py_XDECREF(tb);
        if (error == NULL)
            goto done;
    }
    /* any other result, or what the handler raised: InProcess's own Python from here (it disarms) */
    PyObject *fargs[6] = {m, ev, fn, call, res != NULL ? res : Py_None, error != NULL ? error : Py_None};
    out = PyObject_VectorcallMethod(fs_names.fused_answer, fargs, 6 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_XDECREF(error);
done:
    Py_XDECREF(call);
    Py_XDECREF(res);
    Py_DECREF(fn);
    return out;
}

static PyObject *py_pin_plain(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
static PyObject *py_pin_open(PyObject *self, PyObject *const *argv, Py_ssize_t nargs);

/* The call's arguments decoded as Entry._fast_plan's parts say, the path
 * given (``vstr``): what args.entry_decoder_given's function returns, without
 * its frame.  A part is None (the given path), or (register, memo, decoder):
 * the memo dict's value for that register when it has a true one (as
 * args._joined looks it up inline), else decoder(raw, mem, strsize, pathsize). */
static PyObject *fs_decode(PyObject *parts, PyObject *raw, PyObject *mem, PyObject *strsize, PyObject *pathsize,
                           PyObject *vstr)
{
    Py_ssize_t n = PyTuple_GET_SIZE(parts);
    PyObject *out = PyTuple_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *part = PyTuple_GET_ITEM(parts, i), *v = NULL;
        if (part == Py_None) {
            v = vstr;
            Py_INCREF(v);
        } else {
            PyObject *reg = PyTuple_GET_ITEM(part, 0), *memo = PyTuple_GET_ITEM(part, 1);
            if (memo != Py_None) {
                Py_ssize_t k = PyLong_AsSsize_t(reg);
                if (k < 0 || k >= PyTuple_GET_SIZE(raw)) {
                    if (!PyErr_Occurred())
                        PyErr_SetString(PyExc_IndexError, "fused_stop: a memoized register out of range");
                    Py_DECREF(out);
                    return NULL;
                }
                v = PyDict_GetItemWithError(memo, PyTuple_GET_ITEM(raw, k));
                int truth = v != NULL ? PyObject_IsTrue(v) : (PyErr_Occurred() ? -1 : 0);
                if (truth < 0) {
                    Py_DECREF(out);
                    return NULL;
                }
                if (truth)
                    Py_INCREF(v);
                else
                    v = NULL;
            }
            if (v == NULL) {
                PyObject *dargs[4] = {raw, mem, strsize, pathsize};
                v = PyObject_Vectorcall(PyTuple_GET_ITEM(part, 2), dargs, 4, NULL);
                if (v == NULL) {
                    Py_DECREF(out);
                    return NULL;
                }
            }
        }
        PyTuple_SET_ITEM(out, i, v);
    }
    return out;
}

/* The stop past the gate: every effect (see fused_stop), ``sd`` the shim's __dict__.  1 done, -1 with an exception set. */
static int fs_decide(PyObject *const *S, PyObject *const *F, PyObject *t, PyObject *sd, PyObject *plan,
                     PyObject *const *argv, PyObject *tgid, PyObject *pin, PyObject *verify)
{
    PyObject *shim = S[FS_SHIM], *tidobj = argv[0], *args = argv[3];
    PyObject *pbytes = PyTuple_GET_ITEM(argv[6], 0);
    PyObject *vstr = NULL, *dargs = NULL, *idobj = NULL, *notes = NULL, *call = NULL, *ev = NULL;
    PyObject *d = NULL, *set = NULL, *how_at = NULL;
    int ret = -1;
    int counting = fs_truth(S[FS_STOPS], fs_names.on); /* --stop-counts: StopCounter.add(name) */
    if (counting < 0)
        goto done;
    if (counting) {
        PyObject *r = PyObject_CallMethodOneArg(S[FS_STOPS], fs_names.add, F[FP_SPEC_NAME]);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
    }
    counter_fused++;
    fs_tset(t, FT_RUNNING, Py_False);
    fs_tset(t, FT_GUARD_EXIT, Py_False);
    fs_slot_set_new(S[FS_MEM], fs_mem_pid, Py_NewRef(tidobj)); /* (_Mem.pid: the decoder's reads) */
    PyObject *strargs[2] = {pbytes, Py_None};
    if ((vstr = PyObject_Vectorcall(S[FS_MK_STR], strargs, 2, NULL)) == NULL)
        goto done;
    PyObject *strsize = fs_dget(sd, fs_names.strsize, NULL);
    if (strsize == NULL)
        goto done;
    if ((dargs = fs_decode(F[FP_DECODE], args, S[FS_MEM], strsize, S[FS_PATHSIZE], vstr)) == NULL)
        goto done;
    if ((idobj = fs_dget(sd, fs_names.next_id, NULL)) == NULL)
        goto done;
    Py_INCREF(idobj);
    if (fs_dset_new(sd, fs_names.next_id, PyNumber_Add(idobj, fs_one)) < 0)
        goto done;
    fs_tset(t, FT_VERIFY, verify);
    fs_tset(t, FT_PIN, pin);
    fs_tset(t, FT_REPOINTED, Py_None);
    PyObject *n1 = PyTuple_Pack(2, F[FP_PATH_NOTE], vstr), *n2 = PyTuple_Pack(2, F[FP_REAL_NOTE], vstr);
    if (n1 != NULL && n2 != NULL)
        notes = PyTuple_Pack(2, n1, n2);
    Py_XDECREF(n1);
    Py_XDECREF(n2);
    PyObject *cargs[2] = {F[FP_SPEC_NAME], dargs};
    if (notes == NULL || (call = PyObject_Vectorcall(S[FS_MK_CALL], cargs, 2, NULL)) == NULL)
        goto done;
    PyObject *eargs[6] = {idobj, tgid, tidobj, F[FP_ABI_NAME], call, notes};
    if ((ev = PyObject_Vectorcall(S[FS_MK_EVENT], eargs, 6, NULL)) == NULL)
        goto done;
    fs_tset(t, FT_ABI, F[FP_ABI]);
    fs_tset(t, FT_SPEC, F[FP_SPEC]);
    fs_tset(t, FT_RAW, args);
    fs_tset(t, FT_EVENT_ID, idobj);
    fs_tset(t, FT_STATE, S[FS_ASK]);
    PyObject *members = F[FP_MEMBERS];
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(members); i++) {
        PyObject *mt = PyTuple_GET_ITEM(members, i);
        PyObject *answer = fs_ask(&PyTuple_GET_ITEM(mt, 0), ev, F[FP_SPEC_NAME]);
        if (answer == NULL)
            goto done;
        if (!PyTuple_Check(answer) || PyTuple_GET_SIZE(answer) != 2) {
            Py_DECREF(answer);
            PyErr_SetString(PyExc_TypeError, "fused_stop: a member's answer is not (reply, reason)");
            goto done;
        }
        int plain = PyTuple_GET_ITEM(answer, 0) == PyTuple_GET_ITEM(mt, FM_CONT)
                            && PyTuple_GET_ITEM(answer, 1) == fs_names.empty
                        ? 1
                        : fs_plain(PyTuple_GET_ITEM(answer, 0), PyTuple_GET_ITEM(answer, 1), S[FS_CONT_TYPE]);
        if (plain == 0) { /* the walk goes on in Python from this member */
            PyObject *wargs[7] = {shim, t, plan, ev, PyTuple_GET_ITEM(mt, FM_POS), PyTuple_GET_ITEM(answer, 0),
                                  PyTuple_GET_ITEM(answer, 1)};
            PyObject *w = PyObject_VectorcallMethod(fs_names.walk_from, wargs, 7 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                                    NULL);
            Py_DECREF(answer);
            if (w == NULL)
                goto done;
            Py_DECREF(w);
            ret = 1;
            goto done;
        }
        Py_DECREF(answer);
        if (plain < 0)
            goto done;
    }
    /* the decision: _decision("cont", ev.call, 0, (), (), None, False, True) */
    PyObject *dargv[8] = {fs_names.cont, call, fs_zero, fs_empty, fs_empty, Py_None, Py_False, Py_True};
    d = PyObject_Vectorcall(S[FS_MK_DECISION], dargv, 8, NULL);
    if (d == NULL || fs_count(S[FS_STATS], fs_names.decisions) < 0)
        goto done;
    fs_tset(t, FT_DECISION, d);
    /* Pin._pin_open's common case: a region with this thread's slot, SET_SYSCALL_INFO */
    PyObject *region = PyDict_GetItemWithError(S[FS_REGIONS], tgid), *off = NULL;
    if (region == NULL && PyErr_Occurred())
        goto done;
    Py_XINCREF(region);
    if (region != NULL) {
        PyObject *slots = PyObject_GetAttr(region, fs_names.slots);
        if (slots != NULL) {
            off = PyDict_GetItemWithError(slots, tidobj);
            Py_XINCREF(off);
            Py_DECREF(slots);
        }
    }
    int go = 0;
    if (!PyErr_Occurred() && off != NULL) {
        go = fs_truth(S[FS_PT], fs_names.set_info_works);
        PyObject *detaching = go > 0 ? fs_dget(sd, fs_names.detaching, NULL) : NULL;
        if (go > 0)
            go = detaching == NULL ? -1 : detaching == Py_False ? 1 : 0;
    }
    PyObject *view = NULL, *addr = NULL;
    if (go > 0 && (addr = PyObject_GetAttr(region, fs_names.addr)) != NULL
        && (how_at = PyNumber_Add(addr, off)) != NULL && (view = PyObject_GetAttr(region, fs_names.view)) != NULL) {
        fs_tset(t, FT_VERIFY, Py_None);
        PyObject *pargs[6] = {tidobj, view, off, how_at, pin, args};
        set = py_pin_open(NULL, pargs, 6);
    }
    Py_XDECREF(view);
    Py_XDECREF(addr);
    Py_XDECREF(region);
    Py_XDECREF(off);
    if (PyErr_Occurred())
        goto done;
    if (set == NULL || set == Py_None) { /* no slot yet, no SET_SYSCALL_INFO, detaching: Python's pin */
        PyObject *pa[3] = {shim, t, d};
        PyObject *r = PyObject_VectorcallMethod(fs_names.pin_and_go, pa, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
        ret = 1;
        goto done;
    }
    /* written, made openat2, resumed: Pin._pin_open's bookkeeping */
    PyObject *rep = PyTuple_Pack(5, F[FP_ARG_REGS], set, args, S[FS_OPENAT2], F[FP_OWN_NR]);
    if (rep == NULL)
        goto done;
    fs_tset(t, FT_REPOINTED, rep);
    Py_DECREF(rep);
    fs_tset(t, FT_STATE, S[FS_RUN]);
    PyObject *count = fs_dget(sd, fs_names.resume_count, NULL);
    PyObject *n = count != NULL ? PyNumber_Add(count, fs_one) : NULL;
    if (n == NULL)
        goto done;
    int bad = PyDict_SetItem(sd, fs_names.resume_count, n) < 0;
    if (!bad) {
        fs_tset(t, FT_RESUMED, n);
        fs_tset(t, FT_RUNNING, Py_True);
        ret = 1;
    }
    Py_DECREF(n);
done:
    Py_XDECREF(vstr);
    Py_XDECREF(dargs);
    Py_XDECREF(idobj);
    Py_XDECREF(notes);
    Py_XDECREF(call);
    Py_XDECREF(ev);
    Py_XDECREF(d);
    Py_XDECREF(how_at);
    Py_XDECREF(set);
    return ret;
}

/* The gate: is this stop the common judged open, its path plain?  Nothing is
 * changed before fs_decide.  1 done, 0 the Python handler's, 2 the Python
 * handler's with the path known not plain, -1 with an exception set. */
static int fs_stop(PyObject *const *S, PyObject *const *argv)
{
    PyObject *tidobj = argv[0], *args = argv[3], *path = argv[6];
    if (!PyTuple_CheckExact(path) || PyTuple_GET_SIZE(path) != 2 || PyTuple_GET_ITEM(path, 1) != Py_True
        || !PyBytes_CheckExact(PyTuple_GET_ITEM(path, 0)) || !PyTuple_CheckExact(args) || PyTuple_GET_SIZE(args) != 6
        || PyBytes_GET_SIZE(PyTuple_GET_ITEM(path, 0)) > fs_pathsize)
        return 0;
    int r = PyObject_RichCompareBool(argv[5], S[FS_TRACE_MARK], Py_EQ);
    if (r <= 0)
        return r;
    /* the plans' key (arch, nr): kept per x86_64 call number (equal, so the same lookup) */
    static PyObject *keys[512];
    PyObject *key;
    unsigned long long nr = PyLong_AsUnsignedLongLongMask(argv[2]), arch = PyLong_AsUnsignedLongLongMask(argv[1]);
    if (PyErr_Occurred()) /* (any int is taken modulo 2^64: never an error for the stop's ints) */
        return -1;
    if (nr < 512 && arch == 0xC000003EULL && PyLong_Check(argv[2]) && Py_SIZE(argv[2]) >= 0) {
        if (keys[nr] == NULL && (keys[nr] = PyTuple_Pack(2, argv[1], argv[2])) == NULL)
            return -1;
        key = Py_NewRef(keys[nr]);
    } else if ((key = PyTuple_Pack(2, argv[1], argv[2])) == NULL)
        return -1;
    PyObject *plan = PyDict_GetItemWithError(S[FS_PLANS], key);
    Py_DECREF(key);
    if (plan == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *t = PyDict_GetItemWithError(S[FS_THREADS], tidobj);
    if (t == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (Py_TYPE(plan) != (PyTypeObject *)S[FS_PLAN_TYPE] || Py_TYPE(t) != (PyTypeObject *)S[FS_THREAD_TYPE])
        return 0;
    PyObject *fast = *(PyObject **)((char *)plan + fs_fast_offset);
    if (fast == NULL || !PyTuple_CheckExact(fast) || PyTuple_GET_SIZE(fast) != FP_N)
        return 0;
    PyObject *const *F = &PyTuple_GET_ITEM(fast, 0);
    PyObject *sd = PyObject_GenericGetDict(S[FS_SHIM], NULL);
    PyObject *pinned = NULL, *v;
    int ret = -1;
    if (sd == NULL)
        goto done;
    Py_INCREF(plan);
    Py_INCREF(fast);
    Py_INCREF(t);
    ret = 0;
    /* Stops._on_seccomp_stop's and Entry._ask_entry's tests, in effect (a default: the class's) */
#define FS_GATE(expr) \
    do { \
        if ((r = (expr)) <= 0) { \
            ret = r; \
            goto held; \
        } \
    } while (0)
#define FS_IS(dict, name, dflt, what) ((v = fs_dget(dict, name, dflt)) == NULL ? -1 : v == (what))
    FS_GATE((v = fs_tget(t, FT_SAVED_MASK)) == NULL ? -1 : v == Py_None);
    FS_GATE(FS_IS(sd, fs_names.detaching, NULL, Py_False));
    FS_GATE((v = fs_tget(t, FT_STATE)) == NULL ? -1 : v == S[FS_RUN]);
    FS_GATE((v = fs_tget(t, FT_REPLAY)) == NULL ? -1 : v == Py_None);
    FS_GATE(FS_IS(sd, fs_names.forced, NULL, Py_None));
    long q = PyLong_AsLong(F[FP_QUIET]);
    if (q == -1 && PyErr_Occurred())
        goto fail;
    if (q >= 0 && q < 6) { /* an open for writing: the guard's (Guard.quiet_reads), in Python */
        uint64_t flags = PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(args, q));
        if (PyErr_Occurred())
            goto fail;
        if ((flags & fs_accmode) && !(flags & fs_o_path))
            goto held;
    } else if (q != -1)
        goto held;
    if (PyDict_GET_SIZE(S[FS_REPLIES]) != 0) /* cached replies about: the walk looks them up */
        goto held;
    FS_GATE(FS_IS(sd, fs_names.audit, NULL, Py_None));
    FS_GATE(FS_IS(sd, fs_names.audit_tee, NULL, Py_None));
    FS_GATE(FS_IS(sd, fs_names.symbolizer, NULL, Py_None));
    /* Pin._may_pin: no filter of its own, pinning on, the main process or an announced one */
    FS_GATE(FS_IS(sd, fs_names.pin_ok, NULL, Py_True));
    PyObject *tgid = fs_tget(t, FT_TGID), *main_pid = fs_dget(sd, fs_names.main_pid, NULL);
    if (tgid == NULL || main_pid == NULL)
        goto fail;
    r = PySet_Contains(S[FS_OWN_FILTERS], tgid);
    FS_GATE(r == 0 ? 1 : r < 0 ? -1 : 0);
    r = PyObject_RichCompareBool(tgid, main_pid, Py_EQ);
    if (r < 0)
        goto fail;
    if (!r) {
        PyObject *leader = PyDict_GetItemWithError(S[FS_THREADS], tgid);
        if (leader == NULL)
            goto fail_or_held;
        if (Py_TYPE(leader) != Py_TYPE(t))
            goto held;
        FS_GATE((v = fs_tget(leader, FT_ANNOUNCED)) == NULL ? -1 : PyObject_IsTrue(v));
    }
    /* the kept root (RootFds.get, kept for this very thread), then pin.plain_pin */
    PyObject *kept = PyDict_GetItemWithError(S[FS_ROOT_FDS], tidobj);
    if (kept == NULL)
        goto fail_or_held;
    if (!PyTuple_CheckExact(kept) || PyTuple_GET_SIZE(kept) != 2 || PyTuple_GET_ITEM(kept, 0) != t)
        goto held;
    long fidx = PyLong_AsLong(F[FP_FLAGS_AT]), midx = PyLong_AsLong(F[FP_MODE_AT]);
    if (PyErr_Occurred())
        goto fail;
    if (midx < 0 || midx > 5 || fidx > 5)
        goto held;
    PyObject *pp[4] = {PyTuple_GET_ITEM(kept, 1), PyTuple_GET_ITEM(path, 0),
                       fidx < 0 ? F[FP_CREAT_FLAGS] : PyTuple_GET_ITEM(args, fidx), PyTuple_GET_ITEM(args, midx)};
    if ((pinned = py_pin_plain(NULL, pp, 4)) == NULL)
        goto fail;
    if (pinned == Py_None) {
        ret = 2; /* not plain: the Python road's general notes, without this check again */
        goto held;
    }
#undef FS_IS
#undef FS_GATE
    Py_INCREF(tgid);
    ret = fs_decide(S, F, t, sd, plan, argv, tgid, PyTuple_GET_ITEM(pinned, 0), PyTuple_GET_ITEM(pinned, 1));
    Py_DECREF(tgid);
    goto held;
fail_or_held:
    if (!PyErr_Occurred())
        goto held;
fail:
    ret = -1;
held:
    Py_DECREF(t);
    Py_DECREF(fast);
    Py_DECREF(plan);
done:
    Py_XDECREF(pinned);
    Py_XDECREF(sd);
    return ret;
}

static PyObject *fused_call(PyObject *self, PyObject *const *argv, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "fused stop: seven arguments (tid, arch, nr, args, ip, ret_data, path)");
        return NULL;
    }
    PyObject *const *S = &PyTuple_GET_ITEM(self, 0);
    int r = fs_stop(S, argv);
    if (r < 0)
        return NULL;
    if (r == 1)
        Py_RETURN_NONE;
    if (r == 2) {
        PyObject *a8[8] = {argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], argv[6], Py_False};
        return PyObject_Vectorcall(S[FS_FALLBACK], a8, 8, NULL);
    }
    return PyObject_Vectorcall(S[FS_FALLBACK], argv, 7, NULL);
}

static PyMethodDef fused_def = {"fused_stop", (PyCFunction)(void (*)(void))fused_call, METH_FASTCALL,
                                "A seccomp stop (reap's on_seccomp): the common judged open here, the rest to Python."};

static PyObject *py_fused_stop(PyObject *self, PyObject *args)
{
    PyObject *state;
    if (!PyArg_ParseTuple(args, "O!", &PyTuple_Type, &state))
        return NULL;
    if (PyTuple_GET_SIZE(state) != FS_N) {
        PyErr_Format(PyExc_ValueError, "fused_stop: a state of %d items", (int)FS_N);
        return NULL;
    }
    if (!PyDict_Check(PyTuple_GET_ITEM(state, FS_THREADS)) || !PyDict_Check(PyTuple_GET_ITEM(state, FS_PLANS))
        || !PyAnySet_Check(PyTuple_GET_ITEM(state, FS_OWN_FILTERS)) || !PyDict_Check(PyTuple_GET_ITEM(state, FS_ROOT_FDS))
        || !PyDict_Check(PyTuple_GET_ITEM(state, FS_REGIONS)) || !PyType_Check(PyTuple_GET_ITEM(state, FS_CONT_TYPE))
        || !PyDict_Check(PyTuple_GET_ITEM(state, FS_REPLIES))) {
        PyErr_SetString(PyExc_TypeError, "fused_stop: threads, plans, root fds, regions, replies dicts, a set, a type");
        return NULL;
    }
    if (!pin_conf.ready) {
        PyErr_SetString(PyExc_RuntimeError, "fused_stop before pin_setup");
        return NULL;
    }
    if (fs_intern() < 0)
        return NULL;
    PyObject *plan_type = PyTuple_GET_ITEM(state, FS_PLAN_TYPE), *thread_type = PyTuple_GET_ITEM(state, FS_THREAD_TYPE);
    if (!PyType_Check(plan_type) || !PyType_Check(thread_type)) {
        PyErr_SetString(PyExc_TypeError, "fused_stop: the plan's and the thread's classes");
        return NULL;
    }
    PyObject *fast = PyUnicode_InternFromString("fast");
    Py_ssize_t off = fast != NULL ? slot_offset((PyTypeObject *)plan_type, fast) : -1;
    Py_XDECREF(fast);
    if (off < 0)
        return NULL;
    uint64_t accmode = PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(state, FS_ACCMODE));
    uint64_t o_path = PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(state, FS_O_PATH));
    Py_ssize_t pathsize = PyLong_AsSsize_t(PyTuple_GET_ITEM(state, FS_PATHSIZE));
    if (PyErr_Occurred())
        return NULL;
    if (fs_empty == NULL && (fs_empty = PyTuple_New(0)) == NULL)
        return NULL;
    PyObject *const tnames[FT_N] = {fs_names.saved_mask, fs_names.state_, fs_names.replay, fs_names.tgid,
                                     fs_names.running, fs_names.guard_exit, fs_names.verify, fs_names.pin,
                                     fs_names.repointed, fs_names.abi, fs_names.spec, fs_names.raw,
                                     fs_names.event_id, fs_names.decision, fs_names.resumed, fs_names.announced};
    Py_ssize_t toff[FT_N];
    for (int i = 0; i < FT_N; i++)
        if ((toff[i] = slot_offset((PyTypeObject *)thread_type, tnames[i])) < 0)
            return NULL; /* (TypeError: not a class of slots; Entry._make_fused then uses the Python road) */
    Py_ssize_t mem_pid = slot_offset(Py_TYPE(PyTuple_GET_ITEM(state, FS_MEM)), fs_names.pid);
    if (mem_pid < 0)
        return NULL;
    memcpy(fs_toff, toff, sizeof toff);
    fs_mem_pid = mem_pid;
    fs_accmode = accmode, fs_o_path = o_path, fs_pathsize = pathsize, fs_fast_offset = off;
    return PyCFunction_New(&fused_def, state);
}
/* ---- end of the fused stop ---------------------------------------------------- */
