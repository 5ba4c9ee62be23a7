/* The mount's state: the open clones, the files their parents read, and
 * the start and end of it all. */
#include "config.h"
#include "fs-internal.h"
#include "base-snapshot.h"
#include "flat-descriptor.h"
#include "vcf-error.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void open_clone_free(gpointer p)
{
    OpenClone *oc = p;
    GError *error = NULL;
    copy_stop(oc);
    if (oc->clone != NULL && !vcf_clone_close(oc->clone, &error)) {
        g_warning("closing a clone: %s", error->message);
        g_error_free(error);
    }
    vcf_clone_info_free(oc->info);
    g_free(oc->broken);
    g_free(oc);
}

void open_clone_discard(OpenClone *oc)
{
    /* Its store is gone or going: nothing of it is worth writing. */
    copy_stop(oc);
    if (oc->clone != NULL)
        vcf_clone_abandon(oc->clone);
    oc->clone = NULL;
    open_clone_free(oc);
}

static char *file_id(dev_t dev, ino_t ino)
{
    return g_strdup_printf("%ju:%ju", (uintmax_t)dev, (uintmax_t)ino);
}

/* By path, for the namespace operations; by device and inode, for hard
 * links and for handles opened earlier whose file was renamed since. */
static void protect_file(VcfMount *m, const char *path, const char *clone)
{
    g_hash_table_insert(m->protected, g_strdup(path), g_strdup(clone));
    watch_file_locked(m, path);
    struct stat st;
    if (stat(path, &st) == 0)
        g_hash_table_insert(m->protected_ids, file_id(st.st_dev, st.st_ino), g_strdup(clone));
}

const char *protected_id_by(VcfMount *m, const struct stat *st)
{
    g_autofree char *id = file_id(st->st_dev, st->st_ino);
    return g_hash_table_lookup(m->protected_ids, id);
}

const char *protected_fd_by(VcfMount *m, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return NULL;
    return protected_id_by(m, &st);
}

static void protect_clone(VcfMount *m, const char *name, OpenClone *oc)
{
    g_autoptr(GPtrArray) files = vcf_clone_parent_files(oc->clone);
    for (guint i = 0; i < files->len; i++)
        protect_file(m, g_ptr_array_index(files, i), name);
}

/* A clone that exists and did not open is broken (a parent changed or
 * gone, a damaged store): it says so in its state until it opens, and
 * ERROR becomes EIO, what a broken clone's disks answer, not the errno of
 * a file below it (ENOENT for a disk that ls shows would be a riddle).
 * Errors of the moment (memory, file handles) say nothing of the clone.
 * m->lock held. */
static void note_open_locked(VcfMount *m, const char *name, GError *error)
{
    if (error == NULL) {
        g_hash_table_remove(m->unopenable, name);
        return;
    }
    int e = vcf_error_errno(error);
    if (e == ENOMEM || e == EMFILE || e == ENFILE || e == EAGAIN || e == EINTR || e == EBUSY)
        return;
    error->domain = VCF_ERROR;
    error->code = EIO;
    g_hash_table_insert(m->unopenable, g_strdup(name), g_strdup(error->message));
}

OpenClone *open_clone_locked(VcfMount *m, const char *name, GError **error)
{
    OpenClone *oc = g_hash_table_lookup(m->clones, name);
    if (oc != NULL)
        return oc;
    if (g_hash_table_contains(m->closing, name)) {
        g_set_error(error, VCF_ERROR, EBUSY, "clone %s is being deleted or renamed", name);
        return NULL;
    }
    VcfCloneInfo *info = vcf_clone_info_load(m->lib, name, error);
    GError *why = NULL;
    VcfClone *c = info ? vcf_clone_open(m->lib, name, m->n_chains, &why) : NULL;
    if (info != NULL)
        note_open_locked(m, name, why);
    if (why != NULL)
        g_propagate_error(error, why);
    if (c == NULL) {
        vcf_clone_info_free(info);
        return NULL;
    }
    oc = g_new0(OpenClone, 1);
    oc->clone = c;
    oc->info = info;
    g_hash_table_insert(m->clones, g_strdup(name), oc);
    protect_clone(m, name, oc);
    g_atomic_int_inc(&m->protect_gen);
    return oc;
}

OpenClone *open_clone_steal(VcfMount *m, const char *name)
{
    OpenClone *oc = NULL;
    g_autofree char *key = NULL;
    if (g_hash_table_steal_extended(m->clones, name, (gpointer *)&key, (gpointer *)&oc))
        protect_refresh(m);
    return oc;
}

