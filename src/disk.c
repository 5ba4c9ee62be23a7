#include "config.h"
#include "disk.h"
#include "disk-private.h"
#include "freeze.h"
#include "link-cache.h"
#include "stack.h"
#include "vcf-error.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>


/* Checks that PARENT is what STORE was made on and makes the layers. */
static gboolean check_parent(VcfSparse *store, VcfParent *parent, VcfStack **below,
                             GError **error)
{
    *below = NULL;
    if (parent == NULL)
        return TRUE;
    guint32 want = vcf_sparse_get_parent_cid(store);
    guint32 have = vcf_parent_get_cid(parent);
    const char *const *files = vcf_parent_get_files(parent);
    if (want != have) {
        g_set_error(error, VCF_ERROR, EIO,
                    "%s: parent %s changed (its CID is %08x, the clone was made from %08x): "
                    "refusing to serve this clone",
                    vcf_sparse_get_path(store), files[0], have, want);
        return FALSE;
    }
    if (vcf_parent_get_size(parent) != vcf_sparse_get_capacity(store)) {
        g_set_error(error, VCF_ERROR, EIO,
                    "%s: parent %s is %" G_GUINT64_FORMAT " bytes, the clone %" G_GUINT64_FORMAT,
                    vcf_sparse_get_path(store), files[0],
                    vcf_parent_get_size(parent), vcf_sparse_get_capacity(store));
        return FALSE;
    }
    *below = vcf_stack_new(parent, error);
    return *below != NULL;
}

/* Space of the chain's files that sit in the store's own folder: the
 * disk's frozen layers, which go with it. */
static guint64 frozen_bytes(const char *path, VcfParent *parent)
{
    if (parent == NULL)
        return 0;
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *real = realpath(dir, NULL);
    guint64 n = 0;
    for (const char *const *f = vcf_parent_get_files(parent); *f; f++) {
        g_autofree char *fdir = g_path_get_dirname(*f);
        GStatBuf st;
        if (real != NULL && g_str_equal(fdir, real) && g_stat(*f, &st) == 0)
            n += (guint64)st.st_blocks * 512;
    }
    return n;
}

static VcfDisk *disk_new(VcfSparse *store, VcfParent *parent, VcfStack *below)
{
    VcfDisk *d = g_new0(VcfDisk, 1);
    d->below = below;
    d->store = store;
    d->parent = parent;
    d->size = vcf_sparse_get_capacity(store);
    d->path = g_strdup(vcf_sparse_get_path(store));
    d->frozen_bytes = frozen_bytes(d->path, parent);
    d->n_chains = 1;
    g_rw_lock_init(&d->lock);
    g_mutex_init(&d->swap_lock);
    d->cid_seen = vcf_sparse_get_cid(store);
    GStatBuf st;
    d->written_at = g_stat(d->path, &st) == 0
        ? (gint64)st.st_mtim.tv_sec * G_USEC_PER_SEC + st.st_mtim.tv_nsec / 1000
        : g_get_real_time();
    vcf_sparse_get_geometry(store, &d->geometry_seen);
    for (guint i = 0; i < N_STRIPES; i++)
        g_mutex_init(&d->stripes[i]);
    return d;
}

VcfDisk *vcf_disk_new(VcfSparse *store, VcfParent *parent, GError **error)
{
    VcfStack *below;
    if (!check_parent(store, parent, &below, error)) {
        vcf_sparse_free(store);
        vcf_parent_free(parent);
        return NULL;
    }
    return disk_new(store, parent, below);
}

/* The store at PATH and the chain below it, checked. */
static gboolean open_layers(const char *path, const char *confine, VcfLinkCache *cache,
                            guint n_chains,
                            VcfSparse **store, VcfParent **parent, VcfStack **below,
                            GError **error)
{
    *parent = NULL;
    *below = NULL;
    *store = vcf_sparse_open(path, TRUE, error);
    if (*store == NULL)
        return FALSE;
    const char *hint = vcf_sparse_get_parent_hint(*store);
    if (hint != NULL) {
        g_autofree char *dir = g_path_get_dirname(path);
        g_autofree char *ppath = g_path_is_absolute(hint) ? g_strdup(hint)
            : g_build_filename(dir, hint, NULL);
        *parent = vcf_parent_open(ppath, confine, cache, n_chains, error);
        if (*parent == NULL && error != NULL && *error == NULL)
            g_set_error(error, VCF_ERROR, EINVAL, "%s: its parent %s cannot be opened here",
                        path, ppath);
    }
    if ((hint != NULL && *parent == NULL) || !check_parent(*store, *parent, below, error)) {
        g_clear_pointer(store, vcf_sparse_free);
        g_clear_pointer(parent, vcf_parent_free);
        return FALSE;
    }
    return TRUE;
}

