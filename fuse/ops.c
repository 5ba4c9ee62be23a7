/* The operations table, and the session's start and end. */
#include "config.h"
#include "fs-internal.h"
#include "library-warm.h"

#include <stdlib.h>

/* Threads started before fuse_daemonize() would not survive its fork, so
 * the syncer starts here, in the serving process. */
static gpointer syncer_main(gpointer data);

/* What libvmdk finds in the library's disks is in the link cache before
 * the first clone of a large VM asks for it (library-warm.h). */
static gpointer warmer_main(gpointer data)
{
    VcfMount *m = data;
    gint64 t0 = g_get_monotonic_time();
    guint n = vcf_library_warm(m->lib, &m->warm_stop);
    g_debug("checked %u disk chains of the library in %.1f ms", n,
            (double)(g_get_monotonic_time() - t0) / 1000.0);
    return NULL;
}

void fs_init(void *userdata, struct fuse_conn_info *conn)
{
    VcfMount *m = userdata;
    /* Large requests where the kernel offers them (libfuse derives
     * max_pages from max_write): 512 KiB, the most a reply spliced through
     * a pipe of the default pipe-max-size (1 MiB) can hold. */
    conn->max_write = VCF_MAX_REQUEST;
    conn->max_readahead = MIN(conn->max_readahead, VCF_MAX_REQUEST);
    if (conn->capable & FUSE_CAP_SPLICE_WRITE)
        conn->want |= FUSE_CAP_SPLICE_WRITE;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    /* The kernel's write-back cache would hold guest writes where a crash
     * loses them after fsync said otherwise; writes come straight to us. */
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    /* Threads come after the fork into the background. One copy worker:
     * copies take turns, and leave the other core to guests. */
    watch_start(m);
    m->copy_pool = vcf_copy_pool_new(1, m->copy_rate);
    copy_resume_all(m);
    /* Signals go to libfuse's threads only. */
    m->syncer = vcf_thread_new_quiet("vcf-sync", syncer_main, m);
    m->warmer = vcf_thread_new_quiet("vcf-warm", warmer_main, m);
}

void fs_destroy(void *userdata)
{
    /* Everything is closed by vcf_mount_clear once the loop returns. */
}

/* Whether DISK of clone NAME may be synced: not when it is broken. A file
 * below it that changed outside the mount (a VM run in VMware on a disk a
 * clone reads, a snapshot consolidated) breaks it now: its disks answer
 * EIO from then on (vcf_disk_check_parent), for good (clone.ini keeps it),
 * and the clone says why, once. m->ns_lock held: the clone stays open. */
static gboolean check_parent(VcfMount *m, VcfDisk *disk, const char *name)
{
    GError *error = NULL;
    gboolean found;
    if (vcf_disk_check_parent(disk, &found, &error))
        return TRUE;
    g_autofree char *why = g_strdup_printf("%s; its disks answer EIO from now on, rather "
                                           "than mix old and new bytes", error->message);
    g_error_free(error);
    if (found) {
        g_warning("clone %s is broken: %s", name, why);
        vcf_clone_info_update(m->lib, name, NULL, "parent-changed", why, NULL);
    }
    /* Told once (here, or by its copier): what the kernel cached of its
     * disks goes first, so that once it says broken every read is EIO.
     * Only this thread sets oc->broken. */
    g_autoptr(GArray) inos = g_array_new(FALSE, FALSE, sizeof(fuse_ino_t));
    g_mutex_lock(&m->lock);
    OpenClone *oc = g_hash_table_lookup(m->clones, name);
    gboolean tell = oc != NULL && oc->broken == NULL;
    if (tell) {
        GHashTableIter it;
        gpointer v;
        g_hash_table_iter_init(&it, m->nodes.by_ino);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
            const Node *n = v;
            if (n->kind == NODE_FLAT && g_strcmp0(n->clone, name) == 0)
                g_array_append_val(inos, n->ino);
        }
    }
    g_mutex_unlock(&m->lock);
    for (guint i = 0; m->se != NULL && i < inos->len; i++)
        fuse_lowlevel_notify_inval_inode(m->se, g_array_index(inos, fuse_ino_t, i), 0, 0);
    if (tell) {
        g_mutex_lock(&m->lock);
        if ((oc = g_hash_table_lookup(m->clones, name)) != NULL && oc->broken == NULL)
            oc->broken = g_steal_pointer(&why);
        g_mutex_unlock(&m->lock);
    }
    return FALSE;
}

