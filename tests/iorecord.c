/* iorecord: an LD_PRELOAD shim for the power-cut test (tests/mount-powercut.sh).
 *
 * It logs, in order, every call that changes a file under $VCF_IORECORD_DIR
 * (writes with their data, truncations, creations, renames, links, unlinks,
 * mkdir, rmdir) and every fsync/fdatasync that returned 0, to
 * $VCF_IORECORD_LOG. tests/powercut-replay.c rebuilds from that log what a
 * power cut at any moment could leave on disk.
 *
 * Record format: a text header line, then the paths, then the data:
 *   "<type> <start> <a> <b> <len1> <len2>\n" path1 path2 [b bytes of data]
 * with paths relative to the recorded folder ("" for the folder itself):
 *   W  write of b bytes at offset a of path1
 *   T  truncation of path1 to a bytes
 *   C  creation of path1 (open with O_CREAT); a = 1 if it also truncated
 *   S  fsync/fdatasync of path1 returned 0; start = how many records this
 *      process had logged (after its P) when the call began: only those
 *      are covered by it
 *   R  rename of path1 to path2 (a = renameat2 flags)
 *   L  hard link path2 made of path1
 *   U  unlink of path1;  D  rmdir of path1;  K  mkdir of path1
 *   P  a process started recording (a = its pid); its S records count
 *      from here
 *   M  a marker the test appended (path1 = its text)
 * The test appends its own "M" (marker) records with O_APPEND; every record
 * goes out in one write() so theirs cannot land inside ours.
 *
 * Order: a change is logged while a mutex is held across the real call and
 * the append, so the log order is the order in which the calls took effect
 * (the daemon is multithreaded). A sync is not held under the mutex, or it
 * would stall every writer: it notes the log length when it starts and is
 * logged once it has returned, so a write that raced with it is not
 * counted as covered.
 *
 * Changes of names (rename, link, unlink, mkdir, rmdir) are in
 * iorecord-names.c.
 *
 * libc only: it is loaded into the daemon, under ASan too. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "iorecord.h"

/* The real functions, looked up past this library. */
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*real_copy_file_range)(int, loff_t *, int, loff_t *, size_t, unsigned int);
static int (*real_ftruncate)(int, off_t);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);

pthread_mutex_t iorec_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static char root[PATH_MAX];      /* realpath of the recorded folder; "" = off */
static size_t root_len;
static int log_fd = -1;
static uint64_t n_records;       /* under lock */

static void append(char type, uint64_t start, long long a, unsigned long long b,
                   const char *p1, const char *p2, const struct iovec *data, int n_data);

#define LOOKUP(name) (real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name))

static void init(void)
{
    LOOKUP(write); LOOKUP(pwrite); LOOKUP(pwrite64); LOOKUP(pwritev); LOOKUP(pwritev2);
    LOOKUP(ftruncate); LOOKUP(fsync); LOOKUP(fdatasync); LOOKUP(copy_file_range);
    LOOKUP(ioctl);
    LOOKUP(open); LOOKUP(open64); LOOKUP(openat); LOOKUP(openat64);
    const char *dir = getenv("VCF_IORECORD_DIR");
    const char *log = getenv("VCF_IORECORD_LOG");
    if (dir == NULL || log == NULL) {
        root[0] = '\0';
        return;
    }
    if (realpath(dir, root) == NULL) {
        fprintf(stderr, "iorecord: %s: %s\n", dir, strerror(errno));
        abort();
    }
    root_len = strlen(root);
    log_fd = real_open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        /* A test that thinks it records but does not would prove nothing. */
        fprintf(stderr, "iorecord: cannot open %s: %s\n", log, strerror(errno));
        abort();
    }
    /* Each process numbers its records from its P record on. */
    pthread_mutex_lock(&iorec_lock);
    append('P', 0, (long long)getpid(), 0, "", NULL, NULL, 0);
    n_records = 0;
    pthread_mutex_unlock(&iorec_lock);
}

static void ensure_init(void) { pthread_once(&once, init); }
void iorec_ensure_init(void) { ensure_init(); }

__attribute__((constructor)) static void iorecord_ctor(void) { ensure_init(); }