VcfDisk *vcf_disk_open(const char *path, const char *confine, VcfLinkCache *cache,
                       guint n_chains, GError **error)
{
    VcfSparse *store;
    VcfParent *parent;
    VcfStack *below;
    if (!open_layers(path, confine, cache, n_chains, &store, &parent, &below, error))
        return NULL;
    VcfDisk *d = disk_new(store, parent, below);
    d->confine = g_strdup(confine);
    d->cache = cache != NULL ? vcf_link_cache_ref(cache) : NULL;
    d->n_chains = n_chains ? n_chains : 1;
    return d;
}

VcfDisk *vcf_disk_open_over(const char *path, VcfParent *parent, GError **error)
{
    VcfSparse *store = vcf_sparse_open(path, TRUE, error);
    if (store == NULL) {
        vcf_parent_free(parent);
        return NULL;
    }
    VcfDisk *d = vcf_disk_new(store, parent, error);
    if (d != NULL) {
        d->confine = g_strdup(vcf_parent_get_confine(parent));
        VcfLinkCache *cache = vcf_parent_get_cache(parent);
        d->cache = cache != NULL ? vcf_link_cache_ref(cache) : NULL;
        d->n_chains = vcf_parent_get_n_chains(parent);
    }
    return d;
}

static void disk_free(VcfDisk *d)
{
    vcf_stack_free(d->below);
    g_free(d->broken);
    g_free(d->path);
    g_free(d->confine);
    vcf_link_cache_unref(d->cache);
    g_rw_lock_clear(&d->lock);
    g_mutex_clear(&d->swap_lock);
    for (guint i = 0; i < N_STRIPES; i++)
        g_mutex_clear(&d->stripes[i]);
    g_free(d);
}

gboolean vcf_disk_close(VcfDisk *d, GError **error)
{
    if (d == NULL)
        return TRUE;
    gboolean ok = d->store == NULL || vcf_sparse_close(d->store, error);
    vcf_parent_free(d->parent);
    disk_free(d);
    return ok;
}

void vcf_disk_abandon(VcfDisk *d)
{
    vcf_sparse_free(d->store);
    vcf_parent_free(d->parent);
    disk_free(d);
}

guint64 vcf_disk_get_size(const VcfDisk *d) { return d->size; }
const char *vcf_disk_get_path(const VcfDisk *d) { return d->path; }

/* A disk a failed freeze left closed: EIO for everything. Lock held. */
gboolean vcf_disk_check_open(VcfDisk *d, GError **error)
{
    if (d->store != NULL && d->broken == NULL)
        return TRUE;
    g_set_error(error, VCF_ERROR, EIO, "%s: %s", d->path, d->broken);
    return FALSE;
}

gboolean vcf_disk_describe(VcfDisk *d, guint32 *cid, VcfGeometry *geometry,
                           guint64 *frozen_bytes, GError **error)
{
    g_mutex_lock(&d->swap_lock);
    if (d->store != NULL) {
        d->cid_seen = vcf_sparse_get_cid(d->store);   /* atomic; renewed by a first write */
        vcf_sparse_get_geometry(d->store, &d->geometry_seen);
    }
    *cid = d->cid_seen;
    *geometry = d->geometry_seen;
    *frozen_bytes = d->frozen_bytes;
    gboolean ok = d->broken == NULL;
    if (!ok)
        g_set_error(error, VCF_ERROR, EIO, "%s: %s", d->path, d->broken);
    g_mutex_unlock(&d->swap_lock);
    return ok;
}

void vcf_disk_add_parent_files(VcfDisk *d, GPtrArray *files)
{
    g_rw_lock_reader_lock(&d->lock);
    for (const char *const *f = d->parent ? vcf_parent_get_files(d->parent) : NULL; f && *f; f++)
        g_ptr_array_add(files, g_strdup(*f));
    g_rw_lock_reader_unlock(&d->lock);
}