void open_clone_put_back(VcfMount *m, const char *name, OpenClone *oc)
{
    if (oc == NULL)
        return;
    g_hash_table_insert(m->clones, g_strdup(name), oc);
    protect_refresh(m);
}

OpenClone *open_clone_now(VcfMount *m, const char *name, GError **error)
{
    return open_clone_publish(m, name, NULL, error);
}

OpenClone *open_clone_publish(VcfMount *m, const char *name, VcfClone *opened,
                              GError **error)
{
    /* Opened without lock (it reads the store and the parents' chains),
     * then published; lookups may have opened it meanwhile. */
    VcfCloneInfo *info = vcf_clone_info_load(m->lib, name, error);
    VcfClone *c = opened;
    GError *why = NULL;
    if (info != NULL && c == NULL)
        c = vcf_clone_open(m->lib, name, m->n_chains, &why);
    if (info != NULL) {
        g_mutex_lock(&m->lock);
        note_open_locked(m, name, why);
        g_mutex_unlock(&m->lock);
    }
    if (why != NULL)
        g_propagate_error(error, why);
    if (info == NULL || c == NULL) {
        if (c != NULL)
            vcf_clone_close(c, NULL);
        vcf_clone_info_free(info);
        return NULL;
    }
    OpenClone *fresh = g_new0(OpenClone, 1);
    fresh->clone = c;
    fresh->info = info;
    g_mutex_lock(&m->lock);
    OpenClone *oc = g_hash_table_lookup(m->clones, name);
    if (oc == NULL) {
        g_hash_table_insert(m->clones, g_strdup(name), fresh);
        protect_clone(m, name, fresh);
        g_atomic_int_inc(&m->protect_gen);
        oc = fresh;
        fresh = NULL;
    }
    g_mutex_unlock(&m->lock);
    if (fresh != NULL)
        open_clone_free(fresh);
    return oc;
}

const VcfCloneInfo *clone_info_locked(VcfMount *m, const char *name, VcfCloneInfo **owned)
{
    OpenClone *oc = g_hash_table_lookup(m->clones, name);
    *owned = NULL;
    if (oc != NULL)
        return oc->info;
    /* A clone that does not open (broken) still has a folder to list. */
    *owned = vcf_clone_info_load(m->lib, name, NULL);
    return *owned;
}

void protect_refresh(VcfMount *m)
{
    g_hash_table_remove_all(m->protected);
    g_hash_table_remove_all(m->protected_ids);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, m->clones);
    while (g_hash_table_iter_next(&it, &k, &v))
        protect_clone(m, k, v);
    watch_prune_locked(m);
    g_atomic_int_inc(&m->protect_gen);
}

char *disk_descriptor(const char *stem, VcfDisk *disk)
{
    VcfGeometry geo;
    guint32 cid;
    guint64 frozen;
    if (!vcf_disk_describe(disk, &cid, &geo, &frozen, NULL)) {
        /* Broken: its reads say why; the text still describes its size. */
        cid = VCF_CID_NONE;
        vcf_geometry_default(&geo, vcf_disk_get_size(disk), "lsilogic");
    }
    return vcf_flat_descriptor(stem, vcf_disk_get_size(disk), cid, &geo);
}

const char *protected_by(VcfMount *m, const char *real)
{
    g_autofree char *rp = realpath(real, NULL);
    const char *path = rp ? rp : real;
    const char *who = g_hash_table_lookup(m->protected, path);
    if (who != NULL)
        return who;
    /* Another name of a protected file (a hard link) is that file. */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && (who = protected_id_by(m, &st)) != NULL)
        return who;
    /* A folder holding a protected file is protected too: moving or
     * removing it would take the file away from its clones. */
    gsize n = strlen(path);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, m->protected);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (strncmp(k, path, n) == 0 && ((char *)k)[n] == '/')
            return v;
    return NULL;
}

void release_base_logged(VcfMount *m, const VcfCloneInfo *info)
{
    if (info->base_uid == NULL || info->vm == NULL)
        return;
    g_autofree char *why = NULL;
    GError *error = NULL;
    g_autofree char *vm_dir = g_build_filename(m->root, info->vm, NULL);
    g_mutex_lock(&m->lock);
    /* A write through a handle opened earlier would land in the delta we
     * are about to remove: the next mount tries again instead. */
    gboolean busy = open_for_writing_under(m, vm_dir);
    g_mutex_unlock(&m->lock);
    if (busy)
        why = g_strdup_printf("a file of VM %s is open for writing", info->vm);
    else if (vcf_base_release(m->lib, info->vm, info->base_uid, &why, &error))
        g_message("took back snapshot \"%s\" of %s: no clone reads it any more and the VM has "
                  "not changed since", info->base_snapshot, info->vm);
    else if (error != NULL) {
        g_warning("taking back snapshot \"%s\" of %s: %s", info->base_snapshot, info->vm,
                  error->message);
        g_error_free(error);
    } else
        g_debug("snapshot \"%s\" of %s stays: %s", info->base_snapshot, info->vm, why);
}

