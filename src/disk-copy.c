/* Filling a disk from the layers below it, for a full clone, and dropping
 * them once it holds everything they held (see copier.h for the whole).
 *
 * A unit the store lacks is read from below without the grain's stripe
 * (the layers below never change), then written under the stripe only if
 * the store still lacks it: a guest write that got there first wins, and
 * one that comes later finds the copy and writes over it as usual. The
 * copy is read back through the store (whose own checksum it passes) and
 * compared with what was read below before the stripe is let go. */
#include "config.h"
#include "disk-private.h"
#include "grain-sums.h"
#include "vcf-error.h"

#include <errno.h>
#include <string.h>

static gboolean all_zero(const guint8 *buf, gsize len)
{
    return len == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, len - 1) == 0);
}

guint64 vcf_disk_get_units(const VcfDisk *d)
{
    return (d->size + VCF_GRAIN_SIZE - 1) / VCF_GRAIN_SIZE;
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

static gboolean copy_locked(VcfDisk *d, guint64 u, gboolean *held, gsize *copied,
                            GError **error)
{
    if (!vcf_disk_check_open(d, error))
        return FALSE;
    if (d->below == NULL || u >= vcf_disk_get_units(d))
        return TRUE;
    if (!vcf_stack_holds(d->below, u, held, error))
        return FALSE;
    if (!*held || vcf_sparse_grain_state(d->store, u) != VCF_GRAIN_ABSENT)
        return TRUE;
    g_autofree guint8 *buf = g_malloc(VCF_GRAIN_SIZE);
    if (!read_below_unit(d, u, buf, error))
        return FALSE;
    if (all_zero(buf, VCF_GRAIN_SIZE))
        return TRUE;   /* reads as zeros standalone too: no space for it */
    g_autofree guint8 *back = g_malloc(VCF_GRAIN_SIZE);
    gboolean ok = TRUE;
    g_mutex_lock(vcf_disk_stripe(d, u));
    if (vcf_sparse_grain_state(d->store, u) == VCF_GRAIN_ABSENT) {
        ok = vcf_sparse_write_grain(d->store, u, buf, 0, VCF_GRAIN_SIZE, error)
             && vcf_sparse_read_grain(d->store, u, back, error);
        if (ok && vcf_grain_sum(back, VCF_GRAIN_SIZE) != vcf_grain_sum(buf, VCF_GRAIN_SIZE)) {
            g_set_error(error, VCF_ERROR, EIO, "%s: the copy of grain %" G_GUINT64_FORMAT
                        " (disk offset %" G_GUINT64_FORMAT ") does not read back as its "
                        "source", d->path, u, u * VCF_GRAIN_SIZE);
            ok = FALSE;
        }
        if (ok)
            *copied = VCF_GRAIN_SIZE;
    }
    g_mutex_unlock(vcf_disk_stripe(d, u));
    return ok;
}

gboolean vcf_disk_copy_unit(VcfDisk *d, guint64 u, gboolean *held, gsize *copied,
                            GError **error)
{
    *held = FALSE;
    *copied = 0;
    g_rw_lock_reader_lock(&d->lock);
    gboolean ok = copy_locked(d, u, held, copied, error);
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
        if (!all_zero(buf, VCF_GRAIN_SIZE)) {
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
