/* Filling a disk from the layers below it, for a full clone, and dropping
 * them once it holds everything they held (see copier.h for the whole).
 *
 * A unit the store lacks is read from below without the grain's stripe
 * (the layers below never change), then written under the stripe only if
 * the store still lacks it: a guest write that got there first wins, and
 * one that comes later finds the copy and writes over it as usual. The
 * copy is read back through the store (whose own checksum it passes) and
 * compared with what was read below before the stripe is let go.
 *
 * Where the file system shares blocks (reflink.h), runs of units that lie
 * back to back in one file below are cloned instead, in one call: where
 * the file system shows the store's blocks to be the very blocks below,
 * they are not read at all and their sums are made at their first read;
 * else they are read back and compared (see vcf_sparse_share_grains).
 * Units of a layer checked by sums are read, never cloned unread. */
#include "config.h"
#include "disk-private.h"
#include "fileutil.h"
#include "grain-sums.h"
#include "vcf-error.h"

#include <errno.h>
#include <string.h>

gint64 vcf_disk_get_written_at(VcfDisk *d)
{
    return __atomic_load_n(&d->written_at, __ATOMIC_RELAXED);
}

guint vcf_disk_guest_ops(VcfDisk *d)
{
    return (guint)g_atomic_int_get(&d->guest_ops);
}

guint64 vcf_disk_get_units(const VcfDisk *d)
{
    return (d->size + VCF_GRAIN_SIZE - 1) / VCF_GRAIN_SIZE;
}

gboolean vcf_disk_flush_data(VcfDisk *d, GError **error)
{
    g_rw_lock_reader_lock(&d->lock);
    gboolean ok = vcf_disk_check_open(d, error) && vcf_sparse_flush_data(d->store, error);
    g_rw_lock_reader_unlock(&d->lock);
    return ok;
}

void vcf_disk_start_writeback(VcfDisk *d)
{
    g_rw_lock_reader_lock(&d->lock);
    if (d->store != NULL)
        vcf_sparse_start_writeback(d->store);
    g_rw_lock_reader_unlock(&d->lock);
}

gboolean vcf_disk_has_parent(VcfDisk *d)
{
    g_rw_lock_reader_lock(&d->lock);
    gboolean has = d->below != NULL;
    g_rw_lock_reader_unlock(&d->lock);
    return has;
}

gboolean vcf_disk_count_to_copy(VcfDisk *d, guint64 from, guint64 to, guint64 *units,
                                GError **error)
{
    *units = 0;
    g_rw_lock_reader_lock(&d->lock);
    gboolean ok = vcf_disk_check_open(d, error);
    for (guint64 u = from; ok && d->below != NULL && u < MIN(to, vcf_disk_get_units(d)); u++) {
        gboolean held;
        ok = vcf_stack_holds(d->below, u, &held, error);
        *units += ok && held;
    }
    g_rw_lock_reader_unlock(&d->lock);
    return ok;
}

/* Unit U's bytes below the store into BUF, zero past the disk's end. */
static gboolean read_below_unit(VcfDisk *d, guint64 u, guint8 *buf, GError **error)
{
    guint64 off = u * VCF_GRAIN_SIZE;
    gsize n = MIN(VCF_GRAIN_SIZE, d->size - off);
    memset(buf + n, 0, VCF_GRAIN_SIZE - n);
    return vcf_stack_read(d->below, buf, n, off, error);
}

/* Unit U of BUF (read below) into the store, if it still lacks it: copied
 * file to file where the file system can (see vcf_sparse_copy_grain). */