gboolean vcf_mount_init(VcfMount *m, const char *library, guint n_chains,
                        double timeout, GError **error)
{
    memset(m, 0, sizeof *m);
    m->watch_fd = m->watch_stop = -1;
    m->lib = vcf_library_open(library, error);
    if (m->lib == NULL)
        return FALSE;
    /* A second daemon is refused here, before the leftovers and clones
     * below are touched. */
    if (!vcf_library_lock(m->lib, error)) {
        g_clear_pointer(&m->lib, vcf_library_free);
        return FALSE;
    }
    m->root = g_strdup(vcf_library_root(m->lib));
    m->n_chains = n_chains ? n_chains : 1;
    m->timeout = timeout;
    g_mutex_init(&m->lock);
    g_mutex_init(&m->ns_lock);
    g_rw_lock_init(&m->pass_writes);
    g_mutex_init(&m->sync_lock);
    g_cond_init(&m->sync_cond);
    node_table_init(&m->nodes, m->root);
    m->clones = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, open_clone_free);
    m->closing = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    m->refusals = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    m->pipes = g_async_queue_new_full(splice_pipe_free);
    m->zeros = g_malloc0(VCF_MAX_REQUEST);
    m->source_types = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    m->unopenable = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    m->protected = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    m->protected_ids = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    m->open_files = g_hash_table_new(g_direct_hash, g_direct_equal);
    m->open_dirs = g_hash_table_new_full(g_direct_hash, g_direct_equal,
                                         (GDestroyNotify)g_ptr_array_unref, NULL);
    g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
    guint fixed = vcf_clone_recover(m->lib, problems);
    if (fixed > 0)
        g_message("finished %u clone changes a crash interrupted (made, deleted, renamed)", fixed);
    g_autoptr(GPtrArray) taken = g_ptr_array_new_with_free_func(g_free);
    vcf_base_release_unused(m->lib, taken, problems);
    for (guint i = 0; i < taken->len; i++)
        g_message("took back snapshot %s: no clone is based on it any more",
                  (char *)taken->pdata[i]);
    for (guint i = 0; i < problems->len; i++)
        g_warning("%s", (char *)problems->pdata[i]);
    /* Open every clone now: that is what protects their parents, and a
     * broken clone is reported at mount time rather than at first read. */
    g_autoptr(GPtrArray) names = vcf_clone_list(m->lib);
    for (guint i = 0; i < names->len; i++) {
        GError *local = NULL;
        if (open_clone_locked(m, g_ptr_array_index(names, i), &local) == NULL) {
            g_warning("%s", local->message);
            g_error_free(local);
        }
    }
    return TRUE;
}

void vcf_mount_clear(VcfMount *m)
{
    if (m->warmer != NULL) {
        g_atomic_int_set(&m->warm_stop, TRUE);
        g_thread_join(m->warmer);
        m->warmer = NULL;
    }
    watch_stop(m);
    if (m->syncer != NULL) {
        g_mutex_lock(&m->sync_lock);
        m->stopping = TRUE;
        g_cond_signal(&m->sync_cond);
        g_mutex_unlock(&m->sync_lock);
        g_thread_join(m->syncer);
        m->syncer = NULL;
    }
    if (m->clones != NULL) {
        open_files_free_all(m);
        g_hash_table_destroy(m->open_files);
        g_hash_table_destroy(m->open_dirs);  /* frees the listings left */
        g_hash_table_destroy(m->clones);   /* syncs and closes every disk */
        g_hash_table_destroy(m->closing);
        g_hash_table_destroy(m->refusals);
        g_async_queue_unref(m->pipes);
        g_free(m->zeros);
        g_hash_table_destroy(m->source_types);
        g_hash_table_destroy(m->unopenable);
        g_hash_table_destroy(m->protected);
        g_hash_table_destroy(m->protected_ids);
        node_table_clear(&m->nodes);
        m->clones = NULL;
    }
    /* Its copiers stopped with their clones. */
    vcf_copy_pool_free(m->copy_pool);
    m->copy_pool = NULL;
    if (m->lib != NULL)
        g_rw_lock_clear(&m->pass_writes);   /* glib allocates it on first use */
    vcf_library_free(m->lib);
    m->lib = NULL;
    g_free(m->root);
    m->root = NULL;
}