static gboolean check_range(VcfDisk *d, gsize len, guint64 offset, GError **error)
{
    if (offset > d->size || len > d->size - offset) {
        g_set_error(error, VCF_ERROR, EINVAL,
                    "%s: access [%" G_GUINT64_FORMAT ", +%" G_GSIZE_FORMAT ") beyond the disk's %"
                    G_GUINT64_FORMAT " bytes", d->path, offset, len, d->size);
        return FALSE;
    }
    return TRUE;
}

/* Bytes the store lacks: the parent's, or zeros for a disk with none. */
static gboolean read_below(VcfDisk *d, guint8 *buf, gsize len, guint64 offset,
                           GError **error)
{
    if (d->parent == NULL) {
        memset(buf, 0, len);
        return TRUE;
    }
    return vcf_stack_read(d->below, buf, len, offset, error);
}

/* The whole current contents of GRAIN into BUF (VCF_GRAIN_SIZE bytes);
 * bytes past the end of the disk are zero. */
gboolean vcf_disk_read_grain_locked(VcfDisk *d, guint64 grain, guint8 *buf, GError **error)
{
    switch (vcf_sparse_grain_state(d->store, grain)) {
    case VCF_GRAIN_DATA:
        return vcf_sparse_read_grain(d->store, grain, buf, error);
    case VCF_GRAIN_ZERO:
        memset(buf, 0, VCF_GRAIN_SIZE);
        return TRUE;
    case VCF_GRAIN_ABSENT:
    default: {
        guint64 off = grain * VCF_GRAIN_SIZE;
        gsize n = MIN(VCF_GRAIN_SIZE, d->size - off);
        if (n < VCF_GRAIN_SIZE)
            memset(buf + n, 0, VCF_GRAIN_SIZE - n);
        return read_below(d, buf, n, off, error);
    }
    }
}

static gboolean read_locked(VcfDisk *d, guint8 *buf, gsize len, guint64 offset,
                            GError **error)
{
    g_autofree guint8 *tmp = NULL;
    while (len > 0) {
        guint64 grain = offset / VCF_GRAIN_SIZE;
        gsize in = offset % VCF_GRAIN_SIZE;
        VcfGrainState st = vcf_sparse_grain_state(d->store, grain);
        if (st == VCF_GRAIN_ABSENT) {
            /* One parent read for the whole run of absent grains. */
            gsize run = MIN(len, VCF_GRAIN_SIZE - in);
            while (run < len && vcf_sparse_grain_state(
                       d->store, (offset + run) / VCF_GRAIN_SIZE) == VCF_GRAIN_ABSENT)
                run += MIN(len - run, VCF_GRAIN_SIZE);
            if (!read_below(d, buf, run, offset, error))
                return FALSE;
            buf += run, offset += run, len -= run;
            continue;
        }
        gsize n = MIN(len, VCF_GRAIN_SIZE - in);
        if (st == VCF_GRAIN_ZERO) {
            memset(buf, 0, n);
        } else {
            /* The checksum covers the whole grain, so read it whole. */
            gboolean whole = in == 0 && n == VCF_GRAIN_SIZE;
            if (!whole && tmp == NULL)
                tmp = g_malloc(VCF_GRAIN_SIZE);
            g_mutex_lock(vcf_disk_stripe(d, grain));
            gboolean ok = vcf_sparse_read_grain(d->store, grain, whole ? buf : tmp, error);
            g_mutex_unlock(vcf_disk_stripe(d, grain));
            if (!ok)
                return FALSE;
            if (!whole)
                memcpy(buf, tmp + in, n);
        }
        buf += n, offset += n, len -= n;
    }
    return TRUE;
}

gboolean vcf_disk_read_runs(VcfDisk *d, gsize len, guint64 offset, VcfRun *runs, guint max,
                            VcfDiskRunsFunc func, gpointer user_data, gboolean *served,
                            GError **error)
{
    *served = FALSE;
    if (!check_range(d, len, offset, error))
        return FALSE;
    g_rw_lock_reader_lock(&d->lock);
    gboolean ok = vcf_disk_check_open(d, error);
    guint n = 0;
    /* Only what the store lacks, all of it: its grains are checked by
     * their sums, so they must be read here. */
    for (guint64 g = offset / VCF_GRAIN_SIZE; ok && len > 0 && g <= (offset + len - 1) /
         VCF_GRAIN_SIZE; g++)
        if (vcf_sparse_grain_state(d->store, g) != VCF_GRAIN_ABSENT)
            goto out;
    if (ok && d->parent == NULL) {
        runs[0] = (VcfRun) { -1, 0, len };
        n = max > 0 ? 1 : 0;
    } else if (ok) {
        ok = vcf_stack_map_range(d->below, offset, len, runs, max, &n, error);
    }
    /* Under the lock: a freeze would close the fds. */
    if (ok && n > 0 && (*served = func(runs, n, user_data)))
        g_atomic_int_inc(&d->guest_ops);
out:
    g_rw_lock_reader_unlock(&d->lock);
    return ok;
}