/* Writes all of BUF to the log; a log that cannot be written aborts the
 * daemon, so the test cannot pass on a partial log. */
static void log_out(const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = real_write(log_fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "iorecord: writing the log: %s\n", strerror(errno));
            abort();
        }
        p += n;
        len -= (size_t)n;
    }
}

/* One record, in one write(). Call with the lock held. */
static void append(char type, uint64_t start, long long a, unsigned long long b,
                   const char *p1, const char *p2, const struct iovec *data, int n_data)
{
    char head[128];
    size_t l1 = strlen(p1), l2 = p2 ? strlen(p2) : 0;
    int hl = snprintf(head, sizeof head, "%c %llu %lld %llu %zu %zu\n", type,
                      (unsigned long long)start, a, b, l1, l2);
    size_t total = (size_t)hl + l1 + l2;
    for (int i = 0; i < n_data; i++)
        total += data[i].iov_len;
    char *rec = malloc(total);
    if (rec == NULL)
        abort();
    char *q = rec;
    memcpy(q, head, (size_t)hl);
    q += hl;
    memcpy(q, p1, l1);
    q += l1;
    if (l2)
        memcpy(q, p2, l2);
    q += l2;
    for (int i = 0; i < n_data; i++) {
        memcpy(q, data[i].iov_base, data[i].iov_len);
        q += data[i].iov_len;
    }
    log_out(rec, total);
    free(rec);
    n_records++;
}

/* ABS (an absolute path) relative to the recorded folder, into OUT; FALSE
 * if it lies outside. */
static int relative(const char *abs, char *out, size_t size)
{
    if (root[0] == '\0' || strncmp(abs, root, root_len) != 0)
        return 0;
    const char *rest = abs + root_len;
    if (*rest == '/')
        rest++;
    else if (*rest != '\0')
        return 0;          /* "/lib2" is not inside "/lib" */
    if (strlen(rest) >= size || strchr(rest, '\n') != NULL)
        return 0;
    strcpy(out, rest);
    return 1;
}

/* The path of FD, relative to the recorded folder. */
static int fd_path(int fd, char *out, size_t size)
{
    if (root[0] == '\0')
        return 0;
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return 0;
    target[n] = '\0';
    return relative(target, out, size);
}

/* PATH (as given, relative to DIRFD) as an absolute path whose folder is
 * resolved (the file itself may not exist yet, or be about to go). */
static int at_path(int dirfd, const char *path, char *out, size_t size)
{
    if (root[0] == '\0' || path == NULL)
        return 0;
    char joined[PATH_MAX];
    if (path[0] == '/') {
        snprintf(joined, sizeof joined, "%s", path);
    } else {
        char base[PATH_MAX];
        if (dirfd == AT_FDCWD) {
            if (getcwd(base, sizeof base) == NULL)
                return 0;
        } else {
            char link[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
            ssize_t n = readlink(link, base, sizeof base - 1);
            if (n <= 0)
                return 0;
            base[n] = '\0';
        }
        if ((size_t)snprintf(joined, sizeof joined, "%s/%s", base, path) >= sizeof joined)
            return 0;
    }
    /* Drop trailing slashes, then resolve the folder part. */
    size_t jl = strlen(joined);
    while (jl > 1 && joined[jl - 1] == '/')
        joined[--jl] = '\0';
    char *slash = strrchr(joined, '/');
    if (slash == NULL)
        return 0;
    const char *name = slash + 1;
    char dir[PATH_MAX], resolved[PATH_MAX], full[PATH_MAX];
    if (slash == joined)
        strcpy(dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - joined), joined);
    if (realpath(dir, resolved) == NULL)
        return 0;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    if ((size_t)snprintf(full, sizeof full, "%s/%s", strcmp(resolved, "/") ? resolved : "",
                         name) >= sizeof full)
        return 0;
    return relative(full, out, size);
}

/* ---- writes --------------------------------------------------------------- */