static gboolean copy_one(VcfDisk *d, guint64 u, const guint8 *buf, guint8 *back,
                         gsize *copied, GError **error)
{
    int src;
    guint64 at = 0;
    if (!vcf_stack_map_unit(d->below, u, FALSE, &src, &at, error))
        return FALSE;
    gboolean ok = TRUE, offloaded = FALSE;
    g_mutex_lock(vcf_disk_stripe(d, u));
    if (vcf_sparse_grain_state(d->store, u) == VCF_GRAIN_ABSENT) {
        /* Read back, it passes the sum the store made of BUF as it wrote it:
         * xxh3 of the copy against its source; the bytes are compared too.
         * A grain the file system copied is read back as well: a reflink
         * shares the source's blocks, but a server-side copy is a copy. */
        ok = vcf_sparse_copy_grain(d->store, u, src, at, buf, &offloaded, error)
             && vcf_sparse_read_grain(d->store, u, back, error);
        if (ok && memcmp(back, buf, VCF_GRAIN_SIZE) != 0) {
            g_set_error(error, VCF_ERROR, EIO, "%s: the copy of grain %" G_GUINT64_FORMAT
                        " (disk offset %" G_GUINT64_FORMAT ") does not read back as its "
                        "source", d->path, u, u * VCF_GRAIN_SIZE);
            ok = FALSE;
        }
        if (ok)
            *copied += VCF_GRAIN_SIZE;
    }
    g_mutex_unlock(vcf_disk_stripe(d, u));
    return ok;
}

/* The units of [FIRST, FIRST + N) marked in WANT that lie whole, block-
 * aligned and back to back in one file below, shared with the store by
 * runs; WANT is cleared for each one the store now has. Lock held. */
static gboolean share_units(VcfDisk *d, guint64 first, guint n, gboolean *want, gsize *copied,
                            GError **error)
{
    for (guint i = 0; i < n && !g_atomic_int_get(&d->no_sharing);) {
        int fd, next_fd;
        guint64 at, next_at;
        if (want[i] && !vcf_stack_map_unit(d->below, first + i, TRUE, &fd, &at, error))
            return FALSE;
        /* Blocks are shared only where both offsets are block-aligned. */
        if (!want[i] || fd < 0 || at % 4096 != 0) {
            i++;
            continue;
        }
        guint j = i + 1;
        while (j < n && want[j]
               && vcf_stack_map_unit(d->below, first + j, TRUE, &next_fd, &next_at, NULL)
               && next_fd == fd && next_at == at + (guint64)(j - i) * VCF_GRAIN_SIZE)
            j++;
        guint64 places[VCF_COPY_RUN], sums[VCF_COPY_RUN];
        gboolean shared, never;
        if (!vcf_sparse_share_grains(d->store, first + i, j - i, fd, at, places, sums,
                                     &shared, &never, error))
            return FALSE;
        if (never)
            g_atomic_int_set(&d->no_sharing, TRUE);
        if (!shared) {
            i = j;   /* copied the usual way */
            continue;
        }
        for (guint k = i; k < j; k++) {
            guint64 u = first + k;
            g_mutex_lock(vcf_disk_stripe(d, u));
            /* A guest write that came meanwhile wins: this place stays unused. */
            if (vcf_sparse_publish_shared(d->store, u, places[k - i], sums[k - i]))
                *copied += VCF_GRAIN_SIZE;
            g_mutex_unlock(vcf_disk_stripe(d, u));
            want[k] = FALSE;
        }
        i = j;
    }
    return TRUE;
}

static gboolean copy_locked(VcfDisk *d, guint64 first, guint n, guint *held, gsize *copied,
                            GError **error)
{
    if (!vcf_disk_check_open(d, error))
        return FALSE;
    guint64 units = vcf_disk_get_units(d);
    if (d->below == NULL || first >= units)
        return TRUE;
    n = (guint)MIN(MIN((guint64)n, VCF_COPY_RUN), units - first);
    gboolean want[VCF_COPY_RUN], any = FALSE;
    for (guint i = 0; i < n; i++) {
        gboolean h;
        if (!vcf_stack_holds(d->below, first + i, &h, error))
            return FALSE;
        *held += h;
        want[i] = h && vcf_sparse_grain_state(d->store, first + i) == VCF_GRAIN_ABSENT;
        any |= want[i];
    }
    if (any && !g_atomic_int_get(&d->no_sharing)) {
        if (!share_units(d, first, n, want, copied, error))
            return FALSE;
        any = FALSE;
        for (guint i = 0; i < n; i++)
            any |= want[i];
    }
    if (!any)
        return TRUE;
    /* One read for the run: the grains of a parent lie mostly back to back. */
    guint64 off = first * VCF_GRAIN_SIZE;
    gsize len = (gsize)n * VCF_GRAIN_SIZE, in = (gsize)MIN((guint64)len, d->size - off);
    g_autofree guint8 *buf = g_malloc(len);
    memset(buf + in, 0, len - in);
    if (!vcf_stack_read(d->below, buf, in, off, error))
        return FALSE;
    g_autofree guint8 *back = g_malloc(VCF_GRAIN_SIZE);
    for (guint i = 0; i < n; i++) {
        const guint8 *g = buf + (gsize)i * VCF_GRAIN_SIZE;
        /* All zeros reads as zeros standalone too: no space for it. */
        if (want[i] && !vcf_all_zero(g, VCF_GRAIN_SIZE)
            && !copy_one(d, first + i, g, back, copied, error))
            return FALSE;
    }
    return TRUE;
}