gboolean vcf_disk_read(VcfDisk *d, void *buf, gsize len, guint64 offset,
                       GError **error)
{
    if (!check_range(d, len, offset, error))
        return FALSE;
    g_atomic_int_inc(&d->guest_ops);
    g_rw_lock_reader_lock(&d->lock);
    gboolean ok = vcf_disk_check_open(d, error) && read_locked(d, buf, len, offset, error);
    g_rw_lock_reader_unlock(&d->lock);
    return ok;
}

static gboolean write_locked(VcfDisk *d, const guint8 *buf, gsize len,
                             guint64 offset, GError **error)
{
    g_autofree guint8 *tmp = NULL;
    while (len > 0) {
        guint64 grain = offset / VCF_GRAIN_SIZE;
        gsize in = offset % VCF_GRAIN_SIZE;
        gsize n = MIN(len, VCF_GRAIN_SIZE - in);
        gboolean ok;
        g_mutex_lock(vcf_disk_stripe(d, grain));
        if (n == VCF_GRAIN_SIZE) {
            ok = vcf_sparse_write_grain(d->store, grain, buf, 0, n, error);
        } else {
            /* Copy-on-write: the grain's current bytes, then ours on top. */
            if (tmp == NULL)
                tmp = g_malloc(VCF_GRAIN_SIZE);
            ok = vcf_disk_read_grain_locked(d, grain, tmp, error);
            if (ok) {
                memcpy(tmp + in, buf, n);
                ok = vcf_sparse_write_grain(d->store, grain, tmp, in, n, error);
            }
        }
        g_mutex_unlock(vcf_disk_stripe(d, grain));
        if (!ok)
            return FALSE;
        buf += n, offset += n, len -= n;
    }
    return TRUE;
}

gboolean vcf_disk_write(VcfDisk *d, const void *buf, gsize len, guint64 offset,
                        GError **error)
{
    if (!check_range(d, len, offset, error))
        return FALSE;
    g_atomic_int_inc(&d->guest_ops);
    __atomic_store_n(&d->written_at, g_get_real_time(), __ATOMIC_RELAXED);
    g_rw_lock_reader_lock(&d->lock);
    gboolean ok = vcf_disk_check_open(d, error) && write_locked(d, buf, len, offset, error);
    g_rw_lock_reader_unlock(&d->lock);
    return ok;
}

gboolean vcf_disk_sync(VcfDisk *d, GError **error)
{
    g_rw_lock_writer_lock(&d->lock);
    gboolean ok = vcf_disk_check_open(d, error) && vcf_sparse_sync(d->store, error);
    g_rw_lock_writer_unlock(&d->lock);
    return ok;
}

/* Opens what is at d->path now and puts it in place of the closed store.
 * Writer lock held. */
static gboolean reopen_locked(VcfDisk *d, GError **error)
{
    VcfSparse *store;
    VcfParent *parent;
    VcfStack *below;
    if (!open_layers(d->path, d->confine, d->cache, d->n_chains, &store, &parent, &below, error))
        return FALSE;
    vcf_stack_free(d->below);
    vcf_parent_free(d->parent);
    d->parent = parent;
    d->below = below;
    g_mutex_lock(&d->swap_lock);
    d->store = store;
    d->frozen_bytes = frozen_bytes(d->path, parent);
    g_clear_pointer(&d->broken, g_free);
    g_mutex_unlock(&d->swap_lock);
    return TRUE;
}

static void set_broken(VcfDisk *d, const char *why)
{
    g_mutex_lock(&d->swap_lock);
    d->broken = g_strdup_printf("the disk could not be opened again after a freeze: %s", why);
    g_mutex_unlock(&d->swap_lock);
}