static ssize_t record_pwritev(int fd, const struct iovec *iov,
                              int n_iov, off_t off, ssize_t (*real)(int, const struct iovec *, int, off_t),
                              int at_cursor)
{
    char rel[PATH_MAX];
    pthread_mutex_lock(&iorec_lock);
    ssize_t r = real(fd, iov, n_iov, off);
    int saved = errno;
    if (r > 0 && fd_path(fd, rel, sizeof rel)) {
        long long at = off;
        if (at_cursor)
            at = (long long)lseek(fd, 0, SEEK_CUR) - r;
        /* Only the bytes the call wrote. */
        struct iovec part[64];
        int n = 0;
        size_t left = (size_t)r;
        for (int i = 0; i < n_iov && left > 0 && n < 64; i++) {
            size_t l = iov[i].iov_len < left ? iov[i].iov_len : left;
            part[n].iov_base = iov[i].iov_base;
            part[n++].iov_len = l;
            left -= l;
        }
        if (left > 0)
            abort();       /* more than 64 pieces: not what our daemon does */
        append('W', 0, at, (unsigned long long)r, rel, NULL, part, n);
    }
    pthread_mutex_unlock(&iorec_lock);
    errno = saved;
    return r;
}

static ssize_t do_write(int fd, const struct iovec *iov, int n, off_t off)
{
    (void)off;
    return real_write(fd, iov[0].iov_base, iov[0].iov_len);
}

static ssize_t do_pwrite(int fd, const struct iovec *iov, int n, off_t off)
{
    return real_pwrite(fd, iov[0].iov_base, iov[0].iov_len, off);
}

static ssize_t do_pwrite64(int fd, const struct iovec *iov, int n, off_t off)
{
    return real_pwrite64(fd, iov[0].iov_base, iov[0].iov_len, off);
}

static ssize_t do_pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    return real_pwritev(fd, iov, n, off);
}

ssize_t write(int fd, const void *buf, size_t len)
{
    ensure_init();
    struct iovec v = { (void *)buf, len };
    return record_pwritev(fd, &v, 1, 0, do_write, 1);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    ensure_init();
    struct iovec v = { (void *)buf, len };
    return record_pwritev(fd, &v, 1, off, do_pwrite, 0);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    ensure_init();
    struct iovec v = { (void *)buf, len };
    return record_pwritev(fd, &v, 1, off, do_pwrite64, 0);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    ensure_init();
    return record_pwritev(fd, iov, n, off, do_pwritev, off < 0);
}

static _Thread_local int pwritev2_flags;

static ssize_t do_pwritev2(int fd, const struct iovec *iov, int n, off_t off)
{
    return real_pwritev2(fd, iov, n, off, pwritev2_flags);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    ensure_init();
    pwritev2_flags = flags;
    return record_pwritev(fd, iov, n, off, do_pwritev2, off < 0);
}

/* A copy the file system made into a recorded file is a write of what it
 * put there: read back and logged as one. */
ssize_t copy_file_range(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len,
                        unsigned int flags)
{
    ensure_init();
    char rel[PATH_MAX];
    pthread_mutex_lock(&iorec_lock);
    long long at = off_out ? (long long)*off_out : (long long)lseek(fd_out, 0, SEEK_CUR);
    ssize_t r = real_copy_file_range(fd_in, off_in, fd_out, off_out, len, flags);
    int saved = errno;
    if (r > 0 && fd_path(fd_out, rel, sizeof rel)) {
        void *buf = malloc((size_t)r);
        if (buf == NULL || pread(fd_out, buf, (size_t)r, (off_t)at) != r)
            abort();       /* the log would miss a write */
        struct iovec v = { buf, (size_t)r };
        append('W', 0, at, (unsigned long long)r, rel, NULL, &v, 1);
        free(buf);
    }
    pthread_mutex_unlock(&iorec_lock);
    errno = saved;
    return r;
}

/* A clone of blocks into a recorded file (FICLONERANGE) cannot be replayed
 * from the log: refused as a file system that cannot share would, so that
 * the copy writes what it copies. */
int ioctl(int fd, unsigned long request, ...)
{
    ensure_init();
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    char rel[PATH_MAX];
    pthread_mutex_lock(&iorec_lock);
    int recorded = request == FICLONERANGE && fd_path(fd, rel, sizeof rel);
    pthread_mutex_unlock(&iorec_lock);
    if (recorded) {
        errno = EOPNOTSUPP;
        return -1;
    }
    return real_ioctl(fd, request, arg);
}

