#include "config.h"
#include "disk.h"
#include "stack.h"
#include "vcf-error.h"

#include <errno.h>
#include <string.h>

#define N_STRIPES 64

struct VcfDisk {
    VcfSparse *store;
    VcfParent *parent;
    guint64 size;
    /* Reads and writes share it; sync takes it alone. */
    GRWLock lock;
    /* Reads and writes of one grain take its stripe: a copy-on-write is
     * read-modify-write of the whole grain, and a reader must not see a
     * grain half rewritten in place (its checksum would not match). */
    GMutex stripes[N_STRIPES];
    VcfStack *below;        /* the parent chain's layers; NULL with no parent */
};

static GMutex *stripe(VcfDisk *d, guint64 grain) { return &d->stripes[grain % N_STRIPES]; }

VcfDisk *vcf_disk_new(VcfSparse *store, VcfParent *parent, GError **error)
{
    if (parent != NULL) {
        guint32 want = vcf_sparse_get_parent_cid(store);
        guint32 have = vcf_parent_get_cid(parent);
        const char *const *files = vcf_parent_get_files(parent);
        if (want != have) {
            g_set_error(error, VCF_ERROR, EIO,
                        "%s: parent %s changed (its CID is %08x, the clone was made from %08x): "
                        "refusing to serve this clone",
                        vcf_sparse_get_path(store), files[0], have, want);
            goto fail;
        }
        if (vcf_parent_get_size(parent) != vcf_sparse_get_capacity(store)) {
            g_set_error(error, VCF_ERROR, EIO,
                        "%s: parent %s is %" G_GUINT64_FORMAT " bytes, the clone %" G_GUINT64_FORMAT,
                        vcf_sparse_get_path(store), files[0],
                        vcf_parent_get_size(parent), vcf_sparse_get_capacity(store));
            goto fail;
        }
    }
    VcfStack *below = NULL;
    if (parent != NULL) {
        below = vcf_stack_new(parent, error);
        if (below == NULL)
            goto fail;
    }
    VcfDisk *d = g_new0(VcfDisk, 1);
    d->below = below;
    d->store = store;
    d->parent = parent;
    d->size = vcf_sparse_get_capacity(store);
    g_rw_lock_init(&d->lock);
    for (guint i = 0; i < N_STRIPES; i++)
        g_mutex_init(&d->stripes[i]);
    return d;
fail:
    vcf_sparse_free(store);
    vcf_parent_free(parent);
    return NULL;
}

static void disk_free(VcfDisk *d)
{
    vcf_stack_free(d->below);
    g_rw_lock_clear(&d->lock);
    for (guint i = 0; i < N_STRIPES; i++)
        g_mutex_clear(&d->stripes[i]);
    g_free(d);
}

gboolean vcf_disk_close(VcfDisk *d, GError **error)
{
    if (d == NULL)
        return TRUE;
    gboolean ok = vcf_sparse_close(d->store, error);
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
VcfSparse *vcf_disk_get_store(VcfDisk *d) { return d->store; }

static gboolean check_range(VcfDisk *d, gsize len, guint64 offset, GError **error)
{
    if (offset > d->size || len > d->size - offset) {
        g_set_error(error, VCF_ERROR, EINVAL,
                    "%s: access [%" G_GUINT64_FORMAT ", +%" G_GSIZE_FORMAT ") beyond the disk's %"
                    G_GUINT64_FORMAT " bytes", vcf_sparse_get_path(d->store), offset, len, d->size);
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
static gboolean read_grain(VcfDisk *d, guint64 grain, guint8 *buf, GError **error)
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
            g_mutex_lock(stripe(d, grain));
            gboolean ok = vcf_sparse_read_grain(d->store, grain, whole ? buf : tmp, error);
            g_mutex_unlock(stripe(d, grain));
            if (!ok)
                return FALSE;
            if (!whole)
                memcpy(buf, tmp + in, n);
        }
        buf += n, offset += n, len -= n;
    }
    return TRUE;
}

gboolean vcf_disk_read(VcfDisk *d, void *buf, gsize len, guint64 offset,
                       GError **error)
{
    if (!check_range(d, len, offset, error))
        return FALSE;
    g_rw_lock_reader_lock(&d->lock);
    gboolean ok = read_locked(d, buf, len, offset, error);
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
        g_mutex_lock(stripe(d, grain));
        if (n == VCF_GRAIN_SIZE) {
            ok = vcf_sparse_write_grain(d->store, grain, buf, 0, n, error);
        } else {
            /* Copy-on-write: the grain's current bytes, then ours on top. */
            if (tmp == NULL)
                tmp = g_malloc(VCF_GRAIN_SIZE);
            ok = read_grain(d, grain, tmp, error);
            if (ok) {
                memcpy(tmp + in, buf, n);
                ok = vcf_sparse_write_grain(d->store, grain, tmp, in, n, error);
            }
        }
        g_mutex_unlock(stripe(d, grain));
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
    g_rw_lock_reader_lock(&d->lock);
    gboolean ok = write_locked(d, buf, len, offset, error);
    g_rw_lock_reader_unlock(&d->lock);
    return ok;
}

gboolean vcf_disk_sync(VcfDisk *d, GError **error)
{
    g_rw_lock_writer_lock(&d->lock);
    gboolean ok = vcf_sparse_sync(d->store, error);
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

gboolean vcf_disk_seek(VcfDisk *d, guint64 offset, gboolean data, guint64 *out,
                       GError **error)
{
    if (offset >= d->size) {
        g_set_error(error, VCF_ERROR, ENXIO, "%s: seek to %" G_GUINT64_FORMAT
                    " past the disk's end", vcf_sparse_get_path(d->store), offset);
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
                vcf_sparse_get_path(d->store), offset);
    return FALSE;
}
