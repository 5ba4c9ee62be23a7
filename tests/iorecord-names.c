/* iorecord, the part that logs changes of names: rename, link, unlink,
 * mkdir, rmdir (record types in iorecord.c). Each is logged under the
 * shim's lock, held across the real call, like every change. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "iorecord.h"

static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned);
static int (*real_link)(const char *, const char *);
static int (*real_linkat)(int, const char *, int, const char *, int);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_mkdir)(const char *, mode_t);
static int (*real_mkdirat)(int, const char *, mode_t);
static int (*real_rmdir)(const char *);
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

#define LOOKUP(name) (real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name))

static void lookup_all(void)
{
    LOOKUP(rename); LOOKUP(renameat); LOOKUP(renameat2); LOOKUP(link); LOOKUP(linkat);
    LOOKUP(unlink); LOOKUP(unlinkat); LOOKUP(mkdir); LOOKUP(mkdirat); LOOKUP(rmdir);
}

static void names_init(void)
{
    iorec_ensure_init();
    pthread_once(&names_once, lookup_all);
}

static int record_rename(int olddir, const char *from, int newdir, const char *to,
                         unsigned flags, int (*call)(int, const char *, int, const char *, unsigned))
{
    char a[PATH_MAX], b[PATH_MAX];
    pthread_mutex_lock(&iorec_lock);
    /* Resolved before: the old name's folder is still there to resolve. */
    int ia = iorec_at_path(olddir, from, a, sizeof a);
    int r = call(olddir, from, newdir, to, flags);
    int saved = errno;
    int ib = r == 0 && iorec_at_path(newdir, to, b, sizeof b);
    if (r == 0 && (ia || ib)) {
        /* A file moved in from outside, or out of the folder, is one the
         * replayer cannot rebuild: say so rather than log half of it. */
        if (!ia || !ib) {
            fprintf(stderr, "iorecord: rename across the recorded folder's edge: %s -> %s\n",
                    from, to);
            abort();
        }
        iorec_append('R', (long long)flags, a, b);
    }
    pthread_mutex_unlock(&iorec_lock);
    errno = saved;
    return r;
}

static int do_rename(int od, const char *f, int nd, const char *t, unsigned fl)
{
    (void)od; (void)nd; (void)fl;
    return real_rename(f, t);
}

static int do_renameat(int od, const char *f, int nd, const char *t, unsigned fl)
{
    (void)fl;
    return real_renameat(od, f, nd, t);
}

static int do_renameat2(int od, const char *f, int nd, const char *t, unsigned fl)
{
    return real_renameat2(od, f, nd, t, fl);
}

int rename(const char *from, const char *to)
{
    names_init();
    return record_rename(AT_FDCWD, from, AT_FDCWD, to, 0, do_rename);
}

int renameat(int od, const char *from, int nd, const char *to)
{
    names_init();
    return record_rename(od, from, nd, to, 0, do_renameat);
}

int renameat2(int od, const char *from, int nd, const char *to, unsigned flags)
{
    names_init();
    return record_rename(od, from, nd, to, flags, do_renameat2);
}

/* unlink, rmdir, mkdir: one path, one record type. */
static int record_name(char type, int dirfd, const char *path, int r)
{
    char rel[PATH_MAX];
    if (r == 0 && iorec_at_path(dirfd, path, rel, sizeof rel))
        iorec_append(type, 0, rel, NULL);
    return r;
}

int unlink(const char *path)
{
    names_init();
    pthread_mutex_lock(&iorec_lock);
    char rel[PATH_MAX];
    int in = iorec_at_path(AT_FDCWD, path, rel, sizeof rel);
    int r = real_unlink(path);
    int saved = errno;
    if (r == 0 && in)
        iorec_append('U', 0, rel, NULL);
    pthread_mutex_unlock(&iorec_lock);
    errno = saved;
    return r;
}

int unlinkat(int dirfd, const char *path, int flags)
{
    names_init();
    pthread_mutex_lock(&iorec_lock);
    char rel[PATH_MAX];
    int in = iorec_at_path(dirfd, path, rel, sizeof rel);
    int r = real_unlinkat(dirfd, path, flags);
    int saved = errno;
    if (r == 0 && in)
        iorec_append((flags & AT_REMOVEDIR) ? 'D' : 'U', 0, rel, NULL);
    pthread_mutex_unlock(&iorec_lock);
    errno = saved;
    return r;
}

int rmdir(const char *path)
{
    names_init();
    pthread_mutex_lock(&iorec_lock);
    char rel[PATH_MAX];
    int in = iorec_at_path(AT_FDCWD, path, rel, sizeof rel);
    int r = real_rmdir(path);
    int saved = errno;
    if (r == 0 && in)
        iorec_append('D', 0, rel, NULL);
    pthread_mutex_unlock(&iorec_lock);
    errno = saved;
    return r;
}

int mkdir(const char *path, mode_t mode)
{
    names_init();
    pthread_mutex_lock(&iorec_lock);
    int r = real_mkdir(path, mode);
    int saved = errno;
    record_name('K', AT_FDCWD, path, r);
    pthread_mutex_unlock(&iorec_lock);
    errno = saved;
    return r;
}

int mkdirat(int dirfd, const char *path, mode_t mode)
{
    names_init();
    pthread_mutex_lock(&iorec_lock);
    int r = real_mkdirat(dirfd, path, mode);
    int saved = errno;
    record_name('K', dirfd, path, r);
    pthread_mutex_unlock(&iorec_lock);
    errno = saved;
    return r;
}

static int record_link(int olddir, const char *from, int newdir, const char *to, int flags)
{
    char a[PATH_MAX], b[PATH_MAX];
    pthread_mutex_lock(&iorec_lock);
    int ia = iorec_at_path(olddir, from, a, sizeof a);
    int r = olddir == AT_FDCWD && newdir == AT_FDCWD && flags == 0
        ? real_link(from, to) : real_linkat(olddir, from, newdir, to, flags);
    int saved = errno;
    int ib = r == 0 && iorec_at_path(newdir, to, b, sizeof b);
    if (r == 0 && (ia || ib)) {
        if (!ia || !ib) {
            fprintf(stderr, "iorecord: link across the recorded folder's edge: %s -> %s\n",
                    from, to);
            abort();
        }
        iorec_append('L', 0, a, b);
    }
    pthread_mutex_unlock(&iorec_lock);
    errno = saved;
    return r;
}

int link(const char *from, const char *to)
{
    names_init();
    return record_link(AT_FDCWD, from, AT_FDCWD, to, 0);
}

int linkat(int od, const char *from, int nd, const char *to, int flags)
{
    names_init();
    return record_link(od, from, nd, to, flags);
}