int ftruncate(int fd, off_t len)
{
    ensure_init();
    char rel[PATH_MAX];
    pthread_mutex_lock(&iorec_lock);
    int r = real_ftruncate(fd, len);
    int saved = errno;
    if (r == 0 && fd_path(fd, rel, sizeof rel))
        append('T', 0, (long long)len, 0, rel, NULL, NULL, 0);
    pthread_mutex_unlock(&iorec_lock);
    errno = saved;
    return r;
}

/* ---- barriers -------------------------------------------------------------- */

static int record_sync(int fd, int (*real)(int))
{
    ensure_init();
    pthread_mutex_lock(&iorec_lock);
    uint64_t start = n_records;
    pthread_mutex_unlock(&iorec_lock);
    int r = real(fd);
    int saved = errno;
    char rel[PATH_MAX];
    if (r == 0 && fd_path(fd, rel, sizeof rel)) {
        pthread_mutex_lock(&iorec_lock);
        append('S', start, 0, 0, rel, NULL, NULL, 0);
        pthread_mutex_unlock(&iorec_lock);
    }
    errno = saved;
    return r;
}

int fsync(int fd) { ensure_init(); return record_sync(fd, real_fsync); }
int fdatasync(int fd) { ensure_init(); return record_sync(fd, real_fdatasync); }

/* ---- names ----------------------------------------------------------------- */

/* After a successful open: a creation if the file is new or was truncated.
 * EXISTED says whether the path existed before the call. */
static void note_open(int fd, int dirfd, const char *path, int flags, int existed)
{
    char rel[PATH_MAX];
    if (fd < 0 || !(flags & (O_CREAT | O_TRUNC)))
        return;
    if (!at_path(dirfd, path, rel, sizeof rel))
        return;
    if (!existed && (flags & O_CREAT))
        append('C', 0, (flags & O_TRUNC) ? 1 : 0, 0, rel, NULL, NULL, 0);
    else if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)
        append('T', 0, 0, 0, rel, NULL, NULL, 0);
}

static int exists_at(int dirfd, const char *path)
{
    struct stat st;
    return fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int open_common(int dirfd, const char *path, int flags, mode_t mode,
                       int (*real)(int, const char *, int, ...))
{
    pthread_mutex_lock(&iorec_lock);
    int existed = (flags & (O_CREAT | O_TRUNC)) ? exists_at(dirfd, path) : 1;
    int fd = real(dirfd, path, flags, mode);
    int saved = errno;
    note_open(fd, dirfd, path, flags, existed);
    pthread_mutex_unlock(&iorec_lock);
    errno = saved;
    return fd;
}

/* open and open64 are the same call on 64-bit systems; both are wrapped so
 * that callers built either way are seen. */
static int call_open(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = va_arg(ap, mode_t);
    va_end(ap);
    (void)dirfd;
    return real_open(path, flags, mode);
}

static int call_open64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = va_arg(ap, mode_t);
    va_end(ap);
    (void)dirfd;
    return (real_open64 ? real_open64 : real_open)(path, flags, mode);
}

static int call_openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = va_arg(ap, mode_t);
    va_end(ap);
    return real_openat(dirfd, path, flags, mode);
}

static int call_openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = va_arg(ap, mode_t);
    va_end(ap);
    return (real_openat64 ? real_openat64 : real_openat)(dirfd, path, flags, mode);
}

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
}

int open(const char *path, int flags, ...)
{
    ensure_init();
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, mode, call_open);
}

int open64(const char *path, int flags, ...)
{
    ensure_init();
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, mode, call_open64);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    ensure_init();
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(dirfd, path, flags, mode, call_openat);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    ensure_init();
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(dirfd, path, flags, mode, call_openat64);
}

int creat(const char *path, mode_t mode)
{
    return open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
}

void iorec_append(char type, long long a, const char *p1, const char *p2)
{
    append(type, 0, a, 0, p1, p2, NULL, 0);
}

int iorec_at_path(int dirfd, const char *path, char *out, size_t size)
{
    return at_path(dirfd, path, out, size);
}