gboolean vcf_disk_copy_units(VcfDisk *d, guint64 first, guint n, guint *held, gsize *copied,
                             GError **error)
{
    *held = 0;
    *copied = 0;
    g_rw_lock_reader_lock(&d->lock);
    gboolean ok = copy_locked(d, first, n, held, copied, error);
    g_rw_lock_reader_unlock(&d->lock);
    return ok;
}

/* Every unit of [FROM, TO) held below is in the store, or reads as zeros.
 * Lock held. */
static gboolean check_copied(VcfDisk *d, guint64 from, guint64 to, GError **error)
{
    g_autofree guint8 *buf = g_malloc(VCF_GRAIN_SIZE);
    for (guint64 u = from; u < MIN(to, vcf_disk_get_units(d)); u++) {
        gboolean held;
        if (!vcf_stack_holds(d->below, u, &held, error))
            return FALSE;
        if (!held || vcf_sparse_grain_state(d->store, u) != VCF_GRAIN_ABSENT)
            continue;
        if (!read_below_unit(d, u, buf, error))
            return FALSE;
        if (!vcf_all_zero(buf, VCF_GRAIN_SIZE)) {
            g_set_error(error, VCF_ERROR, EIO, "%s: grain %" G_GUINT64_FORMAT " (disk offset %"
                        G_GUINT64_FORMAT ") holds data below but was not copied", d->path, u,
                        u * VCF_GRAIN_SIZE);
            return FALSE;
        }
    }
    return TRUE;
}

gboolean vcf_disk_check_copied(VcfDisk *d, guint64 from, guint64 to, GError **error)
{
    g_rw_lock_reader_lock(&d->lock);
    gboolean ok = vcf_disk_check_open(d, error)
                  && (d->below == NULL || check_copied(d, from, to, error));
    g_rw_lock_reader_unlock(&d->lock);
    return ok;
}

gboolean vcf_disk_promote(VcfDisk *d, GError **error)
{
    g_rw_lock_writer_lock(&d->lock);
    gboolean ok = vcf_disk_check_open(d, error) && vcf_sparse_sync(d->store, error)
         && vcf_sparse_make_standalone(d->store, error);
    if (ok) {
        g_clear_pointer(&d->below, vcf_stack_free);
        g_mutex_lock(&d->swap_lock);
        g_clear_pointer(&d->parent, vcf_parent_free);
        d->frozen_bytes = 0;
        g_mutex_unlock(&d->swap_lock);
    }
    g_rw_lock_writer_unlock(&d->lock);
    return ok;
}

gboolean vcf_disk_check_parent(VcfDisk *d, gboolean *found, GError **error)
{
    GError *changed = NULL;
    if (found != NULL)
        *found = FALSE;
    g_rw_lock_reader_lock(&d->lock);
    gboolean ok = vcf_disk_check_open(d, error);
    if (ok && d->parent != NULL)
        ok = vcf_parent_check_unchanged(d->parent, &changed);
    g_rw_lock_reader_unlock(&d->lock);
    if (changed == NULL)
        return ok;
    /* From now on every access is EIO: no read mixes old and new bytes.
     * The guest's own writes so far are kept: they are its data. */
    g_rw_lock_writer_lock(&d->lock);
    if (d->broken == NULL && d->store != NULL)
        vcf_sparse_sync(d->store, NULL);
    g_mutex_lock(&d->swap_lock);
    if (d->broken == NULL) {
        d->broken = g_strdup(changed->message);
        if (found != NULL)
            *found = TRUE;
    }
    g_mutex_unlock(&d->swap_lock);
    g_rw_lock_writer_unlock(&d->lock);
    g_propagate_error(error, changed);
    return FALSE;
}