/* Checks the parents of every open clone (check_parent) and, with SYNC,
 * flushes its disks too. */
static void sync_pass(VcfMount *m, gboolean sync)
{
    /* ns_lock keeps the clones open while we sync them; lock is held
     * only to list them, so lookups and opens go on meanwhile. */
    g_mutex_lock(&m->ns_lock);
    g_autoptr(GPtrArray) disks = g_ptr_array_new();
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    g_mutex_lock(&m->lock);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, m->clones);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        OpenClone *oc = v;
        for (guint i = 0; i < vcf_clone_n_disks(oc->clone); i++) {
            g_ptr_array_add(disks, vcf_clone_get_disk(oc->clone, i));
            g_ptr_array_add(names, g_strdup(k));
        }
    }
    g_mutex_unlock(&m->lock);
    for (guint i = 0; i < disks->len; i++) {
        GError *error = NULL;
        if (check_parent(m, disks->pdata[i], names->pdata[i]) && sync
            && !vcf_disk_sync(disks->pdata[i], &error)) {
            g_warning("clone %s: background sync: %s", (char *)names->pdata[i],
                      error->message);
            g_error_free(error);
        }
    }
    g_mutex_unlock(&m->ns_lock);
}

/* A storm of events (a VM running on a watched disk) is looked at this
 * often at most, or at twice the time a pass takes: the passes hold
 * ns_lock, which mkdir and rmdir wait for. */
#define CHECK_GAP_USEC (100 * 1000)

/* Flushes open disks every few seconds, so that a writer that never calls
 * fsync still has its grain tables on disk within seconds, and checks
 * their parents then, and soon after a watched file below them changed
 * (watch.c). The flags are looked at under sync_lock before every wait,
 * so a wake that came during a pass is not lost. */
static gpointer syncer_main(gpointer data)
{
    VcfMount *m = data;
    gint64 next = g_get_monotonic_time() + 5 * G_TIME_SPAN_SECOND;
    gint64 check_after = 0;
    g_mutex_lock(&m->sync_lock);
    while (!m->stopping) {
        gint64 now = g_get_monotonic_time();
        gboolean due = now >= next || g_atomic_int_get(&m->copies_changed);
        if (!due && !(m->recheck && now >= check_after)) {
            g_cond_wait_until(&m->sync_cond, &m->sync_lock,
                              m->recheck ? MIN(next, check_after) : next);
            continue;
        }
        /* Woken by a watched file alone: a check, not a sync. */
        m->recheck = FALSE;
        g_mutex_unlock(&m->sync_lock);
        sync_pass(m, due);
        if (due) {
            copy_tick(m);
            next = g_get_monotonic_time() + 5 * G_TIME_SPAN_SECOND;
        }
        gint64 end = g_get_monotonic_time();
        check_after = end + (due ? CHECK_GAP_USEC : MAX(CHECK_GAP_USEC, 2 * (end - now)));
        g_mutex_lock(&m->sync_lock);
    }
    g_mutex_unlock(&m->sync_lock);
    return NULL;
}

const struct fuse_lowlevel_ops vcf_fs_ops = {
    .init = fs_init,
    .destroy = fs_destroy,
    .lookup = fs_lookup,
    .forget = fs_forget,
    .forget_multi = fs_forget_multi,
    .getattr = fs_getattr,
    .setattr = fs_setattr,
    .readlink = fs_readlink,
    .mkdir = fs_mkdir,
    .rmdir = fs_rmdir,
    .unlink = fs_unlink,
    .rename = fs_rename,
    .symlink = fs_symlink,
    .create = fs_create,
    .open = fs_open,
    .read = fs_read,
    .write = fs_write,
    .flush = fs_flush,
    .fsync = fs_fsync,
    .release = fs_release,
    .lseek = fs_lseek,
    .opendir = fs_opendir,
    .readdir = fs_readdir,
    .releasedir = fs_releasedir,
    .statfs = fs_statfs,
    .getxattr = fs_getxattr,
    .listxattr = fs_listxattr,
    .setxattr = fs_setxattr,
    .removexattr = fs_removexattr,
};