gboolean vcf_disk_freeze(VcfDisk *d, guint index, char **layer, GError **error)
{
    g_rw_lock_writer_lock(&d->lock);
    if (!vcf_disk_check_open(d, error)) {
        g_rw_lock_writer_unlock(&d->lock);
        return FALSE;
    }
    if (d->parent != NULL && vcf_sparse_is_empty(d->store)) {
        /* Nothing written since it was made or last frozen. */
        *layer = g_strdup(vcf_parent_get_files(d->parent)[0]);
        g_rw_lock_writer_unlock(&d->lock);
        return TRUE;
    }
    /* The store, its layer and a clone on it: within what a chain may be. */
    guint links = d->parent ? vcf_parent_get_links(d->parent)->len : 0;
    if (links + 3 > VCF_CHAIN_MAX_LINKS) {
        g_set_error(error, VCF_ERROR, EMLINK, "%s: its chain has %u links; a freeze would take "
                    "a clone of it past the %u a chain may have; clone its VM's snapshot, or "
                    "make a full copy", d->path, links + 1, VCF_CHAIN_MAX_LINKS);
        g_rw_lock_writer_unlock(&d->lock);
        return FALSE;
    }
    /* Synced first, the store still open: a failure there loses nothing
     * (the syncer tries again), and a store that synced closes cleanly
     * (unclean flag off): a layer no one writes. */
    if (!vcf_sparse_sync(d->store, error)) {
        g_rw_lock_writer_unlock(&d->lock);
        return FALSE;
    }
    g_mutex_lock(&d->swap_lock);
    VcfSparse *old = d->store;
    d->store = NULL;
    g_mutex_unlock(&d->swap_lock);
    gboolean ok = vcf_sparse_close(old, error);
    ok = ok && vcf_freeze_store(d->path, index, layer, error);
    GError *again = NULL;
    if (!reopen_locked(d, &again)) {
        /* A new top that does not open (its chain too deep, a file gone):
         * the old top comes back, as it was. */
        GError *undo = NULL;
        if (ok && vcf_freeze_undo(d->path, *layer, &undo) && reopen_locked(d, &undo)) {
            g_propagate_prefixed_error(error, again, "%s: the frozen disk did not open, the "
                                       "freeze was undone: ", d->path);
        } else {
            set_broken(d, again->message);
            if (ok)
                g_propagate_error(error, g_error_copy(again));
            else
                g_prefix_error(error, "%s; ", again->message);
            g_error_free(again);
            g_clear_error(&undo);
        }
        g_clear_pointer(layer, g_free);
        ok = FALSE;
    }
    g_rw_lock_writer_unlock(&d->lock);
    return ok;
}

/* Whether unit U holds data: the store's own grain, or one below it. */
static gboolean unit_held(VcfDisk *d, guint64 u, gboolean *held, GError **error)
{
    *held = vcf_sparse_grain_state(d->store, u) != VCF_GRAIN_ABSENT;
    if (*held || d->below == NULL)
        return TRUE;
    return vcf_stack_holds(d->below, u, held, error);
}

static gboolean seek_locked(VcfDisk *d, guint64 offset, gboolean data, guint64 *out,
                            GError **error)
{
    if (offset >= d->size) {
        g_set_error(error, VCF_ERROR, ENXIO, "%s: seek to %" G_GUINT64_FORMAT
                    " past the disk's end", d->path, offset);
        return FALSE;
    }
    guint64 units = (d->size + VCF_GRAIN_SIZE - 1) / VCF_GRAIN_SIZE;
    for (guint64 u = offset / VCF_GRAIN_SIZE; u < units; u++) {
        gboolean held;
        if (!unit_held(d, u, &held, error))
            return FALSE;
        if (held == data) {
            *out = MAX(offset, u * VCF_GRAIN_SIZE);
            return TRUE;
        }
    }
    if (!data) {   /* the end of the disk is a hole, as for any file */
        *out = d->size;
        return TRUE;
    }
    g_set_error(error, VCF_ERROR, ENXIO, "%s: no data after %" G_GUINT64_FORMAT,
                d->path, offset);
    return FALSE;
}

gboolean vcf_disk_seek(VcfDisk *d, guint64 offset, gboolean data, guint64 *out,
                       GError **error)
{
    g_rw_lock_reader_lock(&d->lock);
    gboolean ok = vcf_disk_check_open(d, error) && seek_locked(d, offset, data, out, error);
    g_rw_lock_reader_unlock(&d->lock);
    return ok;
}
