/* The files below open clones, watched with inotify. A change made to one
 * outside the mount (a VM run or a snapshot consolidated in VMware, a
 * qemu-io or dd on the file) wakes the syncer, which then checks every
 * open clone's parents at once (ops.c) and breaks those that read the
 * changed file: within milliseconds of the change, not at its next pass
 * up to 5 s later, so that a read in between is rare rather than likely.
 * An event is only a hint: the syncer's check by stat decides. Where
 * inotify is not to be had (no watches left), the 5 s pass remains. */
#include "config.h"
#include "fs-internal.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

/* What changes a file's bytes or which file a name leads to. */
#define WATCHED (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVE_SELF | IN_DELETE_SELF)
/* The events of one change come in bursts (dd writes block by block): the
 * syncer is woken at most this often. */
#define BURST_USEC (20 * 1000)

static gpointer watcher_main(gpointer data)
{
    VcfMount *m = data;
    for (;;) {
        struct pollfd p[2] = { { .fd = m->watch_fd, .events = POLLIN },
                               { .fd = m->watch_stop, .events = POLLIN } };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            g_warning("watching the files below clones: poll: %s; changes made outside "
                      "the mount are found within 5 s instead", g_strerror(errno));
            return NULL;
        }
        if (p[1].revents != 0)
            return NULL;
        /* Drained: what a burst brings is one wake. */
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        while (read(m->watch_fd, buf, sizeof buf) > 0)
            ;
        g_mutex_lock(&m->sync_lock);
        m->recheck = TRUE;
        g_cond_signal(&m->sync_cond);
        g_mutex_unlock(&m->sync_lock);
        struct pollfd stop = { .fd = m->watch_stop, .events = POLLIN };
        if (poll(&stop, 1, BURST_USEC / 1000) > 0)
            return NULL;
    }
}

void watch_start(VcfMount *m)
{
    m->watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    int e = errno;
    m->watch_stop = m->watch_fd < 0 ? -1 : eventfd(0, EFD_CLOEXEC);
    if (m->watch_fd < 0 || m->watch_stop < 0) {
        g_warning("cannot watch the files below clones (%s): changes made outside the "
                  "mount are found within 5 s", g_strerror(m->watch_fd < 0 ? e : errno));
        watch_stop(m);
        return;
    }
    m->watcher = vcf_thread_new_quiet("vcf-watch", watcher_main, m);
    /* What is protected already (clones opened before serving), and a
     * check of it: a change before its watch came would not be told. */
    g_mutex_lock(&m->lock);
    m->watched = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    GHashTableIter it;
    gpointer path;
    g_hash_table_iter_init(&it, m->protected);
    while (g_hash_table_iter_next(&it, &path, NULL))
        watch_file_locked(m, path);
    g_mutex_unlock(&m->lock);
    g_mutex_lock(&m->sync_lock);
    m->recheck = TRUE;
    g_cond_signal(&m->sync_cond);
    g_mutex_unlock(&m->sync_lock);
}

void watch_file_locked(VcfMount *m, const char *path)
{
    /* One that cannot be watched (the user's limit of watches reached) is
     * still checked every 5 s. */
    if (m->watch_fd < 0 || m->watched == NULL || g_hash_table_contains(m->watched, path))
        return;
    int wd = inotify_add_watch(m->watch_fd, path, WATCHED);
    if (wd >= 0)
        g_hash_table_insert(m->watched, g_strdup(path), GINT_TO_POINTER(wd));
}

/* Whether another path of WATCHED than PATH has watch WD (hard links, or
 * one file by two names: one inode, one watch). */
static gboolean wd_shared(GHashTable *watched, const char *path, int wd)
{
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, watched);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (GPOINTER_TO_INT(v) == wd && strcmp(k, path) != 0)
            return TRUE;
    return FALSE;
}

void watch_prune_locked(VcfMount *m)
{
    if (m->watched == NULL)
        return;
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, m->watched);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        if (g_hash_table_contains(m->protected, k))
            continue;
        int wd = GPOINTER_TO_INT(v);
        if (!wd_shared(m->watched, k, wd))
            (void)inotify_rm_watch(m->watch_fd, wd);
        g_hash_table_iter_remove(&it);
    }
}

void watch_stop(VcfMount *m)
{
    if (m->watcher != NULL) {
        guint64 one = 1;
        if (write(m->watch_stop, &one, sizeof one) != sizeof one)
            g_warning("stopping the watcher: %s", g_strerror(errno));
        g_thread_join(m->watcher);
        m->watcher = NULL;
    }
    /* The syncer may still protect files (a copy that ended): it sees
     * watch_fd -1 under the lock from now on. */
    g_mutex_lock(&m->lock);
    int fd = m->watch_fd;
    m->watch_fd = -1;
    g_clear_pointer(&m->watched, g_hash_table_destroy);
    g_mutex_unlock(&m->lock);
    if (fd >= 0)
        close(fd);
    if (m->watch_stop >= 0)
        close(m->watch_stop);
    m->watch_stop = -1;
}
